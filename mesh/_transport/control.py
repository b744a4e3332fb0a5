"""The control API servicer (unix socket, 0600): serves a MeshAPI to meshctl, connect() and tools.

Each RPC unpacks its request, calls the one API (the node's own `Node`), and packs the answer; values are
converted by the codec, errors by `errors.unary` / `errors.streaming`. Nothing here knows a service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from itertools import repeat
from typing import Any

import grpc

from mesh import limits, taps
from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._transport import api_codec, codec, guard
from mesh._transport.errors import streaming, unary
from mesh.api import BatchSender, MeshAPI
from mesh.core import validate
from mesh.core.mailbox import SEND_MAX, SendItem
from mesh.core.validate import split_resource
from mesh.errors import InvalidInput, LimitExceeded, MeshError
from mesh.views import Sent

Ctx = grpc.aio.ServicerContext[Any, Any]


class ControlServicer(pbg.ControlServicer):
    """Serves one node's MeshAPI."""

    def __init__(self, api: MeshAPI) -> None:
        self.api = api

    @unary
    async def Info(self, request: pb.Empty, context: Ctx) -> pb.NodeInfo:
        return api_codec.info_to_pb(await self.api.info())

    @unary
    async def Members(self, request: pb.Empty, context: Ctx) -> pb.MemberList:
        return pb.MemberList(members=[api_codec.view_to_pb(v) for v in await self.api.members()])

    @unary
    async def SetStatus(self, request: pb.StatusUpdate, context: Ctx) -> pb.Status:
        record = await self.api.heartbeat(**api_codec.status_changes_from_pb(request))
        return codec.status_to_pb(record)

    @streaming
    async def Watch(self, request: pb.WatchRequest, context: Ctx) -> AsyncIterator[pb.Event]:
        async for ev in self.api.watch(snapshot=request.snapshot):
            yield api_codec.event_to_pb(ev)

    @unary
    async def Claim(self, request: pb.ClaimRequest, context: Ctx) -> pb.ClaimReply:
        granted = await self.api.claim_once(
            request.resource, request.ttl, request.wait, handle=request.handle
        )
        return api_codec.claim_reply_to_pb(granted)

    @unary
    async def Release(self, request: pb.ReleaseRequest, context: Ctx) -> pb.ReleaseReply:
        type_, name = split_resource(request.resource)
        return pb.ReleaseReply(released=await self.api.release(type_, name, handle=request.handle))

    @unary
    async def Claims(self, request: pb.Empty, context: Ctx) -> pb.ClaimList:
        return api_codec.claims_to_pb(await self.api.claims())

    @unary
    async def Held(self, request: pb.Empty, context: Ctx) -> pb.ClaimList:
        return api_codec.claims_to_pb(await self.api.held())

    @unary
    async def CheckPath(self, request: pb.CheckPathRequest, context: Ctx) -> pb.ClaimList:
        found = await self.api.check_path(request.path)
        return api_codec.claims_to_pb([found] if found is not None else [])

    @streaming
    async def WatchLease(self, request: pb.LeaseWatchRequest, context: Ctx) -> AsyncIterator[pb.LeaseEvent]:
        async for ev in self.api.lease_events(request.resource):
            yield api_codec.lease_event_to_pb(ev)

    @unary
    async def RecoverStewards(self, request: pb.RecoverRequest, context: Ctx) -> pb.NodeInfo:
        if not request.i_understand:
            raise InvalidInput(
                "steward recovery must be confirmed (it is unsafe if the old stewards are alive)"
            )
        return api_codec.info_to_pb(await self.api.recover_stewards())

    async def _send(self, request: pb.SendRequest) -> pb.SendReply:
        reply_to = request.in_reply_to or None
        key = request.key or None
        if request.batch_key and isinstance(self.api, BatchSender):
            # A retry of one item of a keyed SendBatch whose answer was lost: queued by it, it is not again.
            done = self.api.sent_in_batch(validate.ident(request.batch_key, "send key"), request.batch_index)
            if done is not None:
                return api_codec.sent_to_pb(done)
        if request.all:
            if request.to:
                raise InvalidInput("give a recipient or --all, not both")
            sent = await self.api.broadcast(request.subject, request.body, reply_to, key=key)
        else:
            if not request.to:
                raise InvalidInput("a recipient name is needed (or --all)")
            sent = await self.api.send(request.to, request.subject, request.body, reply_to, key=key)
        return api_codec.sent_to_pb(sent)

    @unary
    async def Send(self, request: pb.SendRequest, context: Ctx) -> pb.SendReply:
        reply = await self._send(request)
        if taps.lose_reply("Send"):
            await context.abort(grpc.StatusCode.UNKNOWN, "Stream removed")  # as a broken stream would
        return reply

    async def _send_one(self, request: pb.SendRequest) -> pb.SendResult:
        try:
            return pb.SendResult(sent=await self._send(request))
        except MeshError as e:  # this item's answer; its neighbours in the batch go on
            return pb.SendResult(error_class=type(e).__name__, error=str(e))

    async def _send_each(
        self, to: str | None, subject: str, body: str, reply: str, key: str
    ) -> Sent | MeshError:
        try:
            if to is None:
                return await self.api.broadcast(subject, body, reply or None, key=key or None)
            return await self.api.send(to, subject, body, reply or None, key=key or None)
        except MeshError as e:  # this item's answer; its neighbours in the batch go on
            return e

    async def _send_columns(self, batch: pb.SendBatch) -> pb.SendResults:
        """A columnar batch: its columns straight to the node's send_many (no object per send before its
        Outgoing), answered in runs of consecutive ids (api_codec.answers_to_pb), not a result per send."""
        cols, bad = api_codec.columns_from_pb(batch)
        go = cols
        if bad:  # as for `items`: the batch goes without its key rather than with places shifted
            go = cols.pick([i for i in range(len(cols)) if i not in bad])
        if isinstance(self.api, BatchSender):
            answers = await self.api.send_batch(go, key=None if bad else batch.key or None)
            if isinstance(answers, tuple):  # every send queued now to the same names: one run, if ids allow
                run = None if bad else api_codec.run_to_pb(cols.to, *answers)
                if run is not None:
                    return run
                ids, names = answers
                answers = list(map(Sent, ids, repeat(names)))
            sent: Sequence[Sent | MeshError] = answers
        else:
            sent = await asyncio.gather(
                *map(self._send_each, go.to, go.subjects, go.bodies, go.reply_tos, go.keys)
            )
        if bad:
            got = iter(sent)
            sent = [bad[i] if i in bad else next(got) for i in range(len(cols))]
        return api_codec.answers_to_pb(cols.to, sent)

    async def _send_batch(self, batch: pb.SendBatch) -> pb.SendResults:
        if batch.HasField("columns"):
            return await self._send_columns(batch)
        # All of a batch's sends enter the mail service in this loop turn: one group commit queues them. The
        # node's own Node takes the batch whole (a future per send, no task per send); another MeshAPI, each.
        if not isinstance(self.api, BatchSender):
            return pb.SendResults(results=await asyncio.gather(*(self._send_one(i) for i in batch.items)))
        items: list[SendItem | MeshError] = []
        for r in batch.items:
            to, every = r.to, r.all  # each field read once (a read builds a new str)
            if every and to:
                items.append(InvalidInput("give a recipient or --all, not both"))
            elif not (every or to):
                items.append(InvalidInput("a recipient name is needed (or --all)"))
            else:
                items.append(
                    SendItem(None if every else to, r.subject, r.body, r.in_reply_to or None, r.key or None)
                )
        good = [i for i in items if isinstance(i, SendItem)]
        # A batch key names items by their place in the batch (a unary retry of one says which): a batch with
        # malformed items (no client of ours sends one) goes without it rather than with places shifted.
        key = batch.key if batch.key and len(good) == len(items) else None
        sent = iter(await self.api.send_many(good, key=key))
        out = pb.SendResults()
        add = out.results.add
        for i in items:
            api_codec.add_send_result(add, i if isinstance(i, MeshError) else next(sent))
        return out

    @streaming
    async def SendStream(
        self, requests: AsyncIterator[pb.SendBatch | guard.Undecodable], context: Ctx
    ) -> AsyncIterator[pb.SendResults]:
        # Batches are read ahead while earlier ones commit (up to SEND_STREAM_AHEAD), so a client keeps
        # several in flight and their sends share group commits; answers go back in the batches' order.
        ahead: asyncio.Queue[asyncio.Future[pb.SendResults] | Exception | None] = asyncio.Queue(
            limits.SEND_STREAM_AHEAD
        )

        async def read() -> None:
            try:
                async for batch in requests:
                    if isinstance(batch, guard.Undecodable):
                        raise InvalidInput(f"undecodable request: {batch.reason}")
                    count = len(batch.items) or len(batch.columns.to)
                    if count > SEND_MAX:
                        raise LimitExceeded(f"{count} sends in one batch; at most {SEND_MAX}")
                    await ahead.put(asyncio.ensure_future(self._send_batch(batch)))
                await ahead.put(None)
            except Exception as e:  # raised below, where the stream's answer is written
                await ahead.put(e)

        reader = asyncio.ensure_future(read())
        try:
            while (got := await ahead.get()) is not None:
                if isinstance(got, Exception):
                    raise got
                results = await got
                if taps.lose_reply("SendStream"):
                    await context.abort(grpc.StatusCode.UNKNOWN, "Stream removed")
                yield results
        finally:
            reader.cancel()
            while not ahead.empty():
                left = ahead.get_nowait()
                if isinstance(left, asyncio.Future):
                    left.cancel()

    @streaming
    async def Inbox(self, request: pb.InboxRequest, context: Ctx) -> AsyncIterator[pb.InboxItem]:
        async for m in self.api.messages(
            unread=request.unread,
            follow=request.follow,
            from_name=getattr(request, "from") or None,
            limit=request.limit or None,
            after=request.after if request.HasField("after") else None,
        ):
            yield api_codec.inbox_to_pb(m)

    @unary
    async def MarkRead(self, request: pb.MarkReadRequest, context: Ctx) -> pb.MarkReadReply:
        if request.all == bool(request.ids):
            raise InvalidInput("give message ids or all, not both (and not neither)")
        return pb.MarkReadReply(marked=await self.api.mark_read(None if request.all else list(request.ids)))

    @unary
    async def Outbox(self, request: pb.OutboxRequest, context: Ctx) -> pb.OutboxList:
        entries = await self.api.outbox(request.state or None, request.to or None, request.limit or None)
        return api_codec.outbox_to_pb(entries)

    @unary
    async def Counts(self, request: pb.Empty, context: Ctx) -> pb.MailCounts:
        counts = await self.api.counts()
        return pb.MailCounts(unread=counts.unread, queued=counts.queued)

    @unary
    async def TaskAdd(self, request: pb.TaskFields, context: Ctx) -> pb.TaskRow:
        fields = api_codec.task_fields_from_pb(request)
        if "title" not in fields:
            raise InvalidInput("a task needs a title")
        return api_codec.task_row_to_pb(await self.api.task_add(**fields))

    @unary
    async def TaskEdit(self, request: pb.TaskEditRequest, context: Ctx) -> pb.TaskRow:
        fields = api_codec.task_fields_from_pb(request.fields)
        return api_codec.task_row_to_pb(await self.api.task_edit(request.task, **fields))

    @unary
    async def TaskState(self, request: pb.TaskStateRequest, context: Ctx) -> pb.TaskRow:
        verbs = {"done": self.api.task_done, "dropped": self.api.task_drop, "open": self.api.task_reopen}
        verb = verbs.get(request.state)
        if verb is None:
            raise InvalidInput(f"a task's state is set to done, dropped or open, not {request.state[:32]!r}")
        return api_codec.task_row_to_pb(await verb(request.task))

    @unary
    async def TaskClaim(self, request: pb.TaskClaimRequest, context: Ctx) -> pb.ClaimReply:
        granted = await self.api.task_claim(request.task, request.ttl, request.wait)
        return api_codec.claim_reply_to_pb(granted)

    @streaming
    async def Board(self, request: pb.BoardRequest, context: Ctx) -> AsyncIterator[pb.BoardChunk]:
        view = await self.api.board(
            priorities=list(request.priorities) or None,
            mine=request.mine,
            role=request.role or None,
            milestone=request.milestone or None,
            done=not request.hide_done,
            dropped=request.show_dropped,
        )
        for chunk in api_codec.board_to_chunks(view):
            yield chunk

    @unary
    async def MilestoneAdd(self, request: pb.MilestoneAddRequest, context: Ctx) -> pb.MilestoneRow:
        row = await self.api.milestone_add(request.title, list(request.steps), request.note)
        return api_codec.milestone_to_pb(row)

    @unary
    async def MilestoneShow(self, request: pb.MilestoneRef, context: Ctx) -> pb.MilestoneRow:
        return api_codec.milestone_to_pb(await self.api.milestone_show(request.milestone))

    @unary
    async def Stats(self, request: pb.StatsRequest, context: Ctx) -> pb.StatsReply:
        return api_codec.stats_to_pb(await self.api.stats(request.since or 86400.0))

    @unary
    async def Shutdown(self, request: pb.ShutdownRequest, context: Ctx) -> pb.Empty:
        await self.api.shutdown(request.reason or "meshctl down")
        return pb.Empty()


def control_handler(api: MeshAPI) -> grpc.GenericRpcHandler[Any, Any]:
    """The control service on `api`: the generic handler the generated `add_ControlServicer_to_server`
    makes (the server itself is mesh._transport.faces', which asks it by method name)."""
    made = _Handlers()
    pbg.add_ControlServicer_to_server(ControlServicer(api), made)
    assert made.handler is not None
    return made.handler


class _Handlers:
    """Takes what `add_ControlServicer_to_server` hands a server: its one generic handler (the method table
    by name) and the same table again for gRPC's registered methods, which a lazily served service cannot
    use (they are fixed when the server starts)."""

    handler: grpc.GenericRpcHandler[Any, Any] | None = None

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler[Any, Any], ...]) -> None:
        (self.handler,) = handlers

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        pass
