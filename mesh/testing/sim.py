"""Deterministic, seeded simulator of many ClaimsCores on a hostile network, with a safety checker.

One ``random.Random(seed)`` drives everything (topology, workload, faults, every core's rng), and events
are ordered by (true time, sequence number), so a run is replayed exactly from its seed.

What it models, besides the claims protocol itself:
- nodes with stable node ids and a new incarnation per process start; a restarted node keeps its durable
  steward state ("disk") and forgets everything else; some crashes are for good, new nodes join;
- homes: groups of nodes sharing a disk. A node may act as the config acceptor of a dead steward of its
  own home (the real node takes the dead one's lock: the proxy of ``mesh.core.stewards.proxy_step``);
- genesis as the runtime decides it: only in the home that created the mesh (home 0), by one lock holder,
  once its home never saw a config, after a short formation window, with up to three nodes it sees;
- steward upkeep as the runtime runs it (``mesh.core.steward_policy``): the oldest live steward changes
  the set straight to its target; when a steward majority is lost, a node that can answer for enough dead
  stewards of its home recovers; graceful leaves hand stewardship over;
- a nemesis: message loss, duplication, delay and reordering, crashes and restarts, pauses (SIGSTOP,
  also right after a Propose), link cuts, partitions (also between homes from the start: genesis in two
  halves), random reconfigurations, and a strike that changes the stewards around a cut-off holder;
- path claims beside items (``mesh.testing.sim_paths``): overlapping and disjoint glob patterns, exclusive
  and shared, several at once (one claim on their union). Their choices come from a second rng of the
  seed, so a seed whose mix has no path claims runs exactly as before they existed.

The simulator owns true time ``t``. Each node incarnation has a clock ``local = base + rate * (t - born)``
with ``rate`` in ``[1-rho, 1+rho]`` (or wider in ``beyond_rho`` mode, which is allowed to break safety).
After EVERY step it checks:
  - at most one node believes it holds each resource (a belief runs from Granted until the node's own
    local deadline, mapped to true time by its rate; Renewed extends it; Lost/Released/crash end it),
    shared path claims excepted;
  - no two owners believe they hold path claims whose patterns overlap while one is exclusive (named
    with a path both match);
  - fencing tokens strictly increase across successive grants of a resource (of a shared path claim:
    per holder identity), and renewals keep them;
  - at most one steward config is ever adopted for each epoch.
A violation raises ``SafetyViolation`` naming the seed and step.

Usage: ``python -m mesh.testing.sim --seeds N [--seed S] [--mutant NAME] [--beyond-rho]``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

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
    Persist,
    Probed,
    Released,
    Renewed,
    Send,
    Unavailable,
    Wake,
)
from mesh.core.lease import Propose, Release, token_of
from mesh.core.mutants import Mutants
from mesh.core.resources import is_shared
from mesh.core.steward_policy import Candidate, can_decide, formation, next_config, upkeep_leader
from mesh.core.stewards import CfgAccept, CfgPrepare, StewardConfig, StewardState, proxy_step
from mesh.core.values import replace
from mesh.errors import ConfigError
from mesh.testing import sim_paths

CREDS_HOME = 0
CHECK_WITHIN = 0.4
"""s: how long the claims service's pre-edit check waits for the stewards (``mesh._services.claims``)."""
"""The home that created the mesh's credentials (the only one where genesis may happen)."""


class SafetyViolation(AssertionError):
    """Two believed holders at once, a fencing token that did not increase, or two configs for one epoch."""

    def __init__(self, seed: int, step: int, t: float, detail: str) -> None:
        super().__init__(f"seed={seed} step={step} t={t:.4f}: {detail}")
        self.seed, self.step, self.t, self.detail = seed, step, t, detail

    def __reduce__(self) -> tuple[type[SafetyViolation], tuple[int, int, float, str]]:
        # Its own arguments, not the message: a seed run in a worker process comes back whole.
        return (type(self), (self.seed, self.step, self.t, self.detail))


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
    homes: int = 1
    formation: bool = False
    stagger: float = 0.0
    split_start: float = 0.0
    forever: float = 0.0
    join_rate: float = 0.0
    leave_rate: float = 0.0
    max_nodes: int = 10
    evict_after: float = 3.0
    proven_grace: float = 1.0
    home_layout: tuple[int, ...] = ()
    """Scenarios: the home of each initial node (default: node 0 in home 0, the rest at random)."""
    start_at: tuple[float, ...] = ()
    """Scenarios with ``formation``: when each initial node starts (default: at random within ``stagger``)."""
    propose_stall: float = 0.0
    mass_crash: float = 0.0
    recheck: float | None = None
    """How often a random pre-edit check is followed by a second caller's of the same file on the same node,
    0.002-0.4 s later (None: drawn per seed, 0, 0.3 or 0.6)."""
    check_within: float = math.inf
    """How long a pre-edit check's caller waits for the answer (inf: until the core answers; random runs
    draw inf or ``CHECK_WITHIN`` per seed)."""
    path_claims: float = 0.0
    """How often a workload claim is a path claim instead of an item (``from_seed``: drawn per seed from
    the path rng: 0, 0.3 or 0.6)."""

    @classmethod
    def from_seed(cls, rng: random.Random, beyond_rho: bool = False) -> SimParams:
        """A random parameter mix (drawn from the run's rng so the seed fixes it)."""
        n = rng.choice([3, 4, 5, 5, 6, 7])
        homes = rng.choice([1, 1, 2, 3])
        formation = rng.random() < 0.5
        return cls(
            nodes=n,
            stewards=rng.choice([1, 3, 3, 5]) if n >= 5 else rng.choice([1, 3]),
            resources=rng.choice([1, 1, 2, 3]),
            duration=rng.uniform(25.0, 45.0),
            clock_spread=rng.uniform(0.1, 0.35) if beyond_rho else 0.01,
            drop=rng.choice([0.0, 0.02, 0.1, 0.25]),
            dup=rng.choice([0.0, 0.05, 0.2, 0.4]),
            long_delay=rng.choice([0.0, 0.02, 0.1]),
            max_long_delay=rng.choice([1.0, 3.0, 6.0]),
            crash_rate=rng.choice([0.0, 0.05, 0.15, 0.25]),
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
            homes=homes,
            formation=formation,
            stagger=rng.choice([0.0, 0.5, 2.0]) if formation else 0.0,
            split_start=rng.choice([0.0, 0.0, 3.0, 8.0]) if formation and homes > 1 else 0.0,
            forever=rng.choice([0.0, 0.2, 0.5]),
            join_rate=rng.choice([0.0, 0.1, 0.3]),
            leave_rate=rng.choice([0.0, 0.05, 0.15]),
            max_nodes=n + rng.choice([0, 2, 5]),
            evict_after=rng.choice([1.5, 3.0, 6.0]),
            propose_stall=rng.choice([0.0, 0.0, 0.05, 0.2]),
            mass_crash=rng.choice([0.0, 0.0, 0.05, 0.15]),
        )


@dataclass
class SimNode:
    """One incarnation of node ``idx`` (node id ``n{idx}``)."""

    idx: int
    inc: int
    ident: str
    core: ClaimsCore
    born: float
    base: float
    rate: float
    home: int
    alive: bool = True
    paused_until: float = 0.0
    tick_at: float | None = None
    group: int = 0
    genesis_lock: bool = False
    proxy_for: frozenset[str] = frozenset()  # dead stewards of its home it answers for (during a recovery)

    @property
    def node(self) -> str:
        """This node's node id."""
        return f"n{self.idx}"

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
    restarts: int = 0
    configs: int = 0
    epoch: int = 0
    fast_reconfigs: int = 0
    geneses: int = 0
    proxied: int = 0
    recoveries: int = 0
    handoffs: int = 0
    path_grants: int = 0
    path_denied: int = 0
    probes_free: int = 0
    probes_denied: int = 0
    checks_timed_out: int = 0  # a caller stopped waiting for its check's answer (the service's CHECK_WITHIN)
    fast_proposes: int = 0  # one-round claim messages sent (the fast path is exercised)
    wakes: int = 0  # "your turn" told to waiting claimants (the FIFO hand-over is exercised)
    violation: SafetyViolation | None = None


class _Ev(NamedTuple):
    """A queued event: ordered by (t, seq), and seq is unique, so a tuple's C comparison never reaches kind
    or data (a dataclass's generated __lt__ was a tenth of a seed's CPU time)."""

    t: float
    seq: int
    kind: str
    data: tuple[object, ...]


Script = list[tuple[float, str, tuple[object, ...]]]
"""A scenario's events: (time, what, its arguments), as ``Simulation(script=...)`` takes them."""


