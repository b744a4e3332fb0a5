"""The claims nemesis measured at the API holders: one claimant PROCESS per node, holding leases through
`mesh.connect` (tests/integration/api_holder.py), while the nemesis SIGKILLs and SIGSTOPs nodes, partitions
them, and also SIGSTOPs the claimant processes themselves. Beliefs are checked where work would be done.
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
class ApiResult:
    """The node-level result plus the checker's verdict on beliefs at the API holders."""

    nodes: NemesisResult
    api: CheckReport = field(default_factory=CheckReport)
    api_events: dict[str, int] = field(default_factory=dict)


class ApiNemesis(Nemesis):
    def __init__(self, mesh: Mesh, history: Path, cfg: NemesisConfig) -> None:
        super().__init__(mesh, history, cfg)
        self.api_dir = history.parent / "api"
        self.clients: dict[str, subprocess.Popen[bytes]] = {}
        self._offsets: dict[str, int] = {}

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


def run_api_nemesis(home: Path, cfg: NemesisConfig) -> ApiResult:
    """One round under `home` (fresh); every node and claimant process is stopped at the end."""
    mesh = Mesh(home=home / "home")
    nem = ApiNemesis(mesh, home / "history", cfg)
    try:
        nodes = asyncio.run(nem.run())
    finally:
        for proc in nem.clients.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        mesh.cleanup()
    records, counts = read_api(nem.api_dir)
    rep = CheckReport(
        records=len(records), acquisitions=counts.get("acquired", 0), releases=counts.get("released", 0),
        losses=counts.get("lost", 0),
    )  # fmt: skip
    return ApiResult(nodes, check_intervals(api_intervals(records), rep), counts)
