"""Peer links: one long-lived bidi gRPC stream per pair of nodes, whichever side dialed.

A `Link` hides which side of the RPC it is: it has a send queue drained by one writer, and the runtime's
reader loop feeds incoming frames to the runtime. When both nodes dial each other at once, the link dialed by
the smaller node id is kept on both sides (a rule both sides evaluate identically), the other is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._transport.guard import Undecodable
from mesh.core.errors import ProtocolError
from mesh.core.membership import PeerInfo

log = logging.getLogger("mesh.peer")

# End-of-stream marker of grpc.aio reads (missing from the type stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]

# Frames queued to a peer that stopped reading (SIGSTOP, partition) are bounded; beyond this, heartbeats
# (which only matter when fresh) are dropped first.
QUEUE_SOFT_LIMIT = 1000
MAX_FRAME_BYTES = limits.MAX_MESSAGE_BYTES  # see mesh/limits.py for why 1 MiB

# Keepalive pings let a half-open TCP connection (peer host vanished) be noticed by the transport too. Every
# 30 s, not 10: the watchers' heartbeats detect failures (well within a second for a dead process, 11 s for a
# paused one), so a ping only has to clean up a connection nobody watches, and at 10 s a large mesh's links
# spent idle CPU on pings alone.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_FRAME_BYTES),
    ("grpc.max_send_message_length", MAX_FRAME_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.enable_retries", 0),
]
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_FRAME_BYTES),
    ("grpc.max_send_message_length", MAX_FRAME_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_concurrent_streams", limits.PEER_MAX_STREAMS_PER_CONNECTION),
    # One process per port: with SO_REUSEPORT a second node on the same port started "fine" and the kernel
    # spread connections over both.
    ("grpc.so_reuseport", 0),
    ("grpc.server_handshake_timeout_ms", limits.HANDSHAKE_TIMEOUT_MS),
    ("grpc.max_connection_idle_ms", limits.IDLE_CONNECTION_MS),
    ("grpc.max_allowed_incoming_connections", limits.PEER_MAX_CONNECTIONS),
]


class Link:
    """One peer link, either direction."""

    def __init__(
        self,
        peer: PeerInfo,
        dialer: str,
        outbound: bool,
        write: Callable[[pb.PeerFrame], Awaitable[None]],
        finish: Callable[[], Awaitable[None]],
        batches: bool = False,
        local: bool = False,
        write_now: Callable[[pb.PeerFrame], bool] | None = None,
        columns: bool = False,
    ) -> None:
        self.peer = peer
        self.dialer = dialer
        self.outbound = outbound
        self.batches = batches
        """The peer reads PeerFrame.batch (its Hello said frame_batches)."""
        self.columns = columns
        """The peer reads a MailBatch by column (its Hello said mail_columns)."""
        self.local = local
        """A same-host unix stream (mesh._transport.local), not a gRPC stream."""
        self._write = write
        self._finish = finish
        self._write_now = write_now
        """A transport whose writes only buffer (a local link's): a frame it takes (True) has left."""
        self._queue: asyncio.Queue[pb.PeerFrame | None] = asyncio.Queue()
        self._held: pb.PeerFrame | None = None  # taken from the queue, too big to join the last batch
        self._parked = False  # the writer waits on an empty queue: nothing is queued, held or being written
        self._burst = False  # a frame left directly in this loop turn: the turn's others queue behind it
        self.closed = asyncio.Event()
        self.superseded = False
        self.frames_out = 0

    def __repr__(self) -> str:
        way = ("out" if self.outbound else "in") + (" local" if self.local else "")
        return f"<Link {way} {self.peer.name}/{self.peer.node_id[:6]} dialer={self.dialer[:6]}>"

    def send(self, frame: pb.PeerFrame, droppable: bool = False) -> None:
        """Queue a frame (never blocks). Droppable frames are shed when the peer is not reading."""
        if self.closed.is_set():
            return
        if droppable and self._queue.qsize() > QUEUE_SOFT_LIMIT:
            return
        if self._parked and not self._burst and self._write_now is not None and self._write_now(frame):
            # A lone frame leaves now, not one loop turn later from the writer task (a claim crosses four
            # such hops: Propose out, Accepted back, at two stewards). Frames sent later in this turn queue
            # and leave as one batch from the writer, as before; so the order is kept.
            self.frames_out += 1
            self._burst = True
            asyncio.get_running_loop().call_soon(self._end_burst)
            return
        self._queue.put_nowait(frame)

    def _end_burst(self) -> None:
        self._burst = False

    def close(self) -> None:
        """Flush what is queued, then end the stream."""
        self._write_now = None  # nothing leaves after the close marker
        self._queue.put_nowait(None)

    async def run_writer(self) -> None:
        """Drain the queue into the stream until closed.

        Frames queued while the previous write was under way (or in the same loop turn) go out as one
        batch frame when the peer reads batches: one write, one HTTP/2 message, one read on the other side,
        instead of one each. The writer never waits for more: a lone frame leaves at once."""
        try:
            while True:
                if self._held is not None:
                    frame: pb.PeerFrame | None = self._held
                    self._held = None
                elif self._queue.empty():
                    self._parked = True
                    try:
                        frame = await self._queue.get()
                    finally:
                        self._parked = False
                else:
                    frame = self._queue.get_nowait()
                if frame is None:
                    break
                n, closing = 1, False
                if self.batches and not self._queue.empty():
                    frame, n, closing = self._gather(frame)
                await self._write(frame)
                self.frames_out += n
                if closing:  # the close marker was behind this batch's frames
                    break
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, RuntimeError, grpc.RpcError, OSError) as e:
            log.debug("%r writer ended: %s", self, e)
        finally:
            with contextlib.suppress(Exception):
                await self._finish()
            self.closed.set()

    def _gather(self, first: pb.PeerFrame) -> tuple[pb.PeerFrame, int, bool]:
        """`first` and the frames queued behind it, as one batch frame (or `first` alone); (frame, how many
        frames it carries, whether the close marker was reached)."""
        size = first.ByteSize()
        if size > limits.FRAME_BATCH_BYTES:
            return first, 1, False
        frames = [first]
        closing = False
        while len(frames) < limits.MAX_FRAME_BATCH and not self._queue.empty():
            nxt = self._queue.get_nowait()
            if nxt is None:
                closing = True
                break
            size += nxt.ByteSize()
            if size > limits.FRAME_BATCH_BYTES:
                self._held = nxt
                break
            frames.append(nxt)
        if len(frames) == 1:
            return first, 1, closing
        return pb.PeerFrame(batch=frames), len(frames), closing


async def frames(read: Callable[[], Awaitable[Any]]) -> AsyncIterator[pb.PeerFrame]:
    """The frames a link's `read` returns (a gRPC stream's, either side; a local link's `read_frame`) until
    the stream ends: at its end (EOF, None) or when the transport breaks (logged at debug: the peer went
    away); ProtocolError for a frame that could not be decoded (what `LinkTable.carry` reads)."""
    while True:
        try:
            f = await read()
        except (grpc.aio.AioRpcError, OSError) as e:
            log.debug("a link's stream ended: %s", e)
            return
        if f is EOF or f is None:
            return
        if isinstance(f, Undecodable):
            raise ProtocolError(f"undecodable frame: {f.reason}")
        yield f


def frame(**fields: Any) -> pb.PeerFrame:
    """Build a PeerFrame from keyword fields."""
    return pb.PeerFrame(**fields)