class Simulation:
    """A seeded run of claims cores (with their homes and disks) on one simulated network."""

    def __init__(
        self,
        seed: int,
        mutants: Mutants = NO_MUTANTS,
        params: SimParams | None = None,
        lease: LeaseConfig | None = None,
        beyond_rho: bool = False,
        check_tokens: bool = True,
        script: Script | None = None,
    ) -> None:
        """``script``: run these events (time, kind, data) instead of the random workload and nemesis."""
        self.seed = seed
        self.script = script
        self.rng = random.Random(seed)
        self.p = params or SimParams.from_seed(self.rng, beyond_rho)
        self.path_rng = random.Random(f"paths-{seed}")
        self.path_rate = self.p.path_claims if params else self.path_rng.choice([0.0, 0.3, 0.6])
        # One-round claims (the default) on three seeds in four of the random mixes, the classic two rounds
        # (MESH_ONE_ROUND_CLAIMS=0) on the fourth; explicit params: the default.
        self.lc = lease or replace(LeaseConfig.fast(), single_round=params is not None or seed % 4 != 2)
        self.mutants = mutants
        self.check_tokens = check_tokens
        self.t = 0.0
        self.step = 0
        self._seq = 0
        self._q: list[_Ev] = []
        self.nodes: dict[int, SimNode] = {}
        self.state: list[str] = []  # per idx: pending | up | down | gone
        self.down_since: dict[int, float] = {}
        self.home_of: list[int] = []
        self.disk: dict[int, StewardState] = {}
        self.home_saw_config: set[int] = set()
        self.by_ident: dict[str, SimNode] = {}
        self.beliefs: dict[str, dict[str, Belief]] = {}
        # Pre-edit checks waiting for their answer, as the claims service keeps them: (prober, resource) ->
        # its callers, each (true time asked, the prober's local time then, file); several may wait on one
        # resource (``_check``), each settled by the first answer of a round sent at or after it asked.
        self.probes: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
        # The random workload's second callers: how often a check is followed by another of the same file
        # on the same node while it may be under way, and how long a caller waits (the service's
        # CHECK_WITHIN; inf: until the core answers). Their own rng: the paths' and the run's draws do not
        # move. Scripts: no second callers; a caller waits ``params.check_within``.
        checks_rng = random.Random(f"checks-{seed}")
        self.checks_rng = checks_rng
        recheck = checks_rng.choice([0.0, 0.3, 0.6]) if self.p.recheck is None else self.p.recheck
        self.recheck = recheck if script is None else 0.0
        within = checks_rng.choice([math.inf, CHECK_WITHIN])
        self.check_within = within if params is None else self.p.check_within
        self.last_token: dict[str, int] = {}
        self.chosen: dict[int, tuple[str, ...]] = {}
        self.adoptions: list[tuple[float, str, StewardConfig]] = []
        self.grant_times: list[float] = []
        self.grant_log: list[tuple[float, str, str]] = []  # (true time, identity, resource) of each grant
        self.deny_log: list[tuple[float, str, str, str]] = []  # (true time, identity, resource, holder named)
        # Pre-edit checks answered: (true time, identity, file, the holder named: "" nobody, "?" cannot tell)
        self.probe_log: list[tuple[float, str, str, str]] = []
        # Every pre-edit check's wait: (true time asked, true time settled or gave up) in the order settled.
        self.check_waits: list[tuple[float, float]] = []
        self.partitioned = False
        self.split_homes = False
        self.stats = SimStats(seed)
        self.trace: list[str] | None = None
        self._last_config_at = -1e9
        self.cut: dict[tuple[int, int], float] = {}
        self.slow: dict[tuple[int, int], tuple[float, float]] = {}  # (from, to) -> (until, extra delay)
        self._stalls: dict[tuple[str, str, int, int], float | None] = {}
        self._stalled: dict[tuple[str, str, int, int], float] = {}
        self._last_hiccup = -1e9
        self._force_stall: dict[str, tuple[int, int] | None] = {}
        self._force_release_stall: dict[str, float] = {}  # scripted: a node's next Release, held this long
        self._held: dict[str, dict[int, tuple[float, str, str, Propose]]] = {}

    # ---- setup -------------------------------------------------------------------------------------

    def _push(self, t: float, kind: str, *data: object) -> None:
        self._seq += 1
        heapq.heappush(self._q, _Ev(t, self._seq, kind, data))

    def _spawn(self, idx: int) -> SimNode:
        """Start node ``idx`` (a fresh node, or a restart that reloads its disk)."""
        spread = self.p.clock_spread
        inc = self.nodes[idx].inc + 1 if idx in self.nodes else 0
        ident = f"n{idx}/{inc}"
        base = self.rng.uniform(0, 1e5)
        core = ClaimsCore(
            ident,
            f"s{idx}",
            self.lc,
            random.Random(self.rng.getrandbits(64)),
            self.mutants,
            state=self.disk.get(idx),
            now=base,
        )
        rate = self.rng.uniform(1 - spread, 1 + spread)
        node = SimNode(idx, inc, ident, core, self.t, base, rate, self.home_of[idx])
        self.nodes[idx] = node
        self.state[idx] = "up"
        if self.split_homes:
            node.group = 0 if node.home == CREDS_HOME else 1
        elif self.partitioned:
            node.group = self.rng.randrange(2)
        self.by_ident[ident] = node
        return node

    def _add_node(self, home: int) -> int:
        idx = len(self.home_of)
        self.home_of.append(home)
        self.state.append("pending")
        return idx

    def _log(self, s: str) -> None:
        if self.trace is not None:
            self.trace.append(f"[{self.step} t={self.t:.3f}] {s}")

    # ---- effects -----------------------------------------------------------------------------------

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                self._send(node, e.to, e.msg)
            elif isinstance(e, Persist):
                self.disk[node.idx] = e.state
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
                self.stats.path_denied += bool(e.conflict)  # refused for an overlapping other pattern
                self.deny_log.append((self.t, node.ident, e.resource, e.holder))
                self._maybe_wait(node, e.resource)
            elif isinstance(e, Unavailable):
                self.stats.unavailable += 1
                self._maybe_wait(node, e.resource, e.wait)
            elif isinstance(e, ConfigChanged):
                self._config_changed(node, e.config)
            elif isinstance(e, Probed):
                self._probed(node, e)
            elif isinstance(e, Wake):
                self.stats.wakes += 1  # a steward said "your turn": the waiting claimant tries at once
                self._push(self.t + self.rng.uniform(0.0005, 0.005), "claim", node.ident, e.resource)
        self._schedule_tick(node)

    def _config_changed(self, node: SimNode, cfg: StewardConfig) -> None:
        self._log(f"{node.ident} adopted {cfg}")
        self.adoptions.append((self.t, node.ident, cfg))
        self.home_saw_config.add(node.home)  # the home's epoch file
        seen = self.chosen.get(cfg.epoch)
        if seen is None:
            self.chosen[cfg.epoch] = cfg.stewards
            self.stats.configs += 1
            self.stats.epoch = max(self.stats.epoch, cfg.epoch)
            if self.t - self._last_config_at < self.lc.acceptor_lease:
                self.stats.fast_reconfigs += 1
            self._last_config_at = self.t
        elif seen != cfg.stewards:
            self._violation(f"two configs for epoch {cfg.epoch}: {seen} and {cfg.stewards}")
        for other in self.nodes.values():
            if other is not node and other.alive:
                self._push(self.t + self.rng.uniform(0.01, 0.3), "gossip", other.ident, cfg, node.ident)

    def _maybe_wait(self, node: SimNode, resource: str, wait: float = 0.0) -> None:
        """Like ``meshctl claim --wait``: a refused claimant often tries again soon."""
        if resource.startswith(("r", "path")) and self.rng.random() < self.p.persistence:
            self._push(self.t + wait + self.rng.uniform(0.1, 1.5), "claim", node.ident, resource)

    def _granted(self, node: SimNode, e: Granted) -> None:
        mine = self.beliefs.get(e.resource, {}).get(node.ident)
        if mine is not None and mine.token == e.token:
            mine.until = max(mine.until, e.until)  # claim() on a held resource re-reports the same grant
            return
        self.stats.grants += 1
        self.stats.path_grants += e.resource.startswith("path")
        self.grant_times.append(self.t)
        self.grant_log.append((self.t, node.ident, e.resource))
        self._log(f"{node.ident} GRANTED {e.resource} token={e.token:x} until_true={node.true(e.until):.3f}")
        # A shared path claim is a lease per holder: its tokens count per holder identity (a restarted node
        # is a new holder, with a slot of its own at the stewards).
        key = f"{e.resource} {node.ident}" if is_shared(e.resource) else e.resource
        last = self.last_token.get(key)
        if self.check_tokens and last is not None and e.token <= last:
            self._violation(f"token for {e.resource} did not increase: {e.token:#x} after {last:#x}")
        self.last_token[key] = max(e.token, last or 0)
        self.beliefs.setdefault(e.resource, {})[node.ident] = Belief(
            node.ident, e.token, e.until, node, self.t
        )
        self._unstall(e.resource, token=e.token)

    def _renewed(self, node: SimNode, e: Renewed) -> None:
        self.stats.renewals += 1
        b = self.beliefs.get(e.resource, {}).get(node.ident)
        if b is None or b.token != e.token:
            self._violation(f"{node.ident} renewed {e.resource} token {e.token:#x} it was not holding")
        else:
            b.until = max(b.until, e.until)

    def _target(self, to: str) -> SimNode | None:
        """Who a send to ``to`` reaches: that identity, or whatever incarnation of a node id is up."""
        if "/" in to:
            n = self.by_ident.get(to)
            return n if n is not None and n.alive else None
        idx = int(to[1:])
        if idx in self.nodes and self.state[idx] == "up":
            return self.nodes[idx]
        return None

    def _send(self, src: SimNode, to: str, msg: ClaimMsg) -> None:
        self.stats.messages += 1
        p = self.p
        if "/" not in to and isinstance(msg, CfgPrepare | CfgAccept) and self._proxy(src, to, msg):
            return
        if self.rng.random() < p.drop:
            return
        copies = 2 if self.rng.random() < p.dup else 1
        if isinstance(msg, Propose) and msg.fast:
            self.stats.fast_proposes += 1
        if (
            isinstance(msg, Propose)
            and src.paused_until <= self.t
            and self.rng.random() < p.pause_after_propose
        ):
            # The nemesis stops the proposer right after it asked for accepts (SIGSTOP at the worst time).
            src.paused_until = self.t + self.rng.uniform(0.5, p.max_pause)
            self._log(f"pause {src.ident} after Propose until {src.paused_until:.3f}")
        if isinstance(msg, Propose) and self._stalls_propose(src, msg):
            self._stall_propose(src, to, msg)
            return
        for _ in range(copies):
            if isinstance(msg, Release) and self._release_stall(src, msg) is not None:
                d = (self._release_stall(src, msg) or 0.0) + self.rng.uniform(0.0, 0.01)
            elif self.rng.random() < p.long_delay:
                d = self.rng.uniform(0.1, p.max_long_delay)
            else:
                d = self.rng.uniform(0.0005, 0.03)
            dst = self._target(to) if self.slow else None  # scripted: a slow link
            if dst is not None:
                until, extra = self.slow.get((src.idx, dst.idx), (0.0, 0.0))
                d += extra if self.t < until else 0.0
            self._push(self.t + d, "deliver", src.ident, to, msg)

    def _stalls_propose(self, src: SimNode, msg: Propose) -> bool:
        if src.ident not in self._force_stall:
            return self.rng.random() < self.p.propose_stall
        # Scripted: the next attempt of this node, all of its copies, and no later one.
        ballot = self._force_stall[src.ident] or (msg.epoch, msg.round)
        self._force_stall[src.ident] = ballot
        return ballot == (msg.epoch, msg.round)

    def _stall_propose(self, src: SimNode, to: str, msg: Propose) -> None:
        """A stalled connection holds a Propose back past the stewards' restart quarantine, and the nemesis
        lets it go right after the next grant of that resource (PaxosLease Revisited's StaleOwnerOpen trace:
        a host hiccup restarts most stewards meanwhile, so they forgot what they promised)."""
        key = (src.ident, msg.resource, msg.epoch, msg.round)
        if key not in self._stalled:
            restart = self.rng.uniform(0.001, 0.01)
            self._stalled[key] = self.t + 0.1 + restart + self.lc.acceptor_lease
            if (
                self.rng.random() < self.p.mass_crash
                and self.t - self._last_hiccup > 2 * self.lc.acceptor_lease
            ):
                self._last_hiccup = self.t
                self._push(self.t + 0.1, "hiccup", restart, src.node)
        self._seq += 1
        held = (self._stalled[key], src.ident, to, msg)
        self._held.setdefault(msg.resource, {})[self._seq] = held
        self._push(self._stalled[key] + 3 * self.lc.acceptor_lease, "unstall", msg.resource, self._seq)

    def _unstall(self, resource: str, seq: int | None = None, token: int = 0) -> None:
        """Let held Proposes of ``resource`` go: one by ``seq`` (its hold is over), or, after a grant with
        ``token``, every one whose quarantine wait is over and that carries a higher ballot (the worst
        moment: it overwrites the fresh grant at the stewards that forgot)."""
        held = self._held.get(resource, {})
        for k in [
            k
            for k, h in held.items()
            if (k == seq if seq is not None else h[0] <= self.t and token_of(h[3].epoch, h[3].round) > token)
        ]:
            _, src, to, msg = held.pop(k)
            self._push(self.t + self.rng.uniform(0.0005, 0.01), "deliver", src, to, msg)
            if seq is None:
                self._push(
                    self.t + self.rng.uniform(0.02, 0.3), "claim", src, resource
                )  # ...and its owner comes back

    def _proxy(self, src: SimNode, to: str, msg: CfgPrepare | CfgAccept) -> bool:
        """A config message to a dead steward of the sender's own home: the sender answers for it.

        The real node takes the dead steward's node lock (free only once its process is gone) for the
        read-decide-write of its durable state; here that is: the steward is down, and on this home's disk.
        """
        idx = int(to[1:])
        if (
            to not in src.proxy_for
            or self.state[idx] not in ("down", "gone")
            or self.home_of[idx] != src.home
        ):
            return False
        cur = src.core.config
        if cur is None:
            return False
        st = self.disk.get(idx, StewardState())
        st, reply = proxy_step(st, to, msg, cur, self.lc.acceptor_lease)
        self.disk[idx] = st
        self.stats.proxied += 1
        self._log(f"{src.ident} answers for dead {to}: {type(reply).__name__}")
        self._push(self.t + self.rng.uniform(0.0005, 0.005), "local", src.ident, f"{to}/proxy", reply)
        return True

    def _release_stall(self, src: SimNode, msg: Release) -> float | None:
        """A stalled connection holds every copy of one Release back by about the same time."""
        key = (src.ident, msg.resource, msg.epoch, msg.round)
        if key not in self._stalls and src.ident in self._force_release_stall:
            self._stalls[key] = self._force_release_stall.pop(src.ident)
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
        """At most one live belief per resource, and no overlapping path claims of two owners, now."""
        # Run after every step of every seed (a sixth of a seed's CPU time): a lone belief, the common case,
        # is checked with SimNode.true written out.
        paths: dict[str, set[str]] = {}
        now = self.t
        for res, bs in self.beliefs.items():
            if len(bs) < 2:
                if bs:
                    b = next(iter(bs.values()))
                    n = b.node
                    if n.born + (b.until - n.base) / n.rate <= now:
                        bs.clear()
                    elif res.startswith("path"):
                        paths[res] = {b.ident}
                continue
            live = [b for b in bs.values() if b.node.true(b.until) > self.t]
            if res.startswith("path"):
                paths[res] = {b.ident for b in live}
            if len(live) > 1 and not is_shared(res):
                desc = ", ".join(
                    f"{b.ident} token={b.token:#x} since={b.since:.3f} until_true={b.node.true(b.until):.3f}"
                    for b in live
                )
                self._violation(f"two holders of {res}: {desc}")
            for ident in [i for i, b in bs.items() if b.node.true(b.until) <= self.t]:
                del bs[ident]
        if len(paths) > 1:
            found = sim_paths.overlapping_holders(paths)
            if found is not None:
                self._violation(found)

    # ---- membership as the runtime sees it ------------------------------------------------------------

    def _live(self, ident: str) -> SimNode | None:
        n = self.by_ident.get(ident)
        return n if n is not None and n.alive else None

    def _reachable(self, a: SimNode, b: SimNode) -> bool:
        if a is b:
            return True
        if self.partitioned and a.group != b.group:
            return False
        return self.cut.get((a.idx, b.idx), -1.0) <= self.t and self.cut.get((b.idx, a.idx), -1.0) <= self.t

    def _view(self, me: SimNode) -> list[Candidate]:
        """The live nodes ``me`` sees (heartbeats arrive: up, not paused, reachable)."""
        return [
            Candidate(n.node, n.born, f"h{n.home}")
            for n in self.nodes.values()
            if n.alive and n.paused_until <= self.t and self._reachable(me, n)
        ]

    def _gone(self, me: SimNode, stewards: tuple[str, ...]) -> set[str]:
        """Stewards ``me`` would replace: left, dead long enough, or proven dead (its own home, lock free)."""
        out: set[str] = set()
        for s in stewards:
            idx = int(s[1:])
            st = self.state[idx] if idx < len(self.state) else "pending"
            if st == "gone":
                out.add(s)
            elif st == "down":
                dead_for = self.t - self.down_since.get(idx, self.t)
                # Proven dead (its own home: the lock is free) after a short grace, so a quick restart
                # under the same node id rejoins without a config change; otherwise after evict_after.
                if dead_for >= self.p.evict_after or (
                    self.home_of[idx] == me.home and dead_for >= self.p.proven_grace
                ):
                    out.add(s)
        return out

    def _manage(self, me: SimNode) -> None:
        """One steward-upkeep pass of node ``me``, as the runtime's manager runs it."""
        cfg = me.core.config
        if cfg is not None and self.rng.random() < 0.2:
            # The periodic re-announce (an announce sent on a link being replaced is lost).
            other = self._random_live(exclude=me)
            if other is not None:
                self._push(self.t + self.rng.uniform(0.01, 0.1), "gossip", other.ident, cfg, me.ident)
        if cfg is None:
            self._maybe_genesis(me)
            return
        if me.core.reconfiguring:
            return
        view = self._view(me)
        ids = {c.node for c in view}
        live_stewards = set(cfg.stewards) & ids
        if can_decide(cfg.stewards, live_stewards):
            if upkeep_leader(cfg.stewards, view) != me.node:
                return
        else:
            # No live steward majority: recover only where death is proven (dead stewards of my home).
            proxyable = {
                s
                for s in cfg.stewards
                if self.state[int(s[1:])] in ("down", "gone") and self.home_of[int(s[1:])] == me.home
            }
            if not can_decide(cfg.stewards, live_stewards | proxyable):
                return
            mine = [c for c in view if self.nodes[int(c.node[1:])].home == me.home]
            if min(mine, key=lambda c: (c.started_at, c.node)).node != me.node:
                return
        target = next_config(cfg.stewards, view, self._gone(me, cfg.stewards))
        if target is None:
            return
        me.proxy_for = frozenset()
        if not can_decide(cfg.stewards, live_stewards):
            self.stats.recoveries += 1
            me.proxy_for = frozenset(proxyable)
        self._log(f"{me.ident} upkeep: {cfg.stewards} -> {target}")
        try:
            self._apply(me, me.core.propose_config(target, me.local(self.t)))
        except ConfigError:
            return

    def _maybe_genesis(self, me: SimNode) -> None:
        """Genesis exactly as the runtime decides it (or anywhere, with the mutant)."""
        if me.home != CREDS_HOME and not self.mutants.genesis_anywhere:
            return
        if me.home in self.home_saw_config:
            return  # this home has seen a config: never invent one
        if not me.genesis_lock:
            holders = [n for n in self.nodes.values() if n.alive and n.home == me.home and n.genesis_lock]
            if holders:
                return
            me.genesis_lock = True
        view = self._view(me)
        if self.t - me.born < 1.0 and len(view) < 3:
            return  # formation window: a moment to see the others
        stewards = formation(view, me.node)
        self.stats.geneses += 1
        self._log(f"{me.ident} genesis {stewards}")
        self._apply(me, me.core.genesis(stewards, me.local(self.t)))

    # ---- event handlers ----------------------------------------------------------------------------

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
            node = self._target(to)
            s = self.by_ident.get(src)
            if node is None or s is None or (self.partitioned and s.group != node.group):
                return
            if self.cut.get((s.idx, node.idx), -1.0) > self.t:
                return
            if self._deferred(node, ev):
                return
            self._apply(node, node.core.receive(src, msg, node.local(self.t)))  # type: ignore[arg-type]
        elif k == "local":
            ident, src, msg = ev.data
            node = self._live(str(ident))
            if node is None or self._deferred(node, ev):
                return
            self._apply(node, node.core.receive(str(src), msg, node.local(self.t)))  # type: ignore[arg-type]
        elif k == "tick":
            ident, at = ev.data
            node = self._live(str(ident))
            if node is None or node.tick_at != at or self._deferred(node, ev):
                return
            node.tick_at = None
            self._apply(node, node.core.tick(node.local(self.t)))
        elif k == "gossip":
            ident, cfg, via = ev.data
            node = self._live(str(ident))
            sender = self.by_ident.get(str(via))
            assert isinstance(cfg, StewardConfig)
            if (
                node is None
                or sender is None
                or not self._reachable(sender, node)
                or self._deferred(node, ev)
            ):
                return  # gossip rides the links: a partition stops it (it comes again with the next change)
            self._apply(node, node.core.adopt(cfg, node.local(self.t)))
        elif k == "manage":
            # One periodic chain per node ("manage", ident, True); kicks on membership changes run once.
            ident, chain = ev.data
            node = self._live(str(ident))
            if node is None or self._deferred(node, ev):
                return
            self._manage(node)
            if chain:
                self._push(self.t + self.rng.uniform(0.3, 0.8), "manage", node.ident, True)
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
            ident, res, *life = ev.data  # (a script may say the max life, else 2 s; then False: no --wait)
            node = self._live(str(ident))
            if node is not None and node.paused_until <= self.t:
                # A retry of a refused claim (``--wait``): queued at the stewards that refuse it.
                max_life = float(life[0]) if life and isinstance(life[0], float) else 2.0
                wait = life[1:2] != [False]
                self._apply(node, node.core.claim(str(res), max_life, node.local(self.t), wait=wait))
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
                if target:
                    try:
                        self._apply(node, node.core.propose_config(target, node.local(self.t)))
                    except ConfigError:
                        pass
        elif k == "heal":
            self.partitioned = self.split_homes = False
            self._log("heal")
            # Links come back up: each side announces its config on them (on_link_up).
            for a in self.nodes.values():
                for b in self.nodes.values():
                    if a is not b and a.alive and b.alive and a.core.config is not None:
                        self._push(
                            self.t + self.rng.uniform(0.01, 0.3), "gossip", b.ident, a.core.config, a.ident
                        )
            self._membership_changed()
        elif k == "start":
            (idx,) = ev.data
            assert isinstance(idx, int)
            self._start(idx)
        elif k == "restart":
            (idx,) = ev.data
            assert isinstance(idx, int)
            if self.state[idx] == "down":
                self.stats.restarts += 1
                self._start(idx)
        elif k == "join":
            if len(self.home_of) < self.p.max_nodes and self.rng.random() < self.p.join_rate * 3:
                idx = self._add_node(self.rng.randrange(self.p.homes))
                self._start(idx)
            self._push(self.t + self.rng.uniform(1.0, 3.0), "join")
        elif k == "stall":  # scripted: hold this node's next Proposes
            self._force_stall[str(ev.data[0])] = None
        elif k == "stall_release":  # scripted: (ident, seconds) hold every copy of this node's next Release
            ident, held_for = ev.data
            assert isinstance(held_for, float)
            self._force_release_stall[str(ident)] = held_for
        elif k == "cut":  # scripted: (idx, idx, until[, one_way]) no messages between two nodes until then
            i, j, until, *one_way = ev.data
            assert isinstance(i, int) and isinstance(j, int) and isinstance(until, float)
            self.cut[(i, j)] = until
            if not one_way:
                self.cut[(j, i)] = until
            self._log(f"cut n{i} {'to' if one_way else 'from'} n{j} until {until:.3f}")
        elif k == "pause":  # scripted: (ident, seconds) stop a node (SIGSTOP) for that long
            ident, pause = ev.data
            node = self._live(str(ident))
            assert isinstance(pause, float)
            if node is not None:
                node.paused_until = self.t + pause
                self._log(f"pause {node.ident} until {node.paused_until:.3f}")
        elif k == "config":  # scripted: (ident, stewards) this node proposes that steward set
            ident, chosen = ev.data
            node = self._live(str(ident))
            assert isinstance(chosen, tuple)
            if node is not None and node.core.config is not None:
                self._log(f"{node.ident} propose_config {chosen}")
                self._apply(node, node.core.propose_config(chosen, node.local(self.t)))
        elif k == "release":
            ident, res = ev.data
            node = self._live(str(ident))
            if node is not None:
                self._apply(node, node.core.release(str(res), node.local(self.t)))
        elif k == "probe":  # (ident, file[, again]) a pre-edit check of that file (again: a second caller's)
            ident, file, *again = (str(x) for x in ev.data)
            node = self._live(ident)
            if node is not None and not (again and node.paused_until > self.t):
                self._check(node, file)
        elif k == "check_timeout":  # (ident, resource, asked): that caller stops waiting (NoQuorum)
            ident, res, asked = ev.data
            callers = self.probes.get((str(ident), str(res)), [])
            for c in callers:
                if c[0] == asked:
                    callers.remove(c)
                    self.stats.checks_timed_out += 1
                    self.probe_log.append((self.t, str(ident), c[2], "?"))
                    self.check_waits.append((c[0], self.t))
                    break
        elif k == "slow":  # scripted: (idx, idx, until, extra) messages one way sent before then are late
            i, j, until, extra = ev.data
            assert isinstance(i, int) and isinstance(j, int) and isinstance(until, float)
            assert isinstance(extra, float)
            self.slow[(i, j)] = (until, extra)
            self._log(f"slow n{i} to n{j} by {extra:.3f} until {until:.3f}")
        elif k == "unstall":
            res, seq = ev.data
            assert isinstance(res, str) and isinstance(seq, int)
            self._unstall(res, seq)
        elif k == "hiccup":
            restart, spare = ev.data
            assert isinstance(restart, float) and isinstance(spare, str)
            self._hiccup(restart, spare)
        elif k == "kill":  # scripted: (idx, for_good)
            idx, for_good = ev.data
            assert isinstance(idx, int)
            if self.state[idx] == "up":
                self._kill(self.nodes[idx], for_good=bool(for_good))
        elif k == "die":
            (ident,) = ev.data
            node = self._live(str(ident))
            if node is not None:
                self._kill(node, for_good=True)

    def _start(self, idx: int) -> None:
        node = self._spawn(idx)
        self._log(f"start {node.ident} (home {node.home}, disk {self.disk.get(idx)})")
        src = self._random_live(exclude=node)
        if src is not None and src.core.config is not None and self._reachable(src, node):
            self._push(self.t + self.rng.uniform(0.01, 0.3), "gossip", node.ident, src.core.config, src.ident)
        if node.core.config is not None:
            self.home_saw_config.add(node.home)
        self._schedule_tick(node)
        self._push(self.t + self.rng.uniform(0.05, 0.3), "manage", node.ident, True)
        self._membership_changed()

    def _membership_changed(self) -> None:
        """Upkeep reacts to joins and deaths: every live node runs its manager soon."""
        for n in self.nodes.values():
            if n.alive:
                self._push(self.t + self.rng.uniform(0.02, 0.2), "manage", n.ident, False)

    def _kill(self, node: SimNode, for_good: bool) -> None:
        node.alive = False
        node.genesis_lock = False  # the OS drops a dead process's locks
        self.state[node.idx] = "gone" if for_good else "down"
        self.down_since[node.idx] = self.t
        for bs in self.beliefs.values():
            bs.pop(node.ident, None)  # a dead process believes nothing
        self._log(f"{'gone' if for_good else 'crash'} {node.ident}")
        self._membership_changed()

    def _random_live(self, exclude: SimNode | None = None) -> SimNode | None:
        live = [n for n in self.nodes.values() if n.alive and n is not exclude]
        return self.rng.choice(live) if live else None

    def _check(self, node: SimNode, file: str) -> None:
        """A caller asks ``node`` for a pre-edit check of ``file``, as the claims service's ``check`` does: it
        joins the callers waiting on that resource, asks the core (which sends a round, or says the round it
        just sent answers this question too), and waits ``check_within`` at most. A random check may be
        followed by another caller's of the same file while it is under way (``recheck``)."""
        res = sim_paths.probe_resource(file)
        now = node.local(self.t)
        self.probes.setdefault((node.ident, res), []).append((self.t, now, file))
        if self.check_within < math.inf:
            self._push(self.t + self.check_within, "check_timeout", node.ident, res, self.t)
        self._apply(node, node.core.probe(res, now))
        if self.recheck and self.checks_rng.random() < self.recheck:
            self._push(self.t + self.checks_rng.uniform(0.002, 0.4), "probe", node.ident, file, "again")

    def _probed(self, node: SimNode, e: Probed) -> None:
        """A pre-edit check answered: as the claims service does, the answer of every caller waiting on that
        resource that asked at or before the answering round's send (``Probed.sent``, the prober's clock);
        the later callers wait on. "Nobody" is wrong for a caller if another identity held an exclusive
        claim on a pattern matching the file from before THAT caller asked until the answer (a steward
        majority had its lease live then, and any two majorities share a steward): the checker judges by
        the true times, whatever the core said of its round."""
        key = (node.ident, e.resource)
        waiting = self.probes.pop(key, [])
        callers = [c for c in waiting if c[1] <= e.sent]
        if len(callers) < len(waiting):
            self.probes[key] = [c for c in waiting if c[1] > e.sent]
        named = e.denied.holder if e.denied is not None else "?" if e.unavailable else ""
        for sent, _, file in callers:
            self.probe_log.append((self.t, node.ident, file, named))
            self.check_waits.append((sent, self.t))
            if e.denied is not None:
                self.stats.probes_denied += 1
                continue
            if e.unavailable:
                continue
            self.stats.probes_free += 1
            holder = sim_paths.holder_of(self.beliefs, file, node.ident, sent, self.t)
            if holder is not None:
                asked = f"{node.ident}'s check of {file} (asked at {sent:.3f})"
                self._violation(f"{asked} found nobody; {holder}")

    def _workload(self) -> None:
        node = self._random_live()
        if node is None or node.paused_until > self.t:
            return
        if self.path_rate and self.path_rng.random() < self.path_rate:
            if self.path_rng.random() < 0.25:  # a pre-edit check of a file, not a claim
                file, _ = sim_paths.probe(self.path_rng)
                self._check(node, file)
                return
            res = sim_paths.pick(self.path_rng)
        else:
            res = f"r{self.rng.randrange(self.p.resources)}"
        now = node.local(self.t)
        if res in node.core.held(now) and self.rng.random() < 0.5:
            self._apply(node, node.core.release(res, now))
            if self.rng.random() < self.p.reclaim:
                self._push(self.t + self.rng.uniform(0.1, 6.0), "claim", node.ident, res)
        elif self.rng.random() < 0.8:
            self._apply(node, node.core.claim(res, self.rng.choice([0.5, 2.0, 6.0, 20.0]), now))

    def _current_config(self) -> StewardConfig | None:
        cfgs = [n.core.config for n in self.nodes.values() if n.alive and n.core.config is not None]
        return max(cfgs, key=lambda c: c.epoch) if cfgs else None

    def _hiccup(self, restart: float, spare: str) -> None:
        """The stewards (but ``spare``; at least a majority) die at once and come back ``restart`` s later."""
        cfg = self._current_config()
        if cfg is None:
            return
        victims = [n for s in cfg.stewards if s != spare and (n := self._target(s)) is not None]
        self._log(f"hiccup: stewards {[n.node for n in victims]} restart")
        if len(victims) < cfg.majority():
            return
        for n in victims:
            self.stats.crashes += 1
            self._kill(n, for_good=False)
            self._push(self.t + restart, "restart", n.idx)

    def _fault(self) -> None:
        p, r = self.p, self.rng.random()
        if r < p.crash_rate:
            node = self._random_live()
            if node is None:
                return
            self.stats.crashes += 1
            forever = self.rng.random() < p.forever
            self._kill(node, for_good=forever)
            if not forever:
                self._push(self.t + self.rng.uniform(0.5, 5.0), "restart", node.idx)
        elif r < p.crash_rate + p.leave_rate:
            node = self._random_live()
            if node is None:
                return
            self._leave(node)
        elif r < p.crash_rate + p.leave_rate + p.pause_rate:
            node = self._random_live()
            if node is not None:
                node.paused_until = self.t + self.rng.uniform(0.2, p.max_pause)
                self._log(f"pause {node.ident} until {node.paused_until:.3f}")
        elif r < p.crash_rate + p.leave_rate + p.pause_rate + p.link_cut_rate:
            if len(self.nodes) < 2:
                return
            a, b = self.rng.sample(sorted(self.nodes), 2)
            until = self.t + self.rng.uniform(0.5, 4.0)
            self.cut[(a, b)] = until
            if self.rng.random() < 0.5:
                self.cut[(b, a)] = until
            self._log(f"cut n{a}->n{b} until {until:.3f}")
        elif (
            r < p.crash_rate + p.leave_rate + p.pause_rate + p.link_cut_rate + p.partition_rate
            and not self.partitioned
        ):
            self.partitioned = True
            for n in self.nodes.values():
                n.group = self.rng.randrange(2)
            self._log("partition " + " ".join(f"{n.ident}:{n.group}" for n in self.nodes.values()))
            self._push(self.t + self.rng.uniform(0.5, 5.0), "heal")

    def _leave(self, node: SimNode) -> None:
        """``meshctl down``: release every claim, hand stewardship over if needed, then go for good."""
        now = node.local(self.t)
        for res in sorted(node.core.held(now)):
            self._apply(node, node.core.release(res, now))
        cfg = node.core.config
        if cfg is not None and node.node in cfg.stewards and not node.core.reconfiguring:
            view = [c for c in self._view(node) if c.node != node.node]
            target = next_config(cfg.stewards, view, {node.node})
            if target is not None:
                try:
                    self._apply(node, node.core.propose_config(target, now))
                except ConfigError:
                    pass
        self._log(f"leave {node.ident}")
        self._push(self.t + self.rng.uniform(0.05, 1.0), "die", node.ident)

    def _reconfig_nemesis(self) -> None:
        """Cut a holder off one steward until that steward's copy of its lease expires (the lease then lives
        on a bare majority), stop the holder, change the stewards twice in quick succession (add fresh
        ones, remove another), and let other nodes claim the resource."""
        held = [(r, b) for r, bs in sorted(self.beliefs.items()) for _, b in sorted(bs.items())]
        cfg = self._current_config()
        if not held or cfg is None:
            return
        res, b = self.rng.choice(held)
        others = [st for st in cfg.stewards if st != b.node.node and self._target(st) is not None]
        if not others:
            return
        victim = self._target(self.rng.choice(others))
        assert victim is not None
        until = self.t + self.lc.acceptor_lease + 1.5
        self.cut[(b.node.idx, victim.idx)] = self.cut[(victim.idx, b.node.idx)] = until
        self._log(f"nemesis: cut holder {b.ident} of {res} from steward {victim.node}")
        self._push(self.t + self.lc.acceptor_lease + 1.0, "strike", b.ident, res, victim.node)

    def _strike(self, holder: str, res: str, spared: str) -> None:
        h = self._live(holder)
        node = self._random_live(exclude=h)
        if h is None or node is None or node.core.config is None or node.core.reconfiguring:
            return
        h.paused_until = max(h.paused_until, self.t + self.rng.uniform(1.0, 3.0))
        cur = node.core.config
        fresh = [n.node for n in self.nodes.values() if n.alive and n.node not in cur.stewards and n is not h]
        if not fresh:
            return
        removable = [st for st in cur.stewards if st != spared]
        if not removable:
            return
        add = (*cur.stewards, *self.rng.sample(fresh, min(len(fresh), self.rng.choice([1, 2]))))
        gone = self.rng.choice(removable)
        self._log(f"strike: pause {holder}; {node.ident} adds {add}, then removes {gone}")
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
        """A random node proposes a random steward set (any change at once), competing with upkeep."""
        if not follow_up and self.rng.random() >= self.p.reconfig_rate * 3:
            return
        node = self._random_live()
        if node is None or node.core.config is None or node.core.reconfiguring:
            return
        cur = node.core.config
        up = [n.node for n in self.nodes.values() if n.alive]
        pool = up + [f"n{i}" for i, s in enumerate(self.state) if s == "down" and self.rng.random() < 0.2]
        size = min(len(pool), self.rng.choice([1, 3, 3, 5]))
        if size < 1:
            return
        keep = self.rng.randint(0, min(size, len(cur.stewards)))
        target = self.rng.sample(cur.stewards, keep)
        rest = [x for x in pool if x not in target]
        target += self.rng.sample(rest, min(len(rest), size - len(target)))
        if not target or set(target) == set(cur.stewards):
            return
        self._log(f"{node.ident} propose_config {tuple(target)} (epoch {cur.epoch + 1})")
        try:
            self._apply(node, node.core.propose_config(tuple(target), node.local(self.t)))
        except ConfigError:
            return
        if not follow_up and self.rng.random() < self.p.double_reconfig:
            self._push(self.t + self.rng.uniform(0.05, 0.5), "reconfig", True)

    # ---- run ---------------------------------------------------------------------------------------

    def run(self) -> SimStats:
        """Run to ``params.duration`` true seconds; raise SafetyViolation on the first violation."""
        p = self.p
        for i in range(p.nodes):
            # Node 0 is in the home that created the mesh; the others spread over the homes.
            if p.home_layout:
                self._add_node(p.home_layout[i])
            else:
                self._add_node(0 if i == 0 else self.rng.randrange(p.homes))
        if p.split_start > 0:
            # Genesis in two halves: the homes cannot see each other while the mesh forms.
            self.partitioned = self.split_homes = True
            self._push(p.split_start, "heal")
        if p.formation:
            for i in range(p.nodes):
                self._push(p.start_at[i] if p.start_at else self.rng.uniform(0.0, p.stagger), "start", i)
        else:
            for i in range(p.nodes):
                self._spawn(i)
            first = self.nodes[0]
            stewards = tuple(f"n{i}" for i in range(min(p.stewards, p.nodes, 3)))
            first.genesis_lock = True
            self.stats.geneses += 1
            self._apply(first, first.core.genesis(stewards, first.local(0.0)))
            for n in self.nodes.values():
                self._push(self.rng.uniform(0.1, 0.6), "manage", n.ident, True)
        if self.script is not None:
            for at, kind, data in self.script:
                self._push(at, kind, *data)
        else:
            self._push(0.5, "workload")
            self._push(1.0, "fault")
            self._push(2.0, "reconfig")
            self._push(3.0, "nemesis")
            self._push(2.0, "join")
        while self._q:
            ev = heapq.heappop(self._q)
            if ev.t > p.duration:
                break
            self.t = ev.t
            self.step += 1
            self._handle(ev)
            self.check()
        self.stats.steps = self.step
        self.stats.handoffs = self.stats.configs
        return self.stats


