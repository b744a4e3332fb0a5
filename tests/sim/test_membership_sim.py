"""Failure detection with k watchers, simulated: many membership cores on a seeded network.

Each simulated node is a `Membership` core plus the little the runtime adds (beats to the peers that asked,
frames carried to the core). The network delays frames, drops some while lossy, and cuts groups apart; a
crashed node stops without a trace (no refused port: only the watchers' silence can find it). After the
network heals, every live node must see every other live node alive, and the crashed one dead, everywhere.
A failure prints its seed.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

import pytest

from mesh.core.membership import Liveness, Membership, PeerInfo, Spread, Timing, Verdict, WatchingChanged
from mesh.core.watch import RELAY_FANOUT

T = Timing(heartbeat_interval=1.0, suspect_after=3.0, dead_after=10.0, forget_after=900.0, tick_interval=0.25)


@dataclass
class SimNode:
    core: Membership
    beat_to: set[str] = field(default_factory=set)
    crashed: bool = False
    paused_until: float = 0.0
    inbox: list[tuple[str, object]] = field(default_factory=list)  # held while paused


@dataclass
class Net:
    rng: random.Random
    nodes: dict[str, SimNode]
    t: float = 0.0
    drop: float = 0.0
    groups: list[set[str]] | None = None
    queue: list[tuple[float, int, str, str, object]] = field(default_factory=list)
    n_sent: int = 0
    last_at: dict[tuple[str, str], float] = field(default_factory=dict)

    def cut(self, a: str, b: str) -> bool:
        return self.groups is not None and not any(a in g and b in g for g in self.groups)

    def send(self, src: str, dst: str, msg: object) -> None:
        if self.cut(src, dst) or self.rng.random() < self.drop:
            return
        self.n_sent += 1
        # A link is an ordered stream: delays vary, but a frame never overtakes an earlier one on its link.
        at = max(self.t + self.rng.uniform(0.001, 0.08), self.last_at.get((src, dst), 0.0))
        self.last_at[(src, dst)] = at
        heapq.heappush(self.queue, (at, self.n_sent, src, dst, msg))

    def linked(self, nid: str) -> list[str]:
        return [d for d in self.nodes if d != nid]

    def carry_out(self, nid: str) -> None:
        node = self.nodes[nid]
        for out in node.core.outgoing():
            if isinstance(out, Spread):
                if out.relay:  # as the runtime's LinkTable.relay: a few linked peers at random
                    peers = self.linked(nid)
                    dsts = self.rng.sample(peers, min(RELAY_FANOUT, len(peers)))
                else:
                    dsts = [out.to] if out.to else self.linked(nid)
                for dst in dsts:
                    self.send(nid, dst, out.verdict)
            elif isinstance(out, WatchingChanged):
                for dst in out.start:
                    self.send(nid, dst, ("watch", True))
                for dst in out.stop:
                    self.send(nid, dst, ("watch", False))

    def receive(self, src: str, dst: str, msg: object) -> None:
        node = self.nodes[dst]
        if node.crashed:
            return
        if node.paused_until > self.t:
            node.inbox.append((src, msg))
            return
        local = self.t
        node.core.heard(src, local)
        if isinstance(msg, Verdict):
            node.core.verdict(msg, local)
        elif isinstance(msg, tuple) and msg[0] == "watch":
            if msg[1]:
                node.beat_to.add(src)
            else:
                node.beat_to.discard(src)
        self.carry_out(dst)

    def run(self, until: float, step: float = 0.25) -> None:
        while self.t < until:
            self.t = round(self.t + step, 6)
            while self.queue and self.queue[0][0] <= self.t:
                _, _, src, dst, msg = heapq.heappop(self.queue)
                self.receive(src, dst, msg)
            beat = abs(self.t - round(self.t)) < 1e-9
            for nid, node in self.nodes.items():
                if node.crashed or node.paused_until > self.t:
                    continue
                for src, msg in node.inbox:
                    self.receive(src, nid, msg)
                node.inbox.clear()
                node.core.tick(self.t)
                if beat:
                    for dst in sorted(node.beat_to):  # (sets iterate by hash: keep seeds repeatable)
                        if node.core.members[dst].state in (Liveness.ALIVE, Liveness.SUSPECT):
                            self.send(nid, dst, "hb")
                self.carry_out(nid)


def mesh_of(n: int, seed: int) -> Net:
    rng = random.Random(seed)
    infos = [PeerInfo(f"n{rng.randrange(16**6):06x}{i}", f"i{i}", f"node{i}") for i in range(n)]
    nodes = {p.node_id: SimNode(Membership(me=p, timing=T, now=0.0)) for p in infos}
    net = Net(rng, nodes)
    for p in infos:
        for q in infos:
            if p is not q:
                nodes[p.node_id].core.hello(q, None, 0.0)
    for nid in nodes:
        net.carry_out(nid)
    return net


def views(net: Net, of: str) -> dict[str, Liveness]:
    return {nid: n.core.members[of].state for nid, n in net.nodes.items() if not n.crashed and nid != of}


def assert_settled(net: Net, victim: str, what: str) -> None:
    """Every live node sees every other live one alive, and the crashed `victim` dead everywhere."""
    live = [nid for nid, n in net.nodes.items() if not n.crashed]
    for nid in live:
        wrong = {o: s for o, s in views(net, nid).items() if s is not Liveness.ALIVE}
        assert not wrong, f"{what}: live {nid} seen as {wrong}"
    assert set(views(net, victim).values()) == {Liveness.DEAD}, f"{what}: crashed not dead everywhere"


@pytest.mark.parametrize("seed", range(12))
def test_lossy_partitioned_healed_no_false_dead_and_the_crashed_is_dead_everywhere(seed: int) -> None:
    net = mesh_of(9, seed)
    ids = list(net.nodes)
    net.rng.shuffle(ids)
    net.run(5.0)
    net.drop = 0.1  # lossy: beats, verdicts and refutations all get lost now and then
    net.run(25.0)
    victim = ids[0]
    net.nodes[victim].crashed = True
    paused = ids[1]
    net.nodes[paused].paused_until = net.t + 6.0  # a stall longer than suspect_after, shorter than dead_after
    split = set(ids[2 : 2 + net.rng.randrange(1, 4)])
    net.groups = [split, set(ids) - split]
    net.run(50.0)
    net.groups, net.drop = None, 0.0
    net.run(90.0)
    assert_settled(net, victim, f"seed {seed}, after the heal")


@pytest.mark.parametrize("seed", range(6))
def test_a_crash_is_found_by_its_watchers_alone_within_dead_after(seed: int) -> None:
    net = mesh_of(12, seed)
    net.run(5.0)
    victim = next(iter(net.nodes))
    net.nodes[victim].crashed = True
    t0 = net.t
    while set(views(net, victim).values()) != {Liveness.DEAD}:
        net.run(net.t + 0.25)
        assert net.t - t0 <= T.dead_after + 1.0, f"seed {seed}: not dead everywhere after {net.t - t0:.2f}s"
    # Quiet meshes stay cheap: per node and second, about k beats out (not n-1).
    sent0, t1 = net.n_sent, net.t
    net.run(t1 + 20.0)
    per_node_s = (net.n_sent - sent0) / (len(net.nodes) - 1) / 20.0
    assert per_node_s <= T.watchers + 0.5, f"seed {seed}: {per_node_s:.1f} frames/s per node"


@dataclass
class HearsayNet(Net):
    """A mesh where some pairs never linked: each knows the other only from gossip (`learned`). Frames
    between them are never carried; a verdict reminder or a watch request one sends the other dials it
    instead (the runtime's `LinkTable.ensure`), which links the pair if the other is up (held while it is
    paused, lost if crashed)."""

    unlinked: set[frozenset[str]] = field(default_factory=set)
    dial_time: tuple[float, float] = (0.0, 0.0)  # extra seconds a dial takes (a TLS handshake under load)

    def send(self, src: str, dst: str, msg: object) -> None:
        if frozenset((src, dst)) in self.unlinked and (msg != "dial" or self.cut(src, dst)):
            return
        if msg == "dial" and self.dial_time[1] > 0:
            self.n_sent += 1
            at = self.t + self.rng.uniform(*self.dial_time)
            heapq.heappush(self.queue, (at, self.n_sent, src, dst, msg))
            return
        super().send(src, dst, msg)

    def linked(self, nid: str) -> list[str]:
        return [d for d in self.nodes if d != nid and frozenset((nid, d)) not in self.unlinked]

    def carry_out(self, nid: str) -> None:
        node = self.nodes[nid]
        outs = node.core.outgoing()
        for out in outs:
            if isinstance(out, Spread) and out.to and frozenset((nid, out.to)) in self.unlinked:
                self.send(nid, out.to, "dial")
            if isinstance(out, WatchingChanged):
                for dst in out.start:
                    if frozenset((nid, dst)) in self.unlinked:
                        self.send(nid, dst, "dial")
        node.core._out[:0] = outs  # the rest as any net carries it (the reminders are lost: no link yet)
        super().carry_out(nid)

    def receive(self, src: str, dst: str, msg: object) -> None:
        if msg != "dial":
            super().receive(src, dst, msg)
            return
        node = self.nodes[dst]
        if node.crashed:
            return
        if node.paused_until > self.t:
            node.inbox.append((src, msg))
            return
        pair = frozenset((src, dst))
        if pair in self.unlinked:
            self.unlinked.discard(pair)
            for x, y in ((node, self.nodes[src]), (self.nodes[src], node)):
                x.core.hello(y.core.me, None, self.t)
                if y.core.me.node_id in x.core.watching:  # a new link carries the watch request again
                    self.send(x.core.me.node_id, y.core.me.node_id, ("watch", True))
            self.carry_out(src)
            self.carry_out(dst)


def hearsay_mesh_of(
    n: int, seed: int, unlinked_per_node: int, dial_time: tuple[float, float] = (0.0, 0.0)
) -> HearsayNet:
    rng = random.Random(seed)
    infos = [PeerInfo(f"n{rng.randrange(16**6):06x}{i}", f"i{i}", f"node{i}") for i in range(n)]
    nodes = {p.node_id: SimNode(Membership(me=p, timing=T, now=0.0)) for p in infos}
    net = HearsayNet(rng, nodes, dial_time=dial_time)
    ids = [p.node_id for p in infos]
    for a in ids:
        for b in rng.sample([x for x in ids if x != a], unlinked_per_node):
            net.unlinked.add(frozenset((a, b)))
    for p in infos:
        for q in infos:
            if p is not q:
                core = nodes[p.node_id].core
                if frozenset((p.node_id, q.node_id)) in net.unlinked:
                    core.learned(q, 0.0)
                else:
                    core.hello(q, None, 0.0)
    for nid in nodes:
        net.carry_out(nid)
    return net


@pytest.mark.parametrize("seed", range(12))
def test_hearsay_members_no_false_dead_and_the_crashed_is_dead_everywhere(seed: int) -> None:
    net = hearsay_mesh_of(12, seed, unlinked_per_node=3)
    ids = list(net.nodes)
    net.rng.shuffle(ids)
    net.run(5.0)
    net.drop = 0.05
    net.run(20.0)
    # Each known by hearsay only to someone still: only verdicts (and a dial) can tell that node about it.
    known_by_hearsay = [x for x in ids if any(x in pair for pair in net.unlinked)]
    assert len(known_by_hearsay) >= 2, f"seed {seed}: every pair got linked"
    victim, paused = known_by_hearsay[:2]
    net.nodes[victim].crashed = True
    net.nodes[paused].paused_until = net.t + 6.0  # suspected by its watchers, then back: it must refute
    net.run(60.0)
    net.drop = 0.0
    net.run(100.0)
    assert_settled(net, victim, f"seed {seed}")


@pytest.mark.parametrize("seed", range(8))
def test_watched_hearsay_members_with_slow_dials_are_not_suspected_as_the_mesh_forms(seed: int) -> None:
    # A mesh forming at once: most pairs know each other only by gossip, and every dial a watcher makes for
    # its members' beats takes longer than suspect_after (but less than dead_after). Without the dial grace
    # each of those watchers suspected a live member (and "all list all alive" waited for refutations).
    slow = (T.suspect_after + 0.5, T.dead_after - 1.0)
    net = hearsay_mesh_of(12, seed, unlinked_per_node=8, dial_time=slow)
    watched_unlinked = [
        (nid, w) for nid, n in net.nodes.items() for w in n.core.watching if {nid, w} in net.unlinked
    ]
    assert watched_unlinked, f"seed {seed}: every watcher had linked its members already"
    while net.t < 30.0:
        net.run(net.t + 0.25)
        for nid in net.nodes:
            wrong = {o: s for o, s in views(net, nid).items() if s is not Liveness.ALIVE}
            assert not wrong, f"seed {seed}: at {net.t:.2f}s, live {nid} seen as {wrong}"
    for nid, w in watched_unlinked:
        assert {nid, w} not in net.unlinked, f"seed {seed}: {nid} never linked {w}, which it watches"


@pytest.mark.parametrize("seed", range(10))
def test_a_sparse_mesh_hears_of_a_crash_by_relayed_verdicts(seed: int) -> None:
    # Most pairs never link (each node has a handful of links: its ring and a few more): a node hears of a
    # crash only if the verdict is passed on across links, from the crashed node's watchers outward.
    net = hearsay_mesh_of(16, seed, unlinked_per_node=9)
    net.run(10.0)
    ids = sorted(net.nodes)
    victim = max(ids, key=lambda x: sum(x in pair for pair in net.unlinked))  # the one fewest nodes linked
    far = [nid for nid in ids if nid != victim and {nid, victim} in net.unlinked]
    assert far, f"seed {seed}: everyone linked the victim"
    net.nodes[victim].crashed = True
    t0 = net.t
    while set(views(net, victim).values()) != {Liveness.DEAD}:
        net.run(net.t + 0.25)
        assert net.t - t0 <= T.dead_after + 1.0, f"seed {seed}: not dead everywhere after {net.t - t0:.2f}s"
