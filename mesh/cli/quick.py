"""The hot verbs' usual command lines read without argparse (issue 15: `meshctl status` / `claim` within
1.2x `python -c pass`; importing argparse and building a verb's parser is ~2 ms of a ~25 ms process).

`parse(argv)` gives the same namespace argparse would (mesh.cli.parsing: same attributes, values and
handler) for the plain spellings of `status`, `heartbeat`, `claim`, `release` and `send`, and of `up` (a
node then never loads argparse nor builds a parser, which would stay in its memory for its whole life:
~0.5 MB RSS per node, issue 15) — or None for anything else, and then argparse reads the line: help,
`--version`, an unknown or abbreviated option, a missing or extra argument, a value argparse's own type
check refuses, `--`, options between positionals, option values that start with '-'. So every usage error
and every help text still comes from argparse alone, word for word; this reader only declines.
tests/cli/test_quick.py holds its table equal to the parsers' actions and its answers equal to argparse's
over generated command lines.
"""

from __future__ import annotations

import sys

from mesh._nodefile import home_arg

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

FLAG = None
"""An option's converter that marks it `store_true` (default False, takes no value)."""


class _Decline:
    def __repr__(self) -> str:
        return "DECLINE"


DECLINE = _Decline()
"""An option's converter that this reader never takes: a line with it is argparse's (`up --web [PORT]`)."""


class Append:
    """An option's converter that marks it `action="append"` (default a new empty list; each use adds one
    value, converted by `convert`)."""

    def __init__(self, convert: Any = str) -> None:
        self.convert = convert

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Append) and other.convert is self.convert


class Choice:
    """An option's converter that takes only these words (argparse's `choices`, the value unconverted)."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choice) and other.choices == self.choices

    def __call__(self, word: str) -> str:
        if word not in self.choices:
            raise ValueError(word)
        return word


ONE, MANY = 1, "+"

COMMON: dict[str, tuple[str, Any]] = {
    "--home": ("home", home_arg),
    "--mesh": ("mesh", str),
    "--node": ("node", str),
    "--json": ("json", FLAG),
}
"""mesh.cli.parsing.common_parser's options: option → (dest, converter); defaults None / False."""


class Verb:
    """One hot verb as its `register()` sets it up: where its handler is, its positionals (dest, ONE or
    MANY) and its options (option → dest, converter: a function, `str`, FLAG, or the name of a function
    in the verb's module), and the options' defaults (None, False for a FLAG, unless given)."""

    def __init__(
        self,
        module: str,
        func: str,
        positionals: tuple[tuple[str, int | str], ...] = (),
        options: dict[str, tuple[str, Any]] | None = None,
        defaults: dict[str, Any] | None = None,
        required: tuple[str, ...] = (),
    ) -> None:
        self.module = module
        self.func = func
        self.positionals = positionals
        self.options = COMMON | (options or {})
        self.defaults = defaults or {}
        self.required = required
        """Options a line must give (argparse's `required=True`): without one, argparse says so."""