def _quiet(nodes: int, duration: float) -> SimParams:
    """A scenario's run: no faults, crashes, partitions, reconfigurations or retries but its script's."""
    return SimParams(
        nodes=nodes, stewards=3, resources=1, duration=duration, drop=0.0, dup=0.0, long_delay=0.0,
        crash_rate=0.0, pause_rate=0.0, partition_rate=0.0, reconfig_rate=0.0, double_reconfig=0.0,
        persistence=0.0, reclaim=0.0, homes=1, evict_after=60.0, mass_crash=0.0,
    )  # fmt: skip


def _raise_rounds(node: str, times: int) -> Script:
    """`node` claims and releases r0 `times` (from t = 1.0, every 0.1 s): every steward's numbers for r0
    go up."""
    script: Script = []
    for i in range(times):
        script += [(1.0 + 0.1 * i, "claim", (node, "r0")), (1.09 + 0.1 * i, "release", (node, "r0"))]
    return script


def stale_owner_open(mutants: Mutants) -> Simulation:
    """PaxosLease Revisited's StaleOwnerOpen counterexample, replayed through the simulator and its checker.

    p (n3) raises the rounds of r0, then makes a fresh attempt whose Proposes a stalled connection holds
    back; stewards n0 and n1 restart meanwhile; after their quarantine q (n4, never saw those rounds)
    is granted r0 with a low ballot; the stale Proposes then land and overwrite q's lease at the stewards
    that forgot they promised more; p claims r0 again and sees its own (stale) lease reported. Without
    the renewal qualifier it takes that as open: two holders. It needs stewards that forget their
    promises (``no_ballot_floor``, PaxosLease's diskless acceptor): with the durable floor the restarted
    stewards refuse q's low ballot, q learns the floor, and the stale Proposes are outnumbered.
    """
    quiet = _quiet(nodes=5, duration=10.0)
    script = _raise_rounds("n3/0", 4)  # p raises the rounds (once every node has learned the config)
    script += [
        (2.0, "stall", ("n3/0",)),
        (2.01, "claim", ("n3/0", "r0")),
        (2.2, "hiccup", (0.005, "n2")),  # n0 and n1 restart: back at once, serving only after D_A
        (2.3 + LeaseConfig.fast().acceptor_lease, "claim", ("n4/0", "r0")),
    ]
    # The stale Proposes are the two-round kind (a one-round Propose never overwrites a live lease).
    two_rounds = replace(LeaseConfig.fast(), single_round=False)
    return Simulation(0, mutants, params=quiet, check_tokens=False, script=script, lease=two_rounds)


