"""Section registry: `@section("name")` registers a benchmark; `Context` is what a section records into.

A section is a plain function or a coroutine function taking a `Context`. It records figures with
`ctx.record(...)`, raises `SectionSkipped("why")` when it cannot run here, and must clean up after itself
(servers and nodes in `with`/`try: finally:` blocks) — the runner enforces `timeout_s` by raising into it.

    from bench.sections import Context, section

    @section("claims", timeout_s=300, needs=("etcd",))
    async def claims(ctx: Context) -> None:
        ...
        ctx.record("uncontended_p50", p50_ms, "ms", target=3.0,
                   ref=refs.ETCD_LOCK_ROUND_P50, ref_is_target=True)
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bench.report import Figure, Report

SectionFn = Callable[["Context"], None] | Callable[["Context"], Awaitable[None]]
F = TypeVar("F", bound=SectionFn)


class SectionSkipped(Exception):
    """Raised by a section that cannot run on this machine; the message is printed as the reason."""


class SectionTimeout(Exception):
    """Raised into a section that overran its time budget."""


@dataclass(frozen=True)
class Section:
    """A registered benchmark section."""

    name: str
    fn: SectionFn
    timeout_s: float
    description: str
    needs: tuple[str, ...] = ()
    """Sections whose figures this one quotes as references; `--only` runs them too (before it)."""


REGISTRY: dict[str, Section] = {}


def section(name: str, *, timeout_s: float = 300.0, needs: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Register `fn` as benchmark section `name` (run in registration order, at most `timeout_s`)."""

    def register(fn: F) -> F:
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise ValueError(f"benchmark section {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        REGISTRY[name] = Section(name, fn, timeout_s, doc[0] if doc else "", tuple(needs))
        return fn

    return register


class Context:
    """What a running section sees: the run's options and the report it records figures into."""

    def __init__(self, report: Report, section: str, *, quick: bool) -> None:
        self.report = report
        self.section = section
        self.quick = quick
        """Fewer rounds and shorter runs (for a smoke run, not for figures you quote)."""

    def record(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        target: float | None = None,
        higher_is_better: bool = False,
        ref: str | None = None,
        ref_is_target: bool = False,
        note: str = "",
    ) -> Figure:
        """Record a figure of this section; `ref` is another figure's key ("etcd.lock_round_p50")."""
        fig = Figure(
            section=self.section,
            name=name,
            value=float(value),
            unit=unit,
            target=target,
            higher_is_better=higher_is_better,
            ref=ref,
            ref_is_target=ref_is_target,
            note=note,
        )
        self.report.add(fig)
        self.log(f"{fig.key} = {value:.4g} {unit}" + (f"  ({note})" if note else ""))
        return fig

    def ref_value(self, key: str) -> float | None:
        """The value of a figure already measured in this run (e.g. a reference system's), if any."""
        fig = self.report.get(key)
        return None if fig is None else fig.value

    def set_info(self, key: str, value: str) -> None:
        """Add an item to the report header (e.g. "etcd": "3.4.23")."""
        self.report.info[key] = value

    def rounds(self, full: int, quick: int) -> int:
        """`quick` under --quick, else `full`."""
        return quick if self.quick else full

    def log(self, message: str) -> None:
        """Progress line on stderr (stdout is kept for the final table)."""
        print(f"[{self.section}] {message}", file=sys.stderr, flush=True)
