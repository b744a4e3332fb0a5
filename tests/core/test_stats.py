"""Stats helpers from tables: percentiles, heartbeat uptime, reply pairing, collisions vs overlaps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core.errors import InvalidField
from mesh.core.stats import (
    Hold,
    Interval,
    Liveness,
    MessageRecord,
    Refusal,
    claim_collisions,
    heartbeat_uptime,
    intervals_from_transitions,
    percentile,
    reply_times,
    resources_overlap,
    summary,
)

# ---------------------------------------------------------------- percentiles


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 50, 7.0),
        ([7.0], 99, 7.0),
        ([1, 2, 3, 4], 50, 2),  # rank ceil(0.5 * 4) = 2
        ([1, 2, 3, 4, 5], 50, 3),
        ([4, 1, 3, 2, 5], 50, 3),  # order does not matter
        (list(range(1, 11)), 90, 9),
        (list(range(1, 11)), 91, 10),
        (list(range(1, 101)), 99, 99),
        ([5, 1, 9], 0, 1),
        ([5, 1, 9], 100, 9),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(("values", "q"), [([1.0], -1), ([1.0], 101), ([math.nan], 50), ([1.0], math.inf)])
def test_percentile_rejects(values: list[float], q: float) -> None:
    with pytest.raises(InvalidField):
        percentile(values, q)


@given(st.lists(st.floats(0, 1e6), min_size=1), st.floats(0, 100))
def test_percentile_is_an_observed_value_and_monotone(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values
    assert p is not None and p <= (percentile(values, min(100.0, q + 10)) or 0)


def test_summary() -> None:
    s = summary([1, 2, 3, 4, 10])
    assert (s.count, s.p50, s.p90, s.p99, s.max, s.mean) == (5, 3, 10, 10, 10, 4)
    assert summary([]).count == 0 and summary([]).p50 is None


# ---------------------------------------------------------------- uptime

A, S, D, L = Liveness.ALIVE, Liveness.SUSPECT, Liveness.DEAD, Liveness.LEFT


@pytest.mark.parametrize(
    ("intervals", "since", "until", "alive", "expected"),
    [
        ([], 0, 100, 0, 0),
        ([(0, 100, A)], 0, 100, 100, 100),
        ([(0, 90, A), (90, 100, S)], 0, 100, 90, 100),  # suspect: expected, not up
        ([(0, 50, A), (50, 100, L)], 0, 100, 50, 50),  # after a graceful leave nothing is expected
        ([(0, 50, A), (60, 100, A)], 0, 100, 90, 90),  # a gap (never seen) is not counted
        ([(0, 100, A), (100, 5000, D)], 0, 5000, 100, 1000),  # a dead stretch counts 900 s at most
        ([(0, 100, A), (100, 400, D), (400, 500, D)], 0, 500, 100, 500),  # touching dead: one stretch
        ([(0, 100, D), (100, 200, A), (200, 2000, D)], 0, 2000, 100, 100 + 100 + 900),  # two stretches
        ([(0, 100, A)], 50, 80, 30, 30),  # clipped to the window
        ([(-100, 50, A), (50, 60, S)], 0, 1000, 50, 60),
        ([(0, 10, "alive"), (10, 20, "suspect")], 0, 20, 10, 20),  # plain values work too
    ],
)
def test_heartbeat_uptime(
    intervals: list[tuple[float, float, Liveness]], since: float, until: float, alive: float, expected: float
) -> None:
    got = heartbeat_uptime([Interval(a, b, s) for a, b, s in intervals], since, until)
    assert (got.alive, got.expected) == (alive, expected)
    assert got.ratio == (alive / expected if expected else None)


@pytest.mark.parametrize(
    ("intervals", "fragment"),
    [
        ([(10, 5, A)], "ends"),
        ([(0, 10, A), (5, 20, S)], "overlap"),
        ([(0, 10, "sleeping")], "liveness"),
        ([(0, math.nan, A)], "finite"),
    ],
)
def test_heartbeat_uptime_rejects(intervals: list[tuple[float, float, Liveness]], fragment: str) -> None:
    with pytest.raises(InvalidField, match=fragment):
        heartbeat_uptime([Interval(a, b, s) for a, b, s in intervals], 0, 100)


def test_intervals_from_transitions() -> None:
    events = [(0, "alive"), (30, "suspect"), (35, "alive"), (35, "alive"), (90, "left")]
    assert intervals_from_transitions(events, until=100) == [
        Interval(0, 30, A),
        Interval(30, 35, S),
        Interval(35, 90, A),
        Interval(90, 100, L),
    ]
    up = heartbeat_uptime(intervals_from_transitions(events, 100), 0, 100)
    assert (up.alive, up.expected) == (85, 90)
    with pytest.raises(InvalidField, match="time order"):
        intervals_from_transitions([(5, "alive"), (1, "dead")], 10)


# ---------------------------------------------------------------- reply times


def msg(
    mid: str, frm: str, to: str, at: float, reply: str | None = None, read: float | None = None
) -> MessageRecord:
    return MessageRecord(mid, frm, to, at, reply, read)


def test_reply_pairing_first_reply_else_read() -> None:
    records = [
        msg("m1", "alice", "bob", 0, read=5),
        msg("r1", "bob", "alice", 60, reply="m1"),  # replied at 60 s (read at 5 s does not count)
        msg("r1b", "bob", "alice", 30, reply="m1"),  # ... an earlier reply: 30 s
        msg("m2", "alice", "carol", 100, read=400),  # no reply: read after 300 s
        msg("m3", "alice", "dave", 200),  # neither: still waiting
        msg("m4", "alice", "bob", 300),
        msg("r4", "carol", "bob", 310, reply="m4"),  # a third party's reply does not answer bob's copy
    ]
    stats = reply_times(records)
    got = {(t.id, t.recipient): (t.seconds, t.by) for t in stats.times}
    assert got[("m1", "bob")] == (30, "reply")
    assert got[("m2", "carol")] == (300, "read")
    assert ("m3", "dave") in stats.unanswered and ("m4", "bob") in stats.unanswered
    assert (stats.by_reply, stats.by_read) == (1, 1)


def test_reply_stats_percentiles_and_target() -> None:
    records = []
    for k, wait in enumerate([10, 20, 30, 40, 50, 60, 70, 80, 90, 600]):
        records.append(msg(f"m{k}", "a", "b", 1000 * k))
        records.append(msg(f"r{k}", "b", "a", 1000 * k + wait, reply=f"m{k}"))
    stats = reply_times(records)
    assert stats.summary.count == 10  # the replies themselves got no reply: unanswered, not timed
    assert (stats.summary.p50, stats.summary.p90) == (50, 90)
    assert stats.within_target == 0.9
    assert len(stats.unanswered) == 10


def test_broadcast_copies_are_paired_per_recipient_and_since_filters() -> None:
    records = [
        msg("b1", "alice", "bob", 100, read=110),
        msg("b1", "alice", "carol", 100),
        msg("rc", "carol", "alice", 400, reply="b1"),
        msg("old", "alice", "bob", 10, read=20),
        msg("self", "alice", "alice", 100, read=100),
    ]
    stats = reply_times(records, since=50)
    got = sorted((t.recipient, t.seconds, t.by) for t in stats.times)
    assert got == [("bob", 10, "read"), ("carol", 300, "reply")]
    assert reply_times([]).within_target is None


def test_a_reply_stamped_before_its_message_counts_as_zero() -> None:
    stats = reply_times([msg("m", "a", "b", 100), msg("r", "b", "a", 98, reply="m")])
    assert [t.seconds for t in stats.times] == [0]


# ---------------------------------------------------------------- collisions


def test_refusals_are_collisions_handled_overlaps_are_failures() -> None:
    holds = [
        Hold("service/api", "s1", 0, 100),
        Hold("service/api", "s2", 100, 200),  # a clean handover: touching, not overlapping
        Hold("service/api", "s1", 150, 160),  # s1 again while s2 holds it: an overlap
        Hold("service/db", "s3", 0, 300),
        Hold("service/db", "s3", 10, 20),  # the same holder twice is not a collision
    ]
    refusals = [
        Refusal("service/api", "s2", 50),
        Refusal("service/api", "s3", 60),
        Refusal("service/db", "s1", 70),
    ]
    got = claim_collisions(holds, refusals)
    assert got.refused == 3 and got.refused_by_resource == {"service/api": 2, "service/db": 1}
    assert [(o.first.holder, o.second.holder, o.start, o.end) for o in got.overlaps] == [
        ("s2", "s1", 150, 160)
    ]


def test_path_claims_overlap_by_pattern_and_shared_ones_do_not_collide() -> None:
    holds = [
        Hold("path/src/**/*.py", "s1", 0, 100),
        Hold("path/src/app/**", "s2", 50, 150),  # overlaps s1's pattern and time
        Hold("path/docs/**", "s3", 0, 200),  # disjoint pattern
        Hold("path/docs/*.md", "s4", 10, 20, exclusive=False),
        Hold("path/docs/*.md", "s5", 10, 20, exclusive=False),  # shared with shared: fine
    ]
    got = claim_collisions(holds)
    pairs = sorted((o.first.holder, o.second.holder) for o in got.overlaps)
    assert pairs == [("s1", "s2"), ("s3", "s4"), ("s3", "s5")]


def test_collisions_window() -> None:
    holds = [Hold("x/y", "a", 0, 100), Hold("x/y", "b", 90, 200)]
    assert claim_collisions(holds, since=95).overlaps[0].start == 95
    assert claim_collisions(holds, since=100).overlaps == ()
    assert claim_collisions([], [Refusal("x/y", "a", 5)], since=10).refused == 0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("service/x", "service/x", True),
        ("service/x", "service/y", False),
        ("path/src/a*.py", "path/src/*b.py", True),
        ("path/lib/*/x", "path/lib/y/z/x", False),
        ("path/[", "path/x", False),  # an invalid pattern overlaps only itself
        ("task/x", "path/x", False),
        ("path-shared/src/**", "path/src/x.py", True),  # shared or not: the holds say which is exclusive
        ("path-shared/docs/**", "path-shared/docs/**", True),
    ],
)
def test_resources_overlap(a: str, b: str, expected: bool) -> None:
    assert resources_overlap(a, b) is expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from("ab"), st.sampled_from(["p", "q", "r"]), st.integers(0, 20), st.integers(1, 5)
        ),
        max_size=12,
    )
)
def test_overlaps_match_brute_force(raw: list[tuple[str, str, int, int]]) -> None:
    holds = [Hold(f"t/{res}", who, start, start + n, token=k) for k, (res, who, start, n) in enumerate(raw)]
    brute = {
        frozenset((i, j))
        for i, x in enumerate(holds)
        for j, y in enumerate(holds)
        if i < j
        and x.resource == y.resource
        and x.holder != y.holder
        and max(x.start, y.start) < min(x.end, y.end)
    }
    found = claim_collisions(holds).overlaps
    got = {frozenset((holds.index(o.first), holds.index(o.second))) for o in found}
    assert len(found) == len(brute) and got == brute
