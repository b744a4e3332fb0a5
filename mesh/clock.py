"""Clocks. The core never reads time itself: the runtime passes `now` from a Clock.

CLOCK_BOOTTIME counts time spent suspended (time.monotonic does not), so a lease deadline taken before a
laptop sleeps has really passed when it wakes.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic source of seconds."""

    def now(self) -> float:
        """Seconds since an arbitrary fixed point; never goes backwards."""
        ...


class BootClock:
    """CLOCK_BOOTTIME where the OS has it (Linux), else time.monotonic."""

    def __init__(self) -> None:
        self._id = getattr(time, "CLOCK_BOOTTIME", None)

    def now(self) -> float:
        if self._id is not None:
            return time.clock_gettime(self._id)
        return time.monotonic()


def wall() -> float:
    """Wall-clock unix seconds, for display only; never used to decide anything."""
    return time.time()
