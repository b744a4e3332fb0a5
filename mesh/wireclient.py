"""`WireClient`: the MeshAPI of a running node for a process WITHOUT an event loop (`meshctl`'s hot verbs).

    meshctl status / claim / release / heartbeat / send ──JSON lines──▶ the node's hook wire ("api" op)
    every other verb, and every verb inside a running event loop ──gRPC──▶ `mesh.client.Client`

A `meshctl status` that loads grpc, protobuf and asyncio spends ~7x the interpreter's own start-up on
importing them. So, with no event loop running, the hot verbs (`info`, `members`, `heartbeat`, `claim_once`,
`release`, `held`, `send`, `broadcast`) are blocking calls on the node's hook wire (standard library only;
the coroutine never suspends, so `mesh.cli.main.drive` runs it without asyncio). Inside an event loop a
blocking call would stall the loop (a claim may wait for minutes), so there they, like every other verb
(streams, the board, …), go to a lazily made gRPC `Client`: one API, same signatures (tests/arch/
test_api.py), same values and the same error classes either way.

Trust, as for the control socket: the socket must be ours (owner uid) in a directory only we can use
(mode 0700), and the process answering on it must run as our uid (SO_PEERCRED); otherwise NodeUnavailable.
"""

from __future__ import annotations

import sys
import time

from mesh import _json as json  # json's own C functions: meshctl's start-up
from mesh._transport import wirecodec
from mesh._transport.wiresock import open_wire
from mesh.core.errors import NodeUnavailable

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from types import TracebackType
    from typing import Any

    from mesh._nodefile import RunningNode
    from mesh.claim import PendingClaim
    from mesh.client import Client
    from mesh.clock import Clock
    from mesh.core.board import BoardView, MilestoneRow, TaskRow
    from mesh.core.errors import MeshError
    from mesh.core.mailbox import InboxMessage, OutboxEntry, SendColumns, SendItem
    from mesh.core.status import StatusRecord
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

__all__ = ["NO_API_OP", "WireClient"]

DEFAULT_TIMEOUT = 10.0  # s, as the gRPC Client's
CLAIM_MARGIN = 60.0  # s beyond a claim's `wait`, as the gRPC Client's deadline
ANSWER_MAX = 64 * 2**20


NO_API_OP = wirecodec.NO_API_OP


def _check_message(subject: str, body: str, reply_to: str | None, key: str | None) -> None:
    """A message's fields checked here first, as `Client` does: a 10 MB body gets the body limit's message,
    not a transport's (it would not fit the wire's request line)."""
    from mesh.core.mailbox.text import check_outgoing

    check_outgoing(subject, body, reply_to, key)


def _in_event_loop() -> bool:
    aio = sys.modules.get("asyncio")  # never imported: no loop can be running
    return aio is not None and aio._get_running_loop() is not None


