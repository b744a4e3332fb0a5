"""meshctl hooks install|uninstall: put the mesh's hooks into a coding agent's settings (or take them out)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mesh.cli.main import common_parser
from mesh.errors import ConfigError


def _pieces(value: str) -> tuple[str, ...]:
    from mesh.agents import PIECES
    from mesh.core.validate import shown

    got = tuple(p.strip() for p in value.split(",") if p.strip())
    bad = [p for p in got if p not in PIECES]
    if bad or not got:
        raise argparse.ArgumentTypeError(f"choose from {','.join(PIECES)}, not {shown(value)}")
    return got


def register(sub: Any) -> None:
    hooks = sub.add_parser(
        "hooks",
        help="install the mesh's hooks into a coding agent (Claude Code, Codex, Gemini CLI)",
        description="Merge the mesh's hooks into an agent's settings (other hooks are kept; the first "
        "change backs the file up; installing twice changes nothing), or take them out again.",
    )
    hsub = hooks.add_subparsers(dest="hooks_verb", metavar="install|uninstall", required=True)
    for verb, helptext in (("install", "add (or update) the hooks"), ("uninstall", "remove only ours")):
        p = hsub.add_parser(verb, parents=[common_parser()], help=helptext)
        p.add_argument("--agent", required=True, choices=("claude-code", "codex", "gemini"))
        p.add_argument(
            "--scope", choices=("project", "user"), default="project",
            help="project: the settings under --dir; user: your own (every project)",
        )  # fmt: skip
        p.add_argument("--dir", type=Path, default=None, help="project directory (default: the current one)")
        p.add_argument(
            "--dry-run", action="store_true", help="print the change as a unified diff; write nothing"
        )
        if verb == "install":
            p.add_argument(
                "--only", type=_pieces, default=None, metavar="PIECES",
                help="install only these pieces: start,prompt,pre,post,end (default: all the agent has)",
            )  # fmt: skip
            p.add_argument(
                "--auto-claim", action="store_true",
                help="before an edit, also claim the edited path for this session (if nobody else holds it)",
            )  # fmt: skip
        p.set_defaults(func=cmd_hooks, install=verb == "install")


def cmd_hooks(args: argparse.Namespace) -> int:
    from mesh import agents

    project = (args.dir or Path.cwd()).resolve()
    if args.dir is not None and not project.is_dir():
        raise ConfigError(f"--dir {args.dir}: no such directory")
    path = agents.settings_path(args.agent, args.scope, project)
    pieces = getattr(args, "only", None) or agents.PIECES
    change = agents.plan(
        args.agent, path, install=args.install, pieces=pieces, auto_claim=getattr(args, "auto_claim", False)
    )
    if args.dry_run:
        sys.stdout.write(change.diff() or f"no change to {path}\n")
        return 0
    backup = agents.apply(change)
    if args.json:
        from mesh.cli.output import print_json

        print_json({"path": str(path), "changed": change.changed, "backup": str(backup) if backup else None})
        return 0
    if not change.changed:
        print(f"{path}: already {'installed' if args.install else 'without mesh hooks'}; nothing changed")
        return 0
    print(f"{'installed mesh hooks in' if args.install else 'removed mesh hooks from'} {path}")
    if backup is not None:
        print(f"the previous file is kept as {backup}")
    if args.install:
        print(agents.NOTES[args.agent])
    return 0
