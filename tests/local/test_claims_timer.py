"""The claims service wakes its timer task only when the core's next deadline moves before the time the task
will look anyway: a claim's attempt (its timeout) wakes it; effects that leave the deadline where it is do
not (a pass per claim, reply and release was a quarter of a claimant's work)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mesh._services.claims import ClaimsService
from mesh.core.claims import LeaseConfig
from mesh.core.identity import Identity
from mesh.core.membership import PeerInfo
from mesh.testing.clock import ManualClock

ME, OTHER = "a" * 32, "b" * 32


class _Members:
    members: dict[str, Any] = {}

    def live(self) -> list[Any]:
        return []

    def holder_of_name(self, name: str) -> Any:
        return None


class _Ctx:
    """The little of a ServiceContext the claims service touches here; frames sent are recorded."""

    def __init__(self, tmp: Path) -> None:
        self.me = PeerInfo(ME, "i1", "a")
        self.identity = Identity(ME, "i1")
        self.name, self.mesh = "a", "m"
        self.home, self.state_dir = tmp / "home", tmp / "state"
        self.home.mkdir()
        self.state_dir.mkdir()
        self.clock = ManualClock(100.0)
        self.members = _Members()
        self.sent: list[tuple[Any, tuple[object, ...]]] = []

    def spawn(self, coro: Any, name: str) -> Any:
        coro.close()

    def send(self, to: Any, *msgs: object, droppable: bool = False) -> bool:
        self.sent.append((to, msgs))
        return True

    def broadcast(self, *msgs: object, droppable: bool = False) -> None:
        pass

    def linked(self, node_id: str) -> bool:
        return True

    def ensure_link(self, node_id: str) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # on_member, publish_status, show_stewards, ...: no-ops
        return lambda *a, **k: None


def test_the_timer_is_woken_only_for_an_earlier_deadline(tmp_path: Path) -> None:
    async def run() -> None:
        ctx = _Ctx(tmp_path)
        svc = ClaimsService(ctx, LeaseConfig(lease=10.0))  # type: ignore[arg-type]
        now = ctx.clock.now()
        svc.apply(svc.core.genesis((OTHER,), now))  # another node is the only steward
        svc._wake.clear()
        svc._manage_soon = False  # as the timer's pass after the config change leaves it
        svc._timer_at = now + 5.0  # the task sleeps until then (an idle non-steward's wake)
        svc.apply([])
        assert not svc._wake.is_set()  # nothing moved
        svc.apply(svc.core.claim("service/x", 60.0, now))  # an attempt: its timeout is due well before
        assert [to for to, _ in ctx.sent] == [OTHER] and svc._wake.is_set()
        svc._wake.clear()
        svc._timer_at = svc.core.next_deadline() or 0.0  # the task's next pass is set for that timeout
        svc.apply([])
        assert not svc._wake.is_set()

    asyncio.run(run())
