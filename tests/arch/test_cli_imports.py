"""meshctl's hot verbs load nothing heavy: against a real node, `status`, `claim`, `release`, `heartbeat` and
`send` run without importing grpc, protobuf, asyncio or rich (the `-X importtime` log lists every module a
process imported). `import mesh` alone loads none of them either (PEP 562)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Mesh

HEAVY = ("grpc", "google", "asyncio", "rich")
# meshctl stands in for `inspect` until it is used (mesh.cli.main._import_lazily): dataclasses only uses it
# for a class without a docstring. `ast` loaded means a dataclass on the hot path lacks one (~10 ms).
INSPECT_RAN = ("ast", "dis", "tokenize")
ENTRY = "import sys; from mesh.cli.main import entry; sys.argv[0] = 'meshctl'; entry()"


def imported(out: subprocess.CompletedProcess[str]) -> set[str]:
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("import time:")]
    assert lines, out.stderr  # the log is there: an empty set below means something
    return {ln.rsplit("|", 1)[1].strip() for ln in lines}


def heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.split(".")[0] in HEAVY + INSPECT_RAN)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        m.up("b", "--no-mdns", "--peer", m.nodes["a"].address)
        yield m
    finally:
        m.cleanup()


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
    # and the control: a verb that is not light still loads gRPC (the check above can fail)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, "claims", "--node", "a"],
        env=node.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "grpc" in heavy(imported(out))
