"""Table tests for the pure quorum rules."""

from __future__ import annotations

import pytest

from mesh.core.quorum import VoteResult, majority, tally, tally_messages

W, P, L = VoteResult.WON, VoteResult.PENDING, VoteResult.LOST
ABC = frozenset({"a", "b", "c"})
ABCDE = frozenset({"a", "b", "c", "d", "e"})


@pytest.mark.parametrize(("n", "m"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority(n: int, m: int) -> None:
    assert majority(n) == m


def test_majority_rejects_negative() -> None:
    with pytest.raises(ValueError):
        majority(-1)


@pytest.mark.parametrize(
    ("voters", "yes", "no", "want"),
    [
        (ABC, set(), set(), P),
        (ABC, {"a"}, set(), P),
        (ABC, {"a", "b"}, set(), W),
        (ABC, {"a"}, {"b"}, P),
        (ABC, {"a"}, {"b", "c"}, L),
        (ABC, set(), {"b", "c"}, L),
        # strangers never count, however many
        (ABC, {"a", "x", "y", "z"}, set(), P),
        (ABC, set(), {"x", "y"}, P),
        # a voter that promised and then refused still counts once, as yes
        (ABC, {"a", "b"}, {"b"}, W),
        (ABCDE, {"a", "b"}, {"c"}, P),
        (ABCDE, {"a", "b", "c"}, set(), W),
        (ABCDE, {"a"}, {"b", "c", "d"}, L),
        (frozenset({"a"}), {"a"}, set(), W),
        (frozenset(), set(), set(), L),
        (frozenset(), {"a"}, set(), L),
    ],
)
def test_tally(voters: frozenset[str], yes: set[str], no: set[str], want: VoteResult) -> None:
    assert tally(voters, yes, no) is want


@pytest.mark.parametrize(
    ("n", "yes", "no", "want"),
    [(3, 2, 0, W), (3, 1, 0, P), (3, 0, 2, L), (5, 3, 0, W), (0, 1, 0, L)],
)
def test_tally_messages_is_the_broken_rule(n: int, yes: int, no: int, want: VoteResult) -> None:
    assert tally_messages(n, yes, no) is want


def test_duplicates_win_only_under_the_broken_rule() -> None:
    # One acceptor's promise delivered twice: two messages, one distinct voter.
    assert tally(ABC, {"a"}, set()) is P
    assert tally_messages(3, 2, 0) is W
