"""`make soak` / `python -m bench.soak [--seconds N] [--churn]`: the claims nemesis, long.

Default: tests/integration/nemesis.py for minutes — 5 real node processes, claimants on every node, SIGKILL
and restart, SIGSTOP of holders past the acceptors' lease, partitions. With ``--churn`` (``make soak
SOAK_ARGS=--churn``): tests/integration/churn.py — sessions start and leave all the time (lifetimes
2-60 s; down, SIGTERM, SIGKILL, SIGSTOP past a lease), 3-12 alive, stewards included, claimants competing
for a few items — and its availability figure. Either way every node's claim history is checked for
overlapping holders and token regressions. Prints a summary; exit 1 on any violation (the histories are
kept and their directory printed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.churn import ChurnConfig, ChurnResult, run_churn
from tests.integration.nemesis import KINDS, NemesisConfig, NemesisResult, run_nemesis


def summary(res: NemesisResult, cfg: NemesisConfig) -> str:
    """The soak's result as a small two-column table."""
    rep = res.report
    gaps = sorted(rep.handover_gaps)
    o = res.outcomes
    settle = sorted(res.settle_times)
    rows = [
        ("seed", str(cfg.seed)),
        ("nodes / resources / lease", f"{cfg.nodes} / {cfg.resources} / {cfg.lease:g} s"),
        ("duration", f"{res.seconds:.0f} s"),
        *(
            (f"nemesis: {k}", str(res.actions[k]))
            for k in (*cfg.kinds, "recover")
            if res.actions[k] or k != "recover"
        ),
        ("claims granted / denied / no quorum", f"{o['granted']} / {o['denied']} / {o['no_quorum']}"),
        ("claim calls failed (node down)", str(res.outcomes["node_unavailable"])),
        ("acquisitions (histories)", str(rep.acquisitions)),
        ("renewals / releases / losses", f"{rep.renewals} / {rep.releases} / {rep.losses}"),
        ("handovers", str(rep.handovers)),
        ("takeovers (holder never released)", str(rep.takeovers)),
        ("handover gap p50 / max", f"{_p(gaps, 50):.2f} s / {rep.max_gap:.2f} s"),
        ("steward set whole again p50 / max", f"{_p(settle, 50):.1f} s / {_p(settle, 100):.1f} s"),
        ("faults it never recovered from", str(res.actions["unsettled"] + res.actions["recover"])),
        ("max concurrent holders", str(rep.max_concurrent)),
        ("unreadable history lines", str(rep.bad_lines)),
        ("VIOLATIONS", str(len(rep.violations))),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["claims soak", "-" * (width + 14)]
    lines += [f"{k:<{width}}  {v:>10}" for k, v in rows]
    lines += [f"  {v}" for v in rep.violations[:20]]
    lines += [f"  anomaly: {a}" for a in rep.anomalies[:20]]
    return "\n".join(lines)


def churn_summary(res: ChurnResult, cfg: ChurnConfig) -> str:
    """The churn soak's result as a small two-column table."""
    rep = res.report
    lat = sorted(res.latencies)
    rows = [
        ("seed", str(cfg.seed)),
        (
            "duration / lifetimes / lease",
            f"{res.seconds:.0f} s / {cfg.life[0]:g}-{cfg.life[1]:g} s / {cfg.lease:g} s",
        ),
        ("sessions started / alive at once", f"{res.started} / {res.min_alive}-{res.max_alive}"),
        *((f"ended by {k}", str(v)) for k, v in sorted(res.endings.items())),
        ("steward endings (not down)", str(res.steward_kills)),
        ("claim attempts counted", str(res.counted)),
        *((f"  {k}", str(v)) for k, v in sorted(res.attempts.items())),
        ("answer latency p50 / p99", f"{_p(lat, 50) * 1000:.0f} ms / {_p(lat, 99) * 1000:.0f} ms"),
        ("availability (definitive in 2 s)", f"{res.availability:.2%}"),
        ("  strict (holder process alive)", f"{res.strict_availability:.2%}"),
        ("acquisitions / handovers / takeovers", f"{rep.acquisitions} / {rep.handovers} / {rep.takeovers}"),
        ("max concurrent holders", str(rep.max_concurrent)),
        ("VIOLATIONS", str(len(rep.violations))),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["claims churn soak", "-" * (width + 14)]
    lines += [f"{k:<{width}}  {v:>10}" for k, v in rows]
    lines += [f"  {v}" for v in rep.violations[:20]]
    lines += [f"  miss: {m}" for m in res.misses[:20]]
    return "\n".join(lines)


def _p(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else 0.0


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 1 on any violation."""
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="how long the nemesis runs (default 300)")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--resources", type=int, default=3)
    ap.add_argument("--lease", type=float, default=2.0, help="the nodes' claim lease in seconds (default 2)")
    ap.add_argument("--seed", type=int, default=None, help="nemesis schedule seed (default random)")
    ap.add_argument("--quiet", action="store_true", help="do not log each fault")
    ap.add_argument("--churn", action="store_true", help="sessions come and go (issue 8's churn nemesis)")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    if args.churn:
        return _churn(args, seed)
    cfg = NemesisConfig(
        seconds=args.seconds,
        nodes=args.nodes,
        resources=args.resources,
        lease=args.lease,
        seed=seed,
        kinds=KINDS,
        log=not args.quiet,
    )
    work = Path(tempfile.mkdtemp(prefix="mesh-soak-"))
    print(f"soak: {args.seconds:g} s, seed {seed}, work dir {work}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    res = run_nemesis(work, cfg)
    print(summary(res, cfg))
    print(f"wall time {time.monotonic() - t0:.0f} s")
    if not res.report.ok:
        print(f"claim safety VIOLATED; histories kept in {res.history_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _churn(args: argparse.Namespace, seed: int) -> int:
    cfg = ChurnConfig(seconds=args.seconds, lease=args.lease, seed=seed, log=not args.quiet)
    work = Path(tempfile.mkdtemp(prefix="mesh-churn-"))
    print(f"churn soak: {args.seconds:g} s, seed {seed}, work dir {work}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    res = run_churn(work, cfg)
    print(churn_summary(res, cfg))
    print(f"wall time {time.monotonic() - t0:.0f} s")
    if not res.report.ok:
        print(f"claim safety VIOLATED; histories kept in {res.history_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
