"""Who watches whom, and which liveness news wins: the pure rules of the failure detector's fan-in.

A full mesh where every node heartbeats every other costs each node O(n) frames a second, so an idle mesh
costs O(n²). Instead each node is *watched* by `k` others: its successors on a ring of the live node ids.
Only watchers hear its heartbeats and run silence timers on it; when a watcher's timers move it to suspect
or dead, the watcher tells everyone (a *verdict*, stamped with the member's liveness sequence). The member
itself, told it is suspected, *refutes* with a higher sequence (SWIM's incarnation number). So each node
sends and receives k heartbeats a second whatever the mesh size.

Watching is asked for (pull): a node asks its ring predecessors for heartbeats, and a node beats to whoever
asked. Two nodes that disagree about the ring for a moment (a join under way) only cost a few extra beats:
nobody runs a timer on a member that was not asked to beat to it.

    ring (sorted live ids)   a  b  c  d  e  f
    watchers of c (k=3)            d  e  f        c beats to d, e, f; d, e, f each asked c to
    watched by d (k=3)       a  b  c              d asked a, b and c for beats
"""

from __future__ import annotations

import enum
from collections.abc import Collection

DEFAULT_WATCHERS = 3
RELAY_FANOUT = 4  # peers a verdict that changed a node's view is passed on to (an epidemic across links)


class News(enum.Enum):
    """What a verdict says about a member."""

    ALIVE = "alive"  # the member itself refutes a suspicion (or says it is back from a stall)
    SUSPECT = "suspect"  # a watcher heard nothing for suspect_after
    DEAD = "dead"  # a watcher heard nothing for dead_after


def watchers_of(target: str, live: Collection[str], k: int) -> tuple[str, ...]:
    """The k successors of `target` on the ring of `live` ids (everyone else when fewer than k+1 live)."""
    ring = sorted(set(live) | {target})
    i = ring.index(target)
    others = ring[i + 1 :] + ring[:i]
    return tuple(others[:k])


def watched_by(me: str, live: Collection[str], k: int) -> frozenset[str]:
    """The ids `me` watches: the k predecessors of `me` on the ring (those whose watchers include `me`)."""
    ring = sorted(set(live) | {me})
    i = ring.index(me)
    others = ring[i + 1 :] + ring[:i]  # successors first: the predecessors are the tail
    return frozenset(others[-k:] if k > 0 else ())


def verdict_applies(known_seq: int, news: News, seq: int) -> bool:
    """Does news at `seq` override what this node knows (stamped `known_seq`)? SWIM's ordering.

    A suspicion or death at the same sequence as the last word from the member wins (it is newer evidence
    about that life); only the member's own refutation, with a strictly higher sequence, clears it.
    """
    if news is News.ALIVE:
        return seq > known_seq
    return seq >= known_seq


def refutation(own_seq: int, news: News, seq: int) -> int | None:
    """The sequence to refute with when told `news` at `seq` about ourselves; None if nothing to refute.

    A suspicion at or above our sequence is beaten by one more. An older one is still news: someone holds
    it (a peer cut off while we refuted), so we say our current sequence again.
    """
    if news is News.ALIVE:
        return None
    return max(own_seq, seq + 1)
