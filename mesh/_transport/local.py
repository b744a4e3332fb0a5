"""Same-host peer links on raw unix-domain streams: the socket name, the framing, the writes, the uid check.

Two nodes of one host and one user talk over an abstract unix stream socket instead of gRPC with mutual TLS:
a PeerFrame round trip costs about half (bench/peer_rtt.py), and the stdlib `ssl` module (≈ 6 MB RSS per
node) is never loaded. The frames and everything after them are the same as on a gRPC link
(mesh._transport.peer.Link, the link table); only the pipe differs.

Why this is as safe as mutual TLS for the peers it serves: a process of our uid can read our state dir and the
mesh's CA key, so it can mint any certificate; mTLS adds nothing against it. A local link is therefore used
only when the kernel (SO_PEERCRED, checked on both ends) says the other end runs as OUR uid, and its Hello
names the same mesh and carries the same CA digest (SHA-256 of the CA certificate, `Hello.ca_sha256`), and
passes every other check a gRPC Hello passes. A process of another uid gets no local link (its connection is
closed unread); it can still dial the gRPC port, where mTLS applies as before. A remote host's port says
nothing about a local socket, so only loopback addresses are ever tried locally.

Socket name: abstract (Linux: no file, no path-length limit, nothing to clean up after a crash), scoped like
the loopback TCP port it shadows (per network namespace), and keyed by uid and the advertised host:port, so a
dialer derives it from the address it was going to dial anyway (nothing new to advertise).

Framing: a 4-byte big-endian length, then the serialized PeerFrame; a length above MAX_FRAME_BYTES ends the
link before its body is read.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys

from mesh._proto import mesh_pb2 as pb
from mesh._transport.peer import MAX_FRAME_BYTES
from mesh._transport.wiresock import small_reads
from mesh.core.errors import ProtocolError

HEADER = struct.Struct(">I")
PREFIX = "session-mesh"
# Writes only buffer; a writer waits for the peer (drain) only beyond this. A steward's answer written from a
# reader therefore never waits for the other side's reader (the deadlock two grpc writers could reach).
HIGH_WATER = 1 << 20
READ_LIMIT = 1 << 18  # the stream reader's buffer goal (frames larger than this still read whole)

_LOOPBACK_NAMES = {"localhost": "127.0.0.1", "ip6-localhost": "::1"}


def supported() -> bool:
    """Abstract unix sockets and SO_PEERCRED: Linux only (elsewhere every link stays on gRPC)."""
    import socket

    return sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED")


def loopback_host(host: str) -> str | None:
    """`host` as a loopback IP literal (localhost → 127.0.0.1), or None if it is not loopback."""
    import ipaddress

    host = _LOOPBACK_NAMES.get(host.lower(), host).strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(ip) if ip.is_loopback else None


def socket_name(address: str, uid: int | None = None) -> str | None:
    """The abstract socket name of the node advertising `address` (host:port), or None if not loopback."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    ip = loopback_host(host)
    if ip is None:
        return None
    return f"\0{PREFIX}/{os.getuid() if uid is None else uid}/{ip}:{int(port)}"


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The uid of the process at the other end of a unix stream (SO_PEERCRED), or None if unknown."""
    import socket

    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)  # pid, uid, gid
    except OSError:
        return None
    return int.from_bytes(creds[4:8], sys.byteorder, signed=True)


def encode(frame: pb.PeerFrame) -> bytes:
    data = frame.SerializeToString()
    return HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> pb.PeerFrame | None:
    """The next frame, or None at a clean end of stream; ProtocolError for an oversized or bad frame (the
    length is checked before the body is read), ConnectionError for a stream cut mid-frame."""
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ConnectionResetError("stream ended inside a frame header") from None
    (n,) = HEADER.unpack(head)
    if n > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {n} bytes (at most {MAX_FRAME_BYTES})")
    try:
        body = await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("stream ended inside a frame") from None
    try:
        return pb.PeerFrame.FromString(body)
    except Exception as e:  # protobuf's DecodeError (and friends): the peer broke the protocol
        raise ProtocolError(f"undecodable frame: {e.__class__.__name__}") from None


class StreamSide:
    """The write half of a local link as `Link` wants it: `write` buffers (waiting only above HIGH_WATER),
    `finish` half-closes (the peer reads to the end of what was written, then EOF, as after done_writing)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.transport = writer.transport
        small_reads(self.transport)  # the reader reads through this transport too (both ends build one)

    def write_nowait(self, frame: pb.PeerFrame) -> None:
        self.transport.write(encode(frame))

    async def write(self, frame: pb.PeerFrame) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("local link closed")
        self.transport.write(encode(frame))
        if self.transport.get_write_buffer_size() > HIGH_WATER:
            await self.writer.drain()

    def write_now(self, frame: pb.PeerFrame) -> bool:
        """Write `frame` without waiting (True), unless the link is closing or the peer is behind (above
        HIGH_WATER: the writer task writes it and waits for the peer)."""
        t = self.transport
        if t.is_closing() or t.get_write_buffer_size() > HIGH_WATER:
            return False
        t.write(encode(frame))
        return True

    async def finish(self) -> None:
        if not self.transport.is_closing() and self.writer.can_write_eof():
            self.writer.write_eof()

    def close(self) -> None:
        self.transport.close()

    cancel = close  # what the dialer's answer check calls on a refused link, as on a gRPC call
