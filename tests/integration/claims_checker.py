"""Claim-safety checker for real-process runs: reads the MESH_CLAIM_HISTORY files of every node.

Each node appends JSON lines `{ev: acquired|renewed|released|lost, node, id, resource, token, t, until}`
stamped with the host's CLOCK_BOOTTIME, so `t` and `until` of all processes are on one clock. A holder's
*belief interval* for (id, token) runs from `acquired.t` to the earlier of its first released/lost record
and the last `until` it recorded (a SIGKILLed or SIGSTOPped holder records nothing more: its belief ends at
its own deadline). Two checks:

- no overlap: for each resource, intervals of different identities never overlap (adjacent is fine),
  shared path claims excepted; and intervals of different identities on two path claims that conflict
  (their patterns overlap, one is exclusive: `mesh.core.resources.conflict`) never overlap either, a
  violation naming a path both patterns match;
- fencing: ordered by acquire time, the tokens of successive holders of a resource strictly increase (a
  shared path claim has a lease per holder: its tokens count per holder identity).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.core import globs
from mesh.core.resources import SHARED_PATH, conflict, path_claim


@dataclass(frozen=True, slots=True)
class Interval:
    """One holder's belief that it holds `resource` with `token`: [start, end) on the host clock."""

    resource: str
    ident: str
    node: str
    token: int
    start: float
    end: float
    ended_by: str  # released | lost | deadline

    @property
    def empty(self) -> bool:
        """Granted only after its own deadline had passed (the holder never believed it)."""
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class Violation:
    """A broken promise, with the two intervals involved."""

    kind: str  # overlap | token | paths
    resource: str
    first: Interval
    second: Interval

    def __str__(self) -> str:
        a, b = self.first, self.second
        if self.kind in ("overlap", "paths"):
            both = min(a.end, b.end) - max(a.start, b.start)
            what = f"overlap of {both * 1000:.1f} ms"
            if self.kind == "paths":
                pa, pb = path_claim(a.resource), path_claim(b.resource)
                assert pa is not None and pb is not None
                what += f" with {b.resource} (both match {globs.overlap_witness(pa.glob, pb.glob)})"
        else:
            what = f"token {b.token} after {a.token}"
        return (
            f"{self.kind} on {self.resource}: {what}: "
            f"{a.node} ({a.ident}) token {a.token} [{a.start:.3f}, {a.end:.3f}) {a.ended_by} vs "
            f"{b.node} ({b.ident}) token {b.token} [{b.start:.3f}, {b.end:.3f}) {b.ended_by}"
        )


