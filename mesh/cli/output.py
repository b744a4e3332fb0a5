"""Output for meshctl: JSON for scripts, rich tables for people (rich is imported only when needed)."""

from __future__ import annotations

import sys
import time

from mesh import _json as json  # json's own C functions: meshctl's start-up

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    from typing import Any, TextIO

    from mesh.views import MemberView, WatchEvent

STATE_STYLE = {"alive": "green", "suspect": "yellow", "dead": "red", "left": "dim"}


def print_json(data: Any, file: TextIO | None = None) -> None:
    """One JSON document (or line) on stdout."""
    out = file or sys.stdout
    out.write(json.dumps(data, ensure_ascii=False) + "\n")
    out.flush()


def ago(t: float, now: float | None = None) -> str:
    """'now', '3s ago', '5m ago', '2h ago'."""
    if t <= 0:
        return "-"
    d = (now or time.time()) - t
    if d < 1.0:
        return "now"
    if d < 90:
        return f"{d:.0f}s ago"
    if d < 5400:
        return f"{d / 60:.0f}m ago"
    return f"{d / 3600:.1f}h ago"


def members_table(members: list[MemberView], title: str | None = None) -> Any:
    """A rich Table of members."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", expand=False, pad_edge=False)
    cols = (
        "name",
        "role",
        "state",
        "action",
        "target",
        "phase",
        "progress",
        "note",
        "claims",
        "unread",
        "last seen",
    )
    for col in cols:
        t.add_column(col, no_wrap=col in ("name", "state", "progress", "last seen"))
    now = time.time()
    for m in members:
        name = m.name + (" *" if m.is_self else "") + (" (steward)" if m.steward else "")
        style = STATE_STYLE.get(m.state, "")
        progress = f"{m.progress}%" if m.action or m.progress else ""
        t.add_row(
            name,
            m.role,
            f"[{style}]{m.state}[/]",
            m.action,
            m.target,
            m.phase,
            progress,
            m.note,
            ", ".join(r for r, _, _ in m.claims),
            str(m.unread) if m.unread else "",
            ago(m.last_seen, now),
        )
    return t


def console(file: TextIO | None = None, width: int | None = None) -> Any:
    from rich.console import Console

    return Console(file=file or sys.stdout, width=width, highlight=False)


def plain_members(members: list[MemberView], file: TextIO | None = None) -> None:
    """Tab-separated rows for pipes (no colour, stable columns)."""
    out = file or sys.stdout
    now = time.time()
    for m in members:
        row = [
            m.name,
            m.role,
            m.state,
            m.action,
            m.target,
            m.phase,
            str(m.progress),
            m.note,
            ",".join(r for r, _, _ in m.claims),
            str(m.unread),
            ago(m.last_seen, now),
        ]
        out.write("\t".join(row) + "\n")


def event_line(ev: WatchEvent) -> str:
    """One human line for a watch event."""
    from mesh.views import BoardEvent

    stamp = time.strftime("%H:%M:%S", time.localtime(ev.at))
    if isinstance(ev, BoardEvent):
        if ev.change == "sync":
            return f"{stamp}  board: {ev.count} changes arrived (caught up)"
        where = "" if ev.local else " (from a peer)"
        return f"{stamp}  board: {ev.change} {ev.short_id} {ev.title!r} — {ev.state}{where}"
    m = ev.member
    if ev.kind == "state":
        return f"{stamp}  {m.name} is {m.state} (was {ev.previous})"
    if ev.kind == "joined":
        return f"{stamp}  {m.name} joined ({m.role or 'no role'}, {m.address})"
    if ev.kind == "status":
        bits = " ".join(x for x in (m.action, m.target, m.phase) if x)
        note = f" — {m.note}" if m.note else ""
        return f"{stamp}  {m.name}: {bits or '-'} {m.progress}%{note}"
    return f"{stamp}  {m.name} {m.state}"


def state_markdown(
    members: list[MemberView], node_name: str, mesh: str, extra: list[str] | None = None
) -> str:
    """The whole picture as Markdown (what CURRENT_STATE.md used to be), rendered from live state."""
    from mesh.views import iso

    now = time.time()
    lines = [f"# Mesh `{mesh}` — state as seen by {node_name}", "", f"_{iso(now)}_", "", "## Sessions", ""]
    lines += [
        "| session | role | state | doing | progress | note | claims | last seen |",
        "|---|---|---|---|---:|---|---|---|",
    ]
    for m in members:
        doing = " / ".join(x for x in (m.action, m.target, m.phase) if x)
        who = m.name + (" (steward)" if m.steward else "")
        claims = ", ".join(f"`{r}`" for r, _, _ in m.claims)
        seen = ago(m.last_seen, now)
        lines.append(
            f"| {who} | {m.role} | {m.state} | {doing} | {m.progress}% | {m.note} | {claims} | {seen} |"
        )
    lines += ["", "## Claims", ""]
    held = [(r, m.name, t, x) for m in members if m.state in ("alive", "suspect") for r, t, x in m.claims]
    if held:
        lines += ["| item | holder | token | ends |", "|---|---|---:|---|"]
        lines += [f"| `{r}` | {h} | {t} | {iso(x)} |" for r, h, t, x in sorted(held)]
    else:
        lines.append("No live claims.")
    if extra:
        lines += ["", *extra]
    return "\n".join(lines) + "\n"
