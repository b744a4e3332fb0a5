"""A claim as the API hands it out: `claim()` returns a `PendingClaim`; awaited, it is a held `Lease`.

    async with node.claim("service", "i-match", ttl=3600) as lease:   # raises ClaimDenied(holder, expires)
        write_with_fence(lease.token)                                   # let the resource reject old tokens
        if lease.lost.is_set(): stop()

`lease.lost` is set if the lease could not be renewed in time (the node lost contact with a steward majority
for a lease period): stop acting on the item at once. Leaving the block releases the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from mesh.core.validate import check_ttl, resource_name

if TYPE_CHECKING:
    from mesh.views import ClaimView, LeaseEvent


class Lease:
    """A held claim: its fencing token, when it ends, and an event that fires if it is lost."""

    def __init__(
        self,
        resource: str,
        token: int,
        expires_at: float,
        release: Callable[[], Awaitable[None]],
        events: AsyncIterator[str] | None = None,
        *,
        holder: str = "",
    ) -> None:
        self.resource = resource
        self.type, _, self.name = resource.partition("/")
        self.token = token
        """Fencing token: strictly increasing per item across holders; pass it to what you protect."""
        self.expires_at = expires_at
        """Wall-clock time the claim's maximum life (its TTL) ends."""
        self.holder = holder
        """The holding session's name (this one)."""
        self.lost = asyncio.Event()
        """Set when the lease could not be renewed: stop acting on the item."""
        self.released = False
        self._release = release
        self._watch: asyncio.Task[None] | None = None
        if events is not None:
            self._watch = asyncio.get_running_loop().create_task(self._follow(events))

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else "released" if self.released else "held"
        return f"<Lease {self.resource} token={self.token} {state}>"

    async def _follow(self, events: AsyncIterator[str]) -> None:
        with contextlib.suppress(Exception):
            async for kind in events:
                if kind == "lost":
                    self.lost.set()
                    return
                if kind == "released":
                    return
        # The node went away: we can no longer vouch for the lease.
        if not self.released:
            self.lost.set()

    async def release(self) -> None:
        """Give the claim up (idempotent)."""
        if self.released:
            return
        self.released = True
        try:
            await self._release()
        finally:
            if self._watch is not None:
                self._watch.cancel()
                with contextlib.suppress(BaseException):
                    await self._watch

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


class PendingClaim:
    """What `claim()` returns: `await` it for a Lease, or use it in `async with` (released on exit)."""

    def __init__(self, acquire: Callable[[], Awaitable[Lease]]) -> None:
        self._acquire = acquire
        self._lease: Lease | None = None

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._acquire().__await__()

    async def __aenter__(self) -> Lease:
        self._lease = await self._acquire()
        return self._lease

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lease is not None:
            await self._lease.release()


class _Claims(Protocol):
    """The part of MeshAPI that `claim()` is built on."""

    async def claim_once(self, resource: str, ttl: float = ..., wait: float = ...) -> ClaimView: ...

    def lease_events(self, resource: str) -> AsyncIterator[LeaseEvent]: ...

    async def release(self, type: str, name: str) -> bool: ...


def pending_claim(
    api: _Claims,
    type: str,
    name: str,
    ttl: float,
    wait: float,
    release: Callable[[], Awaitable[None]] | None = None,
) -> PendingClaim:
    """`api.claim(...)` for any MeshAPI: claim once, then follow the lease's events until lost or released."""
    resource = resource_name(type, name)
    check_ttl(ttl)

    async def acquire() -> Lease:
        granted = await api.claim_once(resource, ttl, wait)

        async def kinds() -> AsyncIterator[str]:
            async for ev in api.lease_events(resource):
                yield ev.kind

        async def give_up() -> None:
            await api.release(type, name)

        return Lease(
            resource, granted.token, granted.expires_at, release or give_up, kinds(), holder=granted.holder
        )

    return PendingClaim(acquire)
