"""Token buckets, and a log limiter built on them: pure, `now` is an argument (as in every core).

The peer server budgets frames and links with `TokenBucket`; every place that logs a fault which can repeat
(a peer's bad frames, a full disk, a listener that fails) logs through a `LogLimiter`, so a fault that
repeats is reported, but cannot flood the log.
"""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take` spends them or says no."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float, n: float = 1.0) -> bool:
        """Spend `n` tokens if there are that many (refilled up to `now`)."""
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
        if self._tokens < n:
            return False
        self._tokens -= n
        return True

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (nothing to remember about its owner)."""
        return self._tokens + max(0.0, now - self._at) * self.rate >= self.burst


class LogLimiter:
    """At most a few lines per key (peer, fault) in a row, then one per `every` seconds: faults are
    reported, but one that repeats cannot flood the log."""

    _PRUNE_AT = 1024

    def __init__(self, burst: int = 3, every: float = 10.0) -> None:
        self.burst = burst
        self.every = every
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str, now: float) -> bool:
        """Whether a line about `key` may be logged now."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._PRUNE_AT:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
            bucket = self._buckets[key] = TokenBucket(1.0 / self.every, self.burst, now)
        return bucket.take(now)
