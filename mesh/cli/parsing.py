"""meshctl's argparse parsers: every verb's, built only when a run needs them (`mesh.cli.main.main`).

The hot verbs' usual command lines are read without argparse (`mesh.cli.quick`); everything else — help,
errors, the other verbs, any spelling the quick reader does not take — comes here.
"""

from __future__ import annotations

import functools
import os
import sys

from mesh._nodefile import home_arg


def _load_argparse() -> None:
    """Import argparse without `gettext`: argparse passes every message it builds through gettext, which
    imports `locale` and looks for message catalogues on disk at each call — ~2 ms of every meshctl run
    for nothing, as Python ships no catalogue for argparse (its messages are the English text either way).
    The stand-in exists only while argparse loads; whoever imports gettext later gets the real one."""
    if "argparse" in sys.modules or "gettext" in sys.modules:
        return
    import types

    stand_in = types.ModuleType("gettext")
    stand_in.gettext = lambda message: message  # type: ignore[attr-defined]
    stand_in.ngettext = lambda singular, plural, n: singular if n == 1 else plural  # type: ignore[attr-defined]
    sys.modules["gettext"] = stand_in
    try:
        import argparse  # noqa: F401
    finally:
        del sys.modules["gettext"]


_load_argparse()

import argparse  # noqa: E402

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    from typing import Any, NoReturn


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


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, minus `import shutil` (and with it bz2, lzma, …) in every run: argparse makes
    one for each add_argument, help or not. The width is shutil.get_terminal_size's, found the same way."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2), as every meshctl error is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


@functools.cache
def common_parser() -> argparse.ArgumentParser:
    """Options every verb takes (so they may follow the verb: `meshctl status --json`). One instance: it is
    only ever a parent (argparse copies its actions), and each parser costs meshctl's start-up."""
    p = _Parser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument(
        "--home",
        type=home_arg,
        default=None,
        help="root of local state (default: $MESH_HOME or platform dir)",
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
        mod.register(_OnlyVerb(sub, verb) if verb in _VERBS else sub)
    return parser


class _OnlyVerb:
    """The subparsers action, but only `verb`'s parser is built: the module's other verbs (`claim` shares
    one with `release`, `claims`, `stewards`) get a `_Skipped` that takes their set-up and builds nothing.
    Neither the verb's `--help` nor its errors show its siblings, so what is printed does not change."""

    def __init__(self, sub: Any, verb: str) -> None:
        self._sub = sub
        self._verb = verb

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        return self._sub.add_parser(name, **kwargs) if name == self._verb else _Skipped()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sub, name)


class _Skipped:
    """Stands for a parser (or its arguments, groups, subparsers) that this run does not need."""

    def __getattr__(self, name: str) -> Any:
        return self._take

    def __setattr__(self, name: str, value: Any) -> None:
        pass

    def _take(self, *args: Any, **kwargs: Any) -> _Skipped:
        return self


def bad_value(message: str) -> argparse.ArgumentTypeError:
    """What an option's converter raises for argparse to report as that option's usage error."""
    return argparse.ArgumentTypeError(message)
