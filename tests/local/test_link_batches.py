"""A link's writer packs the frames queued in one loop turn into one batch frame (only for a peer that reads
batches), in order, within the count and byte bounds, and never holds a lone frame back; the receiving side
unpacks them in order and refuses malformed batches. The write callable is the Link's own seam (a gRPC
stream's `write` in the node)."""

from __future__ import annotations

import asyncio

import pytest

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._runtime.links import LinkTable
from mesh._transport.peer import Link
from mesh.core import mailbox as mb
from mesh.core.errors import LimitExceeded, ProtocolError
from mesh.core.membership import PeerInfo

PEER = PeerInfo(node_id="p" * 16, incarnation="i" * 16, name="peer", role="", address="", started_at=1.0)


def _hb(i: int) -> pb.PeerFrame:
    return pb.PeerFrame(heartbeat=pb.Heartbeat(seq=i))


def _seqs(writes: list[pb.PeerFrame]) -> list[list[int]]:
    return [[f.heartbeat.seq for f in w.batch] if w.batch else [w.heartbeat.seq] for w in writes]


async def _drain(batches: bool, frames: list[pb.PeerFrame]) -> tuple[list[pb.PeerFrame], Link]:
    writes: list[pb.PeerFrame] = []

    async def write(f: pb.PeerFrame) -> None:
        writes.append(f)
        await asyncio.sleep(0)

    async def finish() -> None:
        return None

    link = Link(PEER, dialer=PEER.node_id, outbound=True, write=write, finish=finish, batches=batches)
    for f in frames:
        link.send(f)
    link.close()
    await asyncio.wait_for(link.run_writer(), 5)
    return writes, link


async def test_frames_queued_together_go_as_one_batch_in_order() -> None:
    writes, link = await _drain(True, [_hb(i) for i in range(5)])
    assert _seqs(writes) == [[0, 1, 2, 3, 4]]
    assert link.frames_out == 5


async def test_a_peer_that_does_not_read_batches_gets_frames_one_by_one() -> None:
    writes, link = await _drain(False, [_hb(i) for i in range(5)])
    assert _seqs(writes) == [[0], [1], [2], [3], [4]]
    assert link.frames_out == 5


async def test_a_lone_frame_is_written_alone_at_once() -> None:
    writes, _ = await _drain(True, [_hb(7)])
    assert _seqs(writes) == [[7]]
    assert not writes[0].batch


async def test_batches_stay_within_the_count_bound() -> None:
    n = limits.MAX_FRAME_BATCH * 2 + 3
    writes, link = await _drain(True, [_hb(i) for i in range(n)])
    assert [s for w in _seqs(writes) for s in w] == list(range(n))
    assert all(len(w.batch) <= limits.MAX_FRAME_BATCH for w in writes)
    assert link.frames_out == n


