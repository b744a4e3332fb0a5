"""Claims while sessions come and go (issue 8's churn nemesis), on real node processes.

Sessions (``meshctl up --detach`` under one home, seeded with a few live peers) start and end all the time:
each lives a random 2-60 s (scaled by ``ChurnConfig.life``) and ends by ``meshctl down``, SIGTERM or
SIGKILL, or is SIGSTOPped past its lease and continued; 3-12 are alive at once, the earliest ones and the
stewards included (nothing is spared). Now and then a session comes back under an earlier name (same node
id: a steward restarting as itself). One claimant per live session (through its control socket) competes
for a handful of items: claim (no wait) → hold a moment → release.

Checks: every node's MESH_CLAIM_HISTORY goes through ``claims_checker`` (no overlapping holders on the
host clock, tokens strictly increasing per item). Availability: of the claim attempts made through a
session that stayed up during the attempt, the share answered definitively within 2 s: granted, or held
by a named session. ``strict`` counts a holder only while its process lives: a SIGKILLed holder's claim
stays held for one acceptor lease (its API clients may believe in it that long, issue 14), and answers
naming it are true but count against the strict figure.

Endings are dealt from a shuffled deck (every kind once per round), so any run with four endings saw every
kind. A test that needs events (``ChurnGoals``) keeps the churn going past ``seconds`` until they happened,
up to ``ChurnGoals.extra``: process timing is not seeded, and a loaded machine starts fewer sessions and
hands fewer claims over in the same time. While running over, the scheduler ends a steward by a signal if no
steward was killed yet, and ends sessions by whatever kind is missing.
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
from dataclasses import dataclass, field
from pathlib import Path

from mesh.paths import pid_running
from tests.integration.claims_checker import CheckReport, check_dir
from tests.integration.harness import FAST, Mesh, wait_pid_gone

ENDINGS = ("down", "sigterm", "sigkill", "sigstop")
ANSWER_WITHIN = 2.0


@dataclass
class ChurnGoals:
    """What a run must show to be evidence (checked live while running over, and by the test after)."""

    started: int = 8
    steward_kills: int = 1
    acquisitions: int = 10
    handovers: int = 5
    extra: float = 100.0  # at most this long past ``seconds`` (a loaded 2-core box needs it rarely)

    def missing(self, res: ChurnResult, report: CheckReport) -> list[str]:
        """The goals not met yet, each with its figure (empty: all met)."""
        out = [f"started {res.started} < {self.started}"] if res.started < self.started else []
        out += [f"no {k} ending" for k in ENDINGS if res.endings[k] < 1]
        if res.steward_kills < self.steward_kills:
            out.append(f"steward kills {res.steward_kills} < {self.steward_kills}")
        if report.acquisitions < self.acquisitions:
            out.append(f"acquisitions {report.acquisitions} < {self.acquisitions}")
        if report.handovers < self.handovers:
            out.append(f"handovers {report.handovers} < {self.handovers}")
        return out


@dataclass
class ChurnConfig:
    """What to run (the schedule is seeded; process timing is not)."""

    seconds: float = 45.0
    min_alive: int = 3
    max_alive: int = 12
    life: tuple[float, float] = (2.0, 60.0)
    items: int = 3
    lease: float = 2.0
    seed: int = 0
    comeback: float = 0.15  # a new session reuses an earlier name (same node id) this often
    log: bool = False
    goals: ChurnGoals | None = None  # run over `seconds` until these happened (None: stop at `seconds`)

    @property
    def acceptor_lease(self) -> float:
        """D_A as the nodes derive it (rho 1 %)."""
        from mesh.core.claims import LeaseConfig

        return LeaseConfig(lease=self.lease).acceptor_lease


@dataclass
class Session:
    name: str
    pid: int
    started: float
    ends_at: float
    state: str = "up"  # up | stopped | gone
    ended: float = 0.0  # when its ending began (down/signal sent): attempts through it no longer count
    exited: float = 0.0  # when its process was gone
    ending: str = ""
    stops: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class ChurnResult:
    """What happened, what the checker found, and the availability figures."""

    seconds: float
    started: int = 0
    endings: Counter[str] = field(default_factory=Counter)
    steward_kills: int = 0
    max_alive: int = 0
    min_alive: int = 99
    attempts: Counter[str] = field(default_factory=Counter)
    answered_in_time: int = 0
    strict_in_time: int = 0
    counted: int = 0
    latencies: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)  # why counted attempts were not answered in time
    report: CheckReport = field(default_factory=CheckReport)
    history_dir: Path | None = None
    overtime: float = 0.0  # seconds run past `seconds` (checking the goals, and meeting them if unmet)
    unmet: list[str] = field(default_factory=list)  # goals still missing when the cap was hit

    @property
    def availability(self) -> float:
        """Share of counted attempts answered definitively within ANSWER_WITHIN seconds."""
        return self.answered_in_time / self.counted if self.counted else 0.0

    @property
    def strict_availability(self) -> float:
        """As ``availability``, counting "held by" only when the holder's process was alive."""
        return self.strict_in_time / self.counted if self.counted else 0.0

    def summary(self) -> str:
        return (
            f"sessions started {self.started}, endings {dict(self.endings)}, "
            f"steward kills {self.steward_kills}, "
            f"alive {self.min_alive}-{self.max_alive}; attempts {dict(self.attempts)}; availability "
            f"{self.availability:.2%} ({self.answered_in_time}/{self.counted} within {ANSWER_WITHIN:g} s; "
            f"strict, holders alive: {self.strict_availability:.2%}); "
            f"ran {self.overtime:.1f} s past its seconds"
            + (f", still missing at the cap: {'; '.join(self.unmet)}" if self.unmet else "")
            + "\n"
            + self.report.summary()
            + "".join(f"\n  miss: {m}" for m in self.misses[:30])
        )


