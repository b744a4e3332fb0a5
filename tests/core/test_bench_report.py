"""The benchmark report renders figures, ratios and verdicts as a table and round-trips through JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.procs import percentile
from bench.report import Figure, Report, SectionOutcome, from_json, render_markdown, to_json, write


def _report() -> Report:
    r = Report(started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), info={"cores": "2"})
    r.add(Figure("etcd", "lock_round_p50", 4.0, "ms"))
    r.add(Figure("claims", "p50", 1.0, "ms", target=3.0, ref="etcd.lock_round_p50", ref_is_target=True))
    r.add(Figure("claims", "p99", 12.0, "ms", target=10.0))
    r.add(Figure("messages", "throughput", 30_000, "msg/s", target=20_000, higher_is_better=True))
    r.add(Figure("messages", "vs_missing", 1.0, "ms", ref="redis.streams_latency_p50"))
    r.outcomes.append(SectionOutcome("redis", "skipped", "redis-server not installed", 0.1))
    return r


def test_ratio_and_verdicts() -> None:
    r = _report()
    assert r.ratio(r.figures["claims.p50"]) == pytest.approx(0.25)
    assert r.verdict(r.figures["claims.p50"]) is True
    assert r.verdict(r.figures["claims.p99"]) is False
    assert r.verdict(r.figures["messages.throughput"]) is True
    assert r.verdict(r.figures["etcd.lock_round_p50"]) is None
    assert r.ratio(r.figures["messages.vs_missing"]) is None
    # A reference that is a target fails when slower than the reference, even inside the absolute target.
    r.add(Figure("claims", "p50", 2.9, "ms", target=3.0, ref="etcd.lock_round_p50", ref_is_target=True))
    r.add(Figure("etcd", "lock_round_p50", 2.0, "ms"))
    assert r.verdict(r.figures["claims.p50"]) is False


def test_markdown_table() -> None:
    md = render_markdown(_report())
    lines = md.splitlines()
    assert lines[0] == "# session mesh benchmark — 2026-01-02 03:04:05 UTC"
    row = next(line for line in lines if line.startswith("| claims | p50 "))
    assert row.split(" | ")[2:7] == ["1.00", "ms", "≤ 3.00", "pass", "0.25x etcd.lock_round_p50 (4.00 ms)"]
    assert "| claims | p99 | 12.0 | ms | ≤ 10.0 | FAIL |" in md
    assert "| messages | throughput | 30,000 | msg/s | ≥ 20,000 | pass |" in md
    assert "redis.streams_latency_p50: not measured" in md
    assert "| redis | skipped | 0.1 s | redis-server not installed |" in md


def test_json_round_trip(tmp_path: Path) -> None:
    r = _report()
    json_path, md_path = write(r, tmp_path)
    assert json_path.name == "20260102T030405Z.json"
    data = json.loads(json_path.read_text(encoding="utf-8"))
    by_key = {f["key"]: f for f in data["figures"]}
    assert by_key["claims.p50"]["ratio"] == pytest.approx(0.25)
    assert by_key["claims.p99"]["verdict"] is False
    assert from_json(data).figures == r.figures
    assert to_json(from_json(data)) == data
    assert md_path.read_text(encoding="utf-8") == render_markdown(r)


def test_non_finite_figure_rejected() -> None:
    with pytest.raises(ValueError):
        Report().add(Figure("x", "y", float("nan"), "ms"))


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)
