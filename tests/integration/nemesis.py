"""Claims under a nemesis with real node processes (shared by tests/integration/test_nemesis.py, bench.soak).

N `meshctl up` processes on 127.0.0.1 (seeds, no mDNS, fast membership, a short lease) log every claim
event to MESH_CLAIM_HISTORY. One claimant task per node (in this process, through the node's control socket)
competes for a few items and overlapping path claims (exclusive and shared, one on a union of patterns):
claim → hold a random time → release. Meanwhile the nemesis, one fault at a
time and every kind once per shuffled cycle:

- kill:      SIGKILL a random node, restart it a moment later (same name and home: same node id, new
             incarnation; a steward restarted this way is the same acceptor again after one D_A, or is
             replaced if upkeep found it proven dead first);
- pause:     SIGSTOP a node that holds a claim (any node if none does) for longer than the lease — up to
             past the acceptors' D_A, so others take the resource over — then SIGCONT;
- partition: cut a minority (1-2 nodes, a holder among them when there is one) off from the rest, both ways,
             through the test-only partition file (MESH_TEST_FAULTS, mesh/testing/faults.py), then heal.

Afterwards every node is killed and `claims_checker` reads the histories.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.claims_checker import CheckReport, check_dir
from tests.integration.harness import FAST, Mesh, free_ports, wait_pid_gone

KINDS = ("kill", "pause", "partition")
# Overlapping path claims: a tree and a glob in it, a shared one over both, and a union reaching into them.
PATH_RESOURCES = ("path/src/**", "path/src/app/*.py", "path-shared/src/app/**", "path/{docs/**,src/*/x.py}")


@dataclass
class NemesisGoals:
    """What a node-level run must show to be evidence: claims granted and changing hands, some from a holder
    that never released (killed, paused or cut off: the case the protocol exists for), and overlapping path
    claims competing (held to "no two holders of overlapping ones")."""

    acquisitions: int = 10
    handovers: int = 5
    takeovers: int = 1
    path_intervals: int = 3

    def missing(self, report: CheckReport) -> list[str]:
        """The goals not met yet, each with its figure (empty: all met)."""
        paths = sum(n for r, n in report.per_resource.items() if r.startswith("path"))
        got = (
            ("acquisitions", report.acquisitions, self.acquisitions),
            ("handovers", report.handovers, self.handovers),
            ("takeovers", report.takeovers, self.takeovers),
            ("path claim intervals", paths, self.path_intervals),
        )
        return [f"{what} {n} < {want}" for what, n, want in got if n < want]


@dataclass
class NemesisConfig:
    """What to run: sizes, timing, and the seed of the nemesis schedule (process timing is not seeded)."""

    seconds: float = 25.0
    nodes: int = 5
    resources: int = 3
    paths: int = 4  # path claims among the resources (PATH_RESOURCES, overlapping)
    lease: float = 2.0
    seed: int = 0
    kinds: tuple[str, ...] = KINDS
    log: bool = False
    settle_timeout: float = 20.0
    # What the run must have shown before it may end (read from the histories so far; None: end on time).
    # Faults go on past `seconds`, up to `max_extra` more, until it has: what a random schedule exercised is
    # then never a matter of luck (a kill that hit no holder, a paused holder whose item nobody asked again).
    goals: NemesisGoals | None = None
    max_extra: float = 90.0

    @property
    def acceptor_lease(self) -> float:
        """D_A as the node derives it (rho 1 %)."""
        from mesh.core.claims import LeaseConfig

        return LeaseConfig(lease=self.lease).acceptor_lease


@dataclass
class NemesisResult:
    """What happened and what the checker found."""

    seconds: float
    actions: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    report: CheckReport = field(default_factory=CheckReport)
    settle_times: list[float] = field(default_factory=list)
    history_dir: Path | None = None
    extra_seconds: float = 0.0  # run past `seconds` until the goals were shown (or max_extra ran out)


class Nemesis:
    """One run: start the nodes, run claimants and faults for `seconds`, stop everything, check."""

    def __init__(self, mesh: Mesh, history: Path, cfg: NemesisConfig) -> None:
        self.mesh = mesh
        self.history = history
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.names = [f"n{i}" for i in range(cfg.nodes)]
        self.resources = [f"job/r{i}" for i in range(cfg.resources)] + list(PATH_RESOURCES[: cfg.paths])
        self.partition_file = history.parent / "partition"
        self.holding: dict[str, set[str]] = {n: set() for n in self.names}
        self.stopped: set[str] = set()
        self.actions: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.settle_times: list[float] = []
        self.extra_seconds = 0.0
        self.last_steward_view = ""
        self._stop = asyncio.Event()

    def say(self, msg: str) -> None:
        if self.cfg.log:
            print(f"[nemesis {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ nodes

    def start_nodes(self) -> None:
        """Start every node (fixed ports so a restarted node is found at the same seed address)."""
        self.history.mkdir(parents=True, exist_ok=True)
        self.partition_file.write_text("")
        self.mesh.extra_env.update(
            MESH_CLAIM_HISTORY=str(self.history), MESH_TEST_FAULTS=str(self.partition_file)
        )
        ports = free_ports(len(self.names))
        seeds = [a for p in ports for a in ("--peer", f"127.0.0.1:{p}")]
        for name, port in zip(self.names, ports, strict=True):
            self.mesh.up(
                name, "--no-mdns", "--port", str(port), *seeds, *FAST, "--lease", str(self.cfg.lease)
            )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every node lists every other alive and knows a steward config of min(3, n) stewards."""
        from mesh.client import connect

        want = min(3, len(self.names))
        deadline = time.monotonic() + timeout
        while True:
            try:
                ok = True
                for name in self.names:
                    async with await connect(name, mesh=self.mesh.name, home=self.mesh.home) as c:
                        info = await c.info()
                        alive = {m.name for m in await c.members() if m.state == "alive"}
                    ok = ok and len(info.stewards) >= want and alive >= set(self.names)
                if ok:
                    return
            except Exception as e:  # settling; reported on timeout
                last: Exception | None = e
            else:
                last = None
            if time.monotonic() > deadline:
                raise AssertionError(f"mesh not ready within {timeout} s (last error: {last!r})")
            await asyncio.sleep(0.2)

    # ------------------------------------------------------------------ claimants

    async def claimant(self, name: str) -> None:
        """Claim a random resource, hold it a random short time, release; forever until stopped."""
        from mesh.client import Client, connect
        from mesh.errors import ClaimDenied, MeshError, NoQuorum

        rng = random.Random(f"{self.cfg.seed}-{name}")
        client: Client | None = None
        try:
            while not self._stop.is_set():
                if client is None:
                    try:
                        client = await connect(name, mesh=self.mesh.name, home=self.mesh.home)
                    except MeshError:
                        await asyncio.sleep(0.2)
                        continue
                resource = rng.choice(self.resources)
                ttl, wait = rng.uniform(1.0, 6.0), rng.uniform(0.5, 2.0)
                try:
                    await asyncio.wait_for(client.claim_once(resource, ttl, wait), wait + 6.0)
                except ClaimDenied:
                    self.outcomes["denied"] += 1
                    continue
                except NoQuorum:
                    self.outcomes["no_quorum"] += 1
                    await asyncio.sleep(0.1)
                    continue
                except (MeshError, TimeoutError):
                    self.outcomes["node_unavailable"] += 1
                    await client.close()
                    client = None
                    await asyncio.sleep(0.2)
                    continue
                self.outcomes["granted"] += 1
                self.holding[name].add(resource)
                try:
                    await asyncio.sleep(rng.uniform(0.0, 2.0))
                    type_, _, item = resource.partition("/")
                    if await asyncio.wait_for(client.release(type_, item), 3.0):
                        self.outcomes["released"] += 1
                    else:
                        self.outcomes["release_not_held"] += 1  # lost or ended (ttl) meanwhile
                except (MeshError, TimeoutError):
                    self.outcomes["release_failed"] += 1
                    await client.close()
                    client = None
                finally:
                    self.holding[name].discard(resource)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()

    # ------------------------------------------------------------------ faults

    def _victim(self, prefer_holder: bool) -> str:
        holders = [n for n in self.names if self.holding[n] and n not in self.stopped]
        pool = holders if prefer_holder and holders else [n for n in self.names if n not in self.stopped]
        return self.rng.choice(sorted(pool))

    async def kill(self) -> None:
        victim = self._victim(prefer_holder=self.rng.random() < 0.5)
        pid = self.mesh.nodes[victim].pid
        self.say(f"SIGKILL {victim} (pid {pid}) holding {sorted(self.holding[victim])}")
        os.kill(pid, signal.SIGKILL)
        self.stopped.add(victim)
        await asyncio.to_thread(wait_pid_gone, pid)
        await asyncio.sleep(self.rng.uniform(0.0, 2.0))
        await asyncio.to_thread(self.mesh.restart, victim)
        self.stopped.discard(victim)
        self.say(f"restarted {victim} (pid {self.mesh.nodes[victim].pid})")

    async def _some_holder(self, timeout: float = 3.0) -> None:
        """Give the claimants a moment to hold something (a fault that hits a holder is the useful one)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout and not any(self.holding[n] for n in self.names):
            await asyncio.sleep(0.05)

    async def pause(self) -> None:
        await self._some_holder()
        victim = self._victim(prefer_holder=True)
        pid = self.mesh.nodes[victim].pid
        hold = self.rng.uniform(self.cfg.lease + 0.5, self.cfg.acceptor_lease + 1.5)
        self.say(f"SIGSTOP {victim} for {hold:.1f} s holding {sorted(self.holding[victim])}")
        os.kill(pid, signal.SIGSTOP)
        self.stopped.add(victim)
        try:
            await asyncio.sleep(hold)
        finally:
            os.kill(pid, signal.SIGCONT)
            self.stopped.discard(victim)

    async def partition(self) -> None:
        await self._some_holder()
        first = self._victim(prefer_holder=True)
        others = [n for n in self.names if n != first]
        size = self.rng.randint(1, max(1, (len(self.names) - 1) // 2))
        minority = sorted([first, *self.rng.sample(others, size - 1)])
        majority = [n for n in self.names if n not in minority]
        hold = self.rng.uniform(self.cfg.acceptor_lease * 0.5, self.cfg.acceptor_lease + 2.0)
        self.say(f"partition {minority} | {majority} for {hold:.1f} s")
        self.partition_file.write_text(" ".join(minority) + "\n" + " ".join(majority) + "\n")
        try:
            await asyncio.sleep(hold)
        finally:
            self.partition_file.write_text("")

    async def steward_state(self) -> tuple[bool, int]:
        """(whole again?, most stewards any node sees as live current identities)."""
        from mesh.client import connect

        idents: set[str] = set()
        epochs: set[int] = set()
        sizes: set[int] = set()
        views: list[set[str]] = []
        stewards_seen: set[tuple[str, ...]] = set()
        for name in self.names:
            async with await connect(name, mesh=self.mesh.name, home=self.mesh.home) as c:
                info = await asyncio.wait_for(c.info(), 2.0)
                members = await asyncio.wait_for(c.members(), 2.0)
            idents.add(info.node_id)  # stewards are node ids: a restarted steward is the same one
            epochs.add(info.epoch)
            sizes.add(len(info.stewards))
            stewards_seen.add(info.stewards)
            views.append({m.node_id for m in members if m.steward and m.state == "alive"})
        live = [len(v & idents) for v in views]
        self.last_steward_view = (
            f"epochs {sorted(epochs)} sizes {sorted(sizes)} live stewards per view {live} "
            f"sets {sorted({','.join(i) for i in stewards_seen})}"
        )
        want = min(3, len(self.names))
        whole = len(epochs) == 1 and sizes == {want} and min(live) == want
        return whole, max(live)

    async def settle(self, timeout: float) -> None:
        """After a fault: wait for a whole steward set; run the recovery if its majority is gone."""
        from mesh.client import connect

        t0 = time.monotonic()
        live = 0
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(Exception):
                whole, live = await self.steward_state()
                if whole:
                    self.settle_times.append(time.monotonic() - t0)
                    self.say(f"steward set whole after {self.settle_times[-1]:.1f} s")
                    return
            await asyncio.sleep(0.2)
        if live * 2 > min(3, len(self.names)) or live == 0:
            self.say(f"steward set not whole after {timeout:.0f} s: {self.last_steward_view}")
            self.actions["unsettled"] += 1
            return
        # A live minority of the stewards is all that is left (faults outpaced replacement): the documented
        # recovery. (0 live means we could not tell: never recover blind, it is unsafe if they live.)
        name = self.rng.choice(self.names)
        self.say(f"steward majority gone ({self.last_steward_view}): meshctl stewards --recover on {name}")
        self.actions["recover"] += 1
        async with await connect(name, mesh=self.mesh.name, home=self.mesh.home) as c:
            await c.recover_stewards()

    def faults(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The fault kinds this nemesis knows (a subclass may add its own)."""
        return {"kill": self.kill, "pause": self.pause, "partition": self.partition}

    def shown(self) -> bool:
        """Whether the histories so far show what the run must (cfg.goals)."""
        return self.cfg.goals is None or not self.cfg.goals.missing(check_dir(self.history))

    async def nemesis(self, end: float) -> None:
        faults = self.faults()
        first = True
        cap = end + self.cfg.max_extra
        while True:
            cycle = list(self.cfg.kinds)
            self.rng.shuffle(cycle)
            for kind in cycle:
                await asyncio.sleep(self.rng.uniform(0.3, 1.5))
                # The first cycle always runs whole: every kind of fault hits at least once, however long
                # the settling after each took (else a slow recovery made the run vacuous). After `end`,
                # faults go on until the histories show what the run must show, or the cap.
                now = time.monotonic()
                if now >= end and not first and (now >= cap or self.shown()):
                    self.extra_seconds = max(0.0, now - end)
                    return
                await faults[kind]()
                self.actions[kind] += 1
                await self.settle(self.cfg.settle_timeout)
            first = False

    # ------------------------------------------------------------------ run

    async def run(self) -> NemesisResult:
        """Claimants and nemesis for `seconds`, then stop all nodes and check the histories."""
        await asyncio.to_thread(self.start_nodes)
        await self.wait_ready()
        t0 = time.monotonic()
        tasks = [asyncio.create_task(self.claimant(n)) for n in self.names]
        try:
            await self.nemesis(t0 + self.cfg.seconds)
        finally:
            self._stop.set()
            for pid in [p.pid for p in self.mesh.nodes.values()]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            self.partition_file.write_text("")
            done, pending = await asyncio.wait(tasks, timeout=12.0)
            for t in pending:
                t.cancel()
            for t in done:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        elapsed = time.monotonic() - t0
        await asyncio.to_thread(self.mesh.cleanup)
        report = check_dir(self.history)
        return NemesisResult(
            elapsed, self.actions, self.outcomes, report, self.settle_times, self.history, self.extra_seconds
        )


def run_nemesis(home: Path, cfg: NemesisConfig) -> NemesisResult:
    """Run one nemesis round under `home` (a fresh directory); nodes are always killed at the end."""
    mesh = Mesh(home=home / "home")
    try:
        return asyncio.run(Nemesis(mesh, home / "history", cfg).run())
    finally:
        mesh.cleanup()
