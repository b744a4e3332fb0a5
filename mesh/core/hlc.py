"""Hybrid logical clock (Kulkarni et al. 2014): stamps that follow wall time yet respect causality.

A `Stamp` is (wall_ms, counter, node). `HybridClock.tick(physical_ms)` stamps a local event: never lower
than the physical clock, and always above every stamp this clock has made or observed. `observe(stamp)`
folds in a stamp received from a peer, so whatever a node does after seeing an edit is stamped after it:
under last-writer-wins, an edit made in reply to what you saw always wins over it, whatever the clocks say.
The node id breaks ties, so stamps of different nodes never compare equal.

Physical time is an argument (milliseconds since the Unix epoch, from the runtime's wall clock); this
module never reads a clock. A peer whose wall clock runs ahead pulls every clock that hears it forward
(stamps stay ordered; they just read "later" than the wall); `ahead_ms` lets the runtime log that.
"""

from __future__ import annotations

from mesh.core.errors import InvalidField
from mesh.core.values import value

__all__ = ["MAX_COUNTER", "MAX_WALL_MS", "HybridClock", "Stamp", "check_stamp"]

MAX_WALL_MS = 10**13
"""Largest wall part accepted (the year 2286), as `mesh.core.validate.WALL_MAX` for seconds."""
MAX_COUNTER = 2**32 - 1
"""Largest counter accepted: events stamped within one millisecond of each other."""


@value(order=True)
class Stamp:
    """A hybrid-logical-clock time; ordered by (wall_ms, counter, node)."""

    wall_ms: int
    counter: int
    node: str


def check_stamp(stamp: Stamp) -> Stamp:
    """Ranges and types of a stamp from a peer (raises InvalidField)."""
    if not isinstance(stamp, Stamp):
        raise InvalidField("stamp", f"a stamp must be a Stamp, not {type(stamp).__name__}")
    checks = (("wall_ms", stamp.wall_ms, MAX_WALL_MS), ("counter", stamp.counter, MAX_COUNTER))
    for name, n, top in checks:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= top:
            raise InvalidField("stamp", f"stamp {name} must be a whole number from 0 to {top}, not {n!r}")
    if not isinstance(stamp.node, str) or not stamp.node:
        raise InvalidField("stamp", "stamp node must be a non-empty string")
    return stamp


class HybridClock:
    """One node's hybrid logical clock."""

    __slots__ = ("_counter", "_wall", "node")

    def __init__(self, node: str, wall_ms: int = 0, counter: int = 0) -> None:
        self.node = node
        self._wall = wall_ms
        self._counter = counter

    @property
    def last(self) -> Stamp:
        """The highest stamp made or observed so far."""
        return Stamp(self._wall, self._counter, self.node)

    def tick(self, physical_ms: int) -> Stamp:
        """A stamp for a local event, above everything made or observed so far."""
        if physical_ms > self._wall:
            self._wall, self._counter = physical_ms, 0
        else:
            self._counter += 1
        return Stamp(self._wall, self._counter, self.node)

    def observe(self, stamp: Stamp) -> None:
        """Fold in a peer's stamp: later ticks come after it."""
        if (stamp.wall_ms, stamp.counter) > (self._wall, self._counter):
            self._wall, self._counter = stamp.wall_ms, stamp.counter

    @staticmethod
    def ahead_ms(stamp: Stamp, physical_ms: int) -> int:
        """How far a stamp is ahead of this wall clock (0 if not): a skewed peer, worth a log line."""
        return max(0, stamp.wall_ms - physical_ms)
