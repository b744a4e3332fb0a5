"""The old plan's success metrics, computed live from plain inputs (issue 12): pure functions.

* `percentile` / `summary`: nearest-rank percentiles (a p90 is a value that was really observed).
* `heartbeat_uptime`: how much of the time a session was expected to be heartbeating it was `alive`,
  from its liveness intervals (or `intervals_from_transitions` of membership events).
* `reply_times`: for every delivered message, the time to its recipient's first reply, or else to the
  recipient reading it; p50/p90 and the share within the plan's 5-minute target.
* `claim_collisions`: claims refused because someone held them (the system working) versus overlaps,
  two holders of one resource at once (a safety failure; the plan's "0 collisions" means this is 0).

How a runtime uses it: it gathers the inputs from what a node already has (membership events, its mail
store, claim history) for the window of ``meshctl stats --since``, and renders the returned dataclasses
as a table or JSON. Times are seconds on one clock of the caller's choosing (wall time, for history that
spans restarts); nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum

from mesh.core.errors import InvalidField, PatternError
from mesh.core.globs import overlaps as globs_overlap
from mesh.core.resources import path_claim
from mesh.core.values import value

__all__ = [
    "DEAD_CAP",
    "REPLY_TARGET",
    "Collisions",
    "Hold",
    "Interval",
    "Liveness",
    "MessageRecord",
    "Overlap",
    "Refusal",
    "ReplyStats",
    "ReplyTime",
    "Summary",
    "Uptime",
    "claim_collisions",
    "heartbeat_uptime",
    "intervals_from_transitions",
    "percentile",
    "reply_times",
    "resources_overlap",
    "summary",
]

REPLY_TARGET = 300.0
"""The plan's goal: replies within 5 minutes."""
DEAD_CAP = 900.0
"""Seconds of one dead stretch counted as downtime. The status view forgets a dead session after 15
minutes; past that it is gone (never coming back), not down, and further time is not held against it."""


def _finite(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidField(what, f"{what} must be a finite number, not {value!r}")
    return float(value)


# ---------------------------------------------------------------- percentiles


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0 < q <= 100; q = 0 gives the minimum); None when empty."""
    q = _finite(q, "percentile")
    if not 0 <= q <= 100:
        raise InvalidField("percentile", f"a percentile is from 0 to 100, not {q}")
    ordered = sorted(_finite(v, "value") for v in values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@value
class Summary:
    """Count, nearest-rank p50 / p90 / p99, max and mean of some durations (None when there are none)."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    mean: float | None


def summary(values: Iterable[float]) -> Summary:
    """Summary of a sample."""
    vals = [_finite(v, "value") for v in values]
    if not vals:
        return Summary(0, None, None, None, None, None)
    return Summary(
        len(vals),
        percentile(vals, 50),
        percentile(vals, 90),
        percentile(vals, 99),
        max(vals),
        math.fsum(vals) / len(vals),
    )


# ---------------------------------------------------------------- heartbeat uptime


