"""A claim as the API hands it out: `claim()` returns a `PendingClaim`; awaited, it is a held `Lease`.

    async with node.claim("service", "i-match", ttl=3600) as lease:   # raises ClaimDenied(holder, expires)
        while lease.is_valid():                                         # checked on THIS process's clock
            do_a_bounded_step(fence=lease.token)                        # let the resource reject old tokens

A lease is certainly still held until ``lease.valid_until``, an instant on the holder's own monotonic clock
(CLOCK_BOOTTIME, which counts suspend; every process of one host reads the same clock). The node computes it
conservatively from when the renewal round that confirmed the lease STARTED (PaxosLease: the proposer's
timer starts before it asks the stewards):

    valid_until = t_prepare_sent + D_P * (1 - rho)

for lease length D_P (10 s by default) and clock-rate bound rho (1 %); every confirmed renewal moves it
forward (renewals start D_P/3 after the previous round started, so a healthy holder has about
D_P * (2/3 - rho) = 6.6 s of slack). ``lease.lost`` is set by THIS process's own timer when ``valid_until``
passes without a renewal having been reported, whether or not the node says anything (a paused node says
nothing) — and at once, on the first look after resuming, if this process itself was paused past it. A lost
lease is given back to the node (best effort) so that nobody keeps renewing work nobody does.

A client of a node (``mesh.connect``) talks only to a node on its own host (a unix socket), so both read the
same clock; the client still maps the node's instants onto its own clock conservatively
(`Client._clock_offset`), so even a process in another time namespace never believes longer than the node.

Several claims at once, all or none (`claim_all`: `meshctl claim task a b c`, the MCP `claim` tool). Several
path patterns are ONE claim on their brace union (`mesh.core.resources.path_resource`), so they are one
lease, granted or refused atomically by the stewards. Items (and at most one such path claim) are claimed
one after another in one canonical order — items by name, the path claim last — and on a refusal (or any
failure) the ones granted so far are released before the refusal is raised.
- Safety: every claim is a lease of its own, so "never two exclusive holders" holds for each item and each
  overlapping pair of patterns exactly as for single claims; the batch adds no new way to hold something.
  "None" means none is held when the call returns: an earlier claim of a refused batch was held for the
  moment in between, as a single claim would have been.
- Progress: a caller waits (`wait`) only for the NEXT claim of its order while holding earlier ones, never
  for an earlier one. Two batches that contend wait for each other only along the order, so there is no
  circle: the batch holding the later contested item has already passed every earlier one, and the path
  claim, last in every batch, is waited for by holders of items only, never the reverse. `wait` bounds the
  whole call, and every held claim expires with its lease if its holder dies meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from mesh.claimset import claim_all as claim_all  # re-exported: where callers have always found it
from mesh.clock import BootClock, Clock
from mesh.core.validate import check_ttl, resource_name
from mesh.errors import MeshError, NodeUnavailable

if TYPE_CHECKING:
    from mesh.views import ClaimView, LeaseEvent

log = logging.getLogger("mesh")

_RECHECK = 1.0
"""The lease timer re-reads the clock at least this often: asyncio's timers run on CLOCK_MONOTONIC, which
stops during a system suspend, while validity is on CLOCK_BOOTTIME."""


class _LostEvent(asyncio.Event):
    """`lease.lost`: also set on the first look after the lease's validity has run out on the clock.

    A process that was paused past ``valid_until`` sees ``lost.is_set()`` true at once on resume, before its
    timer task has had a chance to run.
    """

    def __init__(self, expired: Callable[[], bool]) -> None:
        super().__init__()
        self._expired = expired

    def is_set(self) -> bool:
        if not super().is_set() and self._expired():
            self.set()
        return super().is_set()


class Lease:
    """A held claim: its fencing token, until when it is certainly valid, and an event set when it is lost."""

    def __init__(
        self,
        resource: str,
        token: int,
        expires_at: float,
        release: Callable[[], Awaitable[None]],
        updates: AsyncIterator[LeaseEvent] | None = None,
        *,
        valid_until: float,
        clock: Clock | None = None,
        offset: float = 0.0,
        holder: str = "",
        holder_id: str = "",
    ) -> None:
        """`valid_until` is on the node's clock; `offset` maps node instants onto `clock` (never later)."""
        self.resource = resource
        self.type, _, self.name = resource.partition("/")
        self.token = token
        """Fencing token: strictly increasing per item across holders; pass it to what you protect."""
        self.expires_at = expires_at
        """Wall-clock time the claim's maximum life (its TTL) ends (display only)."""
        self.holder = holder
        """The holding session's name (this one)."""
        self.holder_id = holder_id
        """The granting node's identity, NODE_ID/INCARNATION: a client that outlives its node (and reconnects
        to its restart) sees the incarnation change between leases; the restarted node's tokens start over."""
        self._clock = clock or BootClock()
        self._offset = offset
        self.valid_until = valid_until + offset
        """Until this instant of this process's monotonic clock (CLOCK_BOOTTIME) the lease is surely held."""
        self.lost = _LostEvent(self._expired)
        """Set when the lease is lost (not renewed in time, or the node said so): stop acting on the item."""
        self.released = False
        self._returning: asyncio.Future[None] | None = None
        self._release = release
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._timer()))
        if updates is not None:
            self._tasks.append(loop.create_task(self._follow(updates)))

    def __repr__(self) -> str:
        state = "released" if self.released else "lost" if self.lost.is_set() else "held"
        return f"<Lease {self.resource} token={self.token} {state}>"

    def remaining(self) -> float:
        """Seconds the lease is certainly still held (0 once lost or released)."""
        if self.released or self.lost.is_set():
            return 0.0
        return max(0.0, self.valid_until - self._clock.now())

    def is_valid(self) -> bool:
        """True while the lease is certainly held: not released, not lost, and `valid_until` not passed."""
        return not self.released and not self.lost.is_set()

    def _expired(self) -> bool:
        return not self.released and self._clock.now() >= self.valid_until

    def _extend(self, valid_until: float) -> None:
        """A renewal was confirmed: move validity forward (never back)."""
        if not self.lost.is_set() and not self.released:
            self.valid_until = max(self.valid_until, valid_until + self._offset)
            self._changed.set()

    def _lose(self, why: str) -> None:
        if not self.released and not asyncio.Event.is_set(self.lost):
            log.warning("lease %s token=%d lost: %s", self.resource, self.token, why)
        self.lost.set()
        self._changed.set()

    async def _timer(self) -> None:
        """Set `lost` when validity runs out, on this process's own clock; then hand the lease back."""
        try:
            while not self.released:
                left = self.valid_until - self._clock.now()
                if left <= 0 or self.lost.is_set():
                    break
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, _RECHECK)):
                        await self._changed.wait()
            if self.released:
                return
            self._lose("its validity ran out without a confirmed renewal")
            # Give it back: the node may still be renewing (it was paused, or reports late), but nobody acts
            # on this lease any more, so nobody should hold it.
            with contextlib.suppress(Exception):
                await self._give_back()
        except asyncio.CancelledError:
            pass

    async def _follow(self, updates: AsyncIterator[LeaseEvent]) -> None:
        try:
            await self._read(updates)
        except NodeUnavailable:
            pass  # the node went away: nothing more extends the lease, and the timer ends it on time
        except MeshError as e:
            # The node answered, and not with this lease's events (it does not hold the item any more):
            # this lease is over now, not at its validity.
            self._lose(f"the node does not hold it any more ({e})")
        except Exception:  # anything else: the timer still ends the lease on time
            log.debug("lease %s: event stream failed", self.resource, exc_info=True)

    async def _read(self, updates: AsyncIterator[LeaseEvent]) -> None:
        async for u in updates:
            if u.token and u.token != self.token:
                # The node's events follow the ITEM: a different token means the node has since held it
                # under another grant (a later claim on the same node). That validity is not ours.
                self._lose("the node now holds the item under another grant")
                return
            if u.kind in ("held", "renewed") and u.valid_until:
                self._extend(u.valid_until)
            elif u.kind == "lost":
                self._lose("the node could not renew it")
                return
            elif u.kind == "released":
                if not self.released:
                    self._lose("it was released through another client of the node")
                return

    async def _give_back(self) -> None:
        if self._returning is None:
            self.released = True
            self._returning = asyncio.ensure_future(self._release())
        await asyncio.shield(self._returning)

    async def release(self) -> None:
        """Give the claim up (idempotent). Returns once the node has let it go.

        If the lease was already given back because it was lost, this waits for that to finish, so a claim
        made right after can never race the old release (which would release the new grant).
        """
        if self._returning is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._returning)
            return
        try:
            await self._give_back()
        finally:
            self._changed.set()
            for t in self._tasks:
                if t is not asyncio.current_task():
                    t.cancel()
            for t in self._tasks:
                if t is not asyncio.current_task():
                    with contextlib.suppress(BaseException):
                        await t

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

    async def claim_once(
        self, resource: str, ttl: float = ..., wait: float = ..., *, handle: bool = ...
    ) -> ClaimView: ...

    def lease_events(self, resource: str) -> AsyncIterator[LeaseEvent]: ...

    async def release(self, type: str, name: str, *, handle: bool = ...) -> bool: ...


def pending_claim(
    api: _Claims,
    type: str,
    name: str,
    ttl: float,
    wait: float,
    *,
    clock: Clock,
    release: Callable[[], Awaitable[None]] | None = None,
    clock_offset: Callable[[float, float], Awaitable[float]] | None = None,
) -> PendingClaim:
    """`api.claim(...)` for any MeshAPI: claim once, then follow the lease's events until lost or released.

    `clock` is the holder's clock; `clock_offset(asked, node_now)` maps the node's clock onto it (never
    later) when the node is another process — `asked` is `clock` read just before the claim was asked.
    """
    resource = resource_name(type, name)
    check_ttl(ttl)

    async def acquire() -> Lease:
        asked = clock.now()
        granted = await api.claim_once(resource, ttl, wait, handle=True)
        offset = await clock_offset(asked, granted.node_now) if clock_offset is not None else 0.0

        async def give_up() -> None:
            await api.release(type, name, handle=True)

        return Lease(
            resource, granted.token, granted.expires_at, release or give_up, api.lease_events(resource),
            valid_until=granted.valid_until, clock=clock, offset=offset, holder=granted.holder,
            holder_id=granted.holder_id,
        )  # fmt: skip

    return PendingClaim(acquire)
