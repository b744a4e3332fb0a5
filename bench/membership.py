"""Membership benchmarks: discovery time, failure detection, `meshctl status` wall time, RSS and idle CPU.

Every node is a real `meshctl up` process on 127.0.0.1 under a throwaway home with a mesh name of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import free_ports, managed_process, meshctl, sample_usage
from bench.sections import Context, section

MESHCTL = [sys.executable, "-m", "mesh.cli.main"]


@dataclass
class Cluster:
    """N node processes of one mesh; `stack` owns them (killed on exit)."""

    home: Path
    mesh: str
    stack: contextlib.ExitStack
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return dict(os.environ, MESH_HOME=str(self.home), MESH_MESH=self.mesh)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.home / f"{name}.log"
        proc = self.stack.enter_context(
            managed_process([*MESHCTL, "up", "--name", name, *args], log_path=log, env=self.env())
        )
        self.procs[name] = proc
        return proc

    def socket(self, name: str) -> Path | None:
        """The node's control socket once it exists (it serves before the node's start-up join completes)."""
        from mesh.paths import control_socket_path

        p = control_socket_path(self.home / "meshes" / self.mesh / "nodes" / name)
        return p if p.exists() else None


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp, contextlib.ExitStack() as stack:
        yield Cluster(home=Path(tmp), mesh="bench-" + uuid.uuid4().hex[:8], stack=stack)


async def _states(sock: Path) -> dict[str, str]:
    from mesh.client import Client
    from mesh.paths import RunningNode

    node = RunningNode(name="?", mesh="?", node_id="?", pid=0, socket=sock, address="", state_dir=sock.parent)
    async with Client(node) as c:
        return {m.name: m.state for m in await c.members()}


async def _poll(c: Cluster, names: list[str], want: Any, timeout: float, interval: float = 0.01) -> float:
    """Poll every node's member list until `want(name, states)` holds for all at once; returns when
    (monotonic).

    The poller must not be what slows a forming mesh down (48 nodes on 2 cores): one client per node stays
    open, and each round asks only the nodes that did not satisfy `want` yet; once none is left, one more
    round asks every node, and only if all satisfy it at that moment is that the time (else the ones that
    do not are asked again).
    """
    from mesh.client import Client
    from mesh.paths import RunningNode

    deadline = time.monotonic() + timeout
    clients: dict[str, Client] = {}
    pending = set(names)
    try:
        while time.monotonic() < deadline:
            for n in names:
                sock = c.socket(n)
                if n not in clients and sock is not None:
                    node = RunningNode(name=n, mesh="?", node_id="?", pid=0, socket=sock, address="",
                                       state_dir=sock.parent)  # fmt: skip
                    with contextlib.suppress(Exception):  # not serving yet: next round
                        clients[n] = await Client(node).__aenter__()
            confirming = not pending
            ask = names if confirming else [n for n in names if n in pending and n in clients]
            results = await asyncio.gather(*(clients[n].members() for n in ask if n in clients),
                                           return_exceptions=True)  # fmt: skip
            for n, r in zip(ask, results, strict=True):
                ok = not isinstance(r, BaseException) and want(n, {m.name: m.state for m in r})
                if ok:
                    pending.discard(n)
                else:
                    pending.add(n)
            if confirming and not pending:
                return time.monotonic()
            if pending:
                await asyncio.sleep(interval)
    finally:
        for cl in clients.values():
            with contextlib.suppress(Exception):
                await cl.close()
    raise TimeoutError(f"condition not reached within {timeout}s")


def _all_alive(names: list[str]) -> Any:
    return lambda _n, st: {k for k, v in st.items() if v == "alive"} >= set(names)


def _ready(c: Cluster, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not (c.home / "meshes" / c.mesh / "nodes" / name / "node.json").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {name} did not become ready")
        time.sleep(0.01)


def discovery_time(n: int, mdns: bool) -> tuple[float, float]:
    """(seconds from the last node's start until all n list each other; same when all start at once)."""
    out: list[float] = []
    for staggered in (True, False):
        with cluster() as c:
            names = [f"n{i:02d}" for i in range(n)]
            ports = free_ports(n)
            t_first = t_last = time.monotonic()
            for i, name in enumerate(names):
                args = ["--port", str(ports[i])]
                args += [] if mdns else ["--no-mdns", "--peer", f"127.0.0.1:{ports[0]}"]
                t_last = time.monotonic()
                c.start(name, *args)
                if staggered and i < n - 1:
                    _ready(c, name)
            done = asyncio.run(_poll(c, names, _all_alive(names), timeout=30))
            out.append(done - (t_last if staggered else t_first))
    return out[0], out[1]


def detection_time(n: int, sig: int, preset: list[str], timeout: float) -> float:
    """Seconds from sending `sig` to one node until every other node shows it dead."""
    with cluster() as c:
        names = [f"n{i:02d}" for i in range(n)]
        ports = free_ports(n)
        for i, name in enumerate(names):
            c.start(name, "--no-mdns", "--port", str(ports[i]), "--peer", f"127.0.0.1:{ports[0]}", *preset)
        asyncio.run(_poll(c, names, _all_alive(names), timeout=30))
        victim = names[-1]
        rest = names[:-1]
        t0 = time.monotonic()
        os.kill(c.procs[victim].pid, sig)
        done = asyncio.run(_poll(c, rest, lambda _n, st: st.get(victim) == "dead", timeout=timeout))
        if sig == signal.SIGSTOP:
            os.kill(c.procs[victim].pid, signal.SIGCONT)
        return done - t0


@section("membership", timeout_s=900)
def membership(ctx: Context) -> None:
    """Discovery, failure detection, status wall time, RSS and idle CPU (real node processes)."""
    sizes = [3, 12] if not ctx.quick else [3]
    one = statistics.median(_start_floor(1) for _ in range(ctx.rounds(5, 2)))
    ctx.record("start_floor_1", one, "s", note="one interpreter importing a node's modules, then exiting")
    node_cpu, pass_cpu = _start_cpu(ctx.rounds(8, 3))
    ctx.record("python_c_pass_cpu_s", pass_cpu, "s", note="CPU of `python -c pass`, same run")
    ctx.record("node_start_cpu_s", node_cpu, "s", ref="membership.python_c_pass_cpu_s",
               note="CPU (own + its certificate child) of a fresh identity's `meshctl up` until ready, "
               "one node at a time")  # fmt: skip
    for n in sizes:
        for mdns in (True, False):
            how = "mdns" if mdns else "peer"
            staggered, at_once = discovery_time(n, mdns)
            ctx.record(f"discovery_{n}_{how}", staggered, "s", target=1.5, ref="membership.start_floor_1",
                       note="last node's start -> all list each other")  # fmt: skip
            ctx.record(f"discovery_{n}_{how}_all_at_once", at_once, "s",
                       note=f"{n} nodes started together: first start -> all list each other")  # fmt: skip

    n = 12 if not ctx.quick else 3
    ctx.record(f"sigkill_dead_{n}", detection_time(n, signal.SIGKILL, [], 10), "s", target=1.0,
               note="SIGKILL -> every peer shows dead (refused reconnect)")  # fmt: skip
    ctx.record("sigstop_dead_default", detection_time(3, signal.SIGSTOP, [], 20), "s", target=11.0,
               note="SIGSTOP -> dead everywhere, default timing (dead after 10 s)")  # fmt: skip
    ctx.record("sigstop_dead_fast", detection_time(3, signal.SIGSTOP, ["--preset", "fast"], 10), "s",
               target=2.0, note="same with --preset fast (dead after 2 s)")  # fmt: skip

    with cluster() as c:
        names = [f"n{i:02d}" for i in range(n)]
        ports = free_ports(n)
        for i, name in enumerate(names):
            c.start(name, "--no-mdns", "--port", str(ports[i]), "--peer", f"127.0.0.1:{ports[0]}")
        asyncio.run(_poll(c, names, _all_alive(names), timeout=30))
        # meshctl status wall time (a fresh process each time, as an agent runs it), in turn with the
        # interpreter's own floor (`python -c pass`, same interpreter): the ratio is the figure (issue 15).

        walls, floor = [], []
        for _ in range(ctx.rounds(20, 5)):
            t0 = time.perf_counter()
            subprocess.run([*meshctl(), "status", "--json", "--node", names[0]], env=c.env(), check=True,
                           capture_output=True)  # fmt: skip
            walls.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            floor.append(time.perf_counter() - t0)
        wall, base = statistics.median(walls), statistics.median(floor)
        ctx.record("python_c_pass", base * 1000, "ms", note="same interpreter, in turn with status")
        ctx.record("status_wall_median", wall * 1000, "ms", ref="membership.python_c_pass",
                   note=f"median of {len(walls)} `meshctl status --json` runs, {n}-node mesh")  # fmt: skip
        ctx.record("status_vs_python_c_pass", wall / base, "x", target=1.2, note=f"{n}-node mesh")
        time.sleep(2.0)  # let start-up settle before sampling idle usage
        usage = sample_usage([p.pid for p in c.procs.values()], ctx.rounds(10, 3))
        rss = statistics.mean(u.rss_bytes for u in usage) / 2**20
        pss = [u.pss_bytes for u in usage if u.pss_bytes]
        cpu = statistics.mean(u.cpu_percent for u in usage)
        ctx.record(f"rss_mb_{n}", rss, "MB", target=45.0, note="mean RSS per node")
        if pss:
            ctx.record(f"pss_mb_{n}", statistics.mean(pss) / 2**20, "MB", note="mean PSS per node")
        ctx.record(f"idle_cpu_pct_{n}", cpu, "%", target=1.0, note="mean CPU per idle node (% of one core)")
        # Load: two CPU hogs on the 2 cores for a while; count false suspicions / deaths of live nodes.
        bad = _false_alarms_under_load(c, names, seconds=ctx.rounds(15, 4))
        ctx.record("false_dead_under_load", bad[0], "count", target=0.0,
                   note=f"{n} live nodes, 2 CPU hogs; also {bad[1]} false suspect")  # fmt: skip


def _false_alarms_under_load(c: Cluster, names: list[str], seconds: float) -> tuple[int, int]:
    hogs = [
        subprocess.Popen(
            [sys.executable, "-c", f"import time\nt=time.time()+{seconds}\nwhile time.time()<t: pass"]
        )
        for _ in range(2)
    ]
    dead = suspect = 0
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sock = c.socket(names[0])
            assert sock is not None
            states = asyncio.run(_states(sock))
            dead += sum(1 for v in states.values() if v == "dead")
            suspect += sum(1 for v in states.values() if v == "suspect")
            time.sleep(0.2)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    return dead, suspect


def _start_cpu(rounds: int) -> tuple[float, float]:
    """Median CPU seconds of a new node (a fresh identity: it issues its leaf) from exec until ready, and of
    `python -c pass`: the per-process floor that formation pays once per node (issue 15)."""
    import resource

    def child_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    nodes, floor = [], []
    with cluster() as c:
        subprocess.run([*MESHCTL, "init"], env=c.env(), check=True, capture_output=True)
        for i in range(rounds):
            name = f"f{i:02d}"
            proc = c.start(name, "--no-mdns", "--port", "0")
            _ready(c, name)
            nodes.append(_cpu_seconds(proc.pid, children=True))
            proc.terminate()
            proc.wait()
            t0 = child_cpu()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            floor.append(child_cpu() - t0)
    return statistics.median(nodes), statistics.median(floor)


def _start_floor(n: int) -> float:
    """Seconds for n processes started at once that only import what a node imports, then exit.

    The reference for formation on the same box in the same run: no mesh can form faster than its nodes'
    interpreters start and import (on 2 cores, 48 of them take several seconds). The ratio is the mesh's
    own cost (handshakes, links, gossip, upkeep) on top of that floor.
    """
    code = "import mesh.node, mesh.cli.node_cmds, mesh._transport.control, mesh._transport.hookwire"
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("the import floor's process failed")
    return time.monotonic() - t0


def _scale_run(ctx: Context, n: int) -> None:
    """n nodes started together (seeded by the first): formation, idle cost, SIGKILL and SIGSTOP detection."""
    floor = _start_floor(n)
    ctx.record(f"start_floor_{n}", floor, "s",
               note=f"{n} interpreters started at once importing a node's modules, then exiting")  # fmt: skip
    with cluster() as c:
        names = [f"s{i:02d}" for i in range(n)]
        ports = free_ports(n)
        t0 = time.monotonic()
        for i, name in enumerate(names):
            c.start(name, "--no-mdns", "--port", str(ports[i]), "--peer", f"127.0.0.1:{ports[0]}")
        done = asyncio.run(_poll(c, names, _all_alive(names), timeout=120, interval=0.25))
        cpu = statistics.mean(_cpu_seconds(p.pid) for p in c.procs.values())
        ctx.record(f"formation_{n}", done - t0, "s", target=10.0 if n == 48 else None,
                   ref=f"membership_scale.start_floor_{n}",
                   note=f"{n} nodes started at once (2 cores): start -> all list all alive; "
                   f"{cpu:.2f} CPU s per node by then")  # fmt: skip
        ctx.record(f"formation_cpu_s_per_node_{n}", cpu, "s",
                   note="CPU (user + system) per node from its start until the mesh had formed")  # fmt: skip
        time.sleep(3.0)  # start-up settles (gossip, steward growth)
        usage = sample_usage([p.pid for p in c.procs.values()], ctx.rounds(15, 4))
        cpus = [u.cpu_percent for u in usage]
        ctx.record(f"scale_idle_cpu_pct_{n}", statistics.mean(cpus), "%", target=1.0,
                   note=f"mean CPU per idle node, {n} nodes (max {max(cpus):.2f} %)")  # fmt: skip
        ctx.record(f"scale_rss_mb_{n}", statistics.mean(u.rss_bytes for u in usage) / 2**20, "MB",
                   note="mean RSS per node")  # fmt: skip
        pss = [u.pss_bytes for u in usage if u.pss_bytes]
        if pss:
            ctx.record(f"scale_pss_mb_{n}", statistics.mean(pss) / 2**20, "MB", note="mean PSS per node")
        rest = names[:-2]
        t1 = time.monotonic()
        os.kill(c.procs[names[-1]].pid, signal.SIGKILL)
        dead = asyncio.run(_poll(c, rest, lambda _n, st: st.get(names[-1]) == "dead", timeout=20))
        ctx.record(f"scale_sigkill_dead_{n}", dead - t1, "s", target=1.0,
                   note=f"SIGKILL -> all {n - 2} other live nodes show it dead")  # fmt: skip
        paused = c.procs[names[-2]].pid
        t2 = time.monotonic()
        os.kill(paused, signal.SIGSTOP)
        try:
            dead = asyncio.run(_poll(c, rest, lambda _n, st: st.get(names[-2]) == "dead", timeout=30,
                                     interval=0.1))  # fmt: skip
            ctx.record(f"scale_sigstop_dead_{n}", dead - t2, "s", target=11.0,
                       note="SIGSTOP -> dead everywhere (default timing: watchers, verdicts)")  # fmt: skip
        finally:
            os.kill(paused, signal.SIGCONT)


def _cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU a process used so far (its own; with `children`, its reaped children's too)."""
    import psutil  # type: ignore[import-untyped]  # no types-psutil in the venv

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system + ((t.children_user + t.children_system) if children else 0.0))


@section("membership_scale", timeout_s=900)
def membership_scale(ctx: Context) -> None:
    """The curve: 12 / 24 / 48 nodes -> formation time, idle CPU per node, SIGKILL and SIGSTOP detection."""
    for n in [12, 24, 48] if not ctx.quick else [12]:
        _scale_run(ctx, n)