@dataclass
class CheckReport:
    """What the checker found in one run's histories."""

    records: int = 0
    bad_lines: int = 0
    acquisitions: int = 0
    renewals: int = 0
    releases: int = 0
    losses: int = 0
    empty_grants: int = 0
    handovers: int = 0
    takeovers: int = 0  # handovers from a holder that never released (killed, paused, cut off)
    max_concurrent: int = 0
    handover_gaps: list[float] = field(default_factory=list)
    per_resource: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No overlap and no token regression."""
        return not self.violations

    @property
    def max_gap(self) -> float:
        """The longest time a resource stood free between two different holders (s)."""
        return max(self.handover_gaps, default=0.0)

    def summary(self) -> str:
        """A few lines for a test failure or the soak table."""
        lines = [
            f"records={self.records} acquisitions={self.acquisitions} renewals={self.renewals} "
            f"releases={self.releases} losses={self.losses} handovers={self.handovers} "
            f"takeovers={self.takeovers} "
            f"max_concurrent={self.max_concurrent} empty_grants={self.empty_grants} "
            f"bad_lines={self.bad_lines} violations={len(self.violations)}"
        ]
        lines += [f"  {v}" for v in self.violations[:20]]
        lines += [f"  anomaly: {a}" for a in self.anomalies[:20]]
        return "\n".join(lines)


def read_histories(directory: Path) -> tuple[list[dict[str, Any]], int]:
    """Every record of every `*.jsonl` under `directory`, and the number of unreadable lines.

    A SIGKILL can cut a node's last line short; such a line is counted, not fatal.
    """
    records: list[dict[str, Any]] = []
    bad = 0
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if not isinstance(rec, dict) or not {"ev", "id", "resource", "token", "t"} <= rec.keys():
                bad += 1
                continue
            records.append(rec)
    return records, bad


def intervals(records: Iterable[dict[str, Any]], anomalies: list[str] | None = None) -> list[Interval]:
    """Belief intervals, one per (identity, resource, token) that was acquired."""
    by_key: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        by_key.setdefault((str(r["id"]), str(r["resource"]), int(r["token"])), []).append(r)
    out: list[Interval] = []
    for (ident, resource, token), recs in by_key.items():
        recs.sort(key=lambda r: float(r["t"]))
        acq = [r for r in recs if r["ev"] == "acquired"]
        if not acq:
            if anomalies is not None:
                anomalies.append(f"{ident} {resource} token {token}: events without an acquire")
            continue
        if len(acq) > 1 and anomalies is not None:
            anomalies.append(f"{ident} {resource} token {token}: acquired {len(acq)} times")
        start = float(acq[0]["t"])
        untils = [float(r["until"]) for r in recs if r["ev"] in ("acquired", "renewed") and r.get("until")]
        end = max(untils, default=start)
        ended_by = "deadline"
        for r in recs:
            if r["ev"] in ("released", "lost") and float(r["t"]) >= start:
                if float(r["t"]) < end:
                    end, ended_by = float(r["t"]), str(r["ev"])
                break
        out.append(Interval(resource, ident, str(recs[0].get("node", "?")), token, start, end, ended_by))
    return out


def check_intervals(ivs: Sequence[Interval], report: CheckReport | None = None) -> CheckReport:
    """Overlap and fencing checks over belief intervals (see the module docstring)."""
    rep = report if report is not None else CheckReport()
    by_res: dict[str, list[Interval]] = {}
    for iv in ivs:
        if iv.empty:
            rep.empty_grants += 1  # never believed: cannot overlap, cannot act, so no fencing order either
            continue
        by_res.setdefault(iv.resource, []).append(iv)
    for resource, lst in sorted(by_res.items()):
        lst.sort(key=lambda iv: (iv.start, iv.end))
        rep.per_resource[resource] = len(lst)
        shared = resource.startswith(SHARED_PATH + "/")
        active: list[Interval] = []
        prev: Interval | None = None
        last_token: dict[str, int] = {}
        for iv in lst:
            active = [a for a in active if a.end > iv.start]
            for a in active:
                if a.ident != iv.ident and not shared:
                    rep.violations.append(Violation("overlap", resource, a, iv))
            active.append(iv)
            if not shared:  # a shared claim is held by several at once by design
                rep.max_concurrent = max(rep.max_concurrent, len({a.ident for a in active}))
            if shared:  # a lease per holder: fencing per holder identity (a restarted node is a new holder)
                if iv.ident in last_token and iv.token <= last_token[iv.ident]:
                    rep.violations.append(Violation("token", resource, iv, iv))
                last_token[iv.ident] = max(iv.token, last_token.get(iv.ident, 0))
                continue
            if prev is not None:
                if iv.token <= prev.token:
                    rep.violations.append(Violation("token", resource, prev, iv))
                if iv.ident != prev.ident:
                    rep.handovers += 1
                    rep.takeovers += prev.ended_by != "released"
                    rep.handover_gaps.append(iv.start - prev.end)
            prev = iv
    _check_paths(by_res, rep)
    return rep


def _check_paths(by_res: dict[str, list[Interval]], rep: CheckReport) -> None:
    """Intervals of different identities on conflicting path claims never overlap."""
    paths = sorted(r for r in by_res if path_claim(r) is not None)
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            if not conflict(a, b):
                continue
            for x in by_res[a]:
                for y in by_res[b]:
                    if x.ident != y.ident and x.start < y.end and y.start < x.end:
                        rep.violations.append(Violation("paths", a, x, y))


def check_records(records: Sequence[dict[str, Any]], bad_lines: int = 0) -> CheckReport:
    """Check history records (already parsed)."""
    rep = CheckReport(records=len(records), bad_lines=bad_lines)
    for r in records:
        ev = r["ev"]
        if ev == "acquired":
            rep.acquisitions += 1
        elif ev == "renewed":
            rep.renewals += 1
        elif ev == "released":
            rep.releases += 1
        elif ev == "lost":
            rep.losses += 1
    return check_intervals(intervals(records, rep.anomalies), rep)


def check_dir(directory: Path) -> CheckReport:
    """Read every history file of a run and check it."""
    records, bad = read_histories(directory)
    return check_records(records, bad)
