"""`Client` (`mesh.connect`): the MeshAPI of a node already running, over its control socket.

Same verbs, signatures and return types as the embedded `Node` (both implement `mesh.api.MeshAPI`); every
value crosses the socket through `mesh._transport.codec`, every error through `mesh._transport.errors`.

One exception, for latency: a send made while none of this client's others is in flight goes over the node's
hook wire (JSON lines, `mesh._transport.wirecodec`; a round trip ~0.14 ms where a gRPC call costs ~0.8 ms
here), the same `api` op `meshctl send` uses, with the same values and error classes. Sends made while
others are in flight join the SendStream's batches, which is what throughput needs. `claim_once` and
`release` take the same lane when it is free (a claim's whole latency is ~2 ms, so the control hop was a
third of it); they fall back to gRPC only when the node cannot have seen the request (see _Unanswered).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from itertools import repeat
from operator import add, is_
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._transport import api_codec, codec, wirecodec
from mesh._transport.errors import ambiguous, to_mesh_error
from mesh._transport.wiresock import open_wire, small_reads
from mesh.claim import PendingClaim, pending_claim
from mesh.clock import BootClock, Clock
from mesh.core import validate
from mesh.core.board import BoardView, MilestoneRow, TaskRow
from mesh.core.errors import InvalidInput, MeshError, NodeUnavailable
from mesh.core.mailbox import SEND_MAX, InboxMessage, OutboxEntry, SendColumns, SendItem, columns_of
from mesh.core.mailbox.text import check_outgoing
from mesh.core.status import StatusRecord
from mesh.core.validate import check_ttl, check_wait, resource_name
from mesh.paths import RunningNode, default_home, find_node
from mesh.views import ClaimView, LeaseEvent, MailCounts, MemberView, MeshStats, NodeInfo, Sent, WatchEvent

__all__ = ["Client", "NodeInfo", "connect"]

DEFAULT_TIMEOUT = 10.0
REQUEST_OVERHEAD = 160
"""Bytes of a SendRequest beyond its subject and body (name, key, reply-to id, tags), over-counted."""
PIPE_DEPTH = 2  # SendBatches awaiting answers at once on a client's SendStream
SECOND_AT = 256
"""Sends queued that make a second batch go while one awaits its answer; fewer wait for that answer and go
with the sends that follow. Each batch costs the client and the node about half a millisecond of gRPC and a
group commit whatever its size: a client with 300 in flight sent two batches of ~150 in a round trip where one
of ~300 carries the same (found with the bench's 600 sends in flight over 2 clients)."""
_NAMES_KEPT = 1024  # recipient names a Client remembers as checked (`send`)
SEND_MANY_TRIES = 3  # streams a send_many batch is tried on before its sends are asked one by one


class _Unanswered(Exception):
    """A pipelined send got no answer (the stream broke or is not offered): ask again with its key.

    `sent`: the request may have reached the node (it was written and no verdict came back). A send asks
    again anyway (its key makes that safe); a claim or release, which has no key, only when it was not.
    `place`: the key of the batch the send went in and its index there (None if it never went), which a
    unary retry names (the node answers what that batch queued)."""

    def __init__(self, why: str, sent: bool = False, place: tuple[str, int] | None = None) -> None:
        super().__init__(why)
        self.sent = sent
        self.place = place


_Send = tuple[str | None, str, str, str, str]
"""One send for the SendStream: (to, None for a broadcast; subject; body; in_reply_to or ""; key or "")."""


class _Chunk:
    """A `send_many` chunk: its sends as columns, and its batch key (a new one if it goes in another form)."""

    __slots__ = ("cols", "key")

    def __init__(self, cols: SendColumns, key: str) -> None:
        self.cols = cols
        self.key = key


class _Flight:
    """A batch written on the stream, awaiting its answer: where each answer goes."""

    __slots__ = ("columnar", "futs", "key", "to")

    def __init__(
        self,
        key: str,
        to: Sequence[str | None],
        futs: list[asyncio.Future[Sent]] | asyncio.Future[Any],
        columnar: bool,
    ) -> None:
        self.key = key
        self.to = to
        self.futs = futs  # a send's future each, or a chunk's one future for all its answers
        self.columnar = columnar  # written as columns: answered in SendResults.answers


class _SendPipe:
    """`send`/`broadcast` over one SendStream: the sends made in one loop turn travel as one SendBatch, and
    a caller may have many batches in flight, so a client that sends concurrently gets the node's group
    commit across all of them (one RPC per message costs a round trip each).

    A batch travels as columns (SendBatch.columns: a few protobuf objects per batch, where a SendRequest and
    a SendResult with its SendReply per send were most of what a busy client and the node's control servicer
    paid per message), answered in runs of consecutive ids; to a node that reads no columns (it answers
    `results`, having seen no items), as SendRequests from then on.

    Every batch carries an idempotency key (one record at the node, not one per send), so a send whose answer
    the stream lost (a break) is asked again as a unary Send naming that key and its place in the batch (and
    with a key of its own): never queued twice. A send with a key of its own (given by the caller, or worn
    on the hook wire first) carries it in the batch too.
    """

    def __init__(self, stub: pbg.ControlStub, gate: asyncio.Event, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._stub = stub
        self._timeout = timeout  # no answer for this long: the stream is given up, its sends asked again
        self._gate = gate  # set while no send is on the wire lane: what the stream writes comes after it
        # A send as a tuple of its fields (`_take` makes the batch's columns of them in one zip), or a
        # `send_many` chunk with one future for its answers (no future per send: what a client pays per
        # message is what bounds a batch sender's rate).
        self._queue: list[tuple[_Send | _Chunk, int, asyncio.Future[Any]]] = []
        self._in_flight: collections.deque[_Flight] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._progress = 0.0  # loop time of the last answer (or of a write with nothing in flight before)
        self.offered = True  # False once the node said UNIMPLEMENTED (an older node): unary from then on
        self.columns = True  # False once the node answered columns as if it saw no items (an older node)

    @property
    def idle(self) -> bool:
        """No send of this pipe is waiting to go or for its answer."""
        return not self._queue and not self._in_flight

    def put(self, send: _Send, size: int) -> asyncio.Future[Sent]:
        """Queue one send (`size`: UTF-8 bytes of its text) for the stream: the future of its answer
        (_Unanswered if none came). A plain call, not a coroutine: the caller awaits the future itself (a
        coroutine per send was a tenth of what a busy client pays per message)."""
        # No timer per send (a third of a busy client's time): the stream's watchdog in `_run` fails every
        # pending send when no answer came for its timeout (`Client(send_timeout=)`), and each is then asked
        # again, unary.
        fut: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        self._queue.append((send, size, fut))
        self._wake.set()
        task = self._task
        if task is None or task.done():
            self._task = asyncio.create_task(self._run())
        return fut

    async def send_chunk(self, chunk: _Chunk) -> list[Sent | MeshError | None] | None:
        """Send a `send_many` chunk (at most SEND_MAX sends, SEND_BATCH_BYTES encoded) as one batch of the
        stream, in order with the other sends: each item's answer (None: none in the node's answer), or None
        when the node read no columns (it queued none of them: send the chunk again, with a new key).
        _Unanswered if no answer came."""
        fut: asyncio.Future[list[Sent | MeshError | None] | None] = asyncio.get_running_loop().create_future()
        self._queue.append((chunk, 0, fut))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await fut

    def _fail(self, why: BaseException) -> None:
        """Every send in flight or queued hears `why` as _Unanswered (with its place, if it went)."""
        text = str(why)
        for flight in self._in_flight:
            if isinstance(flight.futs, list):
                for n, f in enumerate(flight.futs):
                    if not f.done():
                        f.set_exception(_Unanswered(text, place=(flight.key, n)))
            elif not flight.futs.done():
                flight.futs.set_exception(_Unanswered(text))
        self._in_flight.clear()
        for _, _, f in self._queue:
            if not f.done():
                f.set_exception(_Unanswered(text))
        self._queue.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        call = self._stub.SendStream()
        reader = asyncio.create_task(self._read(call))
        try:
            while not reader.done():
                if self._in_flight and loop.time() - self._progress > self._timeout:
                    raise NodeUnavailable("node did not answer in time")
                # While PIPE_DEPTH batches await their answers, or one does and fewer than SECOND_AT sends
                # wait, sends gather into the next one: under load the batches grow (one group commit each)
                # instead of many small ones chasing each other.
                queue, flying = self._queue, len(self._in_flight)
                if (
                    not queue
                    or flying >= PIPE_DEPTH
                    or (flying and len(queue) < SECOND_AT and queue[0][0].__class__ is not _Chunk)
                ):
                    self._wake.clear()
                    waker = asyncio.create_task(self._wake.wait())
                    left = self._progress + self._timeout - loop.time() if self._in_flight else None
                    try:
                        await asyncio.wait((waker, reader), timeout=left, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waker.cancel()  # also when this task is cancelled: no waiter left pending
                    continue
                if not self._gate.is_set():  # a send on the wire goes first: a client's sends stay in order
                    await self._gate.wait()
                    continue
                if not self._in_flight:
                    self._progress = loop.time()
                # Not asyncio.wait_for: on 3.11 it swallows a cancel (close()) that lands as the write
                # completes, and this loop then waited forever for sends that never come (gh-86296).
                async with asyncio.timeout(self._timeout):
                    await call.write(self._take())
        except asyncio.CancelledError:
            self._fail(NodeUnavailable("the client was closed"))
            raise
        except Exception as e:  # a broken stream, whatever gRPC calls it: its sends are asked again, unary
            self._fail(e)
        finally:
            reader.cancel()
            call.cancel()
        self._fail(NodeUnavailable("the send stream ended"))

    def _batch(self, key: str, cols: SendColumns) -> pb.SendBatch:
        batch = pb.SendBatch(key=key)
        if self.columns:
            api_codec.columns_to_pb(batch, cols)
        else:
            api_codec.columns_to_requests(batch, cols)
        return batch

    def _take(self) -> pb.SendBatch:
        """The next batch from the queue: at most SEND_MAX sends and SEND_BATCH_BYTES encoded."""
        whole, _, bfut = self._queue[0]
        if isinstance(whole, _Chunk):  # a send_many chunk travels as a batch of its own
            del self._queue[0]
            if bfut.done():  # its caller gave up (cancelled): not sent on its behalf (an empty batch has no
                self._in_flight.append(_Flight("", (), [], False))  # columns: it is answered in `results`)
                return pb.SendBatch()
            self._in_flight.append(_Flight(whole.key, whole.cols.to, bfut, self.columns))
            return self._batch(whole.key, whole.cols)
        # One key for the batch: a send whose answer the stream lost is asked again unary, naming the batch's
        # key and its place in it, and the node answers what the batch queued (no key per send to store).
        sends: list[_Send] = []
        futs: list[asyncio.Future[Sent]] = []
        size = 0
        n = 0
        for send, text, fut in self._queue:
            if isinstance(send, _Chunk):
                break  # goes in a batch of its own, after these
            size += text + REQUEST_OVERHEAD
            if futs and (size > limits.SEND_BATCH_BYTES or len(futs) >= SEND_MAX):
                break
            n += 1
            if fut.done():  # its caller gave up (cancelled): not sent on its behalf
                continue
            sends.append(send)
            futs.append(fut)
        del self._queue[:n]
        key = send_key()
        if not sends:
            self._in_flight.append(_Flight(key, (), futs, False))
            return pb.SendBatch()
        to, subjects, bodies, replies, keys = zip(*sends, strict=True)
        self._in_flight.append(_Flight(key, to, futs, self.columns))
        return self._batch(key, SendColumns(to, subjects, bodies, replies, keys))

    async def _read(self, call: Any) -> None:
        try:
            async for answer in call:
                if not self._in_flight:
                    break  # an answer to nothing: not a stream to trust
                flight = self._in_flight.popleft()
                self._progress = asyncio.get_running_loop().time()
                self._wake.set()
                futs = flight.futs
                got: list[Sent | MeshError | None] | None
                if flight.columnar:
                    got = api_codec.answers_from_pb(answer, flight.to)
                    if got is None and self.columns:  # a node that reads no columns: it saw no items
                        self.columns = False
                else:
                    got = [api_codec.result_from_pb(r) for r in answer.results]
                if not isinstance(futs, list):  # a send_many chunk: its caller reads the answers
                    if not futs.done():
                        futs.set_result(got)
                    continue
                if got is None:  # not queued: each asks again (unary, a key of its own)
                    for fut in futs:
                        if not fut.done():
                            fut.set_exception(_Unanswered("the node read no columns"))
                    continue
                # One pass over the batch's answers, each to its send (no index arithmetic per send).
                for fut, g in zip(futs, got, strict=False):
                    if fut.done():
                        continue
                    if g.__class__ is Sent:
                        fut.set_result(g)
                    elif g is not None:  # None: unanswered, below
                        fut.set_exception(g)  # type: ignore[arg-type]
                for n, fut in enumerate(futs):
                    if not fut.done():
                        fut.set_exception(
                            _Unanswered("no answer for this send in its batch", place=(flight.key, n))
                        )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                self.offered = False
            elif not ambiguous(e):  # the node refused the stream itself (a MeshError): every send hears it
                err = to_mesh_error(e)
                for flight in self._in_flight:
                    for f in flight.futs if isinstance(flight.futs, list) else (flight.futs,):
                        if not f.done():
                            f.set_exception(err)
                for _, _, f in self._queue:
                    if not f.done():
                        f.set_exception(err)
        self._fail(NodeUnavailable("the send stream ended"))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            await asyncio.sleep(0)  # the cancelled waiter and reader finish before the loop may close


class _WireLane:
    """Lone sends over the node's hook wire (its `api` op): one request at a time on one connection.

    Anything but the node's verdict (a MeshError with its class) is _Unanswered: the send is then asked on the
    SendStream with the same idempotency key, so it is never queued twice. A node that does not speak the op
    (an answer without a class: an older node) is not asked again.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.busy = False
        self.broken = path is None
        self.idle = asyncio.Event()  # set while no send is on the wire (the SendStream writes only then)
        self.idle.set()
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._used = 0.0

    @property
    def ready(self) -> bool:
        return not self.busy and not self.broken

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        if self._conn is not None and loop.time() - self._used > wirecodec.REUSE_IDLE:
            self.close()
        if self._conn is None:
            assert self.path is not None
            sock = open_wire(str(self.path), DEFAULT_TIMEOUT)  # a local connect: it does not block
            self._conn = await asyncio.open_unix_connection(sock=sock, limit=limits.HOOK_LINE_MAX)
            small_reads(self._conn[1].transport)  # an answer is one read (see wiresock.small_reads)
        return self._conn

    async def call(
        self, verb: str, args: dict[str, Any], timeout: float = DEFAULT_TIMEOUT, *, gate: bool = True
    ) -> Any:
        """`gate`: the SendStream waits while this call is on the wire (sends keep their order); a claim,
        which may wait long and has no order to keep with sends, does not hold it."""
        self.busy = True
        if gate:
            self.idle.clear()
        done = sent = False
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._open()
                sent = True
                writer.write(wirecodec.request_line(verb, args))
                raw = await reader.readline()
            done = True
        except (OSError, TimeoutError, ValueError, NodeUnavailable) as e:
            raise _Unanswered(f"hook wire: {e}", sent) from None
        finally:
            self.busy = False
            if gate:
                self.idle.set()
            self._used = asyncio.get_running_loop().time()
            if not done:  # an answer may still be on its way: never read it as the next one's
                self.close()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        try:
            return wirecodec.answer(verb, answer)
        except NodeUnavailable as e:  # not the node's verdict: the caller asks on the SendStream
            self.broken = wirecodec.older_node(e)  # an older node: not asked this way again
            self.close()
            # Only an older node's "unknown op" says the request was not carried out; any other answer that
            # is not the node's verdict may follow a request it did carry out.
            raise _Unanswered(f"hook wire: {e}", sent=not self.broken) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None

    async def stream(
        self, verb: str, args: dict[str, Any], timeout: float | None
    ) -> AsyncIterator[Any] | None:
        """A stream verb on a connection of its own, or None when the wire cannot serve it (then ask gRPC):
        the node is unreachable this way, or does not speak the verb (its first answer says so)."""
        try:
            sock = open_wire(str(self.path), DEFAULT_TIMEOUT)
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=limits.HOOK_LINE_MAX)
        except (OSError, NodeUnavailable):
            return None
        small_reads(writer.transport)  # a followed inbox is one read per message
        writer.write(wirecodec.request_line(verb, args))
        try:
            first = await _answer(reader, timeout)
        except NodeUnavailable:  # closed at once (its connection limit, a node stopping): gRPC decides
            writer.close()
            return None
        except BaseException:
            writer.close()
            raise
        if "error" in first and not first.get("class"):  # the wire's refusal, not the node's verdict
            try:
                wirecodec.answer(verb, first, "item")
            except NodeUnavailable as e:
                self.broken = wirecodec.older_node(e)  # an older node: not asked this way again
            writer.close()
            return None
        return self._items(verb, first, reader, writer, timeout)

    @staticmethod
    async def _items(
        verb: str,
        answer: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float | None,
    ) -> AsyncIterator[Any]:
        try:
            while True:
                if answer.get("end") and "error" not in answer:
                    return
                yield wirecodec.answer(verb, answer, "item")
                answer = await _answer(reader, timeout)
        finally:
            writer.close()  # also when the caller stops early: the node ends the stream


async def _answer(reader: asyncio.StreamReader, timeout: float | None) -> dict[str, Any]:
    """The next answer line of a wire stream (NodeUnavailable when the node went away or broke the line)."""
    try:
        async with asyncio.timeout(timeout):
            raw = await reader.readline()
        answer = json.loads(raw) if raw else None
    except TimeoutError:
        raise NodeUnavailable("node did not answer in time") from None
    except (OSError, ValueError):
        answer = None
    if not isinstance(answer, dict):
        raise NodeUnavailable("the node closed the stream (is it stopping?)")
    return answer


class Client:
    """Talks to one running node through its control socket."""

    def __init__(
        self, node: RunningNode, clock: Clock | None = None, *, send_timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """`send_timeout`: seconds a send waits for the node's answer on the hook wire or the SendStream
        before it is asked again with its key (the stream is then given up); a unary Send has its own."""
        if not send_timeout > 0:
            raise InvalidInput(f"send_timeout must be positive, not {send_timeout!r}")
        self.node = node
        self.clock = clock or BootClock()
        self._send_timeout = send_timeout
        self._channel = grpc.aio.insecure_channel(f"unix:{node.socket}")
        self._stub = pbg.ControlStub(self._channel)
        self._lane = _WireLane(node.hook_socket)
        self._pipe = _SendPipe(self._stub, self._lane.idle, send_timeout)
        # Every unary Send of this client (a send the stream left unanswered, a node without one) takes a
        # slot: thousands asked again at once (a stream that broke under a burst) came back CANCELLED from
        # the node by the hundred (114 of 2,500 lines in stop 22) instead of waiting their turn.
        self._unary_slots = asyncio.Semaphore(limits.UNARY_AT_ONCE)
        # Recipient names `send` checked already (a busy sender sends to a few names, thousands of times):
        # only names that passed are kept, so a bad one is refused every time. Bounded: cleared when full.
        self._names: set[str] = set()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (the node keeps running)."""
        self._lane.close()
        await self._pipe.close()
        await self._channel.close(None)

    async def _call(
        self, method: Any, request: Any, timeout: float | None = DEFAULT_TIMEOUT, *, idempotent: bool = False
    ) -> Any:
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if not (idempotent and ambiguous(e)):
                raise to_mesh_error(e) from None
        # The call may or may not have been carried out (the stream broke before the answer came back);
        # the request carries an idempotency key, so asking again cannot do it twice.
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise to_mesh_error(e) from None

    async def _stream(self, call: Any) -> AsyncIterator[Any]:
        """Replies of a server-streaming call until it ends; ending it from this side is a clean end."""
        try:
            async for reply in call:
                yield reply
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise to_mesh_error(e) from None
        finally:
            call.cancel()

    # ------------------------------------------------------------------ the node and the mesh

    async def info(self) -> NodeInfo:
        """Who the node is, where it lives, and the steward set it has adopted."""
        return api_codec.info_from_pb(await self._call(self._stub.Info, pb.Empty()))

    async def members(self) -> list[MemberView]:
        """Every member the node knows (itself first), with liveness and status."""
        r: pb.MemberList = await self._call(self._stub.Members, pb.Empty())
        return [api_codec.view_from_pb(m) for m in r.members]

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
        if progress is not None:
            validate.progress(progress)  # a negative one could not even be encoded
        req = api_codec.status_changes_to_pb(
            action=action, target=target, phase=phase, progress=progress, note=note, role=role
        )
        return codec.status_from_pb(await self._call(self._stub.SetStatus, req))

    async def watch(self, snapshot: bool = True) -> AsyncIterator[WatchEvent]:
        """Joins, liveness changes, status updates and board changes as they happen (after every member as a
        snapshot): `MemberEvent`s and `BoardEvent`s."""
        async for ev in self._stream(self._stub.Watch(pb.WatchRequest(snapshot=snapshot))):
            yield api_codec.event_from_pb(ev)

    async def shutdown(self, reason: str = "meshctl down") -> None:
        """Ask the node to leave the mesh gracefully (peers see `left` at once)."""
        await self._call(self._stub.Shutdown, pb.ShutdownRequest(reason=reason))

    # ------------------------------------------------------------------ claims

    def claim(self, type: str, name: str, *, ttl: float = 3600.0, wait: float = 0.0) -> PendingClaim:
        """Claim TYPE/NAME through the node (see MeshAPI.claim); the node renews it while it lives."""
        return pending_claim(self, type, name, ttl, wait, clock=self.clock, clock_offset=self._clock_offset)

    async def claim_once(
        self, resource: str, ttl: float = 3600.0, wait: float = 0.0, *, handle: bool = False
    ) -> ClaimView:
        """Claim TYPE/NAME without a lease handle: the node holds and renews it until `ttl` or a release."""
        # Checked here too: the RPC's deadline is computed from `wait`, and a huge one would overflow it.
        req = pb.ClaimRequest(resource=resource, ttl=check_ttl(ttl), wait=check_wait(wait), handle=handle)
        if self._lane.ready:
            args = {"resource": resource, "ttl": ttl, "wait": wait, "handle": handle}
            found, claimed = await self._on_lane("claim_once", args, wait + 60.0)
            if found:
                return claimed  # type: ignore[no-any-return]
        return api_codec.claim_reply_from_pb(await self._call(self._stub.Claim, req, timeout=wait + 60.0))

    async def _on_lane(self, verb: str, args: dict[str, Any], timeout: float) -> tuple[bool, Any]:
        """A claims call over the hook wire: (True, its answer), or (False, None) when the node cannot have
        carried it out (no connection, or a node without the wire's `api` op): then ask gRPC. A request the
        node may have seen is never asked twice (a claim or release has no idempotency key): no answer to it
        is NodeUnavailable, as a broken gRPC call would be."""
        try:
            return True, await self._lane.call(verb, args, timeout, gate=False)
        except _Unanswered as e:
            if e.sent and not self._lane.broken:
                raise NodeUnavailable(f"no answer from the node: {e}") from None
            return False, None

    async def _clock_offset(self, asked: float, node_now: float) -> float:
        """What to add to the node's clock readings to get ours, erring only toward EARLIER instants.

        On one host both processes read CLOCK_BOOTTIME: the node's reading taken while it answered lies
        between our readings before and after the call, and the offset is 0. Otherwise (another time
        namespace) a quick Info call brackets the node's clock: its reading happened no earlier than our
        reading before the call, so `before - node_now` can only map node instants earlier than they are.
        """
        if not node_now or asked <= node_now <= self.clock.now():
            return 0.0
        before = self.clock.now()
        info = await self.info()
        return min(0.0, before - info.node_now) if info.node_now else 0.0

    async def release(self, type: str, name: str, *, handle: bool = False) -> bool:
        """Release a claim this node holds; False if it held none (see MeshAPI.release for `handle`)."""
        req = pb.ReleaseRequest(resource=resource_name(type, name), handle=handle)
        if self._lane.ready:
            found, released = await self._on_lane(
                "release", {"type": type, "name": name, "handle": handle}, DEFAULT_TIMEOUT
            )
            if found:
                return released  # type: ignore[no-any-return]
        r: pb.ReleaseReply = await self._call(self._stub.Release, req)
        return r.released

    async def claims(self) -> list[ClaimView]:
        """Every live claim in the mesh, by item."""
        return api_codec.claims_from_pb(await self._call(self._stub.Claims, pb.Empty()))

    async def held(self) -> list[ClaimView]:
        """The claims this node holds now, by item (exact; `claims()` shows them once published)."""
        return api_codec.claims_from_pb(await self._call(self._stub.Held, pb.Empty()))

    async def check_path(self, path: str) -> ClaimView | None:
        """Who else holds an exclusive path claim whose pattern matches `path` (a project-relative file),
        asked of the stewards (exact, not the published views); None when nobody does."""
        r = await self._call(self._stub.CheckPath, pb.CheckPathRequest(path=path))
        found = api_codec.claims_from_pb(r)
        return found[0] if found else None

    async def lease_events(self, resource: str) -> AsyncIterator[LeaseEvent]:
        """Events of a lease this node holds: `held` first, `renewed`…, then `lost` or `released`."""
        call = self._stub.WatchLease(pb.LeaseWatchRequest(resource=resource))
        async for ev in self._stream(call):
            yield api_codec.lease_event_from_pb(ev)

    async def recover_stewards(self) -> NodeInfo:
        """Last resort: make this node the only steward of a new epoch (see README for the risk)."""
        req = pb.RecoverRequest(i_understand=True)
        return api_codec.info_from_pb(await self._call(self._stub.RecoverStewards, req, timeout=120.0))

    # ------------------------------------------------------------------ messages

    async def send(
        self, to: str, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> Sent:
        """Queue a message to session `to` durably in the node's outbox (idempotent: see MeshAPI.send)."""
        if to.__class__ is not str or to not in self._names:  # not str: unhashable, and refused below
            validate.name(to, "recipient")
            if len(self._names) >= _NAMES_KEPT:
                self._names.clear()
            self._names.add(to)
        pipe = self._pipe
        if pipe.offered and not (pipe.idle and self._lane.ready):
            # A busy sender's send: on the SendStream, awaited here (no `_send` coroutine per message, and
            # no dict of its fields: the pipe takes them as a tuple).
            size = check_outgoing(subject, body, reply_to, key)
            try:
                return await pipe.put((to, subject, body, reply_to or "", key or ""), size)
            except _Unanswered as e:
                fields, _ = _message(subject, body, reply_to, key, checked=True)
                fields["to"] = to
                return await self._send_unary(fields, e.place)
        fields, size = _message(subject, body, reply_to, key)
        fields["to"] = to
        return await self._send(fields, "send", size)

    async def broadcast(
        self, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> Sent:
        """Queue a message to every member known now, offline ones included."""
        fields, size = _message(subject, body, reply_to, key)
        fields["all"] = True
        return await self._send(fields, "broadcast", size)

    async def send_many(
        self, items: Sequence[SendItem] | SendColumns, *, checked: bool = False
    ) -> list[Sent | MeshError]:
        """Queue many sends (`to` None: a broadcast), one answer or that item's error each, in order: the
        cheap way to send a lot (`meshctl send -`). Each chunk of SEND_MAX goes on the SendStream as one
        SendBatch built here, with no future or task per message; the node queues a chunk in one group
        commit and answers each item (an unknown recipient fails alone). Every chunk carries one idempotency
        key (the node keeps one record per chunk, not one per send), so a chunk whose answer was lost (a
        broken stream) is asked again whole on a new stream, and then item by item as unary Sends naming the
        chunk's key and the item's place: never queued twice. An item's own key travels with it.

        `items`: SendItems, or the same as SendColumns (`meshctl send -` makes them from its lines: no object
        per line). `checked`: every item was checked already as the node will check it (`meshctl send -`
        checks every line before it sends any), so it is not checked here again."""
        cols = items if isinstance(items, SendColumns) else columns_of(items)
        n = len(cols)
        answers: list[Sent | MeshError | None] = [None] * n
        good: Sequence[int]  # the items that go, and the UTF-8 bytes of each one's text
        sizes: list[int]
        if checked:
            good = range(n)
            encode = str.encode
            sizes = list(map(add, map(len, map(encode, cols.subjects)), map(len, map(encode, cols.bodies))))
        else:
            good, sizes = [], []
            names: set[str] = set()  # recipient names checked already (a batch is mostly to one)
            for i, (t, sj, b, r, k) in enumerate(
                zip(cols.to, cols.subjects, cols.bodies, cols.reply_tos, cols.keys, strict=True)
            ):
                try:
                    if t is not None and t not in names:
                        names.add(validate.name(t, "recipient"))
                    sizes.append(check_outgoing(sj, b, r, k))
                    good.append(i)
                except MeshError as e:  # this item's answer; the others go
                    answers[i] = e
        chunks: list[tuple[Sequence[int], _Chunk]] = []

        def cut(idx: Sequence[int]) -> None:
            chunks.append((idx, _Chunk(cols.pick(idx), send_key())))

        start = total = 0
        for j, size in enumerate(sizes):
            size += REQUEST_OVERHEAD
            if j > start and (total + size > limits.SEND_BATCH_BYTES or j - start >= SEND_MAX):
                cut(good[start:j])
                start, total = j, 0
            total += size
        if start < len(sizes):
            cut(good[start:])

        async def chunk(idx: Sequence[int], ch: _Chunk) -> None:
            got: list[Sent | MeshError | None] | None = None
            for _ in range(SEND_MANY_TRIES):  # the same batch again (same keys) on a new stream
                if not self._pipe.offered:
                    break
                with contextlib.suppress(_Unanswered):
                    got = await self._pipe.send_chunk(ch)
                    if got is None:  # a node that reads no columns queued none of it: again, as SendRequests
                        ch.key = send_key()  # (its key is spent on the empty batch the node saw)
                        continue
                    if not any(map(is_, got, repeat(None))):  # not `None in`: Sent.__eq__ per item
                        break
                got = None
            if got is None:  # no stream (an older node): unary Sends, a few at a time, each naming its
                # place in the chunk (the node answers what the chunk queued) and with a key of its own.
                c = ch.cols
                places = enumerate(zip(c.to, c.subjects, c.bodies, c.reply_tos, c.keys, strict=True))
                reqs = [
                    pb.SendRequest(
                        to=t or "",
                        all=t is None,
                        subject=sj,
                        body=b,
                        in_reply_to=r,
                        key=k or send_key(),
                        batch_key=ch.key,
                        batch_index=n,
                    )
                    for n, (t, sj, b, r, k) in places
                ]
                done = await asyncio.gather(*(self._unary(q) for q in reqs), return_exceptions=True)
                for i, d in zip(idx, done, strict=True):
                    if not isinstance(d, MeshError | Sent):
                        raise d
                    answers[i] = d
                return
            for i, g in zip(idx, got, strict=True):
                answers[i] = g

        # All chunks queued at once: the pipe keeps PIPE_DEPTH on the wire and the node reads ahead.
        await asyncio.gather(*(chunk(i, c) for i, c in chunks))
        return [NodeUnavailable("no answer for this send") if a is None else a for a in answers]

    async def _unary(self, r: pb.SendRequest) -> Sent:
        """A unary Send with its key (asked again once if its answer was lost), UNARY_AT_ONCE at a time."""
        async with self._unary_slots:
            reply: pb.SendReply = await self._call(self._stub.Send, r, idempotent=True)
        return api_codec.sent_from_pb(reply)

    async def _send(self, fields: dict[str, Any], verb: str, size: int) -> Sent:
        """A lone send over the hook wire; otherwise pipelined on the SendStream (`size`: UTF-8 bytes of its
        subject and body, as `_message` counted them). A send either left unanswered is asked again (the pipe,
        then a unary Send; its key makes that safe), and so is every send to a node that does not offer the
        wire or the stream."""
        if self._lane.ready and self._pipe.idle:
            if "key" not in fields:  # on the stream after this (its answer lost): asked with this key
                fields["key"] = send_key()
            try:
                sent: Sent = await self._lane.call(verb, _wire_args(fields), self._send_timeout)
                return sent
            except _Unanswered:
                pass
        place = None
        if self._pipe.offered:
            send = (
                fields.get("to"),
                fields["subject"],
                fields["body"],
                fields["in_reply_to"],
                fields.get("key", ""),
            )
            try:
                return await self._pipe.put(send, size)
            except _Unanswered as e:
                place = e.place
        return await self._send_unary(fields, place)

    async def _send_unary(self, fields: dict[str, Any], place: tuple[str, int] | None = None) -> Sent:
        """A send the stream left unanswered (or a node without one): a unary Send with a key, naming its
        `place` (its batch's key and index there) if it went in a batch."""
        if "key" not in fields:
            fields["key"] = send_key()
        if place is not None:
            fields["batch_key"], fields["batch_index"] = place
        return await self._unary(pb.SendRequest(**fields))

    async def messages(
        self,
        unread: bool = False,
        follow: bool = False,
        from_name: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> AsyncIterator[InboxMessage]:
        """The inbox, oldest first (the newest `limit`; default all); with `follow`, new ones as they come.

        With `after` (a message's `local_seq`), the first `limit` messages after it instead.
        """
        if limit is not None:
            validate.page_limit(limit)
        if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
            raise InvalidInput(f"after must be a local_seq (0 or more), not {validate.shown(after)}")
        if not self._lane.broken:
            args = {"unread": unread, "follow": follow, "from_name": from_name or None, "limit": limit}
            if after is not None:
                args["after"] = after
            wire = await self._lane.stream("messages", args, None if follow else DEFAULT_TIMEOUT)
            if wire is not None:
                async for m in wire:
                    yield m
                return
        req = pb.InboxRequest(unread=unread, follow=follow, limit=limit or 0, after=after)
        if from_name:
            setattr(req, "from", from_name)
        call = self._stub.Inbox(req, timeout=None if follow else DEFAULT_TIMEOUT)
        async for item in self._stream(call):
            yield api_codec.inbox_from_pb(item)

    async def mark_read(self, ids: list[str] | None = None) -> int:
        """Mark messages read (all unread if `ids` is None); read receipts travel back to the senders."""
        req = pb.MarkReadRequest(all=ids is None, ids=ids or [])
        r: pb.MarkReadReply = await self._call(self._stub.MarkRead, req)
        return r.marked

    async def outbox(
        self, state: str | None = None, to: str | None = None, limit: int | None = None
    ) -> list[OutboxEntry]:
        """What this node sent, with each entry's delivery state (queued, delivered, read, expired)."""
        if limit is not None:
            validate.page_limit(limit)
        req = pb.OutboxRequest(state=state or "", to=to or "", limit=limit or 0)
        return api_codec.outbox_from_pb(await self._call(self._stub.Outbox, req))

    async def counts(self) -> MailCounts:
        """Unread messages in the inbox, and sent messages still queued."""
        r: pb.MailCounts = await self._call(self._stub.Counts, pb.Empty())
        return MailCounts(r.unread, r.queued)

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
        """File a task on the mesh's board (durable on the node when this returns; every node gets it)."""
        req = api_codec.task_fields_to_pb(
            title=title, priority=priority, milestone=milestone, role=role, note=note, step=step
        )
        return api_codec.task_row_from_pb(await self._call(self._stub.TaskAdd, req))

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
        fields = api_codec.task_fields_to_pb(
            title=title, priority=priority, milestone=milestone, role=role, note=note, step=step
        )
        req = pb.TaskEditRequest(task=task, fields=fields)
        return api_codec.task_row_from_pb(await self._call(self._stub.TaskEdit, req))

    async def task_claim(self, task: str, ttl: float = 3600.0, wait: float = 0.0) -> ClaimView:
        """Claim an open task: a claim of type ``task`` on its id (one holder, a fencing token)."""
        req = pb.TaskClaimRequest(task=task, ttl=ttl, wait=wait)
        return api_codec.claim_reply_from_pb(await self._call(self._stub.TaskClaim, req, timeout=wait + 60.0))

    async def _task_state(self, task: str, state: str) -> TaskRow:
        req = pb.TaskStateRequest(task=task, state=state)
        return api_codec.task_row_from_pb(await self._call(self._stub.TaskState, req))

    async def task_done(self, task: str) -> TaskRow:
        """Mark a task done (this node's claim on it, if any, is released)."""
        return await self._task_state(task, "done")

    async def task_drop(self, task: str) -> TaskRow:
        """Drop a task (it stays as a tombstone; `task_reopen` brings it back)."""
        return await self._task_state(task, "dropped")

    async def task_reopen(self, task: str) -> TaskRow:
        """Make a done or dropped task open again."""
        return await self._task_state(task, "open")

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
        req = pb.BoardRequest(
            priorities=list(priorities or ()), mine=mine, role=role or "", milestone=milestone or "",
            hide_done=not done, show_dropped=dropped,
        )  # fmt: skip
        return api_codec.board_from_chunks(
            [c async for c in self._stream(self._stub.Board(req, timeout=60.0))]
        )

    async def milestone_add(self, title: str, steps: Sequence[str] = (), note: str = "") -> MilestoneRow:
        """Add a milestone with its steps."""
        req = pb.MilestoneAddRequest(title=title, steps=list(steps), note=note)
        return api_codec.milestone_from_pb(await self._call(self._stub.MilestoneAdd, req))

    async def milestone_show(self, milestone: str) -> MilestoneRow:
        """One milestone with its steps and progress (computed from its tasks)."""
        req = pb.MilestoneRef(milestone=milestone)
        return api_codec.milestone_from_pb(await self._call(self._stub.MilestoneShow, req))

    async def stats(self, since: float = 86400.0) -> MeshStats:
        """The success metrics over the last `since` seconds, as the node saw them."""
        return api_codec.stats_from_pb(await self._call(self._stub.Stats, pb.StatsRequest(since=since)))


class _KeySource:
    """Fresh idempotency keys: the time in nanoseconds (hex), this process's 64 random bits, a counter.

    Time first, so the node's key index grows at its right edge: random keys scatter every group commit's
    inserts over the whole index (a page written per key), which cut the node's send rate to a third once it
    held 100,000 keys. Unique all the same: the random part tells processes apart (drawn again in a forked
    child), the counter the keys of one process. One urandom read per process, not one per send.
    """

    def __init__(self) -> None:
        self.reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.tag = secrets.token_urlsafe(8)
        self.count = itertools.count()

    def __call__(self) -> str:
        return f"{time.time_ns():016x}{self.tag}{next(self.count):x}"


send_key = _KeySource()


def _message(
    subject: str, body: str, reply_to: str | None, key: str | None, *, checked: bool = False
) -> tuple[dict[str, Any], int]:
    """A message's fields for a SendRequest, checked as the node will check them (a 10 MB body gets the
    body limit's message here, not the transport's), and its text's size in UTF-8 bytes (counted by the
    check, not again; 0 with `checked`: the caller checked them). The caller's key if it gave one;
    otherwise the send gets one when it goes alone (the wire, a unary Send); on the SendStream its batch's
    key covers it."""
    size = 0 if checked else check_outgoing(subject, body, reply_to, key)
    fields = {"subject": subject, "body": body, "in_reply_to": reply_to or ""}
    if key:
        fields["key"] = key
    return fields, size


def _wire_args(fields: dict[str, Any]) -> dict[str, Any]:
    """A SendRequest's fields as the wire's `send`/`broadcast` arguments."""
    args = {
        "subject": fields["subject"],
        "body": fields["body"],
        "reply_to": fields["in_reply_to"] or None,
        "key": fields["key"],
    }
    if "to" in fields:
        args["to"] = fields["to"]
    return args


async def connect(name: str | None = None, *, mesh: str | None = None, home: Path | None = None) -> Client:
    """Connect to a running node: by name, else the only one running under `home` (or $MESH_HOME)."""
    node = find_node(home or default_home(), mesh, name)
    return Client(node)