def stale_fast_accept(mutants: Mutants, seed: int = 0, hold_release: bool = True) -> Simulation:
    """A failed one-round claim's stale accept, HIGHER than the believed lease, carried by a hand-off.

    H (n3) is cut off steward n2 and holds r0 through n0 and n1 (two rounds: F raised the numbers before).
    F (n4) claims r0 twice in one round: the first refusals teach it H's number; its second Propose, above
    H's, is taken by n2 alone (nothing live there) and refused by n0 and n1; F falls back and is denied,
    and the Release of its stale accept is held back on a stalled connection. n2, cut off n0, moves the
    stewards to (n1, n2, n5): the hand-off comes from n2 and n1, one with F's higher stale accept, one with
    H's lease. Then F's Release lands and F claims again while H still believes (its renewals ran through
    n0 and n1 until the change). The hand-off must keep an exclusion nobody owns (``CONTESTED``): with
    ``handoff_highest_owner`` it keeps F's, which F's own Release clears, and F is granted r0 under H.
    """
    quiet = _quiet(nodes=6, duration=8.0)
    script = _raise_rounds("n4/0", 3)  # F raises the numbers of r0 at every steward
    script += [
        (1.4, "cut", (3, 2, 10.0)),
        (1.45, "claim", ("n3/0", "r0")),  # H: refused in one round, granted in two by n0 and n1
        (1.6, "claim", ("n4/0", "r0")),  # F: denied; its refusals taught it H's number
        (1.7, "stall_release", ("n4/0", 1.0)),
        (1.7, "claim", ("n4/0", "r0")),  # F: one round above H's number, taken by n2 alone; Release held
        (1.8, "cut", (2, 0, 10.0)),
        (1.85, "config", ("n2/0", ("n1", "n2", "n5"))),
        (2.9, "claim", ("n4/0", "r0")),  # after F's Release reached the new stewards
    ]
    if not hold_release:
        script = [e for e in script if e[1] != "stall_release"]
    return Simulation(seed, mutants, params=quiet, script=script, lease=LeaseConfig.fast())


