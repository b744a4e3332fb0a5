"""Board replication: the sync rules (mesh.core.boardsync) and the real BoardService on an in-memory network.

The services here are the node's own (mesh/_services/board.py) with their real SQLite stores; only the
links are simulated: every frame goes through the real codec (encode, decode, validate) and arrives in
order per link, or is lost when the test says so. What is checked: replicas that have exchanged sync
messages show the same board, whatever was lost while links were up; relays work without a direct link;
restarts come back from the store; a bad batch saves what it applied and breaks the link.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._services.board import DIGEST_FANOUT, BoardService
from mesh._transport import codec
from mesh.core import board as bd
from mesh.core.boardsync import (
    BATCH_BYTES,
    SyncDigest,
    SyncRequest,
    context_digest,
    delta_batches,
    lacks,
    op_size,
)
from mesh.core.errors import InvalidField, LimitExceeded, ProtocolError, UnknownId
from mesh.core.identity import Identity
from mesh.core.membership import Liveness, LivenessChanged, Member, PeerInfo
from mesh.testing.clock import ManualClock
from mesh.views import BoardEvent

T0 = 1_700_000_000_000


# ---------------------------------------------------------------- the pure rules


def test_digest_is_equal_for_equal_contexts_and_differs_otherwise() -> None:
    a, b = bd.Board("aaaaaaaa"), bd.Board("bbbbbbbb")
    assert context_digest(a.context()) == context_digest(b.context())
    op = a.add_task(T0, "x")
    assert context_digest(a.context()) != context_digest(b.context())
    b.apply(op)
    assert context_digest(a.context()) == context_digest(b.context())
    assert len(context_digest(a.context())) == 16


def test_lacks_sees_longer_prefixes_and_unknown_dots() -> None:
    mine = bd.Context((("aaaaaaaa", 3),), (("bbbbbbbb", 5),))
    assert not lacks(mine, bd.Context((("aaaaaaaa", 3),)))
    assert not lacks(mine, bd.Context((("aaaaaaaa", 2),), (("bbbbbbbb", 5),)))
    assert lacks(mine, bd.Context((("aaaaaaaa", 4),)))
    assert lacks(mine, bd.Context((), (("bbbbbbbb", 6),)))
    assert lacks(mine, bd.Context((("cccccccc", 1),)))


def test_delta_batches_bound_ops_and_bytes_and_carry_the_context_last() -> None:
    a = bd.Board("aaaaaaaa")
    for k in range(30):
        a.add_milestone(T0 + k, "m" * 200, steps=["s" * 200] * 50, note="n" * 2000)
    for k in range(1200):
        a.add_task(T0 + 100 + k, f"task {k}")
    delta = a.delta_for(bd.Context())
    batches = delta_batches(delta)
    assert [op for b in batches for op in b.ops] == list(delta.ops)
    assert all(b.context is None for b in batches[:-1]) and batches[-1].context == delta.context
    for b in batches:
        assert 1 <= len(b.ops) <= 500 and sum(op_size(op) for op in b.ops) <= BATCH_BYTES
        assert codec.frame_of([b]).ByteSize() < limits.MAX_MESSAGE_BYTES // 2
    assert delta_batches(bd.Delta((), bd.Context())) == [bd.Delta((), bd.Context())]


def test_op_size_bounds_the_encoded_size() -> None:
    a = bd.Board("aaaaaaaa")
    ops = [
        a.add_milestone(T0, "€" * 200, steps=["😀" * 200] * 50, note="é" * 1000),
        a.add_task(T0 + 1, "t", note="x" * 2048, role="dev"),
    ]
    for op in ops:
        assert codec.board_op_to_pb(op).ByteSize() <= op_size(op)


# ---------------------------------------------------------------- the codec (peer links)


def test_codec_round_trips_deltas_and_syncs() -> None:
    a = bd.Board("aaaaaaaa")
    ms = a.add_milestone(T0, "m", steps=["one"])
    ops = [ms, a.add_task(T0 + 1, "t", milestone=ms.id, step="1", role="r", note="multi\nline")]
    ops.append(a.edit_task(T0 + 2, ops[1].id, priority="P0", note=""))
    ops.append(a.done(T0 + 3, ops[1].id))
    msgs: list[object] = [bd.Delta(tuple(ops), a.context()), SyncRequest("aaaaaaaa", a.context())]
    assert codec.service_messages(codec.frame_of(msgs)) == msgs
    digest = SyncDigest("aaaaaaaa", context_digest(a.context()))
    assert codec.service_messages(codec.frame_of([bd.Delta((), None), digest])) == [
        bd.Delta((), None),
        digest,
    ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda f: setattr(f.board.ops[0], "body", "{not json"), ProtocolError),
        (lambda f: setattr(f.board.ops[0], "body", "[" * 5000 + "]" * 5000), ProtocolError),
        (lambda f: setattr(f.board.ops[0], "body", '{"title": ""}'), ProtocolError),
        (lambda f: setattr(f.board.ops[0], "body", '{"title": 7}'), ProtocolError),
        (lambda f: setattr(f.board.ops[0], "kind", "task.explode"), ProtocolError),
        (lambda f: setattr(f.board.ops[0], "origin", "NOT-A-REPLICA"), ProtocolError),
        (lambda f: setattr(f.board.ops[0], "seq", 0), ProtocolError),
        (lambda f: setattr(f.board.ops[0], "body", '{"title": "' + "x" * 70_000 + '"}'), ProtocolError),
        (lambda f: f.board.ops.extend([f.board.ops[0]] * limits.BOARD_OPS_PER_FRAME), LimitExceeded),
        (lambda f: f.board.context.vv.add(replica="aaaaaaaa", seq=2**60), ProtocolError),
        (lambda f: f.board_sync.CopyFrom(pb.BoardSync(replica="aaaaaaaa", digest=b"short")), ProtocolError),
        (lambda f: f.board_sync.CopyFrom(pb.BoardSync(replica="x", digest=b"0" * 16)), ProtocolError),
        (
            lambda f: f.board.context.dots.extend(
                [pb.ReplicaSeq(replica="aaaaaaaa", seq=k + 5) for k in range(limits.BOARD_CONTEXT_MAX)]
            ),
            LimitExceeded,
        ),
    ],
)
def test_codec_refuses_what_a_peer_must_not_send(change: Callable[[pb.PeerFrame], Any], error: type) -> None:
    a = bd.Board("aaaaaaaa")
    f = codec.frame_of([bd.Delta((a.add_task(T0, "t"),), a.context())])
    change(f)
    with pytest.raises(error):
        codec.service_messages(pb.PeerFrame.FromString(f.SerializeToString()))


# ---------------------------------------------------------------- services on an in-memory network


class Net:
    """Links between services: frames in order per direction, through the real codec; lost on demand."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: dict[str, Node] = {}
        self.links: set[frozenset[str]] = set()
        self.queues: dict[tuple[str, str], deque[pb.PeerFrame]] = {}
        self.lose = False
        self.rng = random.Random(seed)

    def send(self, src: str, dst: str, msgs: tuple[object, ...]) -> bool:
        if frozenset((src, dst)) not in self.links:
            return False
        if not self.lose:
            self.queues.setdefault((src, dst), deque()).append(codec.frame_of(msgs))
        return True

    def connect(self, a: str, b: str) -> None:
        self.links.add(frozenset((a, b)))
        for x, y in ((a, b), (b, a)):
            self.nodes[x].svc.on_link_up(self.nodes[y].info)

    def cut(self, a: str, b: str) -> None:
        self.links.discard(frozenset((a, b)))
        for x, y in ((a, b), (b, a)):
            self.queues.pop((x, y), None)
            self.nodes[x].svc.on_link_down(self.nodes[y].info)

    def run(self) -> int:
        """Deliver until quiet, links interleaved at random; returns frames delivered."""
        n = 0
        while busy := [k for k, q in self.queues.items() if q]:
            src, dst = self.rng.choice(busy)
            f = self.queues[(src, dst)].popleft()
            wire = pb.PeerFrame.FromString(f.SerializeToString())
            self.nodes[dst].svc.on_messages(self.nodes[src].info, codec.service_messages(wire))
            n += 1
        return n

    def gossip(self) -> None:
        """One digest round on every node, then quiet."""
        for node in self.nodes.values():
            node.svc.send_digests()
        self.run()


