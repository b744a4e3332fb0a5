"""`Node`: a mesh node embedded in your asyncio program, and the MeshAPI over its runtime.

`Node` is the one facade over the runtime and its services: the embedding program calls it directly, and
the node's control socket serves this same object to `mesh.connect()` clients and meshctl (so a claim
list, say, is aggregated in one place for every face).
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Sequence
from itertools import repeat
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mesh._runtime.runtime import NodeRuntime
from mesh._version import __version__
from mesh.clock import Clock
from mesh.config import NodeConfig
from mesh.core import validate
from mesh.core.board import BoardView, MilestoneRow, TaskRow, check_role, parse_priority
from mesh.core.mailbox import InboxMessage, OutboxEntry, SendColumns, SendItem
from mesh.core.resources import SHARED_PATH, literal
from mesh.core.status import StatusRecord
from mesh.core.validate import check_ttl, check_wait, claim_resource, resource_name
from mesh.core.values import replace
from mesh.errors import ClaimDenied, InvalidField, InvalidInput, MeshError, NodeUnavailable
from mesh.views import (
    ClaimView,
    LeaseEvent,
    MailCounts,
    MemberView,
    MeshStats,
    NodeInfo,
    Sent,
    WatchEvent,
)

if TYPE_CHECKING:
    from mesh.claim import PendingClaim  # loaded by `claim()`: a node nobody embeds never needs it

__all__ = ["Node"]


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
        await self._rt.start(self._serve_faces)
        self._started = True
        return self

    async def _serve_faces(self) -> None:
        # Imported here: an embedded program that never starts a node need not load the servers.
        from mesh._transport.faces import serve_control, serve_hookwire

        rt = self._rt
        assert rt.socket_path is not None and rt.hook_socket_path is not None
        control = await serve_control(self, rt.socket_path)
        rt.add_face(lambda: control.stop(0.2))
        hooks = await serve_hookwire(self, rt.hook_socket_path)
        rt.add_face(hooks.close)

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

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the node to leave (safe from a signal handler): `wait_closed()` returns `reason`."""
        self._rt.request_stop(reason)

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

    @property
    def created_credentials(self) -> bool:
        """True if this start created the mesh's credentials (the first node under this home)."""
        return self._rt.created_credentials

    def _check(self) -> NodeRuntime:
        # Serving from the moment its services exist (the control socket answers during the join) until stop.
        if not self._rt.serving:
            raise NodeUnavailable(
                "the node is not running (use `async with Node(...)` or `await node.start()`)"
            )
        return self._rt

    # ------------------------------------------------------------------ the node and the mesh

    async def info(self) -> NodeInfo:
        """Who the node is, where it lives, and the steward set it has adopted."""
        rt = self._check()
        cfg = rt.claims.core.config
        local = sum(1 for link in rt.links.values() if link.local)
        return NodeInfo(
            name=self.config.name,
            node_id=rt.node_id,
            incarnation=rt.incarnation,
            mesh=self.config.mesh,
            address=rt.address,
            pid=os.getpid(),
            state_dir=str(rt.state_dir),
            version=__version__,
            epoch=cfg.epoch if cfg else 0,
            stewards=tuple(rt.claims.name_of(s) for s in cfg.stewards) if cfg else (),
            node_now=rt.clock.now(),
            steward_note=rt.claims.steward_note(),
            local_links=local,
            grpc_links=len(rt.links) - local,
        )

    async def members(self) -> list[MemberView]:
        """Every member the node knows (itself first), with liveness and status."""
        return self._check().members()

    async def heartbeat(
        self,
        action: str | None = None,
        target: str | None = None,
        phase: str | None = None,
        progress: int | None = None,
        note: str | None = None,
        role: str | None = None,
    ) -> StatusRecord:
        """Publish this session's status to every peer (unset fields keep their value); the new record."""
        return self._check().set_status(
            action=action, target=target, phase=phase, progress=progress, note=note, role=role
        )

    def watch(self, snapshot: bool = True) -> AsyncIterator[WatchEvent]:
        """Joins, liveness changes, status updates and board changes as they happen (after every member as a
        snapshot): `MemberEvent`s and `BoardEvent`s."""
        return self._check().watch(snapshot=snapshot)

    async def shutdown(self, reason: str = "meshctl down") -> None:
        """Ask the node to leave the mesh gracefully: `wait_closed()` returns, its owner stops it."""
        validate.text(reason, "reason")  # it is logged and sent to every peer
        self._check().request_stop(reason or "meshctl down")

    # ------------------------------------------------------------------ claims

    def claim(self, type: str, name: str, *, ttl: float = 3600.0, wait: float = 0.0) -> PendingClaim:
        """Claim TYPE/NAME for at most `ttl` s (renewed while this node lives); see MeshAPI.claim."""
        resource = resource_name(type, name)

        async def release() -> None:
            if self._rt.serving:  # a stopped node's claims went with it
                self._rt.claims.release(resource, handle=True)

        from mesh.claim import pending_claim

        # The node's clock is this process's clock: its instants need no mapping.
        return pending_claim(self, type, name, ttl, wait, clock=self._rt.clock, release=release)

    async def claim_once(
        self, resource: str, ttl: float = 3600.0, wait: float = 0.0, *, handle: bool = False
    ) -> ClaimView:
        """Claim TYPE/NAME without a lease handle: the node holds and renews it until `ttl` or a release."""
        resource = claim_resource(resource)
        rt = self._check()
        try:
            return await rt.claims.claim(resource, check_ttl(ttl), check_wait(wait), handle=handle)
        except ClaimDenied:
            rt.stats.refused(resource)  # a collision refused: the claims protocol doing its job
            raise

    async def release(self, type: str, name: str, *, handle: bool = False) -> bool:
        """Release a claim this node holds; False if it held none (see MeshAPI.release for `handle`)."""
        return self._check().claims.release(resource_name(type, name), handle=handle) is not None

    async def claims(self) -> list[ClaimView]:
        """Every live claim in the mesh, by item (from each holder's published status)."""
        live = [
            c for v in self._check().members() if v.state in ("alive", "suspect") for c in v.claim_views()
        ]
        return sorted(live, key=lambda c: c.resource)

    async def held(self) -> list[ClaimView]:
        """The claims this node holds now, by item (exact; `claims()` shows them once published)."""
        return self._check().claims.held_claims()

    async def check_path(self, path: str) -> ClaimView | None:
        """Who else holds an exclusive path claim whose pattern matches `path` (a project-relative file),
        asked of the stewards (exact, not the published views); None when nobody does."""
        return await self._check().claims.check(f"{SHARED_PATH}/{literal(path)}")

    async def lease_events(self, resource: str) -> AsyncIterator[LeaseEvent]:
        """Events of a lease this node holds: `held` first, `renewed`…, then `lost` or `released`."""
        resource = claim_resource(resource)
        async for ev in self._check().claims.watch_lease(resource):
            yield ev

    async def recover_stewards(self) -> NodeInfo:
        """Last resort: make this node the only steward of a new epoch (see README for the risk)."""
        await self._check().claims.recover()
        return await self.info()

    # ------------------------------------------------------------------ messages

    async def send(
        self, to: str, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> Sent:
        """Queue a message to session `to` durably (delivery continues in the background).

        Raises UnknownRecipient if no session of that name was ever seen in this mesh; a known session that
        is offline gets it when it returns (within the retention window, 7 days). A repeat with the same
        `key` answers the first one's `Sent` and queues nothing.
        """
        mid, names = await self._check().mail.send(to, subject, body, reply_to, key=key)
        return Sent(mid, tuple(names))

    async def broadcast(
        self, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> Sent:
        """Queue a message to every member known now, offline ones included (`key` as for `send`)."""
        mid, names = await self._check().mail.broadcast(subject, body, reply_to, key=key)
        return Sent(mid, tuple(names))

    async def send_many(
        self, items: Sequence[SendItem] | SendColumns, *, key: str | None = None
    ) -> list[Sent | MeshError]:
        """Queue many sends at once, one answer (or the error of that item) each, in order: the control
        socket's SendStream batches come here (one group commit, no task per item). Not a MeshAPI verb: a
        client sends one at a time and its SendStream makes the batches.

        `key`: an idempotency key for the whole batch (its retry with the same key queues nothing twice)."""
        got = await self.send_batch(items, key=key)
        if isinstance(got, tuple):  # all to one name, all queued now: one names tuple for all
            ids, names = got
            return list(map(Sent, ids, repeat(names)))
        return got

    async def send_batch(
        self, items: Sequence[SendItem] | SendColumns, *, key: str | None = None
    ) -> list[Sent | MeshError] | tuple[list[str], tuple[str, ...]]:
        """`send_many` for the control socket's SendStream: a batch all sent to one name and all queued now
        is answered as (its ids in order, the recipient names) — no Sent per message to build here and take
        apart again in the answer's runs — any other batch as `send_many` answers it."""
        got = await self._check().mail.send_batch(items, key)
        if isinstance(got, tuple):
            return got
        return [g if isinstance(g, MeshError) else Sent(g[0], tuple(g[1])) for g in got]

    def sent_in_batch(self, key: str, index: int) -> Sent | None:
        """What item `index` of the batch sent with `key` was queued as (None: that batch did not)."""
        got = self._check().mail.sent_in_batch(key, index)
        return Sent(got[0], tuple(got[1])) if got is not None else None

    def messages(
        self,
        unread: bool = False,
        follow: bool = False,
        from_name: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> AsyncIterator[InboxMessage]:
        """The inbox, oldest first (the newest `limit`; default all, page by page); with `follow`, new ones.

        With `after` (a message's `local_seq`), the first `limit` messages after it instead.
        """
        return self._check().mail.messages(
            unread=unread, follow=follow, from_name=from_name, limit=limit, after=after
        )

    async def mark_read(self, ids: list[str] | None = None) -> int:
        """Mark messages read (all unread if `ids` is None); read receipts travel back to the senders."""
        return self._check().mail.mark_read(ids)

    async def outbox(
        self, state: str | None = None, to: str | None = None, limit: int | None = None
    ) -> list[OutboxEntry]:
        """What this node sent, with each entry's delivery state (queued, delivered, read, expired)."""
        return self._check().mail.outbox(state, to, limit)

    async def counts(self) -> MailCounts:
        """Unread messages in the inbox, and sent messages still queued."""
        return MailCounts(*self._check().mail.counts())

    # ------------------------------------------------------------------ the task board

    def _task_claims(self, rt: NodeRuntime) -> dict[str, tuple[str, float]]:
        """Task id -> (holder, ends at): others' claims as their status shows them, this node's exactly."""
        out = {
            c.name: (c.holder, c.expires_at)
            for v in rt.members()
            if v.state in ("alive", "suspect") and not v.is_self
            for c in v.claim_views()
            if c.type == "task"
        }
        for r, _, ends in rt.claims.held_view():
            kind, _, tid = r.partition("/")
            if kind == "task":
                out[tid] = (self.name, ends)
        return out

    async def task_add(
        self,
        title: str,
        priority: str = "P2",
        milestone: str = "",
        role: str = "",
        note: str = "",
        step: str = "",
    ) -> TaskRow:
        """File a task on the mesh's board (durable here when this returns; every node gets it)."""
        svc = self._check().board
        op = await svc.edit(
            lambda b, now: b.add_task(
                now, title, priority=priority, milestone=milestone, step=step, role=role, note=note
            )
        )
        return svc.board.task_row(op.id)

    async def task_edit(
        self,
        task: str,
        title: str | None = None,
        priority: str | None = None,
        milestone: str | None = None,
        role: str | None = None,
        note: str | None = None,
        step: str | None = None,
    ) -> TaskRow:
        """Change fields of a task (None keeps a field; "" clears milestone, role, note or step)."""
        rt = self._check()
        op = await rt.board.edit(
            lambda b, now: b.edit_task(
                now, task, title=title, priority=priority, milestone=milestone, step=step, role=role,
                note=note,
            )
        )  # fmt: skip
        return rt.board.board.task_row(op.target, self._task_claims(rt))

    async def task_claim(self, task: str, ttl: float = 3600.0, wait: float = 0.0) -> ClaimView:
        """Claim an open task: a claim of type ``task`` on its id (one holder, a fencing token)."""
        b = self._check().board.board
        tid = b.resolve_task(task)
        info = b.summary(tid)
        if info is not None and info[2] != "open":
            raise InvalidField("task", f"task {b.short(tid)} is {info[2]}: only an open task can be claimed")
        return await self.claim_once(resource_name("task", tid), ttl, wait)

    async def _task_state(self, task: str, verb: str) -> TaskRow:
        rt = self._check()
        op = await rt.board.edit(lambda b, now: getattr(b, verb)(now, task))
        tid = op.target
        if verb != "reopen" and any(r == f"task/{tid}" for r, _, _ in rt.claims.held_view()):
            rt.claims.release(f"task/{tid}")  # the work is over: free the claim with it
        return rt.board.board.task_row(tid, self._task_claims(rt))

    async def task_done(self, task: str) -> TaskRow:
        """Mark a task done (this node's claim on it, if any, is released)."""
        return await self._task_state(task, "done")

    async def task_drop(self, task: str) -> TaskRow:
        """Drop a task (it stays as a tombstone; `task_reopen` brings it back)."""
        return await self._task_state(task, "drop")

    async def task_reopen(self, task: str) -> TaskRow:
        """Make a done or dropped task open again."""
        return await self._task_state(task, "reopen")

    async def board(
        self,
        priorities: Sequence[str] | None = None,
        mine: bool = False,
        role: str | None = None,
        milestone: str | None = None,
        done: bool = True,
        dropped: bool = False,
    ) -> BoardView:
        """The board: tasks by priority with their state (claimed by whom until when) and the milestones."""
        rt = self._check()
        b = rt.board.board
        return b.view(
            self._task_claims(rt),
            priorities={parse_priority(p) for p in priorities} if priorities else None,
            holder=self.name if mine else None,
            role=check_role(role) or None if role else None,
            milestone=b.resolve_milestone(milestone) if milestone else None,
            include_done=done,
            include_dropped=dropped,
        )

    async def milestone_add(self, title: str, steps: Sequence[str] = (), note: str = "") -> MilestoneRow:
        """Add a milestone with its steps."""
        svc = self._check().board
        op = await svc.edit(lambda b, now: b.add_milestone(now, title, steps=tuple(steps), note=note))
        return svc.board.milestone(op.id)

    async def milestone_show(self, milestone: str) -> MilestoneRow:
        """One milestone with its steps and progress (computed from its tasks)."""
        return self._check().board.board.milestone(milestone)

    async def stats(self, since: float = 86400.0) -> MeshStats:
        """The success metrics over the last `since` seconds, as this node saw them."""
        if (
            isinstance(since, bool)
            or not isinstance(since, int | float)
            or not math.isfinite(since)
            or since <= 0
        ):
            raise InvalidInput(f"since must be a positive number of seconds, not {since!r}")
        return self._check().stats.stats(float(since))
