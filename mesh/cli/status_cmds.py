"""meshctl heartbeat: publish what this session is doing."""

from __future__ import annotations

from mesh.cli.main import bad_value, common_parser, connect, run_light
from mesh.core import validate
from mesh.core.errors import InvalidInput

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    import argparse
    from typing import Any


def _progress(text: str) -> int:
    """--progress N: the API's one rule (mesh.core.validate.progress), reported as a usage error."""
    try:
        value: Any = int(text)
    except ValueError:
        value = text
    try:
        return validate.progress(value)
    except InvalidInput as e:
        raise bad_value(str(e)) from None


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
    return run_light(args, lambda: _heartbeat(args))


async def _heartbeat(args: argparse.Namespace) -> int:
    from mesh.cli import output

    async with connect(args) as api:
        await api.heartbeat(
            action=args.action, target=args.target, phase=args.phase, progress=args.progress, note=args.note
        )
    if args.json:
        output.print_json({"ok": True, "node": api.node.name})
    return 0
