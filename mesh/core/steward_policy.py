"""Which single steward change the mesh should make next (a pure rule, table-tested).

The steward set only ever changes by one add or remove (quorums of consecutive epochs must intersect).
Even-sized sets are fragile — {A, B} needs both, so one departure stalls every claim until recovery — so
the rule avoids them: it grows 1 → 2 only when a third steward can follow at once, and replaces a dead
steward by adding a live node first and removing the dead one after (never shrinking to a pair when a
replacement is missing: {A, B, C} with C dead still has a quorum of two).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live node that could be a steward."""

    identity: str
    started_at: float
    host: str


def target_size(live_nodes: int) -> int:
    """3 stewards (5 once the mesh has at least 7 live nodes); fewer only when there are fewer nodes."""
    if live_nodes >= 7:
        return 5
    return min(3, max(1, live_nodes))


def next_change(
    current: Sequence[str], live: Sequence[Candidate], dead: Sequence[str]
) -> tuple[str, ...] | None:
    """The next steward set (one change from `current`), or None if nothing should change now."""
    cur = list(current)
    live_ids = {c.identity for c in live}
    dead_stewards = [s for s in cur if s in dead]
    live_stewards = [s for s in cur if s in live_ids]
    spare = [c for c in live if c.identity not in cur]
    hosts = {c.host for c in live if c.identity in cur}
    # Oldest first, preferring a host that has no steward yet (a LAN mesh survives losing one machine).
    spare.sort(key=lambda c: (c.host in hosts, c.started_at, c.identity))
    want = target_size(len(live))

    if dead_stewards:
        if len(cur) > max(want, len(live_stewards)) and len(cur) % 2 == 0:
            return tuple(s for s in cur if s != dead_stewards[0])  # even and over: drop a dead one
        if spare:
            return (*cur, spare[0].identity)  # replacement first
        rest = len(cur) - 1
        # Drop a dead one without a replacement only toward an odd set that keeps a live majority.
        if rest >= 1 and len(live_stewards) > rest // 2 and (rest % 2 == 1 or len(dead_stewards) >= 2):
            return tuple(s for s in cur if s != dead_stewards[0])
        return None
    if len(cur) < want and spare:
        if len(cur) % 2 == 1 and len(spare) < 2:
            return None  # odd -> even only when the next odd size can follow straight away
        return (*cur, spare[0].identity)
    if len(cur) % 2 == 0 and spare:
        return (*cur, spare[0].identity)  # an even set left over from before: make it odd
    if len(cur) > want and (len(cur) % 2 == 0 or len(cur) - 2 >= want):
        # Shrink toward the target through odd sizes only (5 -> 4 -> 3, never 3 -> 2).
        age = {c.identity: c.started_at for c in live}
        youngest = max(cur, key=lambda s: (age.get(s, float("inf")), s))
        return tuple(s for s in cur if s != youngest)
    return None
