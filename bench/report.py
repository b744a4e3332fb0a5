"""Result model and rendering: figures → a Markdown table (stdout, latest.md) and a JSON file."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

SectionStatus = Literal["ok", "skipped", "failed", "missing"]


@dataclass(frozen=True)
class Figure:
    """One measured number, optionally with a target and a reference figure to be compared against."""

    section: str
    name: str
    value: float
    unit: str
    target: float | None = None
    """Bound the value should meet (≤ target, or ≥ target when higher_is_better)."""
    higher_is_better: bool = False
    ref: str | None = None
    """Key ("section.name") of a figure from the same run; rendered as the ratio value / ref."""
    ref_is_target: bool = False
    """The reference is itself a target: the ratio must be ≤ 1 (≥ 1 when higher_is_better)."""
    note: str = ""

    @property
    def key(self) -> str:
        """Stable identifier, "section.name", used for references between figures."""
        return f"{self.section}.{self.name}"

    def meets_target(self) -> bool | None:
        """True/False against `target`; None when there is none."""
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target


@dataclass
class SectionOutcome:
    """How one section ended: ok, skipped (with the reason), failed (with the error) or missing."""

    name: str
    status: SectionStatus
    reason: str = ""
    duration_s: float = 0.0


@dataclass
class Report:
    """Everything one run produced: figures keyed by "section.name", section outcomes, machine info."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    figures: dict[str, Figure] = field(default_factory=dict)
    outcomes: list[SectionOutcome] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        """Record a figure (a later figure with the same key replaces the earlier one)."""
        if not math.isfinite(figure.value):
            raise ValueError(f"figure {figure.key} is not finite: {figure.value!r}")
        self.figures[figure.key] = figure
        return figure

    def get(self, key: str) -> Figure | None:
        """The figure recorded under `key` in this run, if any."""
        return self.figures.get(key)

    def ratio(self, figure: Figure) -> float | None:
        """value / reference value, when the reference was measured in this run and is non-zero."""
        if figure.ref is None:
            return None
        ref = self.figures.get(figure.ref)
        if ref is None or ref.value == 0:
            return None
        return figure.value / ref.value

    def verdict(self, figure: Figure) -> bool | None:
        """Whether the figure meets its target and (when `ref_is_target`) its reference; None if neither."""
        checks: list[bool] = []
        met = figure.meets_target()
        if met is not None:
            checks.append(met)
        if figure.ref_is_target:
            r = self.ratio(figure)
            if r is not None:
                checks.append(r >= 1.0 if figure.higher_is_better else r <= 1.0)
        return all(checks) if checks else None


def machine_info() -> dict[str, str]:
    """Cores, CPU model, OS, Python and the versions of the libraries the figures depend on."""
    info: dict[str, str] = {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count() or 0),
        "python": sys.version.split()[0],
    }
    # Client libraries under their distribution names ("redis-py", not "redis": that is the server's key).
    for dist, label in (
        ("grpcio", "grpcio"),
        ("protobuf", "protobuf"),
        ("redis", "redis-py"),
        ("psutil", "psutil"),
    ):
        try:
            info[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[label] = "not installed"
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_value(value: float) -> str:
    """Three significant figures for small numbers, thousands separators for large ones."""
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _target_text(f: Figure) -> str:
    if f.target is None:
        return ""
    return ("≥ " if f.higher_is_better else "≤ ") + format_value(f.target)


def _ref_text(report: Report, f: Figure) -> str:
    if f.ref is None:
        return ""
    ref = report.get(f.ref)
    r = report.ratio(f)
    if ref is None or r is None:
        return f"{f.ref}: not measured"
    return f"{r:.2f}x {f.ref} ({format_value(ref.value)} {ref.unit})"


def _verdict_text(v: bool | None) -> str:
    return "" if v is None else ("pass" if v else "FAIL")


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """The whole report as Markdown: header with machine info, figure table, section outcomes."""
    lines = [f"# session mesh benchmark — {report.started_at.strftime('%Y-%m-%d %H:%M:%S UTC')}", ""]
    lines.append("  ".join(f"**{k}** {v}" for k, v in report.info.items()))
    lines.append("")
    header = ["section", "figure", "value", "unit", "target", "verdict", "vs reference", "note"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "---", "---:", "---", "---", "---", "---", "---"]) + "|")
    for f in report.figures.values():
        row = [
            f.section,
            f.name,
            format_value(f.value),
            f.unit,
            _target_text(f),
            _verdict_text(report.verdict(f)),
            _ref_text(report, f),
            f.note,
        ]
        lines.append("| " + " | ".join(_escape(c) for c in row) + " |")
    if report.outcomes:
        lines += ["", "| section | status | time | reason |", "|---|---|---:|---|"]
        for o in report.outcomes:
            lines.append(f"| {o.name} | {o.status} | {o.duration_s:.1f} s | {_escape(o.reason)} |")
    return "\n".join(lines) + "\n"


def to_json(report: Report) -> dict[str, Any]:
    """A JSON-ready dict: figures carry their ratio and verdict so consumers need not recompute them."""
    figures = []
    for f in report.figures.values():
        d = dataclasses.asdict(f)
        d["key"] = f.key
        d["ratio"] = report.ratio(f)
        d["verdict"] = report.verdict(f)
        figures.append(d)
    return {
        "started_at": report.started_at.isoformat(),
        "info": dict(report.info),
        "sections": [dataclasses.asdict(o) for o in report.outcomes],
        "figures": figures,
    }


def from_json(data: Mapping[str, Any]) -> Report:
    """Rebuild a Report from `to_json` output (to compare runs or re-render old results)."""
    fields = {f.name for f in dataclasses.fields(Figure)}
    report = Report(started_at=datetime.fromisoformat(data["started_at"]), info=dict(data.get("info", {})))
    for d in data.get("figures", []):
        report.add(Figure(**{k: v for k, v in d.items() if k in fields}))
    report.outcomes = [SectionOutcome(**o) for o in data.get("sections", [])]
    return report


def write(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write <timestamp>.json and latest.md under `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.strftime("%Y%m%dT%H%M%SZ")
    json_path = out_dir / f"{stamp}.json"
    json_path.write_text(json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path = out_dir / "latest.md"
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path


def figures_in(report: Report, section: str) -> Sequence[Figure]:
    """The figures one section recorded, in recording order."""
    return [f for f in report.figures.values() if f.section == section]


def merge_info(report: Report, items: Iterable[tuple[str, str]]) -> None:
    """Add header items (e.g. server versions) without replacing machine info already present."""
    for k, v in items:
        report.info.setdefault(k, v)