class Liveness(StrEnum):
    """A session's state as membership reports it (the same words as `meshctl status`)."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


@value
class Interval:
    """A session was in `state` from `start` to `end` (seconds)."""

    start: float
    end: float
    state: Liveness


@value
class Uptime:
    """Seconds alive out of seconds expected (alive + suspect + capped dead)."""

    alive: float
    expected: float

    @property
    def ratio(self) -> float | None:
        """alive / expected."""
        return self.alive / self.expected if self.expected > 0 else None


def _liveness(value: object) -> Liveness:
    raw = getattr(value, "value", value)  # membership's own enum, or its value
    if isinstance(raw, str) and raw in Liveness._value2member_map_:
        return Liveness(raw)
    raise InvalidField("state", f"liveness must be one of alive, suspect, dead, left; not {value!r}")


def intervals_from_transitions(transitions: Iterable[tuple[float, object]], until: float) -> list[Interval]:
    """(time, new state) events, in time order -> the intervals between them (the last runs to `until`)."""
    until = _finite(until, "until")
    out: list[Interval] = []
    prev: tuple[float, Liveness] | None = None
    for at, state in transitions:
        at = _finite(at, "time")
        cur = (at, _liveness(state))
        if prev is not None:
            if at < prev[0]:
                raise InvalidField("transitions", f"transitions must be in time order ({at} after {prev[0]})")
            if at > prev[0]:
                out.append(Interval(prev[0], at, prev[1]))
        prev = cur
    if prev is not None and until > prev[0]:
        out.append(Interval(prev[0], until, prev[1]))
    return out


def heartbeat_uptime(
    intervals: Iterable[Interval], since: float, until: float, dead_cap: float = DEAD_CAP
) -> Uptime:
    """Heartbeat uptime of one session over [since, until].

    Alive time counts as up. Suspect time counts as expected but down (heartbeats were missed). Dead time
    counts as down too, at most `dead_cap` seconds per dead stretch (a stretch cut by `since` is counted
    from `since`). Left time (a graceful exit) and gaps between intervals are not expected at all.
    Intervals must be in order and must not overlap.
    """
    since, until, dead_cap = _finite(since, "since"), _finite(until, "until"), _finite(dead_cap, "dead_cap")
    if until < since:
        raise InvalidField("until", "the window ends before it starts")
    alive = expected = 0.0
    last_end = -math.inf
    dead_run = 0.0  # dead seconds counted in the current dead stretch
    prev_dead_end: float | None = None
    for iv in intervals:
        start, end, state = _finite(iv.start, "start"), _finite(iv.end, "end"), _liveness(iv.state)
        if end < start:
            raise InvalidField("interval", f"an interval ends ({end}) before it starts ({start})")
        if start < last_end:
            raise InvalidField("interval", f"intervals overlap or are out of order at {start}")
        last_end = end
        lo, hi = max(start, since), min(end, until)
        if state is not Liveness.DEAD or prev_dead_end != start:
            dead_run = 0.0  # a new dead stretch starts (dead intervals that touch are one stretch)
        if state is Liveness.DEAD:
            prev_dead_end = end
        if hi <= lo:
            continue
        span = hi - lo
        if state is Liveness.ALIVE:
            alive += span
            expected += span
        elif state is Liveness.SUSPECT:
            expected += span
        elif state is Liveness.DEAD:
            counted = min(span, max(0.0, dead_cap - dead_run))
            dead_run += counted
            expected += counted
    return Uptime(alive, expected)


# ---------------------------------------------------------------- reply times


@value
class MessageRecord:
    """One delivery: message `id` from `sender` to `recipient` (a broadcast is one record per recipient,
    all with the message's id). `read_at` is when the recipient read it, if it did."""

    id: str
    sender: str
    recipient: str
    sent_at: float
    in_reply_to: str | None = None
    read_at: float | None = None


@value
class ReplyTime:
    """How long one delivery waited for its recipient: `by` is "reply" or "read"."""

    id: str
    recipient: str
    seconds: float
    by: str


@value
class ReplyStats:
    """Reply (else read) times of deliveries sent in the window, and those still waiting."""

    times: tuple[ReplyTime, ...]
    unanswered: tuple[tuple[str, str], ...]
    """(message id, recipient) of deliveries neither replied to nor read."""
    summary: Summary
    within_target: float | None
    """Share of answered deliveries answered within `REPLY_TARGET` (None if none were answered)."""

    @property
    def by_reply(self) -> int:
        """Deliveries answered by a reply."""
        return sum(1 for t in self.times if t.by == "reply")

    @property
    def by_read(self) -> int:
        """Deliveries answered only by being read."""
        return sum(1 for t in self.times if t.by == "read")


def reply_times(
    messages: Iterable[MessageRecord], since: float | None = None, target: float = REPLY_TARGET
) -> ReplyStats:
    """Pair every delivery sent at or after `since` with its recipient's first reply (a message from the
    recipient whose `in_reply_to` is its id), else with its reading. A reply stamped before the message
    (the two nodes' clocks disagree) counts as 0 s: `in_reply_to` proves it came after. Messages a
    session sends itself are left out."""
    records = list(messages)
    first_reply: dict[tuple[str, str], float] = {}
    for m in records:
        if m.in_reply_to is not None:
            k = (m.in_reply_to, m.sender)
            at = _finite(m.sent_at, "sent_at")
            if k not in first_reply or at < first_reply[k]:
                first_reply[k] = at
    times: list[ReplyTime] = []
    waiting: list[tuple[str, str]] = []
    for m in records:
        sent = _finite(m.sent_at, "sent_at")
        if m.recipient == m.sender or (since is not None and sent < since):
            continue
        reply = first_reply.get((m.id, m.recipient))
        if reply is not None:
            times.append(ReplyTime(m.id, m.recipient, max(0.0, reply - sent), "reply"))
        elif m.read_at is not None:
            times.append(ReplyTime(m.id, m.recipient, max(0.0, _finite(m.read_at, "read_at") - sent), "read"))
        else:
            waiting.append((m.id, m.recipient))
    seconds = [t.seconds for t in times]
    within = sum(1 for s in seconds if s <= target) / len(seconds) if seconds else None
    return ReplyStats(tuple(times), tuple(waiting), summary(seconds), within)


# ---------------------------------------------------------------- claim collisions


@value
class Hold:
    """`holder` held claim `resource` (``TYPE/NAME``; ``path/<pattern>`` for paths) from `start` to `end`."""

    resource: str
    holder: str
    start: float
    end: float
    exclusive: bool = True
    token: int = 0


@value
class Refusal:
    """A claim on `resource` by `claimant` was refused at `at` because someone else held it."""

    resource: str
    claimant: str
    at: float


@value
class Overlap:
    """Two holders whose conflicting holds overlapped in time (a safety failure)."""

    first: Hold
    second: Hold
    start: float
    end: float


@value
class Collisions:
    """Refused claims (per resource) and overlaps; the plan's "0 collisions" means `overlaps` is empty."""

    refused: int
    refused_by_resource: Mapping[str, int]
    overlaps: tuple[Overlap, ...]


def resources_overlap(a: str, b: str) -> bool:
    """Do two claims cover a common thing? Equal item names, or two path claims (``path/`` or
    ``path-shared/``) whose patterns overlap (whether one is exclusive is the holds' business)."""
    try:
        pa, pb = path_claim(a), path_claim(b)
    except PatternError:
        return a == b
    if pa is None or pb is None:
        return a == b
    return globs_overlap(pa.glob, pb.glob)


def claim_collisions(
    holds: Iterable[Hold],
    refusals: Iterable[Refusal] = (),
    since: float | None = None,
    until: float | None = None,
    overlap: Callable[[str, str], bool] = resources_overlap,
) -> Collisions:
    """Count refusals in [since, until] and find every pair of holds by different holders, at least one
    exclusive, whose resources overlap and whose times overlap within the window (touching ends, a clean
    handover, are not an overlap). A sweep in start order: each hold is compared only with holds still
    running when it starts."""
    lo = -math.inf if since is None else _finite(since, "since")
    hi = math.inf if until is None else _finite(until, "until")
    per: Counter[str] = Counter(r.resource for r in refusals if lo <= _finite(r.at, "refusal time") <= hi)
    ordered = sorted(
        (h for h in holds if _finite(h.end, "end") > lo and _finite(h.start, "start") < hi),
        key=lambda h: (h.start, h.end),
    )
    for h in ordered:
        if h.end < h.start:
            raise InvalidField("hold", f"a hold of {h.resource} ends before it starts")
    found: list[Overlap] = []
    active: list[Hold] = []
    for h in ordered:
        active = [a for a in active if a.end > h.start]
        for a in active:
            if a.holder == h.holder or not (a.exclusive or h.exclusive):
                continue
            if overlap(a.resource, h.resource):
                start, end = max(a.start, h.start, lo), min(a.end, h.end, hi)
                if end > start:
                    found.append(Overlap(a, h, start, end))
        active.append(h)
    return Collisions(sum(per.values()), dict(per), tuple(found))