class Node:
    """What the runtime lends a board service (a ServiceContext), backed by the test's network."""

    def __init__(self, net: Net, name: str, home: Path) -> None:
        self.net = net
        self.name = name
        self.mesh = "test"
        self.home = home
        self.state_dir = home / name
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.info = PeerInfo(f"id-{name}", "inc", name)
        self.me = self.info
        self.identity = Identity(self.info.node_id, "inc")
        self.clock = ManualClock(100.0)
        self.events: list[BoardEvent] = []
        self.listeners: list[Any] = []
        net.nodes[name] = self
        self.svc = BoardService(self)  # type: ignore[arg-type]

    def spawn(self, coro: Any, name: str) -> Any:
        coro.close()

    def send(self, node_id: str, *msgs: object, droppable: bool = False) -> bool:
        return self.net.send(self.name, node_id.removeprefix("id-"), msgs)

    @property
    def members(self) -> Any:
        """The member table as the service reads it: every node of the net, live."""
        net, me = self.net, self.name

        class Table:
            def live(self) -> list[Member]:
                return [
                    Member(n.info, Liveness.ALIVE, 0.0, 0.0, is_self=n.name == me) for n in net.nodes.values()
                ]

        return Table()

    def linked(self, node_id: str) -> bool:
        return frozenset((self.name, node_id.removeprefix("id-"))) in self.net.links

    def broadcast(self, *msgs: object, droppable: bool = False) -> None:
        for link in self.net.links:
            if self.name in link:
                (other,) = link - {self.name}
                self.net.send(self.name, other, msgs)

    def publish_event(self, event: Any) -> None:
        self.events.append(event)

    def on_member(self, listener: Any) -> None:
        self.listeners.append(listener)

    def restart(self) -> None:
        self.svc.close()
        self.svc = BoardService(self)  # type: ignore[arg-type]

    def view(self) -> dict[str, Any]:
        return self.svc.board.view(include_dropped=True).to_json()


