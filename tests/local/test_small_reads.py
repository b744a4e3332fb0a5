"""`wiresock.small_reads`: every asyncio unix stream of the mesh (local peer links, the hook wire at both
ends) reads at most RECV_BYTES per recv instead of CPython's 256 KiB (an mmap and munmap per read at that
size), and a frame larger than that still arrives whole, in more reads."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from mesh._proto import mesh_pb2 as pb
from mesh._transport import local
from mesh._transport.faces import HookListener
from mesh._transport.wiresock import RECV_BYTES, small_reads


async def _pair() -> tuple[
    asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamWriter
]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ra, wa = await asyncio.open_unix_connection(sock=a, limit=local.READ_LIMIT)
    rb, wb = await asyncio.open_unix_connection(sock=b, limit=local.READ_LIMIT)
    return ra, wa, rb, wb


async def test_a_local_link_reads_small_and_a_frame_larger_than_one_read_arrives_whole() -> None:
    ra, wa, rb, wb = await _pair()
    try:
        assert wb.transport.max_size > RECV_BYTES  # type: ignore[attr-defined]  # CPython's default, before
        side_a, side_b = local.StreamSide(wa), local.StreamSide(wb)
        assert wa.transport.max_size == wb.transport.max_size == RECV_BYTES  # type: ignore[attr-defined]
        big = pb.PeerFrame(mail=pb.MailBatch(from_node="a", bodies=["é" * (3 * RECV_BYTES // 2)]))
        small = pb.PeerFrame(heartbeat=pb.Heartbeat(seq=7))
        await side_a.write(big)
        assert side_a.write_now(small)
        assert await local.read_frame(rb) == big  # several reads of at most RECV_BYTES each
        assert await local.read_frame(rb) == small
        side_b.write_nowait(small)
        assert await local.read_frame(ra) == small
    finally:
        wa.close()
        wb.close()


def test_a_transport_without_the_attribute_or_already_smaller_is_left_as_it_is() -> None:
    other = SimpleNamespace()  # another event loop's transport
    small_reads(other)
    assert not hasattr(other, "max_size")
    smaller = SimpleNamespace(max_size=4096)
    small_reads(smaller)
    assert smaller.max_size == 4096


async def test_the_hook_wire_server_reads_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The node's end of the hook wire (a lone send is one read there): every accepted connection's transport.
    seen: list[int] = []

    class _Wire:
        async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.transport.max_size)  # type: ignore[attr-defined]
            writer.close()

    listener = HookListener(SimpleNamespace(), tmp_path / "hook.sock")

    async def wire() -> _Wire:
        return _Wire()

    monkeypatch.setattr(listener, "wire", wire)
    await listener.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "hook.sock"))
        assert await reader.read() == b""  # served (and closed) by the node's end
        writer.close()
    finally:
        await listener.close()
    assert seen == [RECV_BYTES]


async def test_the_clients_wire_lane_reads_small(tmp_path: Path) -> None:
    # The Client's end (a lone send's answer, a followed inbox's lines): the connection its lane opens.
    from mesh.client import _WireLane

    home = tmp_path / "node"
    home.mkdir(mode=0o700)
    path = home / "hook.sock"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    lane = _WireLane(str(path))
    try:
        _, writer = await lane._open()
        assert writer.transport.max_size == RECV_BYTES  # type: ignore[attr-defined]
    finally:
        lane.close()
        server.close()
        await server.wait_closed()
