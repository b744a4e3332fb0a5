"""Hybrid logical clock: stamps follow the wall clock, never go back, and come after what was observed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core.errors import InvalidField
from mesh.core.hlc import MAX_COUNTER, MAX_WALL_MS, HybridClock, Stamp, check_stamp


def test_tick_follows_the_wall_clock() -> None:
    c = HybridClock("n1")
    assert c.tick(1000) == Stamp(1000, 0, "n1")
    assert c.tick(1005) == Stamp(1005, 0, "n1")


def test_tick_within_one_millisecond_or_backwards_counts_up() -> None:
    c = HybridClock("n1")
    c.tick(1000)
    assert c.tick(1000) == Stamp(1000, 1, "n1")
    assert c.tick(990) == Stamp(1000, 2, "n1")  # the wall clock stepped back: the stamp does not


def test_observe_pulls_the_clock_forward() -> None:
    c = HybridClock("slow")
    c.tick(1000)
    c.observe(Stamp(5000, 7, "fast"))
    assert c.tick(1001) == Stamp(5000, 8, "slow")  # after what it saw, though its wall says 1001
    c.observe(Stamp(10, 0, "old"))  # an old stamp changes nothing
    assert c.last == Stamp(5000, 8, "slow")


def test_node_breaks_ties() -> None:
    assert Stamp(1, 0, "a") < Stamp(1, 0, "b") < Stamp(1, 1, "a") < Stamp(2, 0, "a")


def test_ahead() -> None:
    assert HybridClock.ahead_ms(Stamp(5000, 0, "x"), 4000) == 1000
    assert HybridClock.ahead_ms(Stamp(5000, 0, "x"), 6000) == 0


@pytest.mark.parametrize(
    "stamp",
    [
        Stamp(-1, 0, "n"),
        Stamp(MAX_WALL_MS + 1, 0, "n"),
        Stamp(0, MAX_COUNTER + 1, "n"),
        Stamp(0, -1, "n"),
        Stamp(True, 0, "n"),
        Stamp(1.5, 0, "n"),  # type: ignore[arg-type]
        Stamp(0, 0, ""),
    ],
)
def test_bad_stamps(stamp: Stamp) -> None:
    with pytest.raises(InvalidField):
        check_stamp(stamp)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50), st.integers(0, 3)), max_size=60))
def test_stamps_strictly_increase_and_exceed_everything_observed(events: list[tuple[bool, int, int]]) -> None:
    c = HybridClock("me")
    last = Stamp(0, 0, "")
    seen = Stamp(0, 0, "")
    for local, wall, counter in events:
        if local:
            s = c.tick(wall)
            assert s > last and (s.wall_ms, s.counter) > (seen.wall_ms, seen.counter) and s.wall_ms >= wall
            last = s
        else:
            other = Stamp(wall, counter, "peer")
            c.observe(other)
            seen = max(seen, other)