def edit(node: Node, make: Callable[[bd.Board, int], bd.Op]) -> bd.Op:
    """A local verb through the service (durable, then sent), as the node's API runs it."""

    async def run() -> bd.Op:
        op = await node.svc.edit(make)
        await asyncio.sleep(0)  # the service sends a loop turn after the verb's answer
        return op

    return asyncio.run(run())


def nodes(tmp_path: Path, *names: str, seed: int = 0) -> tuple[Net, list[Node]]:
    net = Net(seed)
    return net, [Node(net, n, tmp_path) for n in names]


def same(*ns: Node) -> bool:
    views = [n.view() for n in ns]
    contexts = [n.svc.board.context() for n in ns]
    return all(v == views[0] for v in views) and all(c == contexts[0] for c in contexts)


def test_live_edits_reach_linked_peers_and_are_durable_first(tmp_path: Path) -> None:
    net, (a, b) = nodes(tmp_path, "a", "b")
    net.connect("a", "b")
    net.run()
    op = edit(a, lambda brd, now: brd.add_task(now, "hello", priority="P1"))
    assert a.svc.store.count() == 1  # saved before anything left the node
    assert net.run() == 1
    assert same(a, b) and [t["title"] for t in b.view()["tasks"]] == ["hello"]
    assert [(e.change, e.id, e.local) for e in a.events] == [("task.add", op.id, True)]
    assert [(e.change, e.id, e.title, e.state, e.local) for e in b.events] == [
        ("task.add", op.id, "hello", "open", False)
    ]


def test_edits_of_one_moment_share_a_transaction_and_a_frame(tmp_path: Path) -> None:
    net, (a, b) = nodes(tmp_path, "a", "b")
    net.connect("a", "b")
    net.run()
    saves: list[int] = []
    save = a.svc.store.save
    a.svc.store.save = lambda ops, obsolete, ctx: (saves.append(len(list(ops))), save(ops, obsolete, ctx))[1]

    async def burst() -> list[bd.Op]:
        return await asyncio.gather(
            *(a.svc.edit(lambda brd, now, k=k: brd.add_task(now, f"t{k}")) for k in range(100))
        )

    ops = asyncio.run(burst())
    assert saves == [100] and a.svc.store.count() == 100
    assert net.run() == 1 and same(a, b)
    assert [e.id for e in a.events] == [op.id for op in ops]


def test_a_failed_commit_fails_its_edits_and_shows_nothing_unsaved(tmp_path: Path) -> None:
    net, (a, b) = nodes(tmp_path, "a", "b")
    net.connect("a", "b")
    edit(a, lambda brd, now: brd.add_task(now, "saved"))
    net.run()

    def full(*args: Any) -> None:
        raise OSError("disk full")

    a.svc.store.save = full  # type: ignore[method-assign]

    async def burst() -> list[Any]:
        return await asyncio.gather(
            *(a.svc.edit(lambda brd, now, k=k: brd.add_task(now, f"t{k}")) for k in range(3)),
            return_exceptions=True,
        )

    assert all(isinstance(r, OSError) for r in asyncio.run(burst()))
    assert [t["title"] for t in a.view()["tasks"]] == ["saved"] and net.run() == 0 and same(a, b)


