"""`Node`: a mesh node embedded in your asyncio program (core + runtime + transports + store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from types import TracebackType
from typing import Any

from mesh._runtime import NodeRuntime
from mesh.clock import Clock
from mesh.config import NodeConfig
from mesh.core.mailbox import InboxMessage, OutboxEntry
from mesh.core.validate import check_ttl, resource_name
from mesh.errors import InvalidInput, NodeUnavailable
from mesh.events import MemberEvent, MemberView, claim_json
from mesh.lease import Lease, LeaseUpdate, PendingClaim


class Node:
    """A session's node: `async with Node(name="session-4") as node:` joins; leaving the block leaves.

    Keyword arguments are NodeConfig fields (`mesh=`, `peers=`, `mdns=`, `home=`, …); or pass `config=`.
    """

    def __init__(
        self, name: str | None = None, role: str = "", *, config: NodeConfig | None = None,
        clock: Clock | None = None, **options: Any,
    ) -> None:  # fmt: skip
        if config is None:
            if not name:
                raise InvalidInput("Node needs a name (or a config)")
            config = NodeConfig(name=name, role=role, **options)
        elif name or role or options:
            changes: dict[str, Any] = dict(options)
            if name:
                changes["name"] = name
            if role:
                changes["role"] = role
            config = replace(config, **changes)
        self.config = config.validate()
        self._rt = NodeRuntime(self.config, clock=clock)
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Node:
        """Join the mesh; returns once the node is ready."""
        await self._rt.start()
        self._started = True
        return self

    async def stop(self, reason: str = "stopped") -> None:
        """Leave gracefully (peers see `left` at once) and close everything."""
        if self._started:
            self._started = False
            await self._rt.stop(reason)

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop("left")

    async def wait_closed(self) -> str:
        """Wait until something asks this node to stop (meshctl down, watched pid exit); returns why."""
        return await self._rt.wait_stop_requested()

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def node_id(self) -> str:
        return self._rt.node_id

    @property
    def address(self) -> str:
        """host:port of this node's peer API."""
        return self._rt.address

    @property
    def state_dir(self) -> str:
        return str(self._rt.state_dir)

    # ------------------------------------------------------------------ verbs

    def _check(self) -> None:
        if not self._started:
            raise NodeUnavailable(
                "the node is not running (use `async with Node(...)` or `await node.start()`)"
            )

    async def heartbeat(
        self,
        action: str | None = None,
        target: str | None = None,
        phase: str | None = None,
        progress: int | None = None,
        note: str | None = None,
        role: str | None = None,
    ) -> None:
        """Publish this session's status to every peer; unset fields keep their value."""
        self._check()
        self._rt.set_status(
            action=action, target=target, phase=phase, progress=progress, note=note, role=role
        )

    async def members(self) -> list[MemberView]:
        """Every member this node knows (self first), with liveness and status."""
        self._check()
        return self._rt.members()

    def claim(self, type: str, name: str, *, ttl: float = 3600.0, wait: float = 0.0) -> PendingClaim:
        """Claim work item TYPE/NAME for at most `ttl` s (renewed while this node lives).

        `async with node.claim(...) as lease:` or `lease = await node.claim(...)`. Raises ClaimDenied
        (holder, expires_at) if another session holds it after `wait` seconds of trying; NoQuorum if not
        enough stewards can be reached to decide.
        """
        resource = resource_name(type, name)
        check_ttl(ttl)

        async def acquire() -> Lease:
            self._check()
            r = await self._rt.claims.claim(resource, ttl, wait)

            async def release() -> None:
                if self._started:
                    self._rt.claims.release(resource)

            async def updates() -> AsyncIterator[LeaseUpdate]:
                async for ev in self._rt.claims.watch_lease(resource):
                    yield LeaseUpdate(ev.kind, ev.valid_until)

            # The node's clock is this process's clock: no mapping needed.
            return Lease(
                resource, r.token, r.expires_at, release, updates(), valid_until=r.valid_until,
                clock=self._rt.clock,
            )  # fmt: skip

        return PendingClaim(acquire)

    async def release(self, type: str, name: str) -> bool:
        """Release a claim this node holds; False if it held none."""
        self._check()
        return self._rt.claims.release(resource_name(type, name)) is not None

    async def claims(self) -> list[dict[str, Any]]:
        """Every live claim in the mesh: [{type, name, holder, holder_node, token, expires_at}]."""
        self._check()
        return [
            claim_json(r, v.name, v.node_id, t, x)
            for v in self._rt.members()
            if v.state in ("alive", "suspect")
            for r, t, x in v.claims
        ]

    async def send(self, to: str, subject: str, body: str, reply_to: str | None = None) -> str:
        """Queue a message to session `to` durably; returns its id (delivery continues in the background).

        Raises UnknownRecipient if no session of that name was ever seen in this mesh; a known session that
        is offline gets it when it returns (within the retention window, 7 days).
        """
        self._check()
        mid, _ = await self._rt.mail.send(to, subject, body, reply_to)
        return mid

    async def broadcast(self, subject: str, body: str, reply_to: str | None = None) -> str:
        """Queue a message to every member known now, offline ones included; returns its id."""
        self._check()
        mid, _ = await self._rt.mail.broadcast(subject, body, reply_to)
        return mid

    def messages(
        self, unread: bool = False, follow: bool = False, from_name: str | None = None
    ) -> AsyncIterator[InboxMessage]:
        """The inbox oldest first; with `follow`, then every new message as it arrives."""
        self._check()
        return self._rt.mail.messages(unread=unread, follow=follow, from_name=from_name)

    async def mark_read(self, ids: list[str] | None = None) -> int:
        """Mark messages read (all unread if `ids` is None); read receipts travel back to the senders."""
        self._check()
        return self._rt.mail.mark_read(ids)

    async def outbox(self, state: str | None = None, to: str | None = None) -> list[OutboxEntry]:
        """What this node sent, with each message's delivery state (queued, delivered, read, expired)."""
        self._check()
        return self._rt.mail.outbox(state, to)

    def watch(self, snapshot: bool = False) -> AsyncIterator[MemberEvent]:
        """Live events from now on: joins, liveness changes, status updates (optionally a snapshot first)."""
        self._check()
        return self._rt.watch(snapshot=snapshot)
