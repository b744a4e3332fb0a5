"""The steward-change rule, as a table: one change at a time, and no fragile even-sized sets."""

from __future__ import annotations

import pytest

from mesh.core.steward_policy import Candidate, next_change, target_size


def live(*names: str) -> list[Candidate]:
    return [Candidate(n, float(i), "h") for i, n in enumerate(names)]


@pytest.mark.parametrize(("n", "size"), [(1, 1), (2, 2), (3, 3), (6, 3), (7, 5), (40, 5)])
def test_target_size(n: int, size: int) -> None:
    assert target_size(n) == size


@pytest.mark.parametrize(
    ("current", "alive", "dead", "expect"),
    [
        # a lone steward stays alone with one other node (a pair would stall if either left)
        (("a",), ("a", "b"), (), None),
        # ...and grows to 2 only when a third can follow
        (("a",), ("a", "b", "c"), (), ("a", "b")),
        (("a", "b"), ("a", "b", "c"), (), ("a", "b", "c")),
        (("a", "b", "c"), ("a", "b", "c", "d"), (), None),
        # seven nodes: five stewards, through 4
        (("a", "b", "c"), tuple("abcdefg"), (), ("a", "b", "c", "d")),
        (("a", "b", "c", "d"), tuple("abcdefg"), (), ("a", "b", "c", "d", "e")),
        # a dead steward is replaced: add first, then drop the dead one
        (("a", "b", "c"), ("a", "b", "d"), ("c",), ("a", "b", "c", "d")),
        (("a", "b", "c", "d"), ("a", "b", "d"), ("c",), ("a", "b", "d")),
        # no replacement: keep {a, b, c} (two of three is still a quorum) rather than shrink to a pair
        (("a", "b", "c"), ("a", "b"), ("c",), None),
        (("a", "b", "c"), ("a", "b"), (), None),
        # shrinking goes through odd sizes: 5 -> 4 -> 3
        (("a", "b", "c", "d", "e"), ("a", "b", "c", "d", "e"), (), ("a", "b", "c", "d")),
        # two dead of five, no spares: 5 -> 4 -> 3 while the live three are a majority throughout
        (("a", "b", "c", "d", "e"), ("a", "b", "c"), ("d", "e"), ("a", "b", "c", "e")),
        (("a", "b", "c", "e"), ("a", "b", "c"), ("e",), ("a", "b", "c")),
        (("a", "b", "c", "d", "e", "f"), tuple("abcdef"), (), ("a", "b", "c", "d", "e")),
    ],
)
def test_next_change(
    current: tuple[str, ...], alive: tuple[str, ...], dead: tuple[str, ...], expect: tuple[str, ...] | None
) -> None:
    got = next_change(current, live(*alive), dead)
    assert got == expect
    if got is not None:
        assert len(set(got) ^ set(current)) == 1  # exactly one change


def test_prefers_a_host_without_a_steward() -> None:
    cands = [
        Candidate("a", 0, "h1"),
        Candidate("b", 1, "h1"),
        Candidate("c", 2, "h2"),
        Candidate("d", 3, "h1"),
    ]
    assert next_change(("a",), cands, ()) == ("a", "c")
