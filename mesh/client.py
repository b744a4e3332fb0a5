"""A client for a node already running (`mesh.connect`): the same verbs as `Node`, over the control socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._transport.codec import event_from_pb, view_from_pb
from mesh._transport.errors import to_mesh_error
from mesh.core.validate import check_ttl, resource_name
from mesh.events import MemberEvent, MemberView, claim_json
from mesh.lease import Lease, PendingClaim
from mesh.paths import RunningNode, default_home, find_node

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Who the connected node is."""

    name: str
    node_id: str
    incarnation: str
    mesh: str
    address: str
    pid: int
    state_dir: str
    version: str
    epoch: int = 0
    stewards: tuple[str, ...] = ()


class Client:
    """Talks to one running node through its control socket."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self._channel = grpc.aio.insecure_channel(f"unix:{node.socket}")
        self._stub = pbg.ControlStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (the node keeps running)."""
        await self._channel.close(None)

    async def _call(self, method: Any, request: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise to_mesh_error(e) from None

    async def info(self) -> NodeInfo:
        """The node's identity and where it lives."""
        r: pb.NodeInfo = await self._call(self._stub.Info, pb.Empty())
        return NodeInfo(
            name=r.node.name,
            node_id=r.node.node_id,
            incarnation=r.node.incarnation,
            mesh=r.mesh,
            address=r.node.address,
            pid=r.pid,
            state_dir=r.state_dir,
            version=r.version,
            epoch=r.epoch,
            stewards=tuple(r.stewards),
        )

    async def members(self) -> list[MemberView]:
        """Every member the node knows (self first)."""
        r: pb.MemberList = await self._call(self._stub.Members, pb.Empty())
        return [view_from_pb(m) for m in r.members]

    async def heartbeat(
        self,
        action: str | None = None,
        target: str | None = None,
        phase: str | None = None,
        progress: int | None = None,
        note: str | None = None,
        role: str | None = None,
    ) -> None:
        """Publish this session's status; unset fields keep their value."""
        if progress is not None and (isinstance(progress, bool) or not 0 <= progress <= 100):
            from mesh.errors import InvalidInput

            raise InvalidInput(f"progress must be a whole number from 0 to 100, not {progress!r}")
        req = pb.StatusUpdate(
            action=action, target=target, phase=phase, progress=progress, note=note, role=role
        )
        await self._call(self._stub.SetStatus, req)

    async def watch(self, snapshot: bool = True) -> AsyncIterator[MemberEvent]:
        """Stream membership and status events until the node stops."""
        call = self._stub.Watch(pb.WatchRequest(snapshot=snapshot))
        try:
            async for ev in call:
                yield event_from_pb(ev)
        except grpc.aio.AioRpcError as e:
            err = to_mesh_error(e)
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise err from None
        finally:
            call.cancel()

    def claim(self, type: str, name: str, *, ttl: float = 3600.0, wait: float = 0.0) -> PendingClaim:
        """Claim TYPE/NAME through the node (see Node.claim); the node renews it while it lives."""
        resource = resource_name(type, name)
        check_ttl(ttl)

        async def acquire() -> Lease:
            r = await self.claim_once(resource, ttl, wait)

            async def release() -> None:
                await self._call(self._stub.Release, pb.ReleaseRequest(resource=resource))

            return Lease(resource, r.token, r.expires_at, release, self._lease_events(resource))

        return PendingClaim(acquire)

    async def claim_once(self, resource: str, ttl: float, wait: float) -> pb.ClaimReply:
        """The raw Claim RPC (meshctl uses it): raises ClaimDenied / NoQuorum."""
        req = pb.ClaimRequest(resource=resource, ttl=ttl, wait=wait)
        r: pb.ClaimReply = await self._call(self._stub.Claim, req, timeout=wait + 60.0)
        return r

    async def _lease_events(self, resource: str) -> AsyncIterator[str]:
        kinds = {pb.LeaseEvent.HELD: "held", pb.LeaseEvent.RENEWED: "renewed", pb.LeaseEvent.LOST: "lost",
                 pb.LeaseEvent.RELEASED: "released"}  # fmt: skip
        call = self._stub.WatchLease(pb.LeaseWatchRequest(resource=resource))
        try:
            async for ev in call:
                yield kinds.get(ev.kind, "held")
        finally:
            call.cancel()

    async def release(self, type: str, name: str) -> bool:
        """Release a claim the node holds; False if it held none."""
        r: pb.ReleaseReply = await self._call(
            self._stub.Release, pb.ReleaseRequest(resource=resource_name(type, name))
        )
        return r.released

    async def claims(self) -> list[dict[str, Any]]:
        """Every live claim in the mesh: [{type, name, holder, holder_node, token, expires_at}]."""
        r: pb.ClaimList = await self._call(self._stub.Claims, pb.Empty())
        return [claim_json(c.resource, c.holder, c.holder_node, c.token, c.expires_at) for c in r.claims]

    async def recover_stewards(self) -> NodeInfo:
        """Make this node the only steward of a new epoch (last resort; see README for the risk)."""
        await self._call(self._stub.RecoverStewards, pb.RecoverRequest(i_understand=True), timeout=120.0)
        return await self.info()

    # ------------------------------------------------------------------ messages

    async def send(self, to: str, subject: str, body: str, reply_to: str | None = None) -> str:
        """Queue a direct message durably in the node's outbox; returns its id."""
        req = pb.SendRequest(to=to, subject=subject, body=body, in_reply_to=reply_to or "")
        r: pb.SendReply = await self._call(self._stub.Send, req)
        return r.id

    async def send_request(self, req: pb.SendRequest) -> pb.SendReply:
        """The raw Send RPC (meshctl uses it)."""
        r: pb.SendReply = await self._call(self._stub.Send, req)
        return r

    async def broadcast(self, subject: str, body: str, reply_to: str | None = None) -> str:
        """Queue a message to every member known now (offline ones included); returns its id."""
        req = pb.SendRequest(all=True, subject=subject, body=body, in_reply_to=reply_to or "")
        r: pb.SendReply = await self._call(self._stub.Send, req)
        return r.id

    async def messages(
        self, unread: bool = False, follow: bool = False, from_name: str | None = None, limit: int = 100
    ) -> AsyncIterator[pb.InboxItem]:
        """Inbox items oldest first; with follow, then new ones as they arrive (until cancelled)."""
        req = pb.InboxRequest(unread=unread, follow=follow, limit=limit)
        if from_name:
            setattr(req, "from", from_name)
        call = self._stub.Inbox(req, timeout=None if follow else DEFAULT_TIMEOUT)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise to_mesh_error(e) from None
        finally:
            call.cancel()

    async def mark_read(self, ids: list[str] | None = None) -> int:
        """Mark messages read (all unread if `ids` is None); read receipts go back to the senders."""
        req = pb.MarkReadRequest(all=ids is None, ids=ids or [])
        r: pb.MarkReadReply = await self._call(self._stub.MarkRead, req)
        return r.marked

    async def outbox(
        self, state: str | None = None, to: str | None = None, limit: int = 100
    ) -> list[pb.OutboxItem]:
        """Outbox entries oldest first, with their delivery state (queued, delivered, read, expired)."""
        r: pb.OutboxList = await self._call(
            self._stub.Outbox, pb.OutboxRequest(state=state or "", to=to or "", limit=limit)
        )
        return list(r.items)

    async def counts(self) -> tuple[int, int]:
        """(unread messages, queued outgoing messages)."""
        r: pb.MailCounts = await self._call(self._stub.Counts, pb.Empty())
        return r.unread, r.queued

    async def shutdown(self, reason: str = "meshctl down") -> None:
        """Ask the node to leave gracefully."""
        await self._call(self._stub.Shutdown, pb.ShutdownRequest(reason=reason))


async def connect(name: str | None = None, *, mesh: str | None = None, home: Path | None = None) -> Client:
    """Connect to a running node: by name, else the only one running under `home` (or $MESH_HOME)."""
    node = find_node(home or default_home(), mesh, name)
    return Client(node)
