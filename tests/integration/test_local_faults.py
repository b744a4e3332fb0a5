"""Local faults end in one clear line, never in a broken node (issue 10), on real processes and files."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.harness import FAST, Mesh, until
from tests.integration.nemesis import free_ports


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to prepare a directory as another user")
def test_socket_directory_prepared_by_another_user_is_not_used(tmp_path: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir="/tmp", prefix="mt"))  # short, like a real $TMPDIR
    trap = tmp / f"session-mesh-{os.getuid()}"
    trap.mkdir()
    os.chown(trap, 65534, 65534)
    os.chmod(trap, 0o777)
    home = tmp_path / ("h" * 90)  # the control socket path is too long for AF_UNIX under this home
    m = Mesh(home=home)
    m.extra_env.update(TMPDIR=str(tmp))
    if os.environ.get("XDG_RUNTIME_DIR"):
        pytest.skip("XDG_RUNTIME_DIR is set for this test run; the $TMPDIR fallback is not taken")
    try:
        m.up("a", "--no-mdns")
        info = json.loads((next(home.glob("meshes/*/nodes/a/node.json"))).read_text())
        sock = Path(info["socket"])
        assert sock.parent != trap and not any(trap.iterdir())
        st = os.lstat(sock.parent)
        assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
        r = m.ctl("status", "--json", node="a")
        assert json.loads(r.stdout)[0]["name"] == "a"
    finally:
        m.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("verb", [("status",), ("down",)])
def test_mesh_option_is_a_name_not_a_glob(tmp_path: Path, verb: tuple[str, ...]) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        r = m.ctl(*verb, "--mesh", "*", check=False)
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1 and "mesh name" in r.stderr and "Traceback" not in r.stderr
        assert m.ctl("status", "--json", node="a").returncode == 0  # still running: nothing was stopped
    finally:
        m.cleanup()


def _mesh_dir(m: Mesh) -> Path:
    return m.home / "meshes" / m.name


def _one_line_refusal(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.mark.parametrize(
    "damage",
    ["garbage-cert", "garbage-key", "meta-list", "meta-huge-time", "meta-garbage", "swapped-key"],
)
def test_damaged_leaf_cache_is_reissued(tmp_path: Path, damage: str) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port))
        m.up("b", "--no-mdns", "--peer", f"127.0.0.1:{port}", *FAST)
        until(lambda: m.states("b").get("a") == "alive", what="a alive in b's view")
        m.ctl("down", node="a")
        tls = _mesh_dir(m) / "nodes" / "a" / "tls"
        other = _mesh_dir(m) / "nodes" / "b" / "tls"
        if damage == "garbage-cert":
            (tls / "leaf.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
        elif damage == "garbage-key":
            (tls / "leaf.key").write_bytes(os.urandom(300))
        elif damage == "meta-list":
            (tls / "leaf.json").write_text("[1, 2, 3]")
        elif damage == "meta-huge-time":
            meta = json.loads((tls / "leaf.json").read_text())
            meta["not_after"] = 1e300
            (tls / "leaf.json").write_text(json.dumps(meta))
        elif damage == "meta-garbage":
            (tls / "leaf.json").write_bytes(b"\xff\xfe{{")
        else:  # a key that parses but belongs to another node's certificate
            (tls / "leaf.key").write_bytes((other / "leaf.key").read_bytes())
        m.restart("a")
        # It serves, and its peer (same CA) accepts its new leaf.
        until(lambda: m.states("b").get("a") == "alive", what="a alive again in b's view")
    finally:
        m.cleanup()


def test_world_readable_ca_key_is_refused(tmp_path: Path) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        m.ctl("down", node="a")
        key = _mesh_dir(m) / "credentials" / "ca.key"
        os.chmod(key, 0o644)
        r = m.ctl("up", "--name", "a", "--no-mdns", "--detach", check=False)
        _one_line_refusal(r, "readable by others", "chmod 600")
    finally:
        m.cleanup()


def test_garbage_ca_key_is_refused(tmp_path: Path) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        m.ctl("down", node="a")
        key = _mesh_dir(m) / "credentials" / "ca.key"
        key.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
        r = m.ctl("up", "--name", "a", "--no-mdns", "--detach", check=False)
        _one_line_refusal(r, "damaged", "init --from")
    finally:
        m.cleanup()


def test_deleted_credentials_are_not_silently_replaced(tmp_path: Path) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        m.ctl("down", node="a")
        creds = _mesh_dir(m) / "credentials"
        ca_before = (creds / "ca.crt").read_bytes()
        shutil.rmtree(creds)
        r = m.ctl("up", "--name", "a", "--no-mdns", "--detach", check=False)
        _one_line_refusal(r, "are gone", "init --from")
        assert not creds.exists()  # nothing was created behind the user's back
        # The operator's explicit choice still works: a new CA, said so.
        m.ctl("init", "--force")
        m.up("a", "--no-mdns")
        assert (creds / "ca.crt").read_bytes() != ca_before
    finally:
        m.cleanup()


def test_port_of_another_node_is_refused(tmp_path: Path) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port))
        r = m.ctl("up", "--name", "b", "--no-mdns", "--port", str(port), "--detach", check=False)
        _one_line_refusal(r, f"127.0.0.1:{port}", "in use")
        assert m.ctl("status", "--json", node="a").returncode == 0
    finally:
        m.cleanup()


def test_port_of_another_program_is_refused(tmp_path: Path) -> None:
    import socket

    m = Mesh(home=tmp_path / "home")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            r = m.ctl("up", "--name", "a", "--no-mdns", "--port", str(port), "--detach", check=False)
            _one_line_refusal(r, "in use")
            r = m.ctl("up", "--name", "a", "--no-mdns", "--port", str(port), check=False)  # foreground too
            _one_line_refusal(r, "in use")
        finally:
            m.cleanup()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--bind", "999.1.1.1"), ("bind address", "not an IP address")),
        (("--mdns-interface", "abc"), ("mDNS interface", "not an IP address")),
        (("--peer", "nowhere"), ("peer",)),
    ],
)
def test_bad_addresses_are_one_line(tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        r = m.ctl("up", "--name", "a", *args, "--detach", check=False)
        _one_line_refusal(r, *words)
    finally:
        m.cleanup()


def test_half_open_connections_are_dropped(tmp_path: Path) -> None:
    """Connections that never finish a TLS handshake are closed by the node (bounded), not held for 120 s."""
    import socket
    import time

    m = Mesh(home=tmp_path / "home")
    socks: list[socket.socket] = []
    try:
        p = m.up("a", "--no-mdns")
        host, _, port = p.address.rpartition(":")
        for _ in range(50):
            socks.append(socket.create_connection((host, int(port))))
        closed = 0
        deadline = time.monotonic() + 30
        for s in socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                if s.recv(1) == b"":
                    closed += 1
            except (TimeoutError, OSError):
                pass
        assert closed == len(socks), f"only {closed} of {len(socks)} half-open connections were closed"
        assert m.ctl("status", "--json", node="a").returncode == 0
    finally:
        for s in socks:
            s.close()
        m.cleanup()
