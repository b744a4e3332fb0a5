"""A member's `state_since` is one instant: every view of the same state shows the same wall time.

It was mapped from the monotonic clock afresh at each view (wall - (now - since)); the two clocks read a few
µs apart made it move by a millisecond between two `meshctl status` calls (a flaky comparison of the hot
path with main()). Driven with fake clocks, so nothing here depends on timing.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from mesh._runtime import members
from mesh._runtime.lifecycle import Lifecycle
from mesh._runtime.members import MemberHub
from mesh.core.membership import Liveness


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t


def _member(since: float) -> Any:
    info = SimpleNamespace(name="b", node_id="n-b", role="", address="127.0.0.1:1", incarnation=1)
    return SimpleNamespace(info=info, status=None, last_heard=since, is_self=False, state=Liveness.ALIVE,
                           timed=False, state_since=since)  # fmt: skip


def test_the_same_state_shows_the_same_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    walls = iter([1_000.0000, 1_005.0004, 1_009.9996, 1_020.0, 1_030.0])
    monkeypatch.setattr(members, "wall", lambda: next(walls))
    hub = MemberHub(SimpleNamespace(), clock, Lifecycle(), lambda f, d: None)  # type: ignore[arg-type]
    m = _member(since=90.0)
    first = hub.view(m).state_since
    assert first == pytest.approx(990.0)
    clock.t = 105.0
    assert hub.view(m).state_since == first  # wall moved 4e-4 s more than the monotonic clock: not shown
    clock.t = 110.0
    assert hub.view(m).state_since == first
    m.state_since = 115.0  # a new state: mapped afresh
    clock.t = 120.0
    assert hub.view(m).state_since == pytest.approx(1_015.0)
