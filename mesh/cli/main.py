"""meshctl: the command line for sessions and people. One module per verb group; this file wires them.

Exit codes: 0 success, 2 error (one line on stderr), 3 claim held by another session, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# gRPC's C core otherwise prints a line per failed TLS handshake (a rogue peer would flood the log).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from mesh.errors import MeshError

if TYPE_CHECKING:
    from mesh.client import Client
    from mesh.paths import RunningNode

# Which module registers each verb: only that one is imported to run it (meshctl starts faster).
_VERBS = {
    "up": "mesh.cli.node_cmds", "down": "mesh.cli.node_cmds",
    "status": "mesh.cli.view_cmds", "watch": "mesh.cli.view_cmds", "state": "mesh.cli.view_cmds",
    "heartbeat": "mesh.cli.status_cmds",
    "claim": "mesh.cli.claim_cmds", "release": "mesh.cli.claim_cmds", "claims": "mesh.cli.claim_cmds",
    "stewards": "mesh.cli.claim_cmds",
    "send": "mesh.cli.mail_cmds", "inbox": "mesh.cli.mail_cmds", "read": "mesh.cli.mail_cmds",
    "outbox": "mesh.cli.mail_cmds",
    "init": "mesh.cli.security_cmds", "join-token": "mesh.cli.security_cmds",
    "web": "mesh.cli.web_cmds",
    "hooks": "mesh.cli.hooks_cmds", "mcp": "mesh.cli.mcp_cmds",
    "task": "mesh.cli.board_cmds", "board": "mesh.cli.board_cmds", "milestone": "mesh.cli.board_cmds",
    "stats": "mesh.cli.board_cmds", "export": "mesh.cli.board_cmds",
}  # fmt: skip

# Verb-group modules, each with `register(sub)`. Missing optional modules are skipped.
_MODULES = (
    "mesh.cli.node_cmds",
    "mesh.cli.view_cmds",
    "mesh.cli.status_cmds",
    "mesh.cli.claim_cmds",
    "mesh.cli.mail_cmds",
    "mesh.cli.board_cmds",
    "mesh.cli.security_cmds",
    "mesh.cli.web_cmds",
    "mesh.cli.hooks_cmds",
    "mesh.cli.mcp_cmds",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), as every meshctl error is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def common_parser() -> argparse.ArgumentParser:
    """Options every verb takes (so they may follow the verb: `meshctl status --json`)."""
    p = _Parser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument(
        "--home", type=Path, default=None, help="root of local state (default: $MESH_HOME or platform dir)"
    )
    g.add_argument("--mesh", default=None, help="mesh name (default: $MESH_MESH or 'default')")
    g.add_argument(
        "--node", default=None, help="which local node to talk to (default: $MESH_NODE or the only one)"
    )
    g.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser for every verb, or — when `verb` is known — only for that one (the rest is not imported)."""
    import importlib

    parser = _Parser(
        prog="meshctl",
        description="session mesh: coordinate many coding sessions peer to peer (status, claims, messages, "
        "a shared task board).",
    )
    from mesh._version import __version__

    parser.add_argument("--version", action="version", version=f"meshctl {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    parser.set_defaults(_common=common_parser())
    modules = (_VERBS[verb],) if verb in _VERBS else _MODULES
    for mod_name in modules:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:
                continue
            raise
        mod.register(sub)
    return parser


def resolve_common(args: argparse.Namespace) -> None:
    """Fill defaults from the environment: MESH_HOME, MESH_MESH, MESH_NODE."""
    from mesh.paths import DEFAULT_MESH, default_home

    if getattr(args, "home", None) is None:
        args.home = default_home()
    args.mesh_explicit = getattr(args, "mesh", None) is not None or "MESH_MESH" in os.environ
    if getattr(args, "mesh", None) is None:
        args.mesh = os.environ.get("MESH_MESH", DEFAULT_MESH)
    if getattr(args, "node", None) is None:
        args.node = os.environ.get("MESH_NODE") or None


def target(args: argparse.Namespace) -> RunningNode:
    """The running node a verb talks to: --node / $MESH_NODE, else the only one (in --mesh, if given)."""
    from mesh.paths import find_node

    return find_node(args.home, args.mesh if args.mesh_explicit else None, args.node)


def connect(args: argparse.Namespace) -> Client:
    """A MeshAPI client of that node (`async with connect(args) as api:`)."""
    from mesh.client import Client

    return Client(target(args))


def run(coro: Coroutine[Any, Any, int]) -> int:
    """Run a verb's coroutine; its result is the exit code."""
    return asyncio.run(coro)


STOP_GRACE = 2.0
"""Seconds a following verb has to wind down after Ctrl-C before the process ends regardless."""


def run_following(coro: Coroutine[Any, Any, int]) -> int:
    """Run a verb that follows a stream (`watch`, `inbox --follow`) until it ends, Ctrl-C or SIGTERM (exit 0).

    The signal cancels the verb; should the stream read not end (grpc.aio was seen once, on a heavily
    loaded box, to go on reading a server stream after its task was cancelled), the process still ends
    after STOP_GRACE: such a verb only reads, so there is nothing a hard exit could lose but unflushed
    output, which is flushed first."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop() -> None:
            task.cancel()
            loop.call_later(STOP_GRACE, _hard_exit)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            return await coro
        except asyncio.CancelledError:
            return 0

    return asyncio.run(main())


def _hard_exit() -> NoReturn:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(0)


Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(verb)
    args = parser.parse_args(argv)
    args._argv = list(argv) if argv is not None else None
    handler: Handler = args.func
    try:
        _check_text(args)
        resolve_common(args)
        return handler(args)
    except MeshError as e:
        print("meshctl: " + " ".join(str(e).splitlines()), file=sys.stderr)  # one line, whatever it says
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _check_text(args: argparse.Namespace) -> None:
    """Every text argument is UTF-8 (bytes that are not become lone surrogates in Python, which would fail
    deep inside the transport): one line naming it. File paths (`Path` values) may be any bytes."""
    from mesh.core import validate

    for dest, value in vars(args).items():
        if dest.startswith("_") or dest == "func":
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str):
                what = "an argument" if dest == "args" else f"--{dest.replace('_', '-')}"
                try:
                    validate.utf8(v, what)
                except MeshError as e:
                    raise type(e)(f"{e}: {validate.shown(v)}") from None


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
