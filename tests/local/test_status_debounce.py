"""A service's status field is published once a burst of changes is quiet, and no later than its ceiling.

Driven on a fake loop clock (the hub only asks the loop for time and timers), so nothing here depends on load.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from mesh._runtime import members
from mesh._runtime.lifecycle import Lifecycle
from mesh._runtime.members import MemberHub


class _Loop:
    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, t: float, f: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (t, next(self._seq), f))

    def call_later(self, dt: float, f: Callable[[], None]) -> None:
        self.call_at(self.now + dt, f)

    def run_until(self, t: float) -> None:
        while self._timers and self._timers[0][0] <= t:
            at, _, f = heapq.heappop(self._timers)
            self.now = at
            f()
        self.now = t


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> _Loop:
    fake = _Loop()
    monkeypatch.setattr(members.asyncio, "get_running_loop", lambda: fake)
    return fake


def _hub(loop: _Loop) -> tuple[MemberHub, list[tuple[float, Any]]]:
    core: Any = SimpleNamespace(status=SimpleNamespace(claims=()))
    hub = MemberHub(core, None, Lifecycle(), lambda f, droppable: None)  # type: ignore[arg-type]
    published: list[tuple[float, Any]] = []

    def set_status(**changes: Any) -> None:
        published.append((loop.now, changes["claims"]))
        core.status = SimpleNamespace(**changes)

    hub.set_status = set_status  # type: ignore[method-assign]
    return hub, published


def _stream(hub: MemberHub, loop: _Loop, until: float, every: float, delay: float, most: float | None) -> Any:
    """A change every `every` s until `until`; returns the last value."""
    value: list[Any] = [()]
    for i in itertools.count():
        t = i * every
        if t >= until:
            return value[0]
        loop.run_until(t)
        value[0] = (f"token-{i}",)
        hub.schedule_status("claims", lambda: value[0], delay, most)


def test_a_lone_change_is_published_the_delay_after_it(loop: _Loop) -> None:
    hub, published = _hub(loop)
    hub.schedule_status("claims", lambda: ("a",), 0.05, 1.0)
    loop.run_until(10.0)
    assert published == [(0.05, ("a",))]


def test_a_steady_stream_of_changes_is_published_once_per_ceiling_and_its_last_value_once_quiet(
    loop: _Loop,
) -> None:
    hub, published = _hub(loop)
    last = _stream(hub, loop, until=3.5, every=0.002, delay=0.05, most=1.0)  # a claim loop: never quiet
    loop.run_until(10.0)
    # Bursts begin at 0, ~1, ~2 and ~3 s: three reach their 1 s ceiling, the last ends in quiet at 3.5 + 0.05.
    assert [round(t, 2) for t, _ in published] == [1.0, 2.0, 3.0, 3.55]
    assert published[-1][1] == last


def test_without_a_ceiling_a_burst_is_published_the_delay_after_it_began(loop: _Loop) -> None:
    hub, published = _hub(loop)
    last = _stream(hub, loop, until=0.2, every=0.002, delay=0.05, most=None)  # the unread count's way
    loop.run_until(10.0)
    # One per delay from each burst's first change, as before (bursts at 0, 0.05, 0.1 and 0.15 s, ends 0.198).
    assert [round(t, 2) for t, _ in published] == [0.05, 0.1, 0.15, 0.2]
    assert published[-1][1] == last


def test_an_unchanged_value_is_not_published_again(loop: _Loop) -> None:
    hub, published = _hub(loop)
    hub.schedule_status("claims", lambda: ("a",), 0.05, 1.0)
    loop.run_until(1.0)
    hub.schedule_status("claims", lambda: ("a",), 0.05, 1.0)
    loop.run_until(2.0)
    assert published == [(0.05, ("a",))]
