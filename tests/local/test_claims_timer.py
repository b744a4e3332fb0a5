"""The claims service wakes its timer task only when the core's next deadline moves before the time the task
will look anyway: a claim's attempt (its timeout) wakes it; effects that leave the deadline where it is do
not (a pass per claim, reply and release was a quarter of a claimant's work)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

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


def test_a_sleeping_timer_is_moved_to_an_earlier_deadline_not_woken(tmp_path: Path) -> None:
    """A claim's attempt timeout moves the sleeping timer task's alarm: no pass runs now (it ran on the
    claimant while the claim's Proposes were out), one runs at the new deadline."""

    async def run() -> None:
        ctx = _Ctx(tmp_path)
        # An attempt times out before the timer's next upkeep pass (1 s: no steward is seen alive).
        svc = ClaimsService(ctx, LeaseConfig(lease=10.0, attempt_timeout=0.5))  # type: ignore[arg-type]
        now = ctx.clock.now()
        svc.apply(svc.core.genesis((OTHER,), now))
        passes: list[float] = []
        manage = svc.stewards.manage
        svc.stewards.manage = lambda t: (passes.append(t), manage(t))[1]  # type: ignore[method-assign]
        svc._last_manage = now  # upkeep just ran: a pass only looks at the core
        svc._manage_soon = False
        task = asyncio.ensure_future(svc._timer())
        await asyncio.sleep(0)  # its first pass, up to its sleep
        assert svc._sleep is not None and svc._timer_at == now + 1.0
        loop = asyncio.get_running_loop()
        ticks: list[float] = []
        ticked = asyncio.Event()
        tick = svc.core.tick
        svc.core.tick = lambda t: (ticks.append(t), ticked.set(), tick(t))[2]  # type: ignore[method-assign]
        svc.apply(svc.core.claim("service/x", 60.0, now))
        deadline = svc.core.next_deadline()
        assert deadline is not None and svc._timer_at == deadline
        assert not svc._wake.is_set()
        assert svc._sleep.when() == pytest.approx(loop.time() + (deadline - now), abs=0.05)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert ticks == []  # no pass now
        ctx.clock.advance(deadline - now)  # the alarm's time: its pass ticks the core then
        svc._sleep.reschedule(loop.time())  # (the loop's own clock, moved along with the manual one)
        async with asyncio.timeout(5):
            await ticked.wait()
        assert ticks == [deadline]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
