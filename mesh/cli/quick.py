"""The hot verbs' usual command lines read without argparse (issue 15: `meshctl status` / `claim` within
1.2x `python -c pass`; importing argparse and building a verb's parser is ~2 ms of a ~25 ms process).

`parse(argv)` gives the same namespace argparse would (mesh.cli.parsing: same attributes, values and
handler) for the plain spellings of `status`, `heartbeat`, `claim`, `release` and `send` — or None for
anything else, and then argparse reads the line: help, `--version`, an unknown or abbreviated option, a
missing or extra argument, a value argparse's own type check refuses, `--`, options between positionals,
option values that start with '-'. So every usage error and every help text still comes from argparse
alone, word for word; this reader only declines. tests/cli/test_quick.py holds its table equal to the
parsers' actions and its answers equal to argparse's over generated command lines.
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
    ) -> None:
        self.module = module
        self.func = func
        self.positionals = positionals
        self.options = COMMON | (options or {})
        self.defaults = defaults or {}


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
        values[dest] = False if convert is FLAG else verb.defaults.get(dest)
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
            values[dest] = convert(given)
        except Exception:
            return None  # argparse says what is wrong with it
    if not _place(verb.positionals, words, values):
        return None
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
