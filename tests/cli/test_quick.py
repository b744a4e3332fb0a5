"""mesh.cli.quick reads the hot verbs' plain command lines exactly as argparse does, and declines the rest:
its table against the parsers' own actions, its answers against argparse's over generated command lines,
and usage errors that are argparse's on every path (one line, exit 2)."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.cli import quick
from mesh.cli.main import build_parser, main


def argparse_vars(argv: list[str]) -> dict[str, Any] | None:
    """argparse's namespace for argv (without the parent parser it keeps), or None if it refused it."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = build_parser(argv[0]).parse_args(argv)
    except SystemExit:
        return None
    got = vars(ns)
    got.pop("_common", None)
    return got


def quick_vars(argv: list[str]) -> dict[str, Any] | None:
    ns = quick.parse(argv)
    return None if ns is None else vars(ns)


def verb_parser(verb: str) -> argparse.ArgumentParser:
    top = build_parser(verb)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[verb]
    return parser


@pytest.mark.parametrize("verb", sorted(quick.VERBS))
def test_the_table_is_the_parsers_own(verb: str) -> None:
    """Every option and positional of the verb's argparse parser is in quick's table with the same dest,
    converter, default and arity, and nothing else is: a new option in `register()` fails here until the
    table has it (else quick would decline it, silently slower, or worse, default it wrongly)."""
    spec = quick.VERBS[verb]
    parser = verb_parser(verb)
    module = __import__(spec.module, fromlist=["_"])
    options: dict[str, tuple[str, Any]] = {}
    positionals: list[tuple[str, int | str]] = []
    defaults: dict[str, Any] = {}
    required: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            positionals.append((action.dest, quick.ONE if action.nargs is None else action.nargs))
            assert action.type is None and action.default is None
            continue
        if isinstance(action, argparse._StoreTrueAction):
            convert: Any = quick.FLAG
        elif isinstance(action, argparse._AppendAction):
            assert action.nargs is None and action.default == [] and action.choices is None, action
            convert = quick.Append(str if action.type is None else action.type)
        elif action.nargs == "?":
            convert = quick.DECLINE  # `up --web [PORT]`: such a line is argparse's
        else:
            assert type(action) is argparse._StoreAction and action.nargs is None, action
            convert = str if action.type is None else action.type
            if action.choices is not None:
                assert action.type is None, action
                convert = quick.Choice(*action.choices)
            defaults[action.dest] = action.default
        if action.required:
            required.add(action.option_strings[0])
        for option in action.option_strings:
            options[option] = (action.dest, convert)
    table = {o: (d, getattr(module, c) if isinstance(c, str) else c) for o, (d, c) in spec.options.items()}
    assert table == options
    assert list(spec.positionals) == positionals
    assert {d: spec.defaults.get(d) for d in defaults} == defaults
    assert set(spec.required) == required
    assert getattr(module, spec.func) is parser.get_default("func")