def test_a_refused_local_verb_changes_nothing(tmp_path: Path) -> None:
    net, (a, _b) = nodes(tmp_path, "a", "b")
    net.connect("a", "b")
    net.run()
    with pytest.raises(InvalidField):
        edit(a, lambda brd, now: brd.add_task(now, ""))
    with pytest.raises(UnknownId):
        edit(a, lambda brd, now: brd.done(now, "zzzz-1"))
    assert net.run() == 0 and a.svc.store.count() == 0 and a.view()["tasks"] == []


def test_replicas_that_edited_apart_converge_when_linked(tmp_path: Path) -> None:
    net, (a, b) = nodes(tmp_path, "a", "b")
    for k in range(50):
        edit(a, lambda brd, now, k=k: brd.add_task(now, f"a{k}"))
        edit(b, lambda brd, now, k=k: brd.add_task(now, f"b{k}"))
    net.connect("a", "b")
    net.run()
    assert same(a, b) and len(a.view()["tasks"]) == 100
    assert net.run() == 0
    net.gossip()
    assert same(a, b)


def test_frames_lost_on_a_link_that_stayed_up_are_found_by_digests(tmp_path: Path) -> None:
    net, (a, b) = nodes(tmp_path, "a", "b")
    net.connect("a", "b")
    net.run()
    net.lose = True  # a partition the links did not notice
    edit(a, lambda brd, now: brd.add_task(now, "lost on the way"))
    edit(b, lambda brd, now: brd.add_milestone(now, "lost too"))
    net.lose = False
    net.run()
    assert not same(a, b)
    net.gossip()
    assert same(a, b) and len(a.view()["tasks"]) == 1 and len(a.view()["milestones"]) == 1


def test_digests_to_a_few_random_peers_converge_and_cost_the_same_in_any_mesh(tmp_path: Path) -> None:
    names = [f"n{i}" for i in range(10)]
    net, ns = nodes(tmp_path, *names)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            net.connect(x, y)
    net.run()
    net.lose = True  # every delta lost: only the digest rounds can spread the two edits
    edit(ns[0], lambda brd, now: brd.add_task(now, "lost on the way"))
    edit(ns[5], lambda brd, now: brd.add_milestone(now, "lost too"))
    net.lose = False
    net.run()
    random.seed(7)
    rounds = 0
    while not same(*ns):
        rounds += 1
        assert rounds <= 10, "digests to random peers did not converge within 10 rounds"
        sent = {}
        for node in ns:
            before = sum(len(q) for (src, _), q in net.queues.items() if src == node.name)
            node.svc.send_digests(DIGEST_FANOUT)
            sent[node.name] = sum(len(q) for (src, _), q in net.queues.items() if src == node.name) - before
        assert max(sent.values()) <= DIGEST_FANOUT  # per node per round, whatever the mesh size
        net.run()
    assert len(ns[9].view()["tasks"]) == 1 and len(ns[9].view()["milestones"]) == 1


def test_a_peer_heard_again_is_asked_at_once(tmp_path: Path) -> None:
    net, (a, b) = nodes(tmp_path, "a", "b")
    net.connect("a", "b")
    net.run()
    net.lose = True
    edit(a, lambda brd, now: brd.add_task(now, "during the silence"))
    net.lose = False
    member = Member(a.info, Liveness.ALIVE, 0.0, 0.0)
    for listener in b.listeners:  # b's membership: a was suspect and is heard again
        listener(LivenessChanged(a.info.node_id, Liveness.SUSPECT, Liveness.ALIVE), member)
    net.run()
    assert same(a, b)


def test_edits_travel_through_a_node_without_a_direct_link(tmp_path: Path) -> None:
    net, (a, b, c) = nodes(tmp_path, "a", "b", "c")
    net.connect("a", "b")
    net.connect("b", "c")
    net.run()
    edit(a, lambda brd, now: brd.add_task(now, "from a"))
    edit(c, lambda brd, now: brd.add_task(now, "from c"))
    net.run()
    net.gossip()
    net.gossip()
    assert same(a, b, c) and len(c.view()["tasks"]) == 2


def test_a_restarted_node_comes_back_from_its_store_and_catches_up(tmp_path: Path) -> None:
    net, (a, b) = nodes(tmp_path, "a", "b")
    net.connect("a", "b")
    t = edit(a, lambda brd, now: brd.add_task(now, "kept"))
    net.run()
    net.cut("a", "b")
    b.restart()
    assert b.view() == a.view() and b.svc.board.context() == a.svc.board.context()
    for k in range(1000):  # b misses 1,000 edits
        edit(a, lambda brd, now, k=k: brd.edit_task(now, t.id, title=f"edit {k}", note=str(k)))
    a.restart()
    assert a.svc.store.count() < 10  # superseded edits were deleted from the store as they lost
    net.connect("a", "b")
    frames = net.run()
    assert same(a, b) and b.view()["tasks"][0]["title"] == "edit 999"
    assert frames <= 4
    assert [e.change for e in b.events][-1:] in (["task.edit"], ["sync"])