class _Wire:
    """One blocking connection to the node's hook wire, checked to be ours."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = open_wire(path, DEFAULT_TIMEOUT)
        self._buf = b""
        self.used = time.monotonic()

    def call(self, verb: str, args: dict[str, Any], timeout: float) -> Any:
        return self.calls([(verb, args)], timeout)[0]

    def calls(self, asked: list[tuple[str, dict[str, Any]]], timeout: float) -> list[Any]:
        """Each request's value, in order, for one round trip: the requests go in one write, and the node
        answers a connection's lines one after the other. The first error is raised (after every answer
        was read, so the connection stays in step)."""
        lines: list[bytes] = []
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(b"".join(wirecodec.request_line(verb, args) for verb, args in asked))
            while len(lines) < len(asked):
                while b"\n" not in self._buf:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise NodeUnavailable("the node closed the connection (is it stopping?)")
                    self._buf += chunk
                    if len(self._buf) > ANSWER_MAX:
                        raise NodeUnavailable("the node's answer is too long")
                raw, _, self._buf = self._buf.partition(b"\n")
                lines.append(raw)
        except TimeoutError:
            raise NodeUnavailable("node did not answer in time") from None
        except OSError as e:
            raise NodeUnavailable(f"node unavailable: {e.strerror or e.__class__.__name__}") from None
        finally:
            self.used = time.monotonic()
        values = []
        for (verb, _), raw in zip(asked, lines, strict=True):
            try:
                answer = json.loads(raw)
            except ValueError:
                raise NodeUnavailable("the node's answer is not JSON") from None
            values.append(wirecodec.answer(verb, answer))
        return values

    def close(self) -> None:
        self.sock.close()


class WireClient:
    """Talks to one running node: hot verbs over its hook wire when no event loop runs, the rest over gRPC."""

    def __init__(self, node: RunningNode, clock: Clock | None = None) -> None:
        self.node = node
        self.clock = clock
        self._wire: _Wire | None = None
        self._grpc: Client | None = None

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections (the node keeps running)."""
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        if self._grpc is not None:
            await self._grpc.close()
            self._grpc = None

    @property
    def light(self) -> bool:
        """Whether the hot verbs go over the wire now (a node serving it, no event loop running)."""
        return self.node.hook_socket is not None and not _in_event_loop()

    def _call(self, verb: str, args: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        return self._calls([(verb, args or {})], timeout)[0]

    def _calls(self, asked: list[tuple[str, dict[str, Any]]], timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
        if self._wire is not None and time.monotonic() - self._wire.used > wirecodec.REUSE_IDLE:
            self._wire.close()
            self._wire = None
        if self._wire is None:
            assert self.node.hook_socket is not None
            self._wire = _Wire(str(self.node.hook_socket))
        return self._wire.calls(asked, timeout)

    def _c(self) -> Client:
        if self._grpc is None:
            from mesh.client import Client

            self._grpc = Client(self.node, self.clock)
        return self._grpc

    # ------------------------------------------------------------------ the node and the mesh

    async def info(self) -> NodeInfo:
        """Who the node is, where it lives, and the steward set it has adopted."""
        if self.light:
            return self._call("info")  # type: ignore[no-any-return]
        return await self._c().info()

    async def members(self) -> list[MemberView]:
        """Every member the node knows (itself first), with liveness and status."""
        if self.light:
            return self._call("members")  # type: ignore[no-any-return]
        return await self._c().members()

    async def members_and_info(self) -> tuple[list[MemberView], NodeInfo]:
        """`members()` and `info()` (what `meshctl status` shows): over the wire, both in one round trip."""
        if self.light:
            members, info = self._calls([("members", {}), ("info", {})])
            return members, info
        return await self._c().members(), await self._c().info()

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
        if self.light:
            changes = {"action": action, "target": target, "phase": phase, "progress": progress}
            changes |= {"note": note, "role": role}
            return self._call("heartbeat", changes)  # type: ignore[no-any-return]
        return await self._c().heartbeat(action, target, phase, progress, note, role)

    def watch(self, snapshot: bool = True) -> AsyncIterator[WatchEvent]:
        """Joins, liveness changes, status updates and board changes as they happen (after every member as a
        snapshot): `MemberEvent`s and `BoardEvent`s."""
        return self._c().watch(snapshot)

    async def shutdown(self, reason: str = "meshctl down") -> None:
        """Ask the node to leave the mesh gracefully (peers see `left` at once)."""
        await self._c().shutdown(reason)

    # ------------------------------------------------------------------ claims

    def claim(self, type: str, name: str, *, ttl: float = 3600.0, wait: float = 0.0) -> PendingClaim:
        """Claim TYPE/NAME through the node (see MeshAPI.claim): a Lease lives in an event loop, so gRPC."""
        return self._c().claim(type, name, ttl=ttl, wait=wait)

    async def claim_once(
        self, resource: str, ttl: float = 3600.0, wait: float = 0.0, *, handle: bool = False
    ) -> ClaimView:
        """Claim TYPE/NAME without a lease handle: the node holds and renews it until `ttl` or a release."""
        if self.light:
            from mesh.core.validate import check_ttl, check_wait

            check_ttl(ttl)
            check_wait(wait)
            args = {"resource": resource, "ttl": ttl, "wait": wait, "handle": handle}
            return self._call("claim_once", args, wait + CLAIM_MARGIN)  # type: ignore[no-any-return]
        return await self._c().claim_once(resource, ttl, wait, handle=handle)

    async def release(self, type: str, name: str, *, handle: bool = False) -> bool:
        """Release a claim this node holds; False if it held none (see MeshAPI.release for `handle`)."""
        if self.light:
            args = {"type": type, "name": name, "handle": handle}
            return self._call("release", args)  # type: ignore[no-any-return]
        return await self._c().release(type, name, handle=handle)

    async def claims(self) -> list[ClaimView]:
        """Every live claim in the mesh, by item."""
        return await self._c().claims()

    async def held(self) -> list[ClaimView]:
        """The claims this node holds now, by item (exact; `claims()` shows them once published)."""
        if self.light:
            return self._call("held")  # type: ignore[no-any-return]
        return await self._c().held()

    async def check_path(self, path: str) -> ClaimView | None:
        """Who else holds an exclusive path claim whose pattern matches `path` (a project-relative file),
        asked of the stewards (exact, not the published views); None when nobody does."""
        return await self._c().check_path(path)

    def lease_events(self, resource: str) -> AsyncIterator[LeaseEvent]:
        """Events of a lease this node holds: `held` first, `renewed`…, then `lost` or `released`."""
        return self._c().lease_events(resource)

    async def recover_stewards(self) -> NodeInfo:
        """Last resort: make this node the only steward of a new epoch (see README for the risk)."""
        return await self._c().recover_stewards()

    # ------------------------------------------------------------------ messages

    async def send(
        self, to: str, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> Sent:
        """Queue a message to session `to` durably (delivery goes on in the background; see MeshAPI.send)."""
        if self.light:
            from mesh.core import validate

            validate.name(to, "recipient")
            _check_message(subject, body, reply_to, key)
            args = {"to": to, "subject": subject, "body": body, "reply_to": reply_to, "key": key}
            return self._call("send", args)  # type: ignore[no-any-return]
        return await self._c().send(to, subject, body, reply_to, key=key)

    async def broadcast(
        self, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> Sent:
        """Queue a message to every member known now, offline ones included (`key` as for `send`)."""
        if self.light:
            _check_message(subject, body, reply_to, key)
            args = {"subject": subject, "body": body, "reply_to": reply_to, "key": key}
            return self._call("broadcast", args)  # type: ignore[no-any-return]
        return await self._c().broadcast(subject, body, reply_to, key=key)

    async def send_many(
        self, items: Sequence[SendItem] | SendColumns, *, checked: bool = False
    ) -> list[Sent | MeshError]:
        """Many sends at once, one answer or error each, in order (`Client.send_many`: batches on gRPC)."""
        return await self._c().send_many(items, checked=checked)

    def messages(
        self,
        unread: bool = False,
        follow: bool = False,
        from_name: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> AsyncIterator[InboxMessage]:
        """The inbox, oldest first (the newest `limit`, 1-10,000; default: all of it, read page by page);
        with `follow`, new ones as they come."""
        return self._c().messages(unread, follow, from_name, limit, after)

    async def mark_read(self, ids: list[str] | None = None) -> int:
        """Mark messages read (all unread if `ids` is None); read receipts travel back to the senders."""
        return await self._c().mark_read(ids)

    async def outbox(
        self, state: str | None = None, to: str | None = None, limit: int | None = None
    ) -> list[OutboxEntry]:
        """What this node sent, with each entry's delivery state (queued, delivered, read, expired)."""
        return await self._c().outbox(state, to, limit)

    async def counts(self) -> MailCounts:
        """Unread messages in the inbox, and sent messages still queued."""
        return await self._c().counts()

    # ------------------------------------------------------------------ the task board

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
        return await self._c().task_add(title, priority, milestone, role, note, step)

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
        return await self._c().task_edit(task, title, priority, milestone, role, note, step)

    async def task_claim(self, task: str, ttl: float = 3600.0, wait: float = 0.0) -> ClaimView:
        """Claim an open task: a claim of type ``task`` on its id (one holder, a fencing token)."""
        return await self._c().task_claim(task, ttl, wait)

    async def task_done(self, task: str) -> TaskRow:
        """Mark a task done (this node's claim on it, if any, is released)."""
        return await self._c().task_done(task)

    async def task_drop(self, task: str) -> TaskRow:
        """Drop a task (it stays as a tombstone; `task_reopen` brings it back)."""
        return await self._c().task_drop(task)

    async def task_reopen(self, task: str) -> TaskRow:
        """Make a done or dropped task open again."""
        return await self._c().task_reopen(task)

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
        return await self._c().board(priorities, mine, role, milestone, done, dropped)

    async def milestone_add(self, title: str, steps: Sequence[str] = (), note: str = "") -> MilestoneRow:
        """Add a milestone with its steps."""
        return await self._c().milestone_add(title, steps, note)

    async def milestone_show(self, milestone: str) -> MilestoneRow:
        """One milestone with its steps and progress (computed from its tasks)."""
        return await self._c().milestone_show(milestone)

    async def stats(self, since: float = 86400.0) -> MeshStats:
        """The success metrics over the last `since` seconds, as this node saw them."""
        return await self._c().stats(since)
