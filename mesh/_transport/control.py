"""The control API servicer (unix socket, 0600): what meshctl, connect() and tools use."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mesh import limits
from mesh._claims import ClaimResult
from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._transport import codec, guard
from mesh._transport.codec import event_to_pb, view_to_pb
from mesh._transport.errors import streaming, unary
from mesh._version import __version__
from mesh.core import validate
from mesh.core.mailbox import InboxMessage
from mesh.core.validate import check_ttl, split_resource
from mesh.errors import InvalidInput

if TYPE_CHECKING:
    from mesh._runtime import NodeRuntime

Ctx = grpc.aio.ServicerContext[Any, Any]


def info_pb(rt: NodeRuntime) -> pb.NodeInfo:
    assert rt.me is not None
    cfg = rt.claims.core.config if rt.claims is not None else None
    return pb.NodeInfo(
        node=codec.peer_to_pb(rt.me),
        mesh=rt.config.mesh,
        state_dir=str(rt.state_dir),
        pid=os.getpid(),
        version=__version__,
        epoch=cfg.epoch if cfg else 0,
        stewards=[rt.claims.name_of(s) for s in cfg.stewards] if cfg else [],
    )


def claim_reply(r: ClaimResult) -> pb.ClaimReply:
    return pb.ClaimReply(
        granted=r.granted, resource=r.resource, holder=r.holder, holder_node=r.holder_node, token=r.token,
        expires_at=r.expires_at,
    )  # fmt: skip


def inbox_item(m: InboxMessage) -> pb.InboxItem:
    item = pb.InboxItem(
        id=m.id, to=m.to_name, subject=m.subject, body=m.body, sent_at=m.sent_at, in_reply_to=m.in_reply_to,
        read=m.read, broadcast=m.broadcast, received_at=m.received_at, local_seq=m.local_seq,
    )  # fmt: skip
    setattr(item, "from", m.from_name)  # "from" is a Python keyword
    return item


class ControlServicer(pbg.ControlServicer):
    """Serves one node's control API."""

    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt

    @unary
    async def Info(self, request: pb.Empty, context: Ctx) -> pb.NodeInfo:
        rt = self.rt
        assert rt.me is not None
        return info_pb(rt)

    @unary
    async def Members(self, request: pb.Empty, context: Ctx) -> pb.MemberList:
        return pb.MemberList(members=[view_to_pb(v) for v in self.rt.members()])

    @unary
    async def SetStatus(self, request: pb.StatusUpdate, context: Ctx) -> pb.Status:
        changes: dict[str, Any] = {}
        for f in ("action", "target", "phase", "note", "role"):
            if request.HasField(f):
                changes[f] = getattr(request, f)
        if request.HasField("progress"):
            if request.progress > 100:
                raise InvalidInput(f"progress must be a whole number from 0 to 100, not {request.progress}")
            changes["progress"] = request.progress
        record = self.rt.set_status(**changes)
        return codec.status_to_pb(record)

    @streaming
    async def Watch(self, request: pb.WatchRequest, context: Ctx) -> AsyncIterator[pb.Event]:
        async for ev in self.rt.watch(snapshot=request.snapshot):
            yield event_to_pb(ev)

    @unary
    async def Claim(self, request: pb.ClaimRequest, context: Ctx) -> pb.ClaimReply:
        split_resource(request.resource)
        result = await self.rt.claims.claim(request.resource, check_ttl(request.ttl), request.wait)
        return claim_reply(result)

    @unary
    async def Release(self, request: pb.ReleaseRequest, context: Ctx) -> pb.ReleaseReply:
        split_resource(request.resource)
        token = self.rt.claims.release(request.resource)
        return pb.ReleaseReply(released=token is not None, token=token or 0)

    @unary
    async def Claims(self, request: pb.Empty, context: Ctx) -> pb.ClaimList:
        out = []
        for v in self.rt.members():
            if v.state not in ("alive", "suspect"):
                continue
            for r, t, x in v.claims:
                out.append(
                    pb.ClaimEntry(resource=r, holder=v.name, holder_node=v.node_id, token=t, expires_at=x)
                )
        out.sort(key=lambda e: e.resource)
        return pb.ClaimList(claims=out)

    @streaming
    async def WatchLease(self, request: pb.LeaseWatchRequest, context: Ctx) -> AsyncIterator[pb.LeaseEvent]:
        split_resource(request.resource)
        kinds = {"held": pb.LeaseEvent.HELD, "renewed": pb.LeaseEvent.RENEWED, "lost": pb.LeaseEvent.LOST,
                 "released": pb.LeaseEvent.RELEASED}  # fmt: skip
        async for ev in self.rt.claims.watch_lease(request.resource):
            yield pb.LeaseEvent(kind=kinds[ev.kind], resource=ev.resource, token=ev.token)

    @unary
    async def RecoverStewards(self, request: pb.RecoverRequest, context: Ctx) -> pb.NodeInfo:
        if not request.i_understand:
            raise InvalidInput(
                "steward recovery must be confirmed (it is unsafe if the old stewards are alive)"
            )
        await self.rt.claims.recover()
        return info_pb(self.rt)

    @unary
    async def Send(self, request: pb.SendRequest, context: Ctx) -> pb.SendReply:
        reply_to = request.in_reply_to or None
        if request.all:
            if request.to:
                raise InvalidInput("give a recipient or --all, not both")
            mid, names = await self.rt.mail.broadcast(request.subject, request.body, reply_to)
        else:
            if not request.to:
                raise InvalidInput("a recipient name is needed (or --all)")
            mid, names = await self.rt.mail.send(request.to, request.subject, request.body, reply_to)
        return pb.SendReply(id=mid, recipients=names)

    @streaming
    async def Inbox(self, request: pb.InboxRequest, context: Ctx) -> AsyncIterator[pb.InboxItem]:
        limit = request.limit or 100
        if request.follow:
            async for m in self.rt.mail.messages(
                unread=request.unread, follow=True, from_name=getattr(request, "from") or None
            ):
                yield inbox_item(m)
            return
        for m in self.rt.mail.inbox(
            unread=request.unread, from_name=getattr(request, "from") or None, limit=limit
        ):
            yield inbox_item(m)

    @unary
    async def MarkRead(self, request: pb.MarkReadRequest, context: Ctx) -> pb.MarkReadReply:
        if request.all == bool(request.ids):
            raise InvalidInput("give message ids or all, not both (and not neither)")
        n = self.rt.mail.mark_read(None if request.all else list(request.ids))
        return pb.MarkReadReply(marked=n)

    @unary
    async def Outbox(self, request: pb.OutboxRequest, context: Ctx) -> pb.OutboxList:
        entries = self.rt.mail.outbox(request.state or None, request.to or None, request.limit or 100)
        return pb.OutboxList(
            items=[
                pb.OutboxItem(
                    id=e.id, to=e.to_name, subject=e.subject, sent_at=e.sent_at, in_reply_to=e.in_reply_to,
                    broadcast=e.broadcast, state=e.state.value, changed_at=e.changed_at,
                )
                for e in entries
            ]
        )  # fmt: skip

    @unary
    async def Counts(self, request: pb.Empty, context: Ctx) -> pb.MailCounts:
        unread, queued = self.rt.mail.counts()
        return pb.MailCounts(unread=unread, queued=queued)

    @unary
    async def Shutdown(self, request: pb.ShutdownRequest, context: Ctx) -> pb.Empty:
        reason = validate.text(request.reason, "reason")  # it is logged and sent to every peer
        self.rt.request_stop(reason or "meshctl down")
        return pb.Empty()


async def serve_control(rt: NodeRuntime, path: Path) -> grpc.aio.Server:
    """Start the control server on a unix socket that only this user can use."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", limits.MAX_MESSAGE_BYTES),
        ],
        interceptors=[guard.SafeDecode()],
        maximum_concurrent_rpcs=limits.CONTROL_MAX_CONCURRENT_RPCS,
    )
    pbg.add_ControlServicer_to_server(ControlServicer(rt), server)
    # umask first, so the socket is never briefly open to others between bind and chmod.
    old = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix:{path}")
        await server.start()
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    await asyncio.sleep(0)
    return server
