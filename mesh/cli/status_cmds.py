"""meshctl heartbeat: publish what this session is doing."""

from __future__ import annotations

import argparse
from typing import Any

from mesh.cli.main import common_parser, run


def _progress(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 100, not {value!r}") from None
    if not 0 <= n <= 100:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 100, not {n}")
    return n


def register(sub: Any) -> None:
    hb = sub.add_parser(
        "heartbeat",
        parents=[common_parser()],
        help="publish this session's status",
        description="Publish this session's status; options left out keep their value.",
    )
    hb.add_argument("--action", default=None, help="what it is doing (e.g. build)")
    hb.add_argument("--target", default=None, help="on what (e.g. i-match)")
    hb.add_argument("--phase", default=None, help="where in it (e.g. tests)")
    hb.add_argument("--progress", type=_progress, default=None, metavar="N", help="0-100")
    hb.add_argument("--note", default=None, help="free text (up to 512 characters)")
    hb.set_defaults(func=cmd_heartbeat)


def cmd_heartbeat(args: argparse.Namespace) -> int:
    return run(_heartbeat(args))


async def _heartbeat(args: argparse.Namespace) -> int:
    from mesh.cli import output
    from mesh.client import Client
    from mesh.paths import find_node

    node = find_node(args.home, args.mesh if args.mesh_explicit else None, args.node)
    async with Client(node) as c:
        await c.heartbeat(
            action=args.action, target=args.target, phase=args.phase, progress=args.progress, note=args.note
        )
    if args.json:
        output.print_json({"ok": True, "node": node.name})
    return 0
