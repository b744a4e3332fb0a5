"""meshctl's hot verbs load nothing heavy: against a real node, `status`, `claim`, `release`, `heartbeat` and
`send` run without importing grpc, protobuf, asyncio or rich, nor dataclasses (its `inspect` alone is ~10 ms:
the values they hand out are mesh.core.values classes) (the `-X importtime` log lists every module a process
imported). `status`, `claim`, `release` and `heartbeat` of items do not import `typing` either (~3 ms), nor
argparse (mesh.cli.quick reads their plain lines), nor the modules of other verbs; `send` loads none of the
mailbox core but its text checks. `import mesh` alone loads none of them (PEP 562)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Mesh

HEAVY = ("grpc", "google", "asyncio", "rich", "dataclasses", "inspect", "ast", "dis", "tokenize")
# Also kept off the verbs that the 1.2x `python -c pass` target is about (issue 15).
LEAN = (
    *("typing", "gettext", "locale", "math", "argparse", "mesh.cli.parsing"),
    *("mesh.cli.board_cmds", "mesh.cli.mail_cmds", "mesh.cli.node_cmds"),
)
LEAN_VERBS = ("status", "claim", "release", "heartbeat")
# `send` checks the message before it asks the node with mesh.core.mailbox.text alone, not the mailbox core.
SEND_LEAN = ("typing", "hashlib", "random", "mesh.core.mailbox.records", "mesh.core.mailbox.checks")
ENTRY = "import sys; from mesh.cli.main import entry; sys.argv[0] = 'meshctl'; entry()"
ROOT = Path(__file__).resolve().parents[2]
# What a wheel install's `python -c pass` does not load and these verbs need not: pathlib alone brings re,
# fnmatch, enum, functools, urllib.parse, ipaddress (~5 ms against a ~10 ms floor; mesh._nodefile finds the
# node with os calls). Seen only without `site`: the development venv's editable finder imports them all in
# every process, `python -c pass` included.
STDLIB_LEAN = (
    *("pathlib", "re", "fnmatch", "enum", "functools", "contextlib", "collections", "collections.abc"),
    *("importlib", "warnings", "types", "typing", "urllib.parse", "ipaddress", "operator", "argparse"),
)
# Every module of ours a hot verb's plain line loads (mesh.cli.hot is the whole client), and no more.
HOT_FLOOR = {"mesh", "mesh.cli", "mesh.cli.main", "mesh.cli.hot"}
# Nor mesh's re-export modules and its version: each module is ~0.1-0.2 ms of fixed work, whatever it holds.
MESH_SHIMS = ("mesh.errors", "mesh.views", "mesh._version")


def imported(out: subprocess.CompletedProcess[str]) -> set[str]:
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("import time:")]
    assert lines, out.stderr  # the log is there: an empty set below means something
    return {ln.rsplit("|", 1)[1].strip() for ln in lines}


def heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.split(".")[0] in HEAVY)


def ours(mods: set[str]) -> set[str]:
    return {m for m in mods if m == "mesh" or m.startswith("mesh.")}


def fat(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m in LEAN)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        m.up("b", "--no-mdns", "--peer", m.nodes["a"].address)
        yield m
    finally:
        m.cleanup()


def test_a_node_imports_no_dataclasses() -> None:
    """The node's classes are all mesh.core.values classes: `dataclasses` (and the class builds it compiles
    with `exec`) is no part of a node's start-up (issue 15: ~10 ms of CPU and ~0.7 MB per node)."""
    code = (
        "import mesh.node, mesh.cli.node_cmds, mesh._leaf, mesh._transport.control, mesh._transport.hookwire"
    )
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    mods = imported(out)
    assert "mesh.node" in mods and "dataclasses" not in mods


def test_import_mesh_loads_nothing_heavy() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import mesh"], capture_output=True, text=True
    )
    assert heavy(imported(out)) == []


