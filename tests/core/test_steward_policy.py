"""The steward rules, as tables: straight to the target size, never an even set, who acts, first config."""

from __future__ import annotations

import pytest

from mesh.core.steward_policy import Candidate, can_decide, formation, next_config, target_size, upkeep_leader


def live(*names: str) -> list[Candidate]:
    return [Candidate(n, float(i), "h") for i, n in enumerate(names)]


@pytest.mark.parametrize(("n", "size"), [(1, 1), (2, 1), (3, 3), (6, 3), (7, 5), (40, 5)])
def test_target_size(n: int, size: int) -> None:
    assert target_size(n) == size


@pytest.mark.parametrize(
    ("current", "alive", "gone", "expect"),
    [
        # a lone steward with one other node stays alone (a pair would stall if either left)
        (("a",), ("a", "b"), (), None),
        # three nodes: straight to three stewards, in one change
        (("a",), ("a", "b", "c"), (), ("a", "b", "c")),
        (("a", "b", "c"), ("a", "b", "c", "d"), (), None),
        # seven nodes: five stewards at once, oldest first
        (("a", "b", "c"), tuple("abcdefg"), (), ("a", "b", "c", "d", "e")),
        # a gone steward is replaced in the same change
        (("a", "b", "c"), ("a", "b", "d"), ("c",), ("a", "b", "d")),
        (("a", "b", "c", "d", "e"), tuple("abdefgh"), ("c",), ("a", "b", "d", "e", "f")),
        # several gone at once (proven dead): all replaced at once
        (("a", "b", "c"), ("a", "d", "e", "f"), ("b", "c"), ("a", "d", "e")),
        # the whole set gone (recovery): a fresh set from the live nodes
        (("a", "b", "c"), ("d", "e", "f"), ("a", "b", "c"), ("d", "e", "f")),
        # a steward that is merely not alive (suspect, just died) is kept while the set is on target
        (("a", "b", "c"), ("a", "b", "d"), (), None),
        # ...but dropped first when the set is over target
        (("a", "b", "c", "d", "e"), ("a", "b", "c"), (), ("a", "b", "c")),
        # no replacement for a gone steward: shrink to an odd size, never a pair
        (("a", "b", "c"), ("a", "b"), ("c",), ("a",)),
        # live stewards are not dropped because the mesh got smaller
        (("a", "b", "c", "d", "e"), ("a", "b", "c", "d", "e"), (), None),
        # an even set left over from before is made odd: grow if a node is spare, else shrink
        (("a", "b"), ("a", "b", "c"), (), ("a", "b", "c")),
        (("a", "b", "c", "d"), ("a", "b", "c", "d"), (), ("a", "b", "c")),
        # nobody alive: nothing to do
        (("a",), (), ("a",), None),
    ],
)
def test_next_config(
    current: tuple[str, ...], alive: tuple[str, ...], gone: tuple[str, ...], expect: tuple[str, ...] | None
) -> None:
    got = next_config(current, live(*alive), gone)
    assert got == expect
    if got is not None:
        assert len(got) % 2 == 1 and len(set(got)) == len(got)
        assert not set(got) & set(gone)


def test_prefers_a_host_without_a_steward() -> None:
    cands = [
        Candidate("a", 0, "h1"),
        Candidate("b", 1, "h1"),
        Candidate("c", 2, "h2"),
        Candidate("d", 3, "h1"),
    ]
    assert next_config(("a",), cands, ()) == ("a", "c", "b")


def test_can_decide_counts_distinct_stewards_of_the_set() -> None:
    assert can_decide(("a", "b", "c"), {"a", "b"})
    assert not can_decide(("a", "b", "c"), {"a", "x", "y"})
    assert can_decide(("a",), {"a"}) and not can_decide(("a",), set())
    assert not can_decide(("a", "b", "c", "d"), {"a", "b"})


def test_upkeep_leader_is_the_oldest_live_steward_else_the_oldest_node() -> None:
    nodes = live("x", "a", "b", "c")
    assert upkeep_leader(("b", "c", "z"), nodes) == "b"
    assert upkeep_leader(("z", "y"), nodes) == "x"
    assert upkeep_leader(("a",), []) is None


@pytest.mark.parametrize(
    ("seen", "expect"),
    [((), ("me",)), (("a",), ("me",)), (("a", "b"), ("me", "a", "b")), (("a", "b", "c"), ("me", "a", "b"))],
)
def test_formation_takes_up_to_three_oldest_never_a_pair(
    seen: tuple[str, ...], expect: tuple[str, ...]
) -> None:
    cands = [Candidate("me", 5.0, "h"), *live(*seen)]
    assert formation(cands, "me") == expect
