"""Real node processes for integration tests: start them with meshctl, ask them with meshctl, kill them.

Every mesh gets a unique name and a temp home, so tests never see each other (or a user's nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import free_ports as free_ports  # re-export: tests and benches pick fixed ports one way
from mesh.paths import is_locked, pid_running

MESHCTL = [sys.executable, "-m", "mesh.cli.main"]
# Nodes of a test that injects faults start through the test entry, which installs the taps first: every
# variable tests/integration/meshctl.py reads is here (a tap set alone must not be silently ignored).
TEST_MESHCTL = [sys.executable, "-m", "tests.integration.meshctl"]
TEST_ENV = (
    "MESH_TEST_FAULTS",
    "MESH_CLAIM_HISTORY",
    "MESH_TEST_LOSE_REPLY",
    "MESH_TEST_OLD_WIRE",
    "MESH_TEST_OLD_SEND_STREAM",
    "MESH_TEST_NO_GOSSIP_DIAL",
    "MESH_TEST_WATCHERS",
)
ROOT = Path(__file__).resolve().parents[2]
# Fast failure detection so the tests take seconds, not minutes (the defaults are covered by the benchmarks).
FAST = ["--heartbeat-interval", "0.2", "--suspect-after", "1.0", "--dead-after", "3.0"]
# Default beats, but no death by silence within any test's wait: a node then seen dead was seen dead through
# a refused reconnect. "Dead at once" is a fact about that path, not a race against a 10 s timer that a
# loaded machine can lose, so its wait can be generous (it costs nothing when things work).
NO_TIMED_DEATH = ["--dead-after", "600"]


@dataclass
class Proc:
    name: str
    pid: int
    address: str
    node_id: str
    home: Path


@dataclass
class Mesh:
    home: Path
    name: str = field(default_factory=lambda: "t-" + uuid.uuid4().hex[:10])
    nodes: dict[str, Proc] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    homes: set[Path] = field(default_factory=set)
    up_args: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per name, for restart()

    def env(self, home: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"MESH_HOME": str(home or self.home), "MESH_MESH": self.name, "MESH_JOIN_WINDOW": "0.3"})
        env.pop("MESH_NODE", None)
        env.update(self.extra_env)
        if any(k in self.extra_env for k in TEST_ENV):
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        return env

    def ctl(
        self,
        *args: str,
        node: str | None = None,
        home: Path | None = None,
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        entry = (
            TEST_MESHCTL if args[:1] == ("up",) and any(k in self.extra_env for k in TEST_ENV) else MESHCTL
        )
        cmd = [*entry, *args]
        self.homes.add(home or self.home)
        if node is not None:
            cmd += ["--node", node]
        r = subprocess.run(
            cmd, env=self.env(home), capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and r.returncode != 0:
            raise AssertionError(f"meshctl {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return r

    def up(self, name: str, *args: str, home: Path | None = None) -> Proc:
        r = self.ctl("up", "--name", name, "--detach", "--json", *args, home=home)
        info = json.loads(r.stdout)
        p = Proc(
            name=name,
            pid=info["pid"],
            address=info["address"],
            node_id=info["node_id"],
            home=home or self.home,
        )
        self.nodes[name] = p
        self.up_args[name] = args
        return p

    def restart(self, name: str) -> Proc:
        """Start `name` again with the flags it was first started with (same home: same node id)."""
        return self.up(name, *self.up_args[name], home=self.nodes[name].home)

    def status(self, node: str, via_cli: bool = False) -> dict[str, dict[str, Any]]:
        """`meshctl status --json` as a dict by name (polls use the same API in-process: much faster)."""
        home = self.nodes[node].home if node in self.nodes else self.home
        if via_cli:
            out = json.loads(self.ctl("status", "--json", node=node, home=home).stdout)
        else:
            out = asyncio.run(_members_json(home, self.name, node))
        return {m["name"]: m for m in out}

    def states(self, node: str) -> dict[str, str]:
        return {n: m["state"] for n, m in self.status(node).items()}

    def signal(self, name: str, sig: int) -> None:
        os.kill(self.nodes[name].pid, sig)

    def cleanup(self) -> None:
        # Every node started under a home this test used, including ones a test did not expect to start.
        pids = {p.pid for p in self.nodes.values()}
        for home in self.homes:
            for lock in home.glob("meshes/*/nodes/*/node.lock"):
                with contextlib.suppress(OSError, ValueError):
                    pid = int(lock.read_text().strip() or 0)
                    if pid and is_locked(lock.parent):
                        pids.add(pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            wait_pid_gone(pid)


def wait_pid_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_running(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # our own child: reap it now
            return
        # reap if it is our child (detached nodes are not; they get reaped by init)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)


def until(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll `pred` until it returns something truthy or the deadline passes (then fail, saying what)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = pred()
        except AssertionError as e:  # a meshctl call failing while things settle
            last = e
        if last and not isinstance(last, AssertionError):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}: last={last!r}")
        time.sleep(interval)


async def async_until(pred: Callable[[], Any], timeout: float = 30.0, what: str = "") -> None:
    """`until` inside an event loop: poll `pred` (a plain call or a coroutine function) until it is truthy."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        r = pred()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        await asyncio.sleep(0.02)


async def _members_json(home: Path, mesh: str, node: str) -> list[dict[str, Any]]:
    from mesh.client import connect
    from mesh.errors import MeshError

    try:
        async with await connect(node, mesh=mesh, home=home) as c:
            return [m.to_json() for m in await c.members()]
    except MeshError as e:
        raise AssertionError(str(e)) from None
