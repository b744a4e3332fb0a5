"""A node's life as a state machine: phases, the moves between them (a table), and who waits for what.

    NEW ──start──▶ STARTING ──services up──▶ JOINING ──joined──▶ READY
      │               │                         │                  │
      └───────────────┴──────── stop / a failed start ─────────────┴──▶ STOPPING ──▶ STOPPED

Faces (the control socket) serve from JOINING on, so a client can watch a node join; links, timers and
services check `stopping` before they act, so nothing starts work on a node that is going away.
"""

from __future__ import annotations

import asyncio
import enum

from mesh.core.errors import MeshError


class Phase(enum.Enum):
    NEW = "new"
    STARTING = "starting"  # lock held, store and peer server opening
    JOINING = "joining"  # services exist and faces serve; dialing seeds, waiting out the join window
    READY = "ready"  # joined: node.json written, claims and mail running
    STOPPING = "stopping"  # leaving: no new links, tasks being cancelled
    STOPPED = "stopped"


MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.NEW: frozenset({Phase.STARTING, Phase.STOPPING}),
    Phase.STARTING: frozenset({Phase.JOINING, Phase.STOPPING}),
    Phase.JOINING: frozenset({Phase.READY, Phase.STOPPING}),
    Phase.READY: frozenset({Phase.STOPPING}),
    Phase.STOPPING: frozenset({Phase.STOPPED}),
    Phase.STOPPED: frozenset(),
}


class Lifecycle:
    """The phase, moved only along MOVES; events for those who wait (ready, stopped, a stop request)."""

    def __init__(self) -> None:
        self.phase = Phase.NEW
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stop_reason = ""
        self._fatal: asyncio.Future[MeshError] | None = None
        self.ready_at: float | None = None  # when the node became ready (its clock)

    def move(self, to: Phase, at: float | None = None) -> None:
        """Move to phase `to` (`at`: the node clock's now, recorded as `ready_at` for READY)."""
        if to not in MOVES[self.phase]:
            raise RuntimeError(f"node lifecycle: {self.phase.value} -> {to.value} is not a move")
        self.phase = to
        if to is Phase.READY:
            self.ready_at = at
            self.ready.set()
        elif to is Phase.STOPPED:
            self.stopped.set()

    @property
    def serving(self) -> bool:
        """Services exist and the node is not going away."""
        return self.phase in (Phase.JOINING, Phase.READY)

    @property
    def stopping(self) -> bool:
        return self.phase in (Phase.STOPPING, Phase.STOPPED)

    # ------------------------------------------------------------------ a fatal error during the join

    def arm(self) -> asyncio.Future[MeshError]:
        """A future that a fatal condition found while joining (a name conflict) completes."""
        self._fatal = asyncio.get_running_loop().create_future()
        return self._fatal

    def fail(self, err: MeshError) -> None:
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(err)

    def failed(self) -> MeshError | None:
        return self._fatal.result() if self._fatal is not None and self._fatal.done() else None

    # ------------------------------------------------------------------ asking to stop

    def request_stop(self, reason: str) -> None:
        """Ask the node's owner to stop it (safe from signal handlers and RPCs)."""
        if not self._stop_requested.is_set():
            self._stop_reason = reason
            self._stop_requested.set()

    async def wait_stop_requested(self) -> str:
        await self._stop_requested.wait()
        return self._stop_reason