class Churn:
    def __init__(self, mesh: Mesh, history: Path, cfg: ChurnConfig) -> None:
        self.mesh = mesh
        self.history = history
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.sessions: dict[str, Session] = {}
        self.res = ChurnResult(seconds=0.0)
        self.items = [f"job/w{i}" for i in range(cfg.items)]
        self._stop = asyncio.Event()
        self._claimants: dict[str, asyncio.Task[None]] = {}
        self._serial = 0
        self._t0 = time.monotonic()
        self._deck: list[str] = []

    def say(self, msg: str) -> None:
        if self.cfg.log:
            print(f"[churn {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def alive(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.state != "gone"]

    # ------------------------------------------------------------------ sessions

    async def start_session(self) -> None:
        gone = [s.name for s in self.sessions.values() if s.state == "gone"]
        if gone and self.rng.random() < self.cfg.comeback:
            name = self.rng.choice(sorted(gone))
        else:
            self._serial += 1
            name = f"c{self._serial:03d}"
        up = [s for s in self.alive() if s.state == "up"]
        seeds = [
            x
            for s in self.rng.sample(up, min(3, len(up)))
            for x in ("--peer", self.mesh.nodes[s.name].address)
        ]
        args = ("--no-mdns", *seeds, *FAST, "--lease", str(self.cfg.lease))
        try:
            proc = await asyncio.to_thread(self.mesh.up, name, *args)
        except AssertionError as e:  # e.g. its previous life is still shutting down: try another time
            self.say(f"start {name} failed: {e}")
            return
        now = time.monotonic()
        lo, hi = self.cfg.life
        self.sessions[name] = Session(name, proc.pid, now, now + self.rng.uniform(lo, hi))
        self.res.started += 1
        self.say(f"started {name} (pid {proc.pid}); {len(self.alive())} alive")
        self._claimants[name] = asyncio.create_task(self.claimant(name, proc.pid))

    async def stewards(self) -> set[str]:
        from mesh.client import connect

        for s in self.alive():
            if s.state != "up":
                continue
            with contextlib.suppress(Exception):
                async with await connect(s.name, mesh=self.mesh.name, home=self.mesh.home) as c:
                    return set((await asyncio.wait_for(c.info(), 1.0)).stewards)
        return set()

    def _deal(self) -> str:
        """The next ending from the deck (every kind once per shuffled round)."""
        if not self._deck:
            self._deck = list(ENDINGS)
            self.rng.shuffle(self._deck)
        return self._deck.pop()

    async def end_session(self, s: Session, kind: str = "") -> None:
        kind = kind or self._deal()
        if kind == "sigstop":
            hold = self.rng.uniform(self.cfg.lease + 0.5, self.cfg.acceptor_lease + 2.0)
            self.say(f"SIGSTOP {s.name} for {hold:.1f} s")
            self.res.endings[kind] += 1
            s.state = "stopped"
            t0 = time.monotonic()
            os.kill(s.pid, signal.SIGSTOP)
            await asyncio.sleep(hold)
            os.kill(s.pid, signal.SIGCONT)
            s.stops.append((t0, time.monotonic() + 0.5))  # and a moment to catch up
            s.state = "up"
            s.ends_at = time.monotonic() + self.rng.uniform(*self.cfg.life) / 2
            return
        if s.name in await self.stewards():
            self.res.steward_kills += kind != "down"
        self.say(f"{kind} {s.name}" + (" (a steward)" if s.name in await self.stewards() else ""))
        self.res.endings[kind] += 1
        s.state = "gone"
        s.ended = time.monotonic()
        s.ending = kind
        if kind == "down":
            await asyncio.to_thread(self.mesh.ctl, "down", node=s.name, check=False, timeout=30)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(s.pid, signal.SIGTERM if kind == "sigterm" else signal.SIGKILL)
        await asyncio.to_thread(wait_pid_gone, s.pid, 15)
        s.exited = time.monotonic()

    async def scheduler(self, end: float) -> None:
        for _ in range(self.cfg.min_alive):
            await self.start_session()
        pending: set[asyncio.Task[None]] = set()
        goals = self.cfg.goals
        cap = end + (goals.extra if goals else 0.0)
        forced: asyncio.Task[None] | None = None
        next_check = end
        while True:
            now = time.monotonic()
            if now >= end:
                if goals is None or now >= cap:
                    break
                if now >= next_check:
                    # The same figures the test asserts on: the nodes' histories so far (they only grow).
                    unmet = goals.missing(self.res, await asyncio.to_thread(check_dir, self.history))
                    if not unmet:
                        break
                    self.res.unmet = unmet
                    next_check = now + 1.0
                    if forced is None or forced.done():
                        forced = await self._force_ending(pending)
            for s in list(self.alive()):
                if s.state == "up" and now >= s.ends_at and len(self.alive()) > 1:
                    self._spawn_end(s, "", pending)
            n = len(self.alive())
            self.res.max_alive = max(self.res.max_alive, n)
            self.res.min_alive = min(self.res.min_alive, n)
            if n < self.cfg.min_alive or (n < self.cfg.max_alive and self.rng.random() < 0.35):
                await self.start_session()
            await asyncio.sleep(0.2)
        self.res.overtime = max(0.0, time.monotonic() - end)
        if goals is not None and time.monotonic() < cap:
            self.res.unmet = []
        if pending:
            await asyncio.wait(pending, timeout=30)

    def _spawn_end(self, s: Session, kind: str, pending: set[asyncio.Task[None]]) -> asyncio.Task[None]:
        s.ends_at = float("inf")  # being ended
        t = asyncio.create_task(self.end_session(s, kind))
        pending.add(t)
        t.add_done_callback(pending.discard)
        return t

    async def _force_ending(self, pending: set[asyncio.Task[None]]) -> asyncio.Task[None] | None:
        """Running over for the goals: end a steward by a signal if none was killed yet, else end a session
        the way no session has ended yet (None if there is nothing to force or no one to end)."""
        goals = self.cfg.goals
        assert goals is not None
        up = [s for s in self.alive() if s.state == "up" and s.ends_at != float("inf")]
        if len(self.alive()) <= self.cfg.min_alive or not up:
            return None  # let the scheduler start sessions first
        missing = [k for k in ENDINGS if self.res.endings[k] < 1]
        if self.res.steward_kills < goals.steward_kills:
            stewards = await self.stewards()
            victims = [s for s in up if s.name in stewards]
            if not victims:
                return None
            kind = next((k for k in missing if k in ("sigkill", "sigterm")), "sigkill")
            return self._spawn_end(self.rng.choice(victims), kind, pending)
        if missing:
            return self._spawn_end(self.rng.choice(up), missing[0], pending)
        return None

    # ------------------------------------------------------------------ claimants

    async def claimant(self, name: str, pid: int) -> None:
        from mesh.client import Client, connect
        from mesh.errors import ClaimDenied, MeshError, NoQuorum

        rng = random.Random(f"{self.cfg.seed}-{name}-{pid}")
        client: Client | None = None
        try:
            while not self._stop.is_set():
                s = self.sessions.get(name)
                if s is None or s.state == "gone" or s.pid != pid:
                    return
                if s.state == "stopped":
                    await asyncio.sleep(0.2)
                    continue
                if client is None:
                    try:
                        client = await connect(name, mesh=self.mesh.name, home=self.mesh.home)
                    except MeshError:
                        await asyncio.sleep(0.2)
                        continue
                item = rng.choice(self.items)
                t0 = time.monotonic()
                outcome, why = "error", ""
                try:
                    await asyncio.wait_for(client.claim_once(item, rng.uniform(2.0, 8.0), 0.0), 10.0)
                    outcome = "granted"
                except ClaimDenied as e:
                    outcome = "held_live" if self._live_holder(e.holder) else "held_gone"
                    why = f"held by {e.holder}"
                except NoQuorum as e:
                    outcome, why = "no_quorum", str(e)
                except (MeshError, TimeoutError) as e:
                    outcome, why = "error", repr(e)
                dt = time.monotonic() - t0
                self._count(name, pid, t0, dt, outcome, why)
                if outcome == "error":
                    with contextlib.suppress(Exception):
                        await client.close()
                    client = None
                    await asyncio.sleep(0.2)
                    continue
                if outcome == "granted":
                    await asyncio.sleep(rng.uniform(0.0, 1.5))
                    type_, _, item_name = item.partition("/")
                    with contextlib.suppress(MeshError, TimeoutError):
                        await asyncio.wait_for(client.release(type_, item_name), 3.0)
                else:
                    await asyncio.sleep(rng.uniform(0.1, 0.5))
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()

    def _live_holder(self, holder: str) -> bool:
        s = self.sessions.get(holder)
        return s is not None and s.exited == 0.0

    def _count(self, name: str, pid: int, t0: float, dt: float, outcome: str, why: str = "") -> None:
        s = self.sessions.get(name)
        # Only attempts through a session that stayed up throughout measure the mesh (not the session).
        stayed = (
            s is not None
            and s.pid == pid
            and s.state == "up"
            and not (s.ended and s.ended < t0 + dt)
            and not any(a < t0 + dt and t0 < b for a, b in s.stops)
            and _running(pid)
        )
        self.res.attempts[outcome if stayed else "session_went_away"] += 1
        if not stayed:
            return
        self.res.counted += 1
        self.res.latencies.append(dt)
        if outcome in ("granted", "held_live", "held_gone") and dt <= ANSWER_WITHIN:
            self.res.answered_in_time += 1
            self.res.strict_in_time += outcome != "held_gone"
        else:
            self.res.misses.append(f"{name} +{t0 - self._t0:.1f}s {outcome} in {dt:.2f}s {why}")

    # ------------------------------------------------------------------ run

    async def run(self) -> ChurnResult:
        self.history.mkdir(parents=True, exist_ok=True)
        self.mesh.extra_env["MESH_CLAIM_HISTORY"] = str(self.history)
        await asyncio.to_thread(self.mesh.ctl, "init")
        t0 = self._t0 = time.monotonic()
        try:
            await self.scheduler(t0 + self.cfg.seconds)
        finally:
            self._stop.set()
            for s in self.sessions.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s.pid, signal.SIGCONT)
            tasks = list(self._claimants.values())
            if tasks:
                await asyncio.wait(tasks, timeout=15)
            for t in tasks:
                t.cancel()
        self.res.seconds = time.monotonic() - t0
        await asyncio.to_thread(self.mesh.cleanup)
        self.res.report = check_dir(self.history)
        self.res.history_dir = self.history
        return self.res


def _running(pid: int) -> bool:
    return pid_running(pid)


def run_churn(work: Path, cfg: ChurnConfig) -> ChurnResult:
    """Run one churn round under `work` (a fresh directory); every node is killed at the end."""
    mesh = Mesh(home=work / "home")
    try:
        return asyncio.run(Churn(mesh, work / "history", cfg).run())
    finally:
        mesh.cleanup()
