"""Damaged state never breaks a node: Hypothesis damages every file a node reads at start (random bytes,
truncation, flipped bytes in a SQLite header or its pages, a foreign schema, valid-looking JSON of the wrong
shape, a missing file), then starts the node for real, and asserts one of two outcomes only:

- it starts cleanly: `up` exits 0, the node answers and sees itself, and logged no traceback;
- it refuses with one line: `up` exits 2, one line on stderr that is the real reason (not "start-up failed",
  the fallback for faults not mapped at their source), no traceback anywhere, no process left holding the
  node's lock (never a half-alive node).

Every example starts from a copy of one pristine home (a node that has run, sent and received mail, holds a
leaf certificate and a hook cursor). Bounded: MESH_FUZZ_EXAMPLES examples (default 20, 1-3 s each), the same
ones every run (MESH_FUZZ_SEED=N explores others).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mesh.paths import is_locked
from tests.integration.harness import Mesh, free_ports, until, wait_pid_gone

EXAMPLES = int(os.environ.get("MESH_FUZZ_EXAMPLES", "20"))
SEED = os.environ.get("MESH_FUZZ_SEED")  # explore beyond CI's fixed examples: MESH_FUZZ_SEED=N

# Every file a node reads at start, relative to the mesh dir (N = the node's state dir).
N = "nodes/b"
SQLITE = [f"{N}/node.db", f"{N}/mail.db", f"{N}/board.db", f"{N}/stats.db"]
LOGS = [f"{N}/node.db-wal", f"{N}/mail.db-wal", f"{N}/mail.db-shm"]  # a killed node leaves its SQLite logs
JSON = [f"{N}/tls/leaf.json", f"{N}/hooks.json", f"{N}/node.json"]
PEM = [f"{N}/tls/leaf.crt", f"{N}/tls/leaf.key", "credentials/ca.crt", "credentials/ca.key"]
TEXT = ["epoch", "ca.sha256", f"{N}/node.lock", "credentials/.lock", "genesis.lock"]
FILES = SQLITE + LOGS + JSON + PEM + TEXT


@dataclass
class Pristine:
    home: Path
    mesh: str


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pristine]:
    """A home where node b has run: identity, mail both ways, a task on the board, a leaf, a hook cursor;
    then killed (so its node.json and its SQLite logs stay behind, as after a crash)."""
    home = tmp_path_factory.mktemp("pristine") / "home"
    m = Mesh(home=home, name="fz-" + uuid.uuid4().hex[:8])
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port))
        m.up("b", "--no-mdns", "--peer", f"127.0.0.1:{port}")
        m.ctl("send", "b", "to b", "body", node="a")
        m.ctl("send", "a", "to a", "body", node="b")
        m.ctl("task", "add", "a task on the board", node="b")
        until(lambda: json.loads(m.ctl("inbox", "--json", node="b").stdout), what="mail for b")
        mesh_dir = home / "meshes" / m.name
        # The steward config forms on its own schedule (a join window after the start): the mail above can be
        # quicker than that, and the epoch file is one of the files this home must hold.
        until(lambda: (mesh_dir / "epoch").exists(), what="the steward config (the epoch file)")
        m.signal("b", signal.SIGKILL)
        wait_pid_gone(m.nodes["b"].pid)
        m.ctl("down", node="a")
        for sock in mesh_dir.glob("nodes/*/*.sock"):  # a crash leaves them; a copy cannot take them
            sock.unlink()
        (mesh_dir / N / "hooks.json").write_text(json.dumps({"seq": 1, "seen": []}))
        for f in FILES:  # the run made them all (the lock files hold a pid, or nothing)
            assert (mesh_dir / f).exists(), f
        yield Pristine(home, m.name)
    finally:
        m.cleanup()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Valid-looking JSON: the keys the real files have, with values of any type.
shaped_json = st.dictionaries(
    st.sampled_from(["seq", "seen", "node_id", "fingerprint", "ca_sha256", "not_before", "not_after", "pid",
                     "name", "mesh", "socket", "address"]),
    json_values,
    max_size=6,
)  # fmt: skip


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, str, object]:
    """(file, kind, argument) — applied by `apply`."""
    file = draw(st.sampled_from(FILES))
    kinds = ["bytes", "truncate", "flip", "delete"]
    if file in SQLITE:
        kinds += ["flip-header", "flip-page", "schema"]
    if file in JSON:
        kinds += ["json", "json", "deep"]
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        arg: object = draw(st.binary(max_size=4096))
    elif kind == "truncate":
        arg = draw(st.floats(0.0, 0.99))
    elif kind in ("flip", "flip-header", "flip-page"):
        arg = draw(st.lists(st.tuples(st.floats(0.0, 0.9999), st.integers(1, 255)), min_size=1, max_size=8))
    elif kind == "schema":
        arg = draw(
            st.sampled_from(
                [
                    "inbox (x)",
                    "meta (key, value, extra)",
                    "identity (k)",
                    "outbox (id)",
                    "ops (x)",
                    "liveness (x)",
                ]
            )
        )
    elif kind == "json":
        arg = draw(shaped_json | json_values)
    elif kind == "deep":
        arg = draw(st.integers(1000, 200_000))
    else:
        arg = None
    return file, kind, arg


def apply(path: Path, kind: str, arg: object) -> None:
    if kind == "delete":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if kind == "bytes":
        assert isinstance(arg, bytes)
        data = bytearray(arg)
    elif kind == "truncate":
        assert isinstance(arg, float)
        data = data[: int(len(data) * arg)]
    elif kind in ("flip", "flip-header", "flip-page"):
        assert isinstance(arg, list)
        # A SQLite header is the first 100 bytes; a page is anywhere after the first (4096-byte) page.
        lo, hi = {"flip": (0, len(data)), "flip-header": (0, 100), "flip-page": (4096, len(data))}[kind]
        if hi > lo:
            for where, xor in arg:
                i = lo + int((hi - lo) * where)
                data[i] ^= xor
    elif kind == "schema":
        path.unlink()
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE {arg}")
        return
    elif kind == "json":
        data = bytearray(json.dumps(arg).encode())
    elif kind == "deep":
        assert isinstance(arg, int)
        data = bytearray(b"[" * arg + b"]" * arg)
    path.write_bytes(bytes(data))


def _ctl(home: Path, mesh: str, *args: str) -> subprocess.CompletedProcess[str]:
    m = Mesh(home=home, name=mesh)
    return m.ctl(*args, check=False, timeout=60)


@pytest.mark.timeout(900)  # ~40 s normally; a loaded machine can stretch each start many times over
@settings(
    max_examples=EXAMPLES,
    derandomize=SEED is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@seed(int(SEED or 0))
@given(hit=damage())
def test_a_node_on_damaged_state_starts_cleanly_or_refuses_in_one_line(
    pristine: Pristine, tmp_path_factory: pytest.TempPathFactory, hit: tuple[str, str, object]
) -> None:
    file, kind, arg = hit
    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(pristine.home, home, symlinks=True)
    mesh_dir = home / "meshes" / pristine.mesh
    apply(mesh_dir / file, kind, arg)
    state = mesh_dir / N
    r = _ctl(home, pristine.mesh, "up", "--name", "b", "--no-mdns", "--detach", "--json")
    log = (state / "node.log").read_text(errors="replace") if (state / "node.log").exists() else ""
    try:
        what = f"{file} {kind}: exit {r.returncode}, stderr {r.stderr!r}"
        assert "Traceback" not in r.stderr and "Traceback" not in log, what + "\n" + log[-3000:]
        if r.returncode == 0:
            info = json.loads(r.stdout)
            s = _ctl(home, pristine.mesh, "status", "--json", "--node", "b")
            assert s.returncode == 0, what + s.stderr
            assert json.loads(s.stdout)[0]["name"] == "b", what
            assert "task " not in log or " failed" not in log, what + log[-2000:]
            os.kill(int(info["pid"]), signal.SIGKILL)  # how it leaves is not what this test is about
            wait_pid_gone(int(info["pid"]))
        else:
            assert r.returncode == 2, what
            assert r.stderr.count("\n") == 1 and r.stderr.startswith("meshctl: "), what
            assert "start-up failed" not in r.stderr, what  # a fault not mapped at its source
            until(lambda: not is_locked(state), timeout=10, what=f"no half-alive node ({what})")
    finally:
        Mesh(home=home, name=pristine.mesh, homes={home}).cleanup()
        shutil.rmtree(home.parent, ignore_errors=True)
