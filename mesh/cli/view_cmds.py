"""meshctl status / watch: the whole mesh from any node, once or live."""

from __future__ import annotations

import sys

from mesh.cli.main import common_parser, connect, run, run_following, run_light

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from mesh.api import MeshAPI
    from mesh.views import MemberView


def register(sub: Any) -> None:
    from pathlib import Path  # here: `meshctl status` runs without pathlib (mesh._nodefile)

    st = sub.add_parser("status", parents=[common_parser()], help="every node in the mesh, from any node")
    st.add_argument(
        "--by-role", action="store_true", help="the role table: live sessions and open tasks per role"
    )
    st.set_defaults(func=cmd_status)
    sm = sub.add_parser(
        "state", parents=[common_parser()], help="the whole picture as Markdown (CURRENT_STATE.md)"
    )
    sm.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")
    sm.set_defaults(func=cmd_state)
    w = sub.add_parser("watch", parents=[common_parser()], help="live view of the mesh (Ctrl-C to stop)")
    w.add_argument(
        "--no-snapshot", action="store_true", help="only new events, not the current members first"
    )
    w.set_defaults(func=cmd_watch)


def cmd_status(args: argparse.Namespace) -> int:
    return run(_status(args)) if args.by_role else run_light(args, lambda: _status(args))


async def _status(args: argparse.Namespace) -> int:
    from mesh.cli import output

    async with connect(args) as api:
        if args.by_role:
            return await _by_role(args, api, await api.members())
        members, info = await api.members_and_info()
        note = info.steward_note
    if args.json:
        output.print_json([m.to_json() for m in members])
    elif sys.stdout.isatty():
        output.console().print(output.members_table(members))
        output.console().print(f"links: {info.local_links} local / {info.grpc_links} grpc")
        if note:
            output.console().print(f"stewards: {note}")
    else:
        output.plain_members(members)
    if note and not sys.stdout.isatty():
        print(f"stewards: {note}", file=sys.stderr)  # claims cannot be decided now: say why, off the data
    return 0


async def _by_role(args: argparse.Namespace, api: MeshAPI, members: list[MemberView]) -> int:
    from mesh.cli import output
    from mesh.views import role_table

    rows = role_table(members, (await api.board(done=False)).tasks())
    if args.json:
        output.print_json([r.to_json() for r in rows])
        return 0
    if not rows:
        print("No roles: start sessions with `meshctl up --role ROLE`, or file tasks with --role.")
    for r in rows:
        who = ", ".join(r.live) if r.live else "NO LIVE SESSION"
        away = f" (away: {', '.join(r.away)})" if r.away else ""
        print(f"{r.role}\t{who}{away}\t{r.open_tasks} open task(s), {r.claimed_tasks} claimed")
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    text = _run_text(_state(args))
    if args.out:
        from mesh.storage import write_file

        write_file(args.out, text, mode=0o644)
    else:
        sys.stdout.write(text)
    return 0


def _run_text(coro: Any) -> str:
    import asyncio

    result: str = asyncio.run(coro)
    return result


async def _state(args: argparse.Namespace) -> str:
    from mesh.cli import output

    async with connect(args) as api:
        members = await api.members()
        extra = await _state_extra(api)
    return output.state_markdown(members, api.node.name, api.node.mesh, extra)


async def _state_extra(api: MeshAPI) -> list[str]:
    """More sections for `state`: the board and the milestones."""
    from mesh.cli.board_cmds import board_markdown

    return board_markdown(await api.board())


def cmd_watch(args: argparse.Namespace) -> int:
    try:
        return (run_following if getattr(args, "follow", True) else run)(_watch(args))
    except KeyboardInterrupt:
        return 0


async def _watch(args: argparse.Namespace) -> int:
    from mesh.cli import output

    async with connect(args) as api:
        if args.json:
            async for ev in api.watch(snapshot=not args.no_snapshot):
                output.print_json(ev.to_json())
        elif sys.stdout.isatty():
            await _live(api, api.node.name, snapshot=not args.no_snapshot)
        else:
            async for ev in api.watch(snapshot=not args.no_snapshot):
                print(output.event_line(ev), flush=True)
    return 0


async def _live(api: MeshAPI, node_name: str, snapshot: bool) -> None:
    """A live table of the mesh with the latest events beneath it."""
    from collections import deque

    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from mesh.cli import output
    from mesh.views import BoardEvent, MemberEvent

    members: dict[str, Any] = {}
    recent: deque[str] = deque(maxlen=8)

    def render() -> Any:
        ms = sorted(members.values(), key=lambda m: (not m.is_self, m.name))
        title = (
            f"mesh via {node_name} — {sum(m.state == 'alive' for m in ms)}/{len(ms)} alive (Ctrl-C to quit)"
        )
        return Group(output.members_table(ms, title=title), Text("\n".join(recent), style="dim"))

    with Live(render(), console=output.console(), refresh_per_second=4, transient=False) as live:
        async for ev in api.watch(snapshot=True):
            if isinstance(ev, MemberEvent):
                members[ev.member.node_id] = ev.member
            if isinstance(ev, BoardEvent) or ev.kind != "snapshot":
                recent.append(output.event_line(ev))
            live.update(render())