async def test_batches_stay_within_the_byte_bound_and_a_big_frame_goes_alone() -> None:
    big = pb.PeerFrame(leave=pb.Leave(reason="x" * (limits.FRAME_BATCH_BYTES // 3)))
    frames = [_hb(0), big, big, big, _hb(1), _hb(2)]
    writes, link = await _drain(True, frames)
    assert all(w.ByteSize() <= limits.FRAME_BATCH_BYTES + 64 for w in writes)
    flat = [f for w in writes for f in (w.batch or [w])]
    assert flat == frames  # nothing lost, nothing reordered
    assert link.frames_out == len(frames)
    huge = pb.PeerFrame(leave=pb.Leave(reason="y" * (limits.FRAME_BATCH_BYTES + 1)))
    writes, _ = await _drain(True, [huge, _hb(3)])
    assert writes[0] == huge


class _Direct:
    """A link over a transport whose writes only buffer (a local link's `write_now`); it records which frames
    left directly and which through the writer task, and can be made to refuse (the peer is behind)."""

    def __init__(self) -> None:
        self.direct: list[pb.PeerFrame] = []
        self.written: list[pb.PeerFrame] = []
        self.refuse = False

        async def write(f: pb.PeerFrame) -> None:
            self.written.append(f)

        async def finish() -> None:
            return None

        def write_now(f: pb.PeerFrame) -> bool:
            if self.refuse:
                return False
            self.direct.append(f)
            return True

        self.link = Link(PEER, dialer=PEER.node_id, outbound=True, write=write, finish=finish, batches=True,
                         write_now=write_now)  # fmt: skip

    def flat(self) -> list[pb.PeerFrame]:
        """Every frame that left, in the order the two ways wrote them (direct writes are synchronous)."""
        return [f for w in self.written for f in (w.batch or [w])]


async def _parked(link: Link) -> asyncio.Task[None]:
    """The link's writer task, once it waits on its empty queue (its first step)."""
    task = asyncio.ensure_future(link.run_writer())
    await asyncio.sleep(0)  # one loop turn: the task's first step runs up to its wait on the queue
    return task


async def test_a_lone_frame_leaves_at_once_when_the_writer_waits() -> None:
    d = _Direct()
    task = await _parked(d.link)
    d.link.send(_hb(1))
    assert _seqs(d.direct) == [[1]]  # written inside send(): no loop turn for the writer task
    assert d.link.frames_out == 1
    d.link.close()
    await asyncio.wait_for(task, 5)
    assert d.written == []


async def test_frames_after_a_direct_one_in_the_same_turn_go_as_one_batch_behind_it() -> None:
    d = _Direct()
    task = await _parked(d.link)
    for i in range(4):
        d.link.send(_hb(i))
    assert _seqs(d.direct) == [[0]]
    d.link.close()
    await asyncio.wait_for(task, 5)
    assert _seqs(d.written) == [[1, 2, 3]]
    assert d.link.frames_out == 4
    d2 = _Direct()  # the next turn's lone frame leaves directly again
    task = await _parked(d2.link)
    d2.link.send(_hb(5))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    d2.link.send(_hb(6))
    assert _seqs(d2.direct) == [[5], [6]]
    d2.link.close()
    await asyncio.wait_for(task, 5)


async def test_no_direct_write_while_frames_wait_in_the_queue_or_after_close() -> None:
    d = _Direct()
    d.link.send(_hb(0))  # no writer yet: queued
    task = asyncio.ensure_future(d.link.run_writer())
    d.link.send(_hb(1))  # the writer has not run: behind frame 0, in the queue
    d.refuse = True
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    d.link.send(_hb(2))  # the transport refuses (the peer is behind): the writer takes it
    d.refuse = False
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    d.link.close()
    d.link.send(_hb(3))  # after the close marker: never written
    await asyncio.wait_for(task, 5)
    assert d.direct == []
    assert [f.heartbeat.seq for f in d.flat()] == [0, 1, 2]


class _Hub:
    """The member hub's surface LinkTable.on_frame touches: `heard` only (heartbeat frames)."""

    def __init__(self) -> None:
        self.listeners: list[object] = []
        self.send_to = None
        self.heard: list[str] = []

        hub = self

        class Core:
            def heard(self, node_id: str, now: float) -> str:
                hub.heard.append(node_id)
                return node_id

        self.core = Core()

    def apply(self, _: object) -> None:
        return None


def _table() -> tuple[LinkTable, Link, _Hub]:
    hub = _Hub()
    me = PeerInfo(node_id="m" * 16, incarnation="j" * 16, name="me", role="", address="", started_at=1.0)
    table = LinkTable(me, hub, life=None, clock_now=lambda: 0.0)  # type: ignore[arg-type]

    async def nothing(*_: object) -> None:
        return None

    link = Link(PEER, dialer=PEER.node_id, outbound=False, write=nothing, finish=nothing)
    table.links[PEER.node_id] = link
    return table, link, hub


def test_a_received_batch_is_applied_frame_by_frame() -> None:
    table, link, hub = _table()
    table.on_frame(link, pb.PeerFrame(batch=[_hb(1), _hb(2), _hb(3)]))
    assert hub.heard == [PEER.node_id] * 3


@pytest.mark.parametrize(
    "bad",
    [
        pb.PeerFrame(batch=[pb.PeerFrame(batch=[_hb(1)])]),
        pb.PeerFrame(batch=[_hb(1)], heartbeat=pb.Heartbeat(seq=2)),
    ],
    ids=["nested", "batch-and-more"],
)
def test_a_malformed_batch_breaks_the_protocol(bad: pb.PeerFrame) -> None:
    table, link, _ = _table()
    with pytest.raises(ProtocolError):
        table.on_frame(link, bad)


def test_a_batch_over_the_count_bound_is_refused() -> None:
    table, link, hub = _table()
    with pytest.raises(LimitExceeded):
        table.on_frame(link, pb.PeerFrame(batch=[_hb(i) for i in range(limits.MAX_FRAME_BATCH + 1)]))
    assert hub.heard == []


class _Recorder:
    """A peer service that records each on_messages call."""

    accepts: tuple[type, ...] = (mb.MailAck,)

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def on_messages(self, peer: PeerInfo, msgs: list[object]) -> None:
        self.calls.append([m.upto for m in msgs])  # type: ignore[attr-defined]

    def on_link_up(self, peer: PeerInfo) -> None:
        return None

    def on_link_down(self, peer: PeerInfo) -> None:
        return None


def _ack(upto: int) -> pb.PeerFrame:
    return pb.PeerFrame(
        mail_acks=[pb.MailAck(from_node="m" * 16, to_node=PEER.node_id, stream="s", upto=upto)]
    )


def test_a_run_of_service_frames_reaches_the_service_as_one_list_in_order() -> None:
    table, link, hub = _table()
    rec = _Recorder()
    table.attach(rec)  # type: ignore[arg-type]
    table.on_frame(link, pb.PeerFrame(batch=[_ack(1), _ack(2), _hb(9), _ack(3), _ack(4), _ack(5)]))
    # The heartbeat frame is applied in its place: what came before it is delivered first.
    assert rec.calls == [[1, 2], [3, 4, 5]]
    assert hub.heard == [PEER.node_id] * 6