RACED_PATHS = ("path/src/**", "path/src/app/**", "path/src/app/*.py")
"""Three path claims that conflict pairwise (``three_way_race(paths=True)``)."""


def three_way_race(
    mutants: Mutants, seed: int = 0, claimants: tuple[int, ...] = (0, 1, 2), paths: bool = False
) -> Simulation:
    """Three nodes claim r0 at once, without ``--wait``, on a quiet mesh (tests/integration/test_claims.py's
    race of three sessions that are the stewards): each one-round thrifty Propose can be taken by one steward
    (itself) or by a minority beside the winner's majority; exactly one is granted and every refusal must name
    it (``grant_log``, ``deny_log``), not a loser whose stale accept a bare majority of reports showed.
    ``paths``: each claims another of three pairwise overlapping path patterns (``RACED_PATHS``) instead."""
    quiet = _quiet(nodes=max(3, *claimants, 2) + 1, duration=4.0)
    script: Script = [
        (1.0, "claim", (f"n{i}/0", RACED_PATHS[k] if paths else "r0", 30.0, False))  # no --wait
        for k, i in enumerate(claimants)
    ]
    return Simulation(seed, mutants, params=quiet, script=script, lease=LeaseConfig.fast())


def stale_path_accept(mutants: Mutants, seed: int = 0) -> Simulation:
    """Pre-edit checks beside a failed path claim's stale accept at one steward (``probe_log``).

    F (n4), cut off stewards n0 and n1, claims ``src/**`` in one round: only n2 takes it, F's attempt times
    out, and its Release is held back on a stalled connection: a stale accept at n2, live for D_A, that
    nobody believes. n2 checks ``src/app/x.py``: nobody holds a claim on it (the old rule named F whenever
    n2's own report was among the first two answers). Then H (n3) is granted ``src/app/**`` by n0 and n1
    (n2 refuses it for F's stale accept) and n2 checks again: the check names H, whom a majority reports.
    """
    quiet = _quiet(nodes=5, duration=4.0)
    script: Script = [
        (1.4, "cut", (4, 0, 10.0, True)),
        (1.4, "cut", (4, 1, 10.0, True)),
        (1.45, "stall_release", ("n4/0", 5.0)),
        (1.5, "claim", ("n4/0", "path/src/**", 30.0, False)),
        (2.3, "probe", ("n2/0", "src/app/x.py")),
        (2.6, "claim", ("n3/0", "path/src/app/**", 30.0, False)),
        (3.0, "probe", ("n2/0", "src/app/x.py")),
    ]
    return Simulation(seed, mutants, params=quiet, script=script, lease=LeaseConfig.fast())


