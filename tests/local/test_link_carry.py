"""`LinkTable.carry`, the one read loop of every link transport (gRPC dialed, gRPC accepted, local): frames
are charged to the link's budget and applied in order; the link ends when the peer's frames end, when our side
closes it (even if the peer never ends its stream), or at the first frame that breaks the protocol (returned,
nothing after it applied); the writer flushes what was queued, and the link is down in the table every time.
`peer.frames` turns each transport's `read` into those frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._runtime.links import LinkTable
from mesh._transport.guard import Undecodable
from mesh._transport.peer import EOF, Link, frames
from mesh.core.errors import LimitExceeded, ProtocolError
from mesh.core.membership import PeerInfo

PEER = PeerInfo(node_id="p" * 16, incarnation="i" * 16, name="peer", role="", address="", started_at=1.0)
ME = PeerInfo(node_id="m" * 16, incarnation="j" * 16, name="me", role="", address="", started_at=1.0)


def _hb(i: int) -> pb.PeerFrame:
    return pb.PeerFrame(heartbeat=pb.Heartbeat(seq=i))


class _Hub:
    """The member hub's surface carry touches: `heard` (every frame) and `unlinked` (link_down)."""

    def __init__(self) -> None:
        self.listeners: list[object] = []
        self.beat_to: set[str] = set()
        self.heard: list[str] = []
        self.unlinked: list[str] = []
        hub = self

        class Core:
            members: dict[str, object] = {}

            def heard(self, node_id: str, now: float) -> None:
                hub.heard.append(node_id)

            def unlinked(self, node_id: str, now: float) -> None:
                hub.unlinked.append(node_id)

        self.core = Core()

    def apply(self, _: object) -> None:
        return None


class _Peer:
    """The far end of a link: what our writer wrote, and whether it finished (half-closed) the stream."""

    def __init__(self) -> None:
        self.got: list[pb.PeerFrame] = []
        self.finished = False

    async def write(self, f: pb.PeerFrame) -> None:
        self.got.append(f)

    async def finish(self) -> None:
        self.finished = True


def _table() -> tuple[LinkTable, Link, _Hub, _Peer]:
    hub = _Hub()
    table = LinkTable(ME, hub, SimpleNamespace(stopping=False), lambda: 0.0)  # type: ignore[arg-type]
    far = _Peer()
    link = Link(PEER, dialer=PEER.node_id, outbound=False, write=far.write, finish=far.finish)
    table.links[PEER.node_id] = link
    return table, link, hub, far


async def _each(
    items: list[pb.PeerFrame], then: Awaitable[object] | None = None, after: tuple[pb.PeerFrame, ...] = ()
) -> AsyncIterator[pb.PeerFrame]:
    for f in items:
        yield f
    if then is not None:
        await then  # the peer keeps its stream open until then
    for f in after:
        yield f


async def test_frames_are_applied_in_order_until_the_peer_ends_then_the_link_is_down() -> None:
    table, link, hub, far = _table()
    link.send(_hb(99))  # queued by us: flushed before the link goes
    assert await table.carry(link, _each([_hb(1), pb.PeerFrame(batch=[_hb(2), _hb(3)]), _hb(4)])) is None
    assert hub.heard == [PEER.node_id] * 4
    assert [f.heartbeat.seq for f in far.got] == [99] and far.finished
    assert PEER.node_id not in table.links and hub.unlinked == [PEER.node_id]


async def _close_while_open(table: LinkTable, link: Link, hub: _Hub, frames: AsyncIterator[pb.PeerFrame],
                            linger: float) -> None:  # fmt: skip
    """Carry `link` until its first frame is in, then close it from our side (a Leave last)."""
    carrying = asyncio.ensure_future(table.carry(link, frames, linger=linger))
    while not hub.heard:
        await asyncio.sleep(0)
    link.send(pb.PeerFrame(leave=pb.Leave(reason="bye")))
    link.close()
    async with asyncio.timeout(5):
        assert await carrying is None


