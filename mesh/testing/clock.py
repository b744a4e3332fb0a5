"""A clock that moves only when told to."""

from __future__ import annotations


class ManualClock:
    """Deterministic clock for tests and simulation: `advance()` moves it, nothing else does."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock never goes backwards")
        self._now += seconds
        return self._now

    def set(self, t: float) -> None:
        if t < self._now:
            raise ValueError("a clock never goes backwards")
        self._now = t