def short_exclusion(mutants: Mutants, seed: int = 0, lease: LeaseConfig | None = None) -> Simulation:
    """A holder cut off the stewards believes its lease to the end; a waiting claimant is told the moment
    each steward's exclusion ends (``Free``) and is granted at once.

    H (n3) claims r0 and, once granted, can no longer reach a steward (no renewal): it believes until its
    deadline, D_P on its own clock from its Propose. W (n4) claims r0 with ``--wait`` meanwhile: refused,
    queued, woken by each steward when its accept of H's lease runs out. With D_A satisfying containment that
    is after H's deadline, whatever the clock rates (within rho). With ``short_acceptor_lease`` (D_A = D_P)
    it is only after it when the stewards' clocks are no faster than H's: otherwise W holds while H believes.
    Clock rates here err by up to rho = 10 % (the lease timing says so): that window is wide enough for W."""
    quiet = replace(_quiet(nodes=5, duration=6.0), clock_spread=0.1)
    lc = lease or LeaseConfig(lease=2.0, rho=0.1, config_patience=10.0)
    script: Script = [
        (1.0, "claim", ("n3/0", "r0", 60.0)),
        *[(1.3, "cut", (3, s, 60.0, True)) for s in range(3)],  # H's own messages never reach a steward
        *[(t, "claim", ("n4/0", "r0", 60.0)) for t in (1.5, 3.0)],  # queued at the stewards (WAITER_TTL)
    ]
    return Simulation(seed, mutants, params=quiet, script=script, lease=lc)