VERBS: dict[str, Verb] = {
    "status": Verb("mesh.cli.view_cmds", "cmd_status", options={"--by-role": ("by_role", FLAG)}),
    "heartbeat": Verb(
        "mesh.cli.status_cmds",
        "cmd_heartbeat",
        options={
            "--action": ("action", str),
            "--target": ("target", str),
            "--phase": ("phase", str),
            "--progress": ("progress", "_progress"),
            "--note": ("note", str),
        },
    ),
    "claim": Verb(
        "mesh.cli.claim_cmds",
        "cmd_claim",
        positionals=(("type", ONE), ("name", MANY)),
        options={"--ttl": ("ttl", "duration"), "--wait": ("wait", "duration"), "--shared": ("shared", FLAG)},
        defaults={"ttl": 3600.0, "wait": 0.0},
    ),
    "release": Verb("mesh.cli.claim_cmds", "cmd_release", positionals=(("type", ONE), ("name", MANY))),
    "send": Verb(
        "mesh.cli.mail_cmds",
        "cmd_send",
        positionals=(("args", MANY),),
        options={"--all": ("all", FLAG), "--reply-to": ("reply_to", str)},
    ),
    "up": Verb(
        "mesh.cli.node_cmds",
        "cmd_up",
        options={
            "--name": ("name", str),
            "--role": ("role", str),
            "--port": ("port", int),
            "--bind": ("bind", str),
            "--advertise": ("advertise", str),
            "--peer": ("peer", Append()),
            "--no-mdns": ("no_mdns", FLAG),
            "--mdns-interface": ("mdns_interface", Append()),
            "--preset": ("preset", Choice("local", "fast")),
            "--heartbeat-interval": ("heartbeat_interval", float),
            "--suspect-after": ("suspect_after", float),
            "--dead-after": ("dead_after", float),
            "--lease": ("lease", float),
            "--bootstrap": ("bootstrap", FLAG),
            "--join-window": ("join_window", float),
            "--insecure": ("insecure", FLAG),
            "--no-local-links": ("no_local_links", FLAG),
            "--watch-pid": ("watch_pid", int),
            "--detach": ("detach", FLAG),
            "--web": ("web", DECLINE),
            "--log-level": ("log_level", Choice("debug", "info", "warning", "error")),
            "--ready-fd": ("ready_fd", int),
        },
        defaults={"preset": "local", "log_level": "info"},
        required=("--name",),
    ),
}


def parse(argv: list[str]) -> argparse.Namespace | None:
    """argparse's namespace for `argv` if it is a hot verb's plain command line, else None (ask argparse)."""
    verb = VERBS.get(argv[0]) if argv else None
    if verb is None:
        return None
    __import__(verb.module)  # not importlib: it loads `warnings` too
    module = sys.modules[verb.module]
    values: dict[str, Any] = {"verb": argv[0]}
    for dest, convert in verb.options.values():
        if convert is FLAG:
            values[dest] = False
        elif isinstance(convert, Append):
            values[dest] = []
        else:
            values[dest] = verb.defaults.get(dest)
    given_options: set[str] = set()
    words: list[str] = []
    block = 0  # 0: no positional yet, 1: in the one block of positionals, 2: after it
    i = 1
    while i < len(argv):
        word = argv[i]
        i += 1
        if word[:1] != "-" or word == "-":  # a positional, as argparse sees it ('-' is stdin)
            if block == 2:
                return None  # positionals on both sides of an option: argparse's own rules (or an error)
            block = 1
            words.append(word)
            continue
        block = 2 if block else 0
        name, eq, given = word.partition("=")
        if name not in verb.options:
            return None  # help, --version, an unknown or abbreviated option, `--`, a negative number
        dest, convert = verb.options[name]
        given_options.add(name)
        if convert is DECLINE:
            return None
        if convert is FLAG:
            if eq:
                return None  # argparse: "ignored explicit argument"
            values[dest] = True
            continue
        if not eq:
            if i == len(argv) or (argv[i][:1] == "-" and argv[i] != "-"):
                return None  # no value, or one argparse might take for an option
            given = argv[i]
            i += 1
        if isinstance(convert, str):
            convert = getattr(module, convert)
        try:
            if isinstance(convert, Append):
                values[dest] = [*values[dest], convert.convert(given)]
            else:
                values[dest] = convert(given)
        except Exception:
            return None  # argparse says what is wrong with it
    if not _place(verb.positionals, words, values):
        return None
    if any(option not in given_options for option in verb.required):
        return None  # argparse: "the following arguments are required"
    values["func"] = getattr(module, verb.func)
    return _Namespace(**values)  # type: ignore[no-any-return]  # what handlers read of a Namespace


_Namespace: Any = type(sys.implementation)  # types.SimpleNamespace, without importing `types`


def _place(positionals: tuple[tuple[str, int | str], ...], words: list[str], values: dict[str, Any]) -> bool:
    """Hand `words` to the positionals (ONE takes one, MANY the rest, at least one); False if they do not
    fit exactly."""
    at = 0
    for dest, nargs in positionals:
        if nargs == ONE:
            if at == len(words):
                return False
            values[dest] = words[at]
            at += 1
        else:
            if at == len(words):
                return False
            values[dest] = words[at:]
            at = len(words)
    return at == len(words)


if TYPE_CHECKING:
    Converter = Callable[[str], Any]