PLAIN = [
    ["status"],
    ["status", "--json"],
    ["status", "--json", "--node", "a", "--mesh", "m", "--home", "/tmp/h"],
    ["status", "--by-role"],
    ["heartbeat", "--action", "build", "--progress", "1"],
    ["heartbeat", "--action=build", "--target", "x", "--phase", "tests", "--note", "", "--progress=40"],
    ["claim", "service", "bench-item", "--ttl", "10m"],
    ["claim", "--ttl", "2h", "--wait", "30s", "service", "a", "b", "--json"],
    ["claim", "path", "src/**", "docs/*.md", "--shared"],
    ["release", "service", "bench-item"],
    ["release", "path", "src/**", "--json"],
    ["send", "n1", "bench", "a body"],
    ["send", "all", "body", "--all", "--reply-to", "m-1"],
    ["send", "n1", "subject", "-"],
    ["send", "-"],
    ["up", "--name", "n00", "--no-mdns", "--port", "0", "--peer", "127.0.0.1:7000"],
    ["up", "--name=n1", "--peer", "a:1", "--peer=b:2", "--mdns-interface", "127.0.0.1", "--preset", "fast"],
    ["up", "--name", "n", "--role", "r", "--bind", "0.0.0.0", "--advertise", "h:1", "--log-level=debug"],
    ["up", "--name", "n", "--heartbeat-interval", "0.5", "--suspect-after", "2", "--dead-after", "5"],
    ["up", "--name", "n", "--lease", "3", "--bootstrap", "--join-window", "1", "--insecure", "--detach"],
    ["up", "--name", "n", "--no-local-links", "--watch-pid", "123", "--ready-fd", "5", "--json"],
    ["up", "--mesh", "m", "--home", "/tmp/h", "--node", "x", "--name", "n"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_plain_lines_are_read_as_argparse_reads_them(argv: list[str]) -> None:
    got = quick_vars(argv)
    assert got is not None, "quick declined a plain line: it should be on the fast path"
    assert got == argparse_vars(argv)


DECLINED = [
    ["status", "--help"],
    ["status", "-h"],
    ["status", "--js"],  # an abbreviation argparse takes
    ["status", "extra"],
    ["status", "--json=1"],
    ["status", "--node"],
    ["status", "--node", "--json"],
    ["heartbeat", "--progress", "101"],
    ["heartbeat", "--progress", "-5"],
    ["heartbeat", "--note", "-x"],
    ["claim", "service"],
    ["claim", "service", "x", "--ttl", "10q"],
    ["claim", "service", "x", "--ttl", "1m", "y"],
    ["claim", "service", "--", "x"],
    ["claim", "service", "-5"],
    ["send", "--version"],
    ["up"],  # --name is required: argparse says so
    ["up", "--no-mdns"],
    ["up", "--name", "n", "--web"],  # an optional value: argparse's
    ["up", "--name", "n", "--web", "8080"],
    ["up", "--name", "n", "--preset", "slow"],
    ["up", "--name", "n", "--log-level", "trace"],
    ["up", "--name", "n", "--port", "x"],
    ["up", "--name", "n", "--port", "-1"],
    ["up", "--name", "n", "--peer"],
    ["up", "--name", "n", "extra"],
    ["up", "--nam", "n"],
    ["claims"],
    ["--version"],
    [],
]


@pytest.mark.parametrize("argv", DECLINED, ids=" ".join)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert quick.parse(argv) is None


WORDS = [
    *("status", "heartbeat", "claim", "release", "send", "claims", "inbox"),
    *("--json", "--home", "--mesh", "--node", "--by-role", "--action", "--target", "--phase", "--progress"),
    *("--note", "--ttl", "--wait", "--shared", "--all", "--reply-to", "--help", "-h", "--js", "--version"),
    *("--ttl=10m", "--progress=50", "--json=", "--node=a", "--reply-to=", "--=x", "--no-such"),
    *("-", "--", "", "-5", "-x", "- x", "x", "service", "path", "a b", "10m", "1d", "30s", "101", "40"),
    *("src/**", "é", "n=1", "-1.5", "7d", "0"),
    *("up", "--name", "--peer", "--port", "--preset", "fast", "slow", "--web", "--no-mdns", "--log-level"),
    *("--watch-pid", "--lease", "--peer=a:1", "--name=n", "debug", "8080", "0.5", "--mdns-interface"),
]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(sorted(quick.VERBS)), st.lists(st.sampled_from(WORDS), max_size=7))
def test_quick_never_reads_a_line_otherwise_than_argparse(verb: str, rest: list[str]) -> None:
    """For any line: quick declines it, or argparse accepts it and gives the very same namespace."""
    argv = [verb, *rest]
    got = quick_vars(argv)
    if got is not None:
        assert got == argparse_vars(argv), argv


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = int(e.code or 0)
    return code, err.getvalue()


@pytest.mark.parametrize(
    "quick_line, argparse_line",
    [
        (["status", "--json"], ["status", "--js"]),
        (["claim", "service", "x", "--ttl", "10m"], ["claim", "service", "x", "--tt", "10m"]),
        (["release", "service", "x", "--json"], ["release", "service", "x", "--js"]),
        (["heartbeat", "--action", "b"], ["heartbeat", "--act", "b"]),
        (["send", "n1", "s", "b", "--reply-to", "m-1"], ["send", "n1", "s", "b", "--rep", "m-1"]),
    ],
)
def test_both_paths_fail_alike_with_one_line_and_exit_2(
    quick_line: list[str], argparse_line: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No node running: the same one-line error and exit 2 whether quick or argparse read the line."""
    monkeypatch.setenv("MESH_HOME", str(tmp_path))
    monkeypatch.delenv("MESH_NODE", raising=False)
    monkeypatch.delenv("MESH_MESH", raising=False)
    assert quick.parse(quick_line) is not None and quick.parse(argparse_line) is None
    a, b = run_main(quick_line), run_main(argparse_line)
    assert a[0] == b[0] == 2
    assert a[1] == b[1] and a[1].startswith("meshctl: no node is running under ") and a[1].count("\n") == 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["heartbeat", "--progress", "101"], "argument --progress:"),
        (["claim", "service", "x", "--ttl", "10q"], "argument --ttl: '10q' is not a duration"),
        (["claim", "service"], "the following arguments are required: name"),
        (["status", "extra"], "unrecognized arguments: extra"),
        (["status", "--node"], "argument --node: expected one argument"),
        (["claim", "service", "x", "--ttl", "1m", "y"], "unrecognized arguments: y"),
    ],
)
def test_usage_errors_are_argparses_one_line_exit_2(argv: list[str], needle: str) -> None:
    code, err = run_main(argv)
    assert code == 2 and err.count("\n") == 1 and needle in err, err
    assert err.startswith("meshctl") and err.endswith(" --help)\n")  # _Parser.error's form