def late_quorum(mutants: Mutants, seed: int = 0) -> Simulation:
    """A proposer stopped between its Propose and the accepts (SIGSTOP at the worst time, ``pause``).

    H (n3) claims r0 and is paused for 2.5 s right after sending its Propose; the stewards accept at once,
    their leases running D_A (3.06 s) from then. When H resumes, the accepts it finds are a quorum reached
    after its deadline (D_P = 2 s from the Propose): the real rule gives up (correction 5); cut off from the
    stewards, H cannot renew. n4 claims r0 just after the acceptors' leases ran out. With
    ``deadline_at_quorum`` H counts its lease from the late quorum and still believes it: two holders."""
    quiet = _quiet(nodes=5, duration=7.0)
    lc = LeaseConfig.fast()
    script: Script = [
        (1.0, "claim", ("n3/0", "r0", 60.0)),
        (1.0001, "pause", ("n3/0", 2.5)),
        *[(3.4, "cut", (3, s, 60.0, True)) for s in range(3)],  # H's own messages never reach a steward
        (1.0 + lc.acceptor_lease * (1 + lc.rho) + 0.1, "claim", ("n4/0", "r0")),
    ]
    return Simulation(seed, mutants, params=quiet, script=script, lease=lc)


def slow_probe(mutants: Mutants, seed: int = 0, lease: LeaseConfig | None = None) -> Simulation:
    """A pre-edit check whose round outlasts the containment margin, beside a holder that renews through
    other stewards (production timings: D_P = 10 s, D_A = 11.22 s, attempt timeout 2 s).

    H (n3) is granted ``src/**`` by n0 and n1 at t = 1 (its messages to n2 are cut until 9.5), then can no
    longer reach n0: its renewals fail (one promise, n1's) until n2 comes back, paused from 9.5 to 10.95: the
    renewal asked at about 10.33 is answered then and granted by n1 and n2 before H's deadline (11): H holds
    throughout. P (n4) checks ``src/app/x.py`` at 10.9: n1 names H, n2 (before it accepts H's renewal) has
    nothing, and n0, paused from 10.5 to 12.3, answers after H's first lease ran out there (about 12.22):
    nothing. Two of three report nothing: counted as they come (``probe_late_answers``: the round then
    lasted 1.4 s, past the 1 s margin), the check says "nobody" while H held for the whole question. Counted
    only within the margin of the round's send (``LeaseConfig.probe_window``), n0's answer is too late; the
    round asked again at 11.9 hears H from n1 and n2 (renewed) and names H."""
    quiet = _quiet(nodes=5, duration=14.0)
    lc = lease or LeaseConfig()
    script: Script = [
        (0.5, "cut", (3, 2, 9.5, True)),  # H's messages never reach n2 until 9.5
        (1.0, "claim", ("n3/0", "path/src/**", 600.0, False)),
        (1.2, "cut", (3, 0, 60.0, True)),  # ...nor n0 after its grant
        (9.5, "pause", ("n2/0", 1.25)),  # n2 answers H's renewal (and P's check) at 10.75
        (10.5, "pause", ("n0/0", 2.0)),  # n0 answers P's check at 12.5
        (10.7, "probe", ("n4/0", "src/app/x.py")),
    ]
    return Simulation(seed, mutants, params=quiet, script=script, lease=lc)