def test_the_hot_verbs_load_no_grpc_protobuf_asyncio_or_rich(node: Mesh) -> None:
    verbs = (
        ["status"],
        ["status", "--json"],
        ["heartbeat", "--action", "build", "--progress", "10"],
        ["claim", "service", "x", "--ttl", "10m"],
        ["claim", "path", "src/**", "--json"],
        ["release", "service", "x"],
        ["release", "path", "src/**"],
        ["send", "b", "subject", "body"],
        ["send", "all", "body", "--all"],
        ["claim", "service", "bad name!"],  # an error answered by the node: same path, exit 2
    )
    for args in verbs:
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", ENTRY, *args, "--node", "a"],
            env=node.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == (2 if "bad name!" in args else 0), (args, out.stderr[-500:])
        assert heavy(imported(out)) == [], args
        if args[0] in LEAN_VERBS and "path" not in args:
            assert fat(imported(out)) == [], args
        if args[0] == "send":
            assert sorted(m for m in imported(out) if m in SEND_LEAN) == [], args
        if "path" not in args and "bad name!" not in args:  # mesh.cli.hot's line: nothing else of ours
            assert ours(imported(out)) == HOT_FLOOR, args
    # and the floor's check can fail: a line mesh.cli.hot declines (a subject of two lines: the client's
    # check says what is wrong) loads the full client
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, "send", "b", "sub\tject", "body", "--node", "a"],
        env=node.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "control characters" in out.stderr, out.stderr[-500:]
    assert "mesh.core.mailbox.text" in imported(out) and "mesh.wireclient" in imported(out)
    # and the control: a verb that is not light still loads gRPC (the check above can fail)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, "claims", "--node", "a"],
        env=node.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "grpc" in heavy(imported(out))
    # and the check of other verbs' modules can fail: `--help` without a verb loads them all
    show = "import sys; from mesh.cli.main import main\ntry: main(['--help'])\n"
    show += "except SystemExit: print(*sys.modules)"
    out = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, timeout=60)
    assert "mesh.cli.board_cmds" in out.stdout.split(), out.stderr[-500:]


def test_the_default_home_is_found_without_platformdirs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MESH_HOME", "XDG_DATA_HOME", "MESH_NODE")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, "status"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2 and str(tmp_path / ".local/share/session-mesh") in out.stderr
    assert "platformdirs" not in imported(out)


def test_the_hot_verbs_load_no_pathlib_re_or_collections(node: Mesh) -> None:
    """Run as a wheel install runs them (no editable finder: `-S`, the tree on PYTHONPATH), `status`,
    `claim`, `release`, `heartbeat` and `send` import none of STDLIB_LEAN (issue 15)."""
    env = node.env() | {"PYTHONPATH": str(ROOT), "MESH_NODE": "a"}
    mesh_explicit = (["--mesh", node.name], [])  # the direct look-up and the scan of every mesh
    verbs = (
        ["status", "--json"],
        ["status"],
        ["heartbeat", "--action", "build", "--progress", "10"],
        ["claim", "service", "x", "--ttl", "10m"],
        ["claim", "service", "y", "--json"],
        ["release", "service", "x"],
        ["send", "b", "subject", "body"],
        ["send", "all", "body", "--all"],
    )
    for args in verbs:
        for where in mesh_explicit:
            run_env = env if where else {k: v for k, v in env.items() if k != "MESH_MESH"}
            out = subprocess.run(
                [sys.executable, "-S", "-X", "importtime", "-c", ENTRY, *args, *where],
                env=run_env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert out.returncode == 0, (args, out.stderr[-500:])
            mods = imported(out)
            assert "_socket" in mods, args  # it asked the node over the wire
            assert sorted(m for m in mods if m in STDLIB_LEAN) == [], (args, where)
            assert sorted(m for m in mods if m in MESH_SHIMS) == [], (args, where)
            assert ours(mods) == HOT_FLOOR, (args, where)  # mesh.cli.hot alone, in any mesh or in --mesh
            assert not {"fcntl", "mesh.core.errors"} & mods, args  # the wire's answer proves a live node
    # and the check can fail: a path claim compiles its glob with `re`
    out = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", ENTRY, "claim", "path", "src/**"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0 and "re" in imported(out), out.stderr[-500:]