@pytest.mark.parametrize("linger", [0.0, 0.05])
async def test_our_close_ends_the_link_though_the_peer_never_ends_its_stream(linger: float) -> None:
    table, link, hub, far = _table()
    forever = asyncio.get_running_loop().create_future()
    await _close_while_open(table, link, hub, _each([_hb(1)], forever), linger)
    assert [f.leave.reason for f in far.got] == ["bye"] and far.finished
    assert PEER.node_id not in table.links and hub.unlinked == [PEER.node_id]


@pytest.mark.parametrize(("linger", "heard"), [(1.0, 2), (0.0, 1)])
async def test_after_our_close_the_peer_is_read_until_it_ends_its_side_unless_no_linger(
    linger: float, heard: int
) -> None:
    """A peer that sees our end of stream ends its side, sending what it had first: it is read to that end
    (its last frame applied), so our last frames are not cut off at its side by a cancelled call either.
    With linger 0 (an accepted gRPC stream) the link ends with our writer."""
    table, link, hub, far = _table()

    async def sees_our_end() -> None:
        await link.closed.wait()
        await asyncio.sleep(0.01)  # the peer's reaction time: not within our writer's last turn

    frames = _each([_hb(1)], sees_our_end(), after=(_hb(2),))
    await _close_while_open(table, link, hub, frames, linger)
    assert len(hub.heard) == heard
    assert [f.leave.reason for f in far.got] == ["bye"] and far.finished
    assert PEER.node_id not in table.links and hub.unlinked == [PEER.node_id]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (pb.PeerFrame(batch=[pb.PeerFrame(batch=[_hb(1)])]), ProtocolError),
        (pb.PeerFrame(batch=[_hb(i) for i in range(limits.MAX_FRAME_BATCH + 1)]), LimitExceeded),
    ],
    ids=["nested-batch", "oversized-batch"],
)
async def test_a_frame_that_breaks_the_protocol_ends_the_link_and_is_returned(
    bad: pb.PeerFrame, error: type[Exception]
) -> None:
    table, link, hub, _ = _table()
    violation = await table.carry(link, _each([_hb(1), bad, _hb(2)]))
    assert isinstance(violation, error)
    assert hub.heard == [PEER.node_id]  # nothing after the bad frame is applied
    assert PEER.node_id not in table.links and hub.unlinked == [PEER.node_id]


async def test_a_peer_over_its_frame_budget_is_cut_off() -> None:
    table, link, hub, _ = _table()  # the clock stands still: no refill
    n = limits.LINK_FRAME_BURST
    violation = await table.carry(link, _each([_hb(i) for i in range(n + 10)]))
    assert isinstance(violation, LimitExceeded)
    assert len(hub.heard) == n
    assert PEER.node_id not in table.links


async def test_a_superseded_link_carried_to_its_end_leaves_its_twin_in_the_table() -> None:
    table, link, hub, _ = _table()
    twin = Link(PEER, dialer=ME.node_id, outbound=True, write=_Peer().write, finish=_Peer().finish)
    table.links[PEER.node_id] = twin
    assert await table.carry(link, _each([_hb(1)])) is None
    assert hub.heard == []  # frames of a superseded link are not applied
    assert table.links[PEER.node_id] is twin and hub.unlinked == []


def _reads(*answers: Any) -> Callable[[], Awaitable[Any]]:
    it = iter(answers)

    async def read() -> Any:
        a = next(it)
        if isinstance(a, BaseException):
            raise a
        return a

    return read


class _Broken(grpc.aio.AioRpcError):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone")


@pytest.mark.parametrize(
    "end",
    [EOF, None, ConnectionResetError("cut mid-frame"), _Broken()],
    ids=["eof", "none", "oserror", "rpc"],
)
async def test_frames_of_a_transport_end_at_its_end_or_when_it_breaks(end: Any) -> None:
    got = [f async for f in frames(_reads(_hb(1), _hb(2), end, _hb(3)))]
    assert [f.heartbeat.seq for f in got] == [1, 2]


async def test_an_undecodable_frame_breaks_the_protocol() -> None:
    it = frames(_reads(_hb(1), Undecodable("junk"), _hb(3)))
    assert (await anext(it)).heartbeat.seq == 1
    with pytest.raises(ProtocolError, match="undecodable frame: junk"):
        await anext(it)
