"""Deterministic, seeded simulator of many ClaimsCores on a hostile network, with a safety checker.

One ``random.Random(seed)`` drives everything (topology, workload, faults, every core's rng), and events
are ordered by (true time, sequence number), so a run is replayed exactly from its seed.

The simulator owns true time ``t``. Each node incarnation has a clock ``local = base + rate * (t - born)``
with ``rate`` in ``[1-rho, 1+rho]`` (or wider in ``beyond_rho`` mode, which is allowed to break safety).
After EVERY step it checks:
  - at most one node believes it holds each resource (a belief runs from Granted until the node's own
    local deadline, mapped to true time by its rate; Renewed extends it; Lost/Released/crash end it);
  - fencing tokens strictly increase across successive grants of a resource, and renewals keep them.
A violation raises ``SafetyViolation`` naming the seed and step.

Usage: ``python -m mesh.testing.sim --seeds N [--seed S] [--mutant NAME] [--beyond-rho]``.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.core.claims import (
    NO_MUTANTS,
    ClaimMsg,
    ClaimsCore,
    ConfigChanged,
    Denied,
    Effect,
    Granted,
    LeaseConfig,
    Lost,
    Released,
    Renewed,
    Send,
    Unavailable,
)
from mesh.core.lease import Propose, Release
from mesh.core.mutants import Mutants
from mesh.core.stewards import StewardConfig, one_change
from mesh.errors import ConfigError


class SafetyViolation(AssertionError):
    """Two believed holders at once, or a fencing token that did not increase."""

    def __init__(self, seed: int, step: int, t: float, detail: str) -> None:
        super().__init__(f"seed={seed} step={step} t={t:.4f}: {detail}")
        self.seed, self.step, self.t, self.detail = seed, step, t, detail


@dataclass
class SimParams:
    """Knobs of one run; ``from_seed`` draws a varied, hostile mix."""

    nodes: int = 5
    stewards: int = 3
    resources: int = 2
    duration: float = 40.0
    rho: float = 0.01
    clock_spread: float = 0.01
    drop: float = 0.02
    dup: float = 0.02
    long_delay: float = 0.02
    max_long_delay: float = 3.0
    crash_rate: float = 0.05
    pause_rate: float = 0.05
    max_pause: float = 4.0
    partition_rate: float = 0.05
    reconfig_rate: float = 0.1
    double_reconfig: float = 0.5
    claim_rate: float = 4.0
    pause_after_propose: float = 0.0
    release_delay: float = 0.0
    link_cut_rate: float = 0.0
    persistence: float = 0.5
    reclaim: float = 0.3
    reconfig_nemesis: float = 0.0

    @classmethod
    def from_seed(cls, rng: random.Random, beyond_rho: bool = False) -> SimParams:
        """A random parameter mix (drawn from the run's rng so the seed fixes it)."""
        n = rng.choice([3, 4, 5, 5, 6, 7])
        return cls(
            nodes=n,
            stewards=rng.choice([3, 3, 5]) if n >= 5 else 3,
            resources=rng.choice([1, 1, 2, 3]),
            duration=rng.uniform(25.0, 45.0),
            clock_spread=rng.uniform(0.1, 0.35) if beyond_rho else 0.01,
            drop=rng.choice([0.0, 0.02, 0.1, 0.25]),
            dup=rng.choice([0.0, 0.05, 0.2, 0.4]),
            long_delay=rng.choice([0.0, 0.02, 0.1]),
            max_long_delay=rng.choice([1.0, 3.0, 6.0]),
            crash_rate=rng.choice([0.0, 0.05, 0.15]),
            pause_rate=rng.choice([0.0, 0.05, 0.2]),
            max_pause=rng.choice([1.0, 4.0, 8.0]),
            partition_rate=rng.choice([0.0, 0.05, 0.2]),
            reconfig_rate=rng.choice([0.0, 0.1, 0.3]),
            double_reconfig=rng.choice([0.0, 0.5, 1.0]),
            claim_rate=rng.choice([2.0, 5.0, 10.0]),
            pause_after_propose=rng.choice([0.0, 0.05, 0.2]),
            release_delay=rng.choice([0.0, 0.3, 0.7, 1.0]),
            link_cut_rate=rng.choice([0.0, 0.1, 0.3]),
            persistence=rng.choice([0.0, 0.5, 0.8]),
            reclaim=rng.choice([0.0, 0.3, 0.7]),
            reconfig_nemesis=rng.choice([0.2, 0.5, 1.0]),
        )


@dataclass
class SimNode:
    """One incarnation of node ``idx``."""

    idx: int
    inc: int
    ident: str
    core: ClaimsCore
    born: float
    base: float
    rate: float
    alive: bool = True
    paused_until: float = 0.0
    tick_at: float | None = None
    group: int = 0

    def local(self, t: float) -> float:
        """This node's clock reading at true time ``t``."""
        return self.base + self.rate * (t - self.born)

    def true(self, local: float) -> float:
        """The true time at which this node's clock reads ``local``."""
        return self.born + (local - self.base) / self.rate


@dataclass
class Belief:
    """A node's belief that it holds a resource until local time ``until``."""

    ident: str
    token: int
    until: float
    node: SimNode
    since: float


@dataclass
class SimStats:
    """What happened in a run."""

    seed: int
    steps: int = 0
    grants: int = 0
    renewals: int = 0
    denied: int = 0
    lost: int = 0
    unavailable: int = 0
    releases: int = 0
    messages: int = 0
    crashes: int = 0
    configs: int = 0
    epoch: int = 1
    fast_reconfigs: int = 0
    violation: SafetyViolation | None = None


@dataclass(order=True)
class _Ev:
    t: float
    seq: int
    kind: str = field(compare=False)
    data: tuple[object, ...] = field(compare=False)


class Simulation:
    """A seeded run of ``params.nodes`` claims cores on one simulated network."""

    def __init__(
        self,
        seed: int,
        mutants: Mutants = NO_MUTANTS,
        params: SimParams | None = None,
        lease: LeaseConfig | None = None,
        beyond_rho: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.p = params or SimParams.from_seed(self.rng, beyond_rho)
        self.lc = lease or LeaseConfig.fast()
        self.mutants = mutants
        self.t = 0.0
        self.step = 0
        self._seq = 0
        self._q: list[_Ev] = []
        self.nodes: list[SimNode] = []
        self.by_ident: dict[str, SimNode] = {}
        self.beliefs: dict[str, dict[str, Belief]] = {}
        self.last_token: dict[str, int] = {}
        self.dead_since: dict[str, float] = {}
        self.partitioned = False
        self.stats = SimStats(seed)
        self.trace: list[str] | None = None
        self._last_config_at = -1e9
        self.cut: dict[tuple[int, int], float] = {}
        self._stalls: dict[tuple[str, str, int, int], float | None] = {}

    # ---- setup -------------------------------------------------------------------------------------

    def _push(self, t: float, kind: str, *data: object) -> None:
        self._seq += 1
        heapq.heappush(self._q, _Ev(t, self._seq, kind, data))

    def _spawn(self, idx: int, inc: int) -> SimNode:
        spread = self.p.clock_spread
        ident = f"n{idx}/{inc}"
        core = ClaimsCore(ident, f"s{idx}", self.lc, random.Random(self.rng.getrandbits(64)), self.mutants)
        node = SimNode(
            idx, inc, ident, core, self.t, self.rng.uniform(0, 1e5), self.rng.uniform(1 - spread, 1 + spread)
        )
        if idx < len(self.nodes):
            self.nodes[idx] = node
        else:
            self.nodes.append(node)
        self.by_ident[ident] = node
        return node

    def _log(self, s: str) -> None:
        if self.trace is not None:
            self.trace.append(f"[{self.step} t={self.t:.3f}] {s}")

    # ---- effects -----------------------------------------------------------------------------------

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                self._send(node, e.to, e.msg)
            elif isinstance(e, Granted):
                self._granted(node, e)
            elif isinstance(e, Renewed):
                self._renewed(node, e)
            elif isinstance(e, Lost | Released):
                self.beliefs.get(e.resource, {}).pop(node.ident, None)
                if isinstance(e, Lost):
                    self.stats.lost += 1
                else:
                    self.stats.releases += 1
                self._log(f"{node.ident} {type(e).__name__} {e.resource}")
            elif isinstance(e, Denied):
                self.stats.denied += 1
                self._maybe_wait(node, e.resource)
            elif isinstance(e, Unavailable):
                self.stats.unavailable += 1
                self._maybe_wait(node, e.resource)
            elif isinstance(e, ConfigChanged):
                self._log(f"{node.ident} adopted {e.config}")
                if e.config.epoch > self.stats.epoch:
                    self.stats.epoch = e.config.epoch
                    self.stats.configs += 1
                    if self.t - self._last_config_at < self.lc.acceptor_lease:
                        self.stats.fast_reconfigs += 1
                    self._last_config_at = self.t
                for other in self.nodes:
                    if other is not node:
                        self._push(self.t + self.rng.uniform(0.01, 0.3), "gossip", other.ident, e.config)
        self._schedule_tick(node)

    def _maybe_wait(self, node: SimNode, resource: str) -> None:
        """Like ``meshctl claim --wait``: a refused claimant often tries again soon."""
        if resource.startswith("r") and self.rng.random() < self.p.persistence:
            self._push(self.t + self.rng.uniform(0.1, 1.5), "claim", node.ident, resource)

    def _granted(self, node: SimNode, e: Granted) -> None:
        mine = self.beliefs.get(e.resource, {}).get(node.ident)
        if mine is not None and mine.token == e.token:
            mine.until = max(mine.until, e.until)  # claim() on a held resource re-reports the same grant
            return
        self.stats.grants += 1
        self._log(f"{node.ident} GRANTED {e.resource} token={e.token:x} until_true={node.true(e.until):.3f}")
        last = self.last_token.get(e.resource)
        if last is not None and e.token <= last:
            self._violation(f"token for {e.resource} did not increase: {e.token:#x} after {last:#x}")
        self.last_token[e.resource] = e.token
        self.beliefs.setdefault(e.resource, {})[node.ident] = Belief(
            node.ident, e.token, e.until, node, self.t
        )

    def _renewed(self, node: SimNode, e: Renewed) -> None:
        self.stats.renewals += 1
        b = self.beliefs.get(e.resource, {}).get(node.ident)
        if b is None or b.token != e.token:
            self._violation(f"{node.ident} renewed {e.resource} token {e.token:#x} it was not holding")
        else:
            b.until = max(b.until, e.until)

    def _send(self, src: SimNode, to: str, msg: ClaimMsg) -> None:
        self.stats.messages += 1
        p = self.p
        if self.rng.random() < p.drop:
            return
        copies = 2 if self.rng.random() < p.dup else 1
        if (
            isinstance(msg, Propose)
            and src.paused_until <= self.t
            and self.rng.random() < p.pause_after_propose
        ):
            # The nemesis stops the proposer right after it asked for accepts (SIGSTOP at the worst time).
            src.paused_until = self.t + self.rng.uniform(0.5, p.max_pause)
            self._log(f"pause {src.ident} after Propose until {src.paused_until:.3f}")
        for _ in range(copies):
            if isinstance(msg, Release) and self._release_stall(src, msg) is not None:
                d = (self._release_stall(src, msg) or 0.0) + self.rng.uniform(0.0, 0.01)
            elif self.rng.random() < p.long_delay:
                d = self.rng.uniform(0.1, p.max_long_delay)
            else:
                d = self.rng.uniform(0.0005, 0.03)
            self._push(self.t + d, "deliver", src.ident, to, msg)

    def _release_stall(self, src: SimNode, msg: Release) -> float | None:
        """A stalled connection holds every copy of one Release back by about the same time."""
        key = (src.ident, msg.resource, msg.epoch, msg.round)
        if key not in self._stalls:
            stalled = self.rng.random() < self.p.release_delay
            self._stalls[key] = self.rng.uniform(0.5, 3 * self.lc.acceptor_lease) if stalled else None
        return self._stalls[key]

    def _schedule_tick(self, node: SimNode) -> None:
        nd = node.core.next_deadline()
        if nd is None:
            node.tick_at = None
            return
        # A resumed loop drains the I/O buffered while it was stopped before its due timers fire.
        at = max(self.t, node.true(nd) + 1e-9, node.paused_until + 0.006)
        if node.tick_at is None or at < node.tick_at or node.tick_at <= self.t:
            node.tick_at = at
            self._push(at, "tick", node.ident, at)

    def _violation(self, detail: str) -> None:
        raise SafetyViolation(self.seed, self.step, self.t, detail)

    # ---- checks ------------------------------------------------------------------------------------

    def check(self) -> None:
        """At most one live belief per resource at this instant."""
        for res, bs in self.beliefs.items():
            live = [b for b in bs.values() if b.node.true(b.until) > self.t]
            if len(live) > 1:
                desc = ", ".join(
                    f"{b.ident} token={b.token:#x} since={b.since:.3f} until_true={b.node.true(b.until):.3f}"
                    for b in live
                )
                self._violation(f"two holders of {res}: {desc}")
            for ident in [i for i, b in bs.items() if b.node.true(b.until) <= self.t]:
                del bs[ident]

    # ---- event handlers ----------------------------------------------------------------------------

    def _live(self, ident: str) -> SimNode | None:
        n = self.by_ident.get(ident)
        return n if n is not None and n.alive else None

    def _deferred(self, node: SimNode, ev: _Ev) -> bool:
        """A paused node handles nothing until it resumes: its events wait."""
        if node.paused_until > self.t:
            # After SIGCONT an event loop mostly handles the I/O already buffered before its due timers.
            late = 0.006 if ev.kind == "tick" else 0.0
            self._push(node.paused_until + late + self.rng.uniform(0, 0.005), ev.kind, *ev.data)
            return True
        return False

    def _handle(self, ev: _Ev) -> None:
        k = ev.kind
        if k == "deliver":
            src, to, msg = ev.data
            assert isinstance(src, str) and isinstance(to, str)
            node = self._live(to)
            s = self.by_ident.get(src)
            if node is None or s is None or (self.partitioned and s.group != node.group):
                return
            if self.cut.get((s.idx, node.idx), -1.0) > self.t:
                return
            if self._deferred(node, ev):
                return
            self._apply(node, node.core.receive(src, msg, node.local(self.t)))  # type: ignore[arg-type]
        elif k == "tick":
            ident, at = ev.data
            node = self._live(str(ident))
            if node is None or node.tick_at != at or self._deferred(node, ev):
                return
            node.tick_at = None
            self._apply(node, node.core.tick(node.local(self.t)))
        elif k == "gossip":
            ident, cfg = ev.data
            node = self._live(str(ident))
            assert isinstance(cfg, StewardConfig)
            if node is None or self._deferred(node, ev):
                return
            self._apply(node, node.core.adopt(cfg, node.local(self.t)))
        elif k == "workload":
            self._workload()
            self._push(self.t + self.rng.expovariate(self.p.claim_rate), "workload")
        elif k == "fault":
            self._fault()
            self._push(self.t + self.rng.uniform(0.5, 2.0), "fault")
        elif k == "reconfig":
            self._reconfig(bool(ev.data and ev.data[0]))
            if not ev.data:
                self._push(self.t + self.rng.uniform(0.5, 3.0), "reconfig")
        elif k == "nemesis":
            if self.rng.random() < self.p.reconfig_nemesis:
                self._reconfig_nemesis()
            self._push(self.t + self.rng.uniform(1.0, 3.0), "nemesis")
        elif k == "claim":
            ident, res = ev.data
            node = self._live(str(ident))
            if node is not None and node.paused_until <= self.t:
                self._apply(node, node.core.claim(str(res), 2.0, node.local(self.t)))
        elif k == "strike":
            holder, res, spared = (str(x) for x in ev.data)
            self._strike(holder, res, spared)
        elif k == "remove":
            ident, gone = (str(x) for x in ev.data)
            node = self._live(ident)
            if node is not None and node.core.config is not None and gone in node.core.config.stewards:
                if node.core.reconfiguring:
                    self._push(self.t + 0.05, "remove", ident, gone)
                    return
                target = tuple(x for x in node.core.config.stewards if x != gone)
                try:
                    self._apply(node, node.core.propose_config(target, node.local(self.t)))
                except ConfigError:
                    pass
        elif k == "heal":
            self.partitioned = False
            self._log("heal")
        elif k == "restart":
            (idx,) = ev.data
            assert isinstance(idx, int)
            old = self.nodes[idx]
            node = self._spawn(idx, old.inc + 1)
            self._log(f"restart {node.ident}")
            src = self._random_live(exclude=node)
            if src is not None and src.core.config is not None:
                self._push(self.t + self.rng.uniform(0.01, 0.3), "gossip", node.ident, src.core.config)
            self._schedule_tick(node)

    def _random_live(self, exclude: SimNode | None = None) -> SimNode | None:
        live = [n for n in self.nodes if n.alive and n is not exclude]
        return self.rng.choice(live) if live else None

    def _workload(self) -> None:
        node = self._random_live()
        if node is None or node.paused_until > self.t:
            return
        res = f"r{self.rng.randrange(self.p.resources)}"
        now = node.local(self.t)
        if res in node.core.held(now) and self.rng.random() < 0.5:
            self._apply(node, node.core.release(res, now))
            if self.rng.random() < self.p.reclaim:
                self._push(self.t + self.rng.uniform(0.1, 6.0), "claim", node.ident, res)
        elif self.rng.random() < 0.8:
            self._apply(node, node.core.claim(res, self.rng.choice([0.5, 2.0, 6.0, 20.0]), now))

    def _current_config(self) -> StewardConfig | None:
        cfgs = [n.core.config for n in self.nodes if n.alive and n.core.config is not None]
        return max(cfgs, key=lambda c: c.epoch) if cfgs else None

    def _fault(self) -> None:
        p, r = self.p, self.rng.random()
        cfg = self._current_config()
        if r < p.crash_rate:
            node = self._random_live()
            if node is None or cfg is None:
                return
            dead_stewards = [s for s in cfg.stewards if self._live(s) is None]
            if node.ident in cfg.stewards and len(dead_stewards) + 1 > (len(cfg.stewards) - 1) // 2:
                return  # keep a steward majority alive (losing it for good needs the recovery command)
            node.alive = False
            self.stats.crashes += 1
            self.dead_since[node.ident] = self.t
            for bs in self.beliefs.values():
                bs.pop(node.ident, None)  # a dead process believes nothing
            self._log(f"crash {node.ident}")
            self._push(self.t + self.rng.uniform(0.5, 5.0), "restart", node.idx)
        elif r < p.crash_rate + p.pause_rate:
            node = self._random_live()
            if node is not None:
                node.paused_until = self.t + self.rng.uniform(0.2, p.max_pause)
                self._log(f"pause {node.ident} until {node.paused_until:.3f}")
        elif r < p.crash_rate + p.pause_rate + p.link_cut_rate:
            a, b = self.rng.sample(range(len(self.nodes)), 2)
            until = self.t + self.rng.uniform(0.5, 4.0)
            self.cut[(a, b)] = until
            if self.rng.random() < 0.5:
                self.cut[(b, a)] = until
            self._log(f"cut n{a}->n{b} until {until:.3f}")
        elif r < p.crash_rate + p.pause_rate + p.link_cut_rate + p.partition_rate and not self.partitioned:
            self.partitioned = True
            for n in self.nodes:
                n.group = self.rng.randrange(2)
            self._log("partition " + " ".join(f"{n.ident}:{n.group}" for n in self.nodes))
            self._push(self.t + self.rng.uniform(0.5, 5.0), "heal")

    def _reconfig_nemesis(self) -> None:
        """Cut a holder off one steward until that steward's copy of its lease expires (the lease then lives
        on a bare majority), stop the holder, change the stewards twice in quick succession (add a fresh
        one, remove another), and let other nodes claim the resource."""
        held = [(r, b) for r, bs in sorted(self.beliefs.items()) for _, b in sorted(bs.items())]
        cfg = self._current_config()
        if not held or cfg is None:
            return
        res, b = self.rng.choice(held)
        others = [st for st in cfg.stewards if st != b.ident and self._live(st) is not None]
        if not others:
            return
        victim = self.by_ident[self.rng.choice(others)]
        until = self.t + self.lc.acceptor_lease + 1.5
        self.cut[(b.node.idx, victim.idx)] = self.cut[(victim.idx, b.node.idx)] = until
        self._log(f"nemesis: cut holder {b.ident} of {res} from steward {victim.ident}")
        self._push(self.t + self.lc.acceptor_lease + 1.0, "strike", b.ident, res, victim.ident)

    def _strike(self, holder: str, res: str, spared: str) -> None:
        h = self._live(holder)
        node = self._random_live(exclude=h)
        if h is None or node is None or node.core.config is None or node.core.reconfiguring:
            return
        h.paused_until = max(h.paused_until, self.t + self.rng.uniform(1.0, 3.0))
        cur = node.core.config
        fresh = [n.ident for n in self.nodes if n.alive and n.ident not in cur.stewards and n is not h]
        if not fresh:
            return
        removable = [st for st in cur.stewards if st != spared]
        if not removable:
            return
        add = (*cur.stewards, self.rng.choice(fresh))
        gone = self.rng.choice(removable)
        self._log(f"strike: pause {holder}; {node.ident} adds then removes {gone}")
        try:
            self._apply(node, node.core.propose_config(add, node.local(self.t)))
        except ConfigError:
            return
        self._push(self.t + self.rng.uniform(0.05, 0.3), "remove", node.ident, gone)
        for _ in range(6):
            other = self._random_live(exclude=h)
            if other is not None:
                self._push(self.t + self.rng.uniform(0.2, 1.8), "claim", other.ident, res)

    def _reconfig(self, follow_up: bool) -> None:
        if not follow_up and self.rng.random() >= self.p.reconfig_rate * 3:
            return
        cfg = self._current_config()
        node = self._random_live()
        if cfg is None or node is None or node.core.config is None or node.core.reconfiguring:
            return
        cur = node.core.config
        live = [n.ident for n in self.nodes if n.alive]
        dead = [s for s in cur.stewards if self._live(s) is None]
        target: tuple[str, ...] | None = None
        if dead and self.t - self.dead_since.get(dead[0], self.t) >= 1.5:
            target = tuple(s for s in cur.stewards if s != dead[0])
        elif len(cur.stewards) < self.p.stewards or (len(cur.stewards) < 5 and self.rng.random() < 0.5):
            cands = [i for i in live if i not in cur.stewards]
            if cands:
                target = (*cur.stewards, self.rng.choice(cands))
        elif len(cur.stewards) > 1:
            drop = self.rng.choice(cur.stewards)
            target = tuple(s for s in cur.stewards if s != drop)
        if target is None or not one_change(cur.stewards, target):
            return
        self._log(f"{node.ident} propose_config {target} (epoch {cur.epoch + 1})")
        try:
            self._apply(node, node.core.propose_config(target, node.local(self.t)))
        except ConfigError:
            return
        if not follow_up and self.rng.random() < self.p.double_reconfig:
            self._push(self.t + self.rng.uniform(0.05, 0.5), "reconfig", True)

    # ---- run ---------------------------------------------------------------------------------------

    def run(self) -> SimStats:
        """Run to ``params.duration`` true seconds; raise SafetyViolation on the first violation."""
        for i in range(self.p.nodes):
            self._spawn(i, 0)
        stewards = tuple(n.ident for n in self.nodes[: self.p.stewards if self.p.stewards <= 3 else 3])
        first = self.nodes[0]
        self._apply(first, first.core.genesis(stewards, first.local(0.0)))
        self._push(0.05, "workload")
        self._push(1.0, "fault")
        self._push(2.0, "reconfig")
        self._push(3.0, "nemesis")
        while self._q:
            ev = heapq.heappop(self._q)
            if ev.t > self.p.duration:
                break
            self.t = ev.t
            self.step += 1
            self._handle(ev)
            self.check()
        self.stats.steps = self.step
        return self.stats


def run_seed(
    seed: int,
    mutants: Mutants = NO_MUTANTS,
    beyond_rho: bool = False,
) -> SimStats:
    """Run one seed; a violation is returned in ``stats.violation`` rather than raised."""
    sim = Simulation(seed, mutants, beyond_rho=beyond_rho)
    try:
        return sim.run()
    except SafetyViolation as v:
        sim.stats.steps = sim.step
        sim.stats.violation = v
        return sim.stats


def first_violation(
    seeds: range,
    mutants: Mutants,
    beyond_rho: bool = False,
    on_seed: Callable[[SimStats], None] | None = None,
) -> SimStats | None:
    """Run seeds in order until one violates safety; return its stats (None if none did)."""
    for s in seeds:
        st = run_seed(s, mutants, beyond_rho)
        if on_seed:
            on_seed(st)
        if st.violation is not None:
            return st
    return None


def main(argv: list[str] | None = None) -> int:
    """CLI: run seeds and print a summary; exit 1 on a violation (expected with --mutant)."""
    ap = argparse.ArgumentParser(prog="python -m mesh.testing.sim", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50, help="how many seeds to run")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--mutant", choices=Mutants.names(), help="switch one mutant on")
    ap.add_argument("--beyond-rho", action="store_true", help="clock rates beyond rho (may break safety)")
    ap.add_argument("--all", action="store_true", help="keep going after a violation")
    ap.add_argument("--trace", action="store_true", help="print the event trace of the first violating seed")
    a = ap.parse_args(argv)
    mut = Mutants.only(a.mutant) if a.mutant else Mutants()
    t0 = time.perf_counter()
    total = SimStats(seed=-1)
    bad: list[SafetyViolation] = []
    ran = 0
    for s in range(a.seed, a.seed + a.seeds):
        st = run_seed(s, mut, a.beyond_rho)
        ran += 1
        for f in ("steps", "grants", "renewals", "denied", "lost", "unavailable", "releases", "messages"):
            setattr(total, f, getattr(total, f) + getattr(st, f))
        total.configs += st.configs
        total.fast_reconfigs += st.fast_reconfigs
        total.crashes += st.crashes
        if st.violation is not None:
            bad.append(st.violation)
            print(f"VIOLATION {st.violation}")
            if a.trace and len(bad) == 1:
                sim = Simulation(s, mut, beyond_rho=a.beyond_rho)
                sim.trace = []
                try:
                    sim.run()
                except SafetyViolation:
                    pass
                print("\n".join(sim.trace[-80:]))
            if not a.all:
                break
    dt = time.perf_counter() - t0
    print(
        f"seeds={ran} (from {a.seed}) mutant={a.mutant or 'none'} beyond_rho={a.beyond_rho} "
        f"time={dt:.1f}s steps={total.steps} msgs={total.messages} grants={total.grants} "
        f"renewals={total.renewals} denied={total.denied} lost={total.lost} "
        f"unavailable={total.unavailable} releases={total.releases} reconfigs={total.configs} "
        f"crashes={total.crashes} fast_reconfigs={total.fast_reconfigs} violations={len(bad)}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