def overlapping_checks(
    mutants: Mutants, seed: int = 0, within: float = CHECK_WITHIN, second_late: float = 0.0
) -> Simulation:
    """Two pre-edit checks of one file on one node, the second asked while the first's round is under way
    (the claims service keeps its callers' waits per resource; production timings: attempt timeout 2 s,
    probe window 1 s; ``within``: how long each caller waits, the service's 0.4 s or until answered).

    P (n4) checks ``src/app/x.py`` at 1.5: every steward has nothing to report, but its answers are slow
    (the stewards' links to P add 0.7 s until 1.6): they reach P at about 2.2, within the round's window.
    H (n3) is granted ``src/**`` at about 1.7. P's first caller gives up at 1.9 (with ``within`` 0.4); a
    second asks at 2.0. Joined to the round of 1.5 (``probe_joins_old_round``), it is told "nobody" at 2.2
    while H has held since before it asked. A fresh round sent at 2.0 names H (by about 2.05: it settles
    both callers, and ends the round of 1.5).

    ``second_late``: the fresh round's answers are that much later still (the links add it from 1.95 until
    2.1), so the round of 1.5 decides first: its "nobody" answers the first caller only (asked before H's
    grant); the second waits for its own round (or gives up at 2.4). Taken as the answer to every question
    asked before it came (``probe_sent_at_answer``), it tells the second caller "nobody" too."""
    quiet = replace(_quiet(nodes=5, duration=6.0), check_within=within)
    script: Script = [(1.4, "slow", (i, 4, 1.6, 0.7)) for i in range(3)]
    if second_late:
        script += [(1.95, "slow", (i, 4, 2.1, second_late)) for i in range(3)]
    script += [
        (1.5, "probe", ("n4/0", "src/app/x.py")),
        (1.7, "claim", ("n3/0", "path/src/**", 600.0, False)),
        (2.0, "probe", ("n4/0", "src/app/x.py")),
    ]
    return Simulation(seed, mutants, params=quiet, script=script, lease=LeaseConfig())


def steady_checks(mutants: Mutants, seed: int = 0, every: float = 0.004, until: float = 4.0) -> Simulation:
    """Pre-edit checks of one file on one node, a new caller every ``every`` s from 1.0 to ``until`` (a
    busy hook, several sessions' tools on one node), faster than the stewards answer (0.5-30 ms a way),
    beside a holder of an overlapping claim from 2.0 (``check_waits``, ``probe_log``; callers wait until
    answered). Each question asked while a round is out needs a fresh round (one sent before it could
    miss a holder granted in between); if each fresh round superseded the one under way, no round would
    live long enough to decide and the first caller would wait for as long as the questions keep coming.
    The older rounds keep running and each answers the callers that asked by its send: every caller is
    told within a round trip or two, and the ones that asked after the holder's grant hear its name."""
    quiet = _quiet(nodes=5, duration=until + 2.0)
    n = round((until - 1.0) / every)
    script: Script = [(1.0 + i * every, "probe", ("n4/0", "src/app/x.py")) for i in range(n)]
    script.append((2.0, "claim", ("n3/0", "path/src/**", 600.0, False)))
    return Simulation(seed, mutants, params=quiet, script=script, lease=LeaseConfig())


def checks_beside_own_shared_claim(
    mutants: Mutants, seed: int = 0, every: float = 0.004, single_round: bool = True
) -> Simulation:
    """P (n4) checks ``src/app/x.py`` every ``every`` s from 1.0 to 12.0 (a busy pre-edit hook) and claims
    it ``--shared`` at 2.0 (production timings; ``single_round``: the claim's first try is one round).

    The check asks under ``path-shared/src/app/x.py``: the name, and at the stewards the slot, of that very
    claim. When a check's question promised its number there (above the claim's: one counter per resource),
    each one that reached a steward between the claim's ask and its Propose got the Propose refused: the
    claim was outvoted until it gave up (Unavailable), or granted and then lost every renewal. A probe that
    promises nothing leaves the claim to its own rounds: granted, renewed every D_P/3 (``stats``)."""
    quiet = _quiet(nodes=5, duration=14.0)
    script: Script = [
        (1.0 + i * every, "probe", ("n4/0", "src/app/x.py")) for i in range(round(11.0 / every))
    ]
    script.append((2.0, "claim", ("n4/0", "path-shared/src/app/x.py", 600.0, False)))
    lc = replace(LeaseConfig(), single_round=single_round)
    return Simulation(seed, mutants, params=quiet, script=script, lease=lc)


def busy_checks(mutants: Mutants, seed: int = 0) -> Simulation:
    """A random run of many pre-edit checks, most followed by another caller's of the same file while the
    first may be under way, beside path claims on overlapping patterns, and messages often late (up to
    0.45 s: within the 0.5 s attempt; no drops, crashes, partitions or steward changes)."""
    p = SimParams(
        nodes=5, stewards=3, resources=1, duration=10.0, drop=0.0, dup=0.0, long_delay=0.5,
        max_long_delay=0.45, crash_rate=0.0, pause_rate=0.0, partition_rate=0.0, reconfig_rate=0.0,
        double_reconfig=0.0, claim_rate=10.0, persistence=0.0, reclaim=0.5, path_claims=0.9, recheck=0.8,
    )  # fmt: skip
    return Simulation(seed, mutants, params=p)


def dead_head(mutants: Mutants, kill: bool = True) -> Simulation:
    """FIFO hand-over past a dead head waiter: n3 holds r0; n4 then n2 wait for it (queued at the stewards in
    that order, and they do not poll: ``persistence`` 0); n4 dies; n3 releases. The stewards reserve r0 for
    n4 first and tell it; its window passes; then it is n2's turn, told with ``Free``: n2 is granted r0
    about ``HEAD_WINDOW`` after the release (``grant_log``). With ``fifo_head_window_forever`` it never is.
    ``kill=False``: n4 lives and is granted r0 first (FIFO), at once."""
    quiet = _quiet(nodes=5, duration=6.0)
    script: Script = [
        (1.0, "claim", ("n3/0", "r0")),
        (1.2, "claim", ("n4/0", "r0")),
        (1.3, "claim", ("n2/0", "r0")),
        (1.5, "release", ("n3/0", "r0")),
    ]
    if kill:
        script.append((1.4, "kill", (4, True)))
    one_round = replace(LeaseConfig.fast(), single_round=True)  # (with two rounds n2 can overtake n4: open)
    return Simulation(0, mutants, params=quiet, script=script, lease=one_round)


def run_seed(
    seed: int,
    mutants: Mutants = NO_MUTANTS,
    beyond_rho: bool = False,
    check_tokens: bool = True,
) -> SimStats:
    """Run one seed; a violation is returned in ``stats.violation`` rather than raised."""
    sim = Simulation(seed, mutants, beyond_rho=beyond_rho, check_tokens=check_tokens)
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
    check_tokens: bool = True,
) -> SimStats | None:
    """Run seeds in order until one violates safety; return its stats (None if none did)."""
    for s in seeds:
        st = run_seed(s, mutants, beyond_rho, check_tokens)
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
    ap.add_argument("--mutant", action="append", choices=Mutants.names(), help="switch a mutant on")
    ap.add_argument("--beyond-rho", action="store_true", help="clock rates beyond rho (may break safety)")
    ap.add_argument("--no-token-check", action="store_true", help="check exclusivity only")
    ap.add_argument("--all", action="store_true", help="keep going after a violation")
    ap.add_argument("--trace", action="store_true", help="print the event trace of the first violating seed")
    a = ap.parse_args(argv)
    mut = Mutants(**dict.fromkeys(a.mutant or [], True))
    t0 = time.perf_counter()
    total = SimStats(seed=-1)
    bad: list[SafetyViolation] = []
    ran = 0
    counted = ("steps", "grants", "renewals", "denied", "lost", "unavailable", "releases", "messages",
               "configs", "fast_reconfigs", "crashes", "restarts", "geneses", "proxied",
               "recoveries")  # fmt: skip
    for s in range(a.seed, a.seed + a.seeds):
        st = run_seed(s, mut, a.beyond_rho, not a.no_token_check)
        ran += 1
        for f in counted:
            setattr(total, f, getattr(total, f) + getattr(st, f))
        if st.violation is not None:
            bad.append(st.violation)
            print(f"VIOLATION {st.violation}")
            if a.trace and len(bad) == 1:
                sim = Simulation(s, mut, beyond_rho=a.beyond_rho, check_tokens=not a.no_token_check)
                sim.trace = []
                try:
                    sim.run()
                except SafetyViolation:
                    pass
                print("\n".join(sim.trace[-120:]))
            if not a.all:
                break
    dt = time.perf_counter() - t0
    names = ",".join(a.mutant or []) or "none"
    print(
        f"seeds={ran} (from {a.seed}) mutant={names} beyond_rho={a.beyond_rho} time={dt:.1f}s "
        + " ".join(f"{f}={getattr(total, f)}" for f in counted)
        + f" violations={len(bad)}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
