"""`python -m bench.run [--only SECTION,...] [--quick]`: run the registered sections, print the table.

Sections live in the modules of `MODULES` (imported in order; a module that does not exist yet is noted
and skipped). Each section runs isolated: a skip or a failure is printed with its reason and the rest go on.
Reference systems come first so that later sections can quote them as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import cast

from bench import report as rep
from bench.sections import REGISTRY, Context, Section, SectionSkipped, SectionTimeout

MODULES: tuple[str, ...] = (
    "bench.refs.etcd",
    "bench.refs.redis",
    "bench.membership",
    "bench.claims",
    "bench.formation",
    "bench.messages",
    "bench.board",
    "bench.security",
    "bench.web",
    "bench.hooks",
    "bench.cli",
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def load_modules(modules: Sequence[str], report: rep.Report) -> None:
    """Import every section module; a missing one becomes a 'missing' outcome, a broken one 'failed'."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                report.outcomes.append(rep.SectionOutcome(name, "failed", f"import error: {e}"))
                print(f"[run] {name}: import failed: {e}", file=sys.stderr)
            else:
                report.outcomes.append(rep.SectionOutcome(name, "missing", "module not written yet"))
                print(f"[run] {name}: not present yet, skipped", file=sys.stderr)
        except Exception as e:
            report.outcomes.append(rep.SectionOutcome(name, "failed", f"import error: {e!r}"))
            print(f"[run] {name}: import failed:\n{traceback.format_exc()}", file=sys.stderr)


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    # A synchronous section cannot be cancelled; SIGALRM raises into it at the next bytecode instead, and
    # its own finally blocks then stop whatever it started.
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise SectionTimeout(f"section overran its {seconds:.0f} s budget")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_section(sec: Section, report: rep.Report, *, quick: bool) -> rep.SectionOutcome:
    """Run one section within its time budget; never raises except KeyboardInterrupt/SystemExit."""
    ctx = Context(report, sec.name, quick=quick)
    start = time.monotonic()
    ctx.log(f"start ({sec.description})" if sec.description else "start")
    try:
        if inspect.iscoroutinefunction(sec.fn):
            coro = cast(Awaitable[None], sec.fn(ctx))

            async def bounded() -> None:
                try:
                    await asyncio.wait_for(coro, sec.timeout_s)
                except TimeoutError:
                    raise SectionTimeout(f"section overran its {sec.timeout_s:.0f} s budget") from None

            asyncio.run(bounded())
        else:
            with _alarm(sec.timeout_s):
                sec.fn(ctx)
    except SectionSkipped as e:
        ctx.log(f"SKIPPED: {e}")
        return rep.SectionOutcome(sec.name, "skipped", str(e), time.monotonic() - start)
    except Exception as e:
        ctx.log(f"FAILED: {e!r}\n{traceback.format_exc()}")
        return rep.SectionOutcome(sec.name, "failed", f"{type(e).__name__}: {e}", time.monotonic() - start)
    elapsed = time.monotonic() - start
    ctx.log(f"done in {elapsed:.1f} s")
    return rep.SectionOutcome(sec.name, "ok", "", elapsed)


def _with_needs(wanted: Sequence[str]) -> list[str]:
    """`wanted` plus, transitively, the registered sections they name in `needs` (unknown needs ignored)."""
    out: list[str] = []
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name in out or name not in REGISTRY:
            continue
        out.append(name)
        todo.extend(REGISTRY[name].needs)
    return out


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that every `finally` (servers, nodes, temp dirs) still runs.
    raise KeyboardInterrupt("SIGTERM")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 when every selected section ran (ok or skipped), 1 if one failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated section names (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--list", action="store_true", help="list the registered sections and exit")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--no-refs", action="store_true", help="--only without the sections' needs")
    args = parser.parse_args(argv)

    report = rep.Report()
    report.info.update(rep.machine_info())
    load_modules(MODULES, report)

    if args.list:
        for sec in REGISTRY.values():
            print(f"{sec.name:16} {sec.timeout_s:5.0f} s  {sec.description}")
        return 0
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in REGISTRY]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}", file=sys.stderr)
        return 2
    if wanted:
        # Only the selected sections' outcomes matter; drop notes about modules that were not asked for.
        report.outcomes = [o for o in report.outcomes if o.status == "failed"]
    if wanted and not args.no_refs:
        wanted = _with_needs(wanted)
    selected = [s for s in REGISTRY.values() if not wanted or s.name in wanted]
    if args.quick:
        report.info["mode"] = "quick"

    load_start = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        for sec in selected:
            report.outcomes.append(run_section(sec, report, quick=args.quick))
    except KeyboardInterrupt:
        print("[run] interrupted: writing what was measured so far", file=sys.stderr)
        report.outcomes.append(rep.SectionOutcome("(run)", "failed", "interrupted"))
    finally:
        # Other work on the machine skews every figure; the load at both ends says how quiet the run was.
        report.info["load1 start/end"] = f"{load_start:.2f}/{os.getloadavg()[0]:.2f}"
        print(rep.render_markdown(report))
        if not args.no_write:
            json_path, md_path = rep.write(report, args.out)
            print(f"[run] wrote {json_path} and {md_path}", file=sys.stderr)
    return 1 if any(o.status == "failed" for o in report.outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