def test_a_bad_op_in_a_batch_keeps_what_was_applied_and_breaks_the_link(tmp_path: Path) -> None:
    _net, (a, b) = nodes(tmp_path, "a", "b")
    good = edit(a, lambda brd, now: brd.add_task(now, "good"))
    b.svc.on_messages(a.info, [bd.Delta((good,), None)])
    other = bd.Board("zzzzzzzz")
    clash = bd.Op(good.origin, good.seq, good.stamp, bd.AddTask("same id, other content"))
    with pytest.raises(ProtocolError):
        b.svc.on_messages(a.info, [bd.Delta((other.add_task(T0, "fine"), clash), None)])
    assert sorted(t["title"] for t in b.view()["tasks"]) == ["fine", "good"]
    shown, context = b.view(), b.svc.board.context()
    b.restart()  # what is stored agrees with what was shown
    assert b.view() == shown and b.svc.board.context() == context


def test_a_peer_over_its_rates_loses_the_link(tmp_path: Path) -> None:
    net, (a, b) = nodes(tmp_path, "a", "b")
    net.connect("a", "b")
    net.run()
    req = SyncRequest("zzzzzzzz", bd.Context())
    with pytest.raises(LimitExceeded):
        for _ in range(limits.BOARD_SYNC_BURST + 1):
            b.svc.on_messages(a.info, [req])
    net.queues.clear()
    src = bd.Board("zzzzzzzz")
    ops = tuple(src.add_task(T0 + k, "t") for k in range(500))
    with pytest.raises(LimitExceeded):
        for _ in range(limits.BOARD_OP_BURST // 500 + 1):
            b.svc.on_messages(a.info, [bd.Delta(ops, None)])


def test_compaction_forgets_old_tombstones_in_the_store_too(tmp_path: Path) -> None:
    _net, (a,) = nodes(tmp_path, "a")
    t = edit(a, lambda brd, now: brd.add_task(now, "old"))
    edit(a, lambda brd, now: brd.drop(now, t.id))
    assert a.svc.compact() == 0  # not old enough
    assert a.svc.compact(horizon_ms=10**13) == 2
    a.restart()
    assert a.view()["tasks"] == [] and t.id in a.svc.board.purged


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_history_of_edits_links_and_losses_converges(tmp_path_factory: Any, data: st.DataObject) -> None:
    home = tmp_path_factory.mktemp("sync")
    names = ["a", "b", "c"]
    net, ns = nodes(home, *names, seed=data.draw(st.integers(0, 1000)))
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        step = data.draw(
            st.sampled_from(["edit", "edit", "edit", "link", "cut", "lose", "deliver", "restart"])
        )
        x, y = data.draw(st.permutations(names))[:2]
        node = net.nodes[x]
        if step == "edit":
            tasks = [t["id"] for t in node.view()["tasks"] if t["state"] != "dropped"]
            verb = data.draw(st.sampled_from(["add", "title", "done", "drop"] if tasks else ["add"]))
            tid = data.draw(st.sampled_from(tasks)) if tasks else ""
            title = data.draw(st.sampled_from(["p", "q", "r"]))
            make = {
                "add": lambda brd, now, title=title: brd.add_task(now, title),
                "title": lambda brd, now, tid=tid, title=title: brd.edit_task(now, tid, title=title),
                "done": lambda brd, now, tid=tid: brd.done(now, tid),
                "drop": lambda brd, now, tid=tid: brd.drop(now, tid),
            }[verb]
            edit(node, make)
        elif step == "link" and frozenset((x, y)) not in net.links:
            net.connect(x, y)
        elif step == "cut" and frozenset((x, y)) in net.links:
            net.cut(x, y)
        elif step == "lose":
            net.lose = not net.lose
        elif step == "deliver":
            net.run()
        elif step == "restart":
            for other in names:
                if frozenset((x, other)) in net.links:
                    net.cut(x, other)
            node.restart()
    # Heal: every link up, nothing lost; a digest round; everyone shows the same board.
    net.lose = False
    net.run()
    for x, y in (("a", "b"), ("b", "c"), ("a", "c")):
        if frozenset((x, y)) not in net.links:
            net.connect(x, y)
    net.run()
    net.gossip()
    assert same(*ns)
