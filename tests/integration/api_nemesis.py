"""The claims nemesis measured at the API holders: one claimant PROCESS per node, holding leases through
`mesh.connect` (tests/integration/api_holder.py), while the nemesis SIGKILLs and SIGSTOPs nodes, partitions
them, and also SIGSTOPs the claimant processes themselves. Beliefs are checked where work would be done.

A run that must be evidence (``ApiGoals``) keeps the faults going past ``seconds`` until the API holders' own
records show the goals too (``Nemesis.shown``; up to ``NemesisConfig.max_extra``): process timing is not
seeded, and a loaded machine grants fewer leases in the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.api_holder import api_intervals
from tests.integration.claims_checker import CheckReport, check_intervals
from tests.integration.harness import Mesh
from tests.integration.nemesis import KINDS, Nemesis, NemesisConfig, NemesisResult

API_KINDS = (*KINDS, "pause_client")


@dataclass
class ApiGoals:
    """What a run must show at the API holders to be evidence (checked live, and by the test after)."""

    acquired: int = 5
    handovers: int = 3

    def missing(self, counts: dict[str, int], api: CheckReport) -> list[str]:
        """The goals not met yet, each with its figure (empty: all met)."""
        out = []
        if counts.get("acquired", 0) < self.acquired:
            out.append(f"acquired {counts.get('acquired', 0)} < {self.acquired}")
        if api.handovers < self.handovers:
            out.append(f"handovers {api.handovers} < {self.handovers}")
        return out


@dataclass
class ApiResult:
    """The node-level result plus the checker's verdict on beliefs at the API holders."""

    nodes: NemesisResult
    api: CheckReport = field(default_factory=CheckReport)
    api_events: dict[str, int] = field(default_factory=dict)
    unmet: list[str] = field(default_factory=list)  # goals still missing at the end (the cap was hit)


class ApiNemesis(Nemesis):
    def __init__(self, mesh: Mesh, history: Path, cfg: NemesisConfig, goals: ApiGoals | None = None) -> None:
        super().__init__(mesh, history, cfg)
        self.api_dir = history.parent / "api"
        self.clients: dict[str, subprocess.Popen[bytes]] = {}
        self._offsets: dict[str, int] = {}
        self.goals = goals

    def shown(self) -> bool:
        """The nodes' histories show what the config asks, and the holders' records so far (they only grow:
        the figures the test asserts on) show the goals."""
        if not super().shown():
            return False
        unmet = self.goals.missing(*check_api(self.api_dir)) if self.goals is not None else []
        if unmet:
            self.say(f"running over for the goals: {'; '.join(unmet)}")
        return not unmet

    def faults(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return {**super().faults(), "pause_client": self.pause_client}

    async def claimant(self, name: str) -> None:
        """Run the API holder process for `name`; follow its records to know what it holds."""
        self.api_dir.mkdir(parents=True, exist_ok=True)
        out = self.api_dir / f"{name}.jsonl"
        cmd = [sys.executable, "-m", "tests.integration.api_holder", "--home", str(self.mesh.home),
               "--mesh", self.mesh.name, "--node", name, "--resources", json.dumps(self.resources),
               "--out", str(out), "--seed", str(self.cfg.seed * 1000 + self.names.index(name))]  # fmt: skip
        proc = subprocess.Popen(cmd, env=self.mesh.env(), stdout=subprocess.DEVNULL)  # noqa: ASYNC220
        self.clients[name] = proc
        try:
            while not self._stop.is_set():
                self._follow(name, out)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)

    def _follow(self, name: str, path: Path) -> None:
        if not path.exists():
            return
        with path.open("rb") as f:
            f.seek(self._offsets.get(name, 0))
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offsets[name] = self._offsets.get(name, 0) + end
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                r = json.loads(line)
                if r["ev"] == "acquired":
                    self.holding[name].add(r["resource"])
                elif r["ev"] in ("released", "lost"):
                    self.holding[name].discard(r["resource"])

    async def pause_client(self) -> None:
        """SIGSTOP a claimant process (a holder if there is one) for longer than a lease, then SIGCONT."""
        await self._some_holder()
        victim = self._victim(prefer_holder=True)
        proc = self.clients.get(victim)
        if proc is None or proc.poll() is not None:
            return
        hold = self.rng.uniform(self.cfg.lease + 0.5, self.cfg.acceptor_lease + 1.5)
        self.say(f"SIGSTOP claimant of {victim} for {hold:.1f} s holding {sorted(self.holding[victim])}")
        proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(hold)
        finally:
            proc.send_signal(signal.SIGCONT)


def read_api(directory: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    records: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for p in sorted(directory.glob("*.jsonl")):
        for line in p.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                r = json.loads(line)
                counts[r["ev"]] = counts.get(r["ev"], 0) + 1
                records.append(r)
    return records, counts


def check_api(directory: Path) -> tuple[dict[str, int], CheckReport]:
    """The API holders' event counts and the checker's verdict on their beliefs."""
    records, counts = read_api(directory)
    rep = CheckReport(
        records=len(records), acquisitions=counts.get("acquired", 0), releases=counts.get("released", 0),
        losses=counts.get("lost", 0),
    )  # fmt: skip
    return counts, check_intervals(api_intervals(records), rep)


def run_api_nemesis(home: Path, cfg: NemesisConfig, goals: ApiGoals | None = None) -> ApiResult:
    """One round under `home` (fresh); every node and claimant process is stopped at the end. With `goals`,
    the faults go on past `cfg.seconds` until the API holders' records show them (see ApiGoals)."""
    mesh = Mesh(home=home / "home")
    nem = ApiNemesis(mesh, home / "history", cfg, goals)
    try:
        nodes = asyncio.run(nem.run())
    finally:
        for proc in nem.clients.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        mesh.cleanup()
    counts, api = check_api(nem.api_dir)
    return ApiResult(nodes, api, counts, goals.missing(counts, api) if goals is not None else [])
