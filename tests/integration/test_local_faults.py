"""Local faults end in one clear line, never in a broken node (issue 10), on real processes and files."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from mesh.paths import is_locked
from tests.integration.harness import FAST, Mesh, Proc, free_ports, until


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


# ---------------------------------------------------------------------------- one line, exit 2, no trace


def _ctl_bytes(m: Mesh, *args: bytes | str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """meshctl with raw bytes in its arguments or stdin (what a careless shell passes), text answers."""
    from tests.integration.harness import MESHCTL

    cmd = [*(a.encode() if isinstance(a, str) else a for a in [*MESHCTL, *args])]
    r = subprocess.run(cmd, env=m.env(), capture_output=True, input=stdin, timeout=30)
    return subprocess.CompletedProcess(
        r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    )


def _queued(m: Mesh, node: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(m.ctl("outbox", "--json", node=node).stdout)
    return out


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        ((b"send", b"b", b"\xff\xfe", b"x"), None, ("argument", "UTF-8")),
        ((b"send", b"b", b"s", b"\xffbody"), None, ("argument", "UTF-8")),
        ((b"heartbeat", b"--note", b"\xff"), None, ("--note", "UTF-8")),
        ((b"send", b"b", b"s", b"-"), b"\xff\xfe\x00binary", ("stdin", "UTF-8")),
        ((b"send", b"\xffb", b"s", b"x"), None, ("UTF-8",)),
        (("outbox", "--limit", "-5"), None, ("--limit", "1-10000")),
        (("inbox", "--limit", "-5"), None, ("--limit", "1-10000")),
        (("claim", "file", "x", "--wait", "99999d"), None, ("--wait", "7 days")),
        (("claim", "file", "x", "--ttl", "99999d"), None, ("7 days",)),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    tmp_path: Path, args: tuple[bytes | str, ...], stdin: bytes | None, words: tuple[str, ...]
) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port))
        m.up("b", "--no-mdns", "--peer", f"127.0.0.1:{port}")
        r = _ctl_bytes(m, *args, "--node", "a", stdin=stdin)
        _one_line_refusal(r, *words)
        assert _queued(m, "a") == []
        assert m.ctl("status", "--json", node="a").returncode == 0
    finally:
        m.cleanup()


def test_output_files_that_cannot_be_written_are_one_line(tmp_path: Path) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        r = m.ctl("state", "--out", str(tmp_path), check=False)  # a directory
        _one_line_refusal(r, str(tmp_path), "directory")
        missing = tmp_path / "no-such-dir" / "token"
        r = m.ctl("join-token", "--out", str(missing), check=False)
        _one_line_refusal(r, str(missing))
        assert not missing.parent.exists()
        r = m.ctl("state", "--out", str(missing), check=False)
        _one_line_refusal(r, str(missing))
    finally:
        m.cleanup()


def test_home_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home-file"
    home.write_text("not a directory\n")
    m = Mesh(home=home)
    try:
        r = m.ctl("up", "--name", "a", "--no-mdns", "--detach", check=False)
        _one_line_refusal(r, "not a directory")
        r = m.ctl("up", "--name", "a", "--no-mdns", check=False)
        _one_line_refusal(r, "not a directory")
        assert home.read_text() == "not a directory\n"
    finally:
        m.cleanup()


def test_long_bad_names_are_not_echoed_whole(tmp_path: Path) -> None:
    m = Mesh(home=tmp_path / "home")
    long = "n" * 10_000
    try:
        m.up("a", "--no-mdns")
        for args in (
            ("send", long, "s", "b"),
            ("send", "a" + "é" * 5000, "s", "b"),
            ("claim", "file", long),
            ("claim", long, "x"),
            ("status", "--node", long),
            ("up", "--name", long, "--detach"),
            ("release", "file", long),
        ):
            r = m.ctl(*args, check=False)
            assert r.returncode == 2 and r.stderr.count("\n") == 1, (args, r.stderr[:300])
            assert len(r.stderr) < 300, (args[0], len(r.stderr), r.stderr[:300])
    finally:
        m.cleanup()


def test_a_10_mb_body_is_refused_with_the_documented_limit(tmp_path: Path) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port))
        m.up("b", "--no-mdns", "--peer", f"127.0.0.1:{port}")
        r = m.ctl("send", "b", "big", "-", node="a", input="x" * 10_000_000, check=False)
        _one_line_refusal(r, "body is 10000000 bytes", "the limit is 65536 bytes")
        assert _queued(m, "a") == []
    finally:
        m.cleanup()


async def test_an_oversized_request_is_a_clear_limit_error(tmp_path: Path) -> None:
    """What gets past the client's own checks (a raw request) comes back as LimitExceeded, not gRPC's text."""
    import grpc

    from mesh._proto import mesh_pb2 as pb
    from mesh._proto import mesh_pb2_grpc as pbg
    from mesh._transport.errors import to_mesh_error
    from mesh.errors import LimitExceeded

    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        sock = json.loads(next(m.home.glob("meshes/*/nodes/a/node.json")).read_text())["socket"]
        async with grpc.aio.insecure_channel(f"unix:{sock}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pbg.ControlStub(ch).Send(pb.SendRequest(to="b", subject="s", body="x" * 2_000_000))
        err = to_mesh_error(info.value)
        assert isinstance(err, LimitExceeded), err
        assert "Received message" not in str(err) and "1 MiB" in str(err), str(err)
    finally:
        m.cleanup()


def test_inbox_says_when_it_shows_only_the_newest(tmp_path: Path) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port))
        m.up("b", "--no-mdns", "--peer", f"127.0.0.1:{port}")
        for i in range(5):
            m.ctl("send", "b", f"s{i}", "body", node="a")
        until(lambda: len(json.loads(m.ctl("inbox", "--json", node="b").stdout)) == 5, what="5 delivered")
        r = m.ctl("inbox", "--json", "--limit", "3", node="b")
        shown = json.loads(r.stdout)  # stdout stays one JSON document
        assert [x["subject"] for x in shown] == ["s2", "s3", "s4"]
        assert "newest 3" in r.stderr and "--limit" in r.stderr, r.stderr
        r = m.ctl("inbox", "--json", "--limit", "5", node="b")
        assert len(json.loads(r.stdout)) == 5 and r.stderr == ""
        r = m.ctl("outbox", "--json", "--limit", "2", node="a")
        assert len(json.loads(r.stdout)) == 2 and "newest 2" in r.stderr
    finally:
        m.cleanup()


# ---------------------------------------------------------------------------- damaged or missing state


def _node_dir(m: Mesh, name: str) -> Path:
    return _mesh_dir(m) / "nodes" / name


def _stopped_node_with_mail(m: Mesh) -> None:
    (port,) = free_ports(1)
    m.up("a", "--no-mdns", "--port", str(port))
    m.up("b", "--no-mdns", "--peer", f"127.0.0.1:{port}")
    m.ctl("send", "b", "hello", "body", node="a")
    until(lambda: json.loads(m.ctl("inbox", "--json", node="b").stdout), what="delivered")
    m.ctl("down", node="b")
    m.ctl("down", node="a")


@pytest.mark.parametrize(
    ("file", "damage", "words"),
    [
        ("mail.db", "garbage", ("mail.db", "damaged", "move it aside")),
        ("mail.db", "empty", ("mail.db", "empty", "move it aside")),
        ("node.db", "garbage", ("node.db", "damaged", "move it aside")),
        ("node.db", "empty", ("node.db", "empty")),
        ("mail.db", "other-schema", ("mail.db", "damaged")),
    ],
)
@pytest.mark.parametrize("detach", [True, False])
def test_damaged_store_is_refused_in_one_line(
    tmp_path: Path, file: str, damage: str, words: tuple[str, ...], detach: bool
) -> None:
    import sqlite3

    m = Mesh(home=tmp_path / "home")
    try:
        _stopped_node_with_mail(m)
        path = _node_dir(m, "b") / file
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)
        if damage == "garbage":
            path.write_bytes(b"this is not SQLite at all\n" * 100)
        elif damage == "empty":
            path.write_bytes(b"")
        else:
            path.unlink()
            with sqlite3.connect(path) as db:
                db.execute("CREATE TABLE inbox (x)")
                db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        before = path.read_bytes()
        args = ("up", "--name", "b", "--no-mdns", *(("--detach",) if detach else ()))
        r = m.ctl(*args, check=False)
        _one_line_refusal(r, *words)
        assert "see " not in r.stderr or "node.log" not in r.stderr  # the reason itself, not a pointer
        assert path.read_bytes() == before  # nothing changed
        assert not is_locked(_node_dir(m, "b"))  # and nothing half-alive
    finally:
        m.cleanup()


def test_a_store_that_never_existed_is_created(tmp_path: Path) -> None:
    """Moving mail.db aside (what the refusal says to do) starts an empty mailbox; the node keeps its id."""
    m = Mesh(home=tmp_path / "home")
    try:
        _stopped_node_with_mail(m)
        mail = _node_dir(m, "b") / "mail.db"
        mail.write_bytes(b"")
        assert m.ctl("up", "--name", "b", "--no-mdns", "--detach", check=False).returncode == 2
        mail.rename(mail.with_name("mail.db.damaged"))
        p = m.up("b", "--no-mdns")
        assert p.node_id == m.nodes["b"].node_id
        assert json.loads(m.ctl("inbox", "--json", node="b").stdout) == []
    finally:
        m.cleanup()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a read-only file system")
def test_read_only_home_is_one_line_and_join_token_still_works(tmp_path: Path) -> None:
    home = tmp_path / "home"
    m = Mesh(home=home)
    ro = tmp_path / "ro"
    mounted = False
    try:
        m.up("a", "--no-mdns")
        m.ctl("down", node="a")
        token = m.ctl("join-token").stdout.strip()
        ro.mkdir()
        subprocess.run(["mount", "--bind", "-o", "ro", str(home), str(ro)], check=True)
        mounted = True
        m.home = ro
        r = m.ctl("up", "--name", "a", "--no-mdns", "--detach", check=False)
        _one_line_refusal(r, "read-only")
        r = m.ctl("up", "--name", "a", "--no-mdns", check=False)
        _one_line_refusal(r, "read-only")
        r = m.ctl("join-token")
        assert r.stdout.strip() == token
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=False)
        m.home = home
        m.cleanup()


# ---------------------------------------------------------------------------- idempotent sends


async def test_a_send_repeated_with_its_key_is_queued_once(tmp_path: Path) -> None:
    from mesh.client import connect
    from mesh.errors import InvalidInput

    m = Mesh(home=tmp_path / "home")
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port))
        m.up("b", "--no-mdns", "--peer", f"127.0.0.1:{port}")
        async with await connect("a", mesh=m.name, home=m.home) as api:
            first = await api.send("b", "once", "body", key="k-1")
            again = await api.send("b", "once", "body", key="k-1")
            assert again == first
            with pytest.raises(InvalidInput, match="already used"):
                await api.send("b", "other", "body", key="k-1")
            b1 = await api.broadcast("all", "body", key="k-2")
            assert await api.broadcast("all", "body", key="k-2") == b1
            other = await api.send("b", "once", "body")  # no key given: the client makes a fresh one
            assert other.id != first.id
        assert sorted(e["id"] for e in _queued(m, "a")) == sorted([first.id, b1.id, other.id])
    finally:
        m.cleanup()


@pytest.mark.parametrize("wire", [False, True])
async def test_sends_to_a_node_that_stops_answering_are_asked_again_and_queued_once(
    tmp_path: Path, wire: bool
) -> None:
    """The sending node is paused (SIGSTOP) with sends pending on the client's SendStream: after its send
    timeout without an answer the client gives the stream up and asks again, unary, with each send's key; the
    node resumes meanwhile, and every send is answered with its one id (each queued once).

    Without the hook wire, so every send is on the stream: the node resumes once all of them are asked again
    unary. With it, the first send of the burst is on the wire (the others wait behind it): after its timeout
    it is asked again on the stream, and the node resumes once the burst is in flight there; queued once all
    the same. The client's send timeout is 2 s here, not the default 10 s (the path is the same)."""
    import asyncio
    import signal

    from mesh.client import Client
    from mesh.core.values import replace
    from mesh.paths import find_node
    from tests.integration.harness import async_until

    m = Mesh(home=tmp_path / "home")
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port))
        m.up("b", "--no-mdns", "--peer", f"127.0.0.1:{port}")
        node = find_node(m.home, m.name, "a")
        async with Client(node if wire else replace(node, hook_socket=None), send_timeout=2.0) as api:
            await api.send("b", "warm", "body")  # the stream (or the wire) is open
            stream = api._pipe._task
            unary = api._unary
            asked: list[str] = []

            async def counted(r: Any) -> Any:
                asked.append(r.key)
                return await unary(r)

            api._unary = counted  # type: ignore[method-assign]
            m.signal("a", signal.SIGSTOP)
            try:
                sending = asyncio.gather(*(api.send("b", f"paused {i}", "body") for i in range(20)))
                if not wire:  # the stream given up: every send asked again unary, with its key
                    await async_until(lambda: len(asked) == 20, what="all 20 sends asked again unary")
                else:  # the wire given up: the burst, the first send with it, in flight on the stream
                    await async_until(
                        lambda: not api._lane.busy and api._pipe._in_flight, what="the burst on the stream"
                    )
                assert not sending.done()
            finally:
                m.signal("a", signal.SIGCONT)
            sent = await sending
            if not wire:
                assert stream is not None and stream.done()  # given up, not waited out
                assert all(asked) and len(set(asked)) == 20  # each asked with a key of its own
            else:
                assert stream is None and api._pipe._task is not None  # the first lone send took the wire
        ids = [s.id for s in sent]
        assert len(set(ids)) == 20
        queued = [e for e in _queued(m, "a") if str(e["subject"]).startswith("paused")]
        assert sorted(str(e["id"]) for e in queued) == sorted(ids)
    finally:
        m.cleanup()


def _losing_sender(m: Mesh, lose: str) -> None:
    """b, then a linked to it whose node loses the answers `lose` says (MESH_TEST_LOSE_REPLY)."""
    (port,) = free_ports(1)
    m.up("b", "--no-mdns", "--port", str(port))
    m.extra_env["MESH_TEST_LOSE_REPLY"] = lose
    m.up("a", "--no-mdns", "--peer", f"127.0.0.1:{port}")


@pytest.mark.parametrize("lose", ["SendStream:1", "SendStream:1,Send:1"])
def test_a_send_whose_answer_is_lost_is_retried_and_stored_once(tmp_path: Path, lose: str) -> None:
    """The node queues the message, then the stream breaks before the answer ("Stream removed"): meshctl
    asks again with the same key (as a unary Send; its answer lost too in the second case, then once more)
    and gets the same id; nothing is queued twice, nothing arrives twice."""
    m = Mesh(home=tmp_path / "home")
    try:
        _losing_sender(m, lose)
        r = m.ctl("send", "b", "lost answer", "body", "--json", node="a")
        sent = json.loads(r.stdout)
        assert [e["id"] for e in _queued(m, "a")] == [sent["id"]]
        until(lambda: json.loads(m.ctl("inbox", "--json", node="b").stdout), what="delivered")
        inbox = json.loads(m.ctl("inbox", "--json", node="b").stdout)
        assert [x["id"] for x in inbox] == [sent["id"]]
    finally:
        m.cleanup()


# ---------------------------------------------------------------------------- a full disk


def _fill(directory: Path) -> Path:
    """Fill the file system holding `directory` to the last byte; the filler file is returned."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


def _log_lines(path: Path, word: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if word in line]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs as the full disk")
def test_disk_full_on_a_receiving_node_refuses_mail_stays_alive_and_recovers(tmp_path: Path) -> None:
    from tests.integration.harness import MESHCTL

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True)
    m = Mesh(home=tmp_path / "home")
    log = tmp_path / "b.log"  # outside the full disk, so the node can say what it says
    b_proc: subprocess.Popen[bytes] | None = None
    try:
        (port,) = free_ports(1)
        m.up("a", "--no-mdns", "--port", str(port), *FAST)
        m.ctl("init", "--from", m.ctl("join-token").stdout.strip(), home=disk)  # the same mesh CA
        with open(log, "wb") as out:  # b in the foreground: its log goes to stderr, here
            b_proc = subprocess.Popen(
                [*MESHCTL, "up", "--name", "b", "--no-mdns", "--peer", f"127.0.0.1:{port}", *FAST],
                env=m.env(disk), stdout=out, stderr=out,
            )  # fmt: skip
        m.homes.add(disk)
        until(lambda: m.ctl("status", node="b", home=disk, check=False).returncode == 0, what="b up")
        m.nodes["b"] = Proc("b", b_proc.pid, "", "", disk)
        until(lambda: m.states("a").get("b") == "alive", what="b alive in a's view")
        filler = _fill(disk)

        # While full: mail for b stays queued at a, a third node comes and goes (b records members), and b
        # stays alive everywhere, its timers running (its view of the comings and goings is current).
        for i in range(10):
            m.ctl("send", "b", f"m{i}", "x" * 500, node="a")
        m.up("c", "--no-mdns", "--peer", f"127.0.0.1:{port}", *FAST)
        until(lambda: m.states("b").get("c") == "alive", what="c alive in b's view")
        m.ctl("down", node="c")
        until(lambda: m.states("b").get("c") == "left", what="c left in b's view")
        until(lambda: len(_log_lines(log, "cannot store")) >= 1, what="b says it cannot store mail")
        deadline = time.monotonic() + 6  # three resend rounds: b refuses each, and stays alive
        while time.monotonic() < deadline:
            assert m.states("a").get("b") == "alive"
            assert m.states("b").get("a") == "alive"
            assert b_proc.poll() is None
            time.sleep(0.2)
        assert {e["state"] for e in _queued(m, "a")} == {"queued"}

        # Sending from the full node: one clear line each, and the node's log does not grow a line per send.
        for _ in range(5):
            r = m.ctl("send", "a", "from b", "body", node="b", home=disk, check=False)
            _one_line_refusal(r, "no space left", "free some space")
        assert len(_log_lines(log, "cannot queue")) == 1, _log_lines(log, "cannot queue")
        assert len(_log_lines(log, "cannot store")) == 1, _log_lines(log, "cannot store")
        assert not _log_lines(log, "Traceback") and not _log_lines(log, "internal error")

        # Room again: everything queued arrives, with no restart.
        filler.unlink()
        until(
            lambda: {e["state"] for e in _queued(m, "a")} == {"delivered"},
            timeout=30,
            what="a's messages delivered to b",
        )
        inbox = json.loads(m.ctl("inbox", "--json", node="b", home=disk).stdout)
        assert [x["subject"] for x in inbox] == [f"m{i}" for i in range(10)]
        assert b_proc.poll() is None
        m.ctl("send", "a", "from b", "body", node="b", home=disk)
        assert _log_lines(log, "storing again")
    finally:
        if b_proc is not None and b_proc.poll() is None:
            b_proc.kill()
            b_proc.wait()
        m.cleanup()
        subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_messages_without_a_limit_reads_the_whole_inbox_page_by_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's "default all" is all: past one store page (10,000 rows; 3 here) nothing is cut silently."""
    import asyncio

    from mesh import Node, NodeConfig
    from mesh._services.mail import MailService
    from mesh.client import connect

    monkeypatch.setattr(MailService, "page", 3)
    mesh_name = "pg-" + os.urandom(4).hex()

    def cfg(name: str, *peers: str) -> NodeConfig:
        return NodeConfig.fast(name, home=tmp_path, mesh=mesh_name, mdns=False, join_window=0.0, peers=peers)

    async with Node(config=cfg("a")) as a, Node(config=cfg("b", a.address)) as b:
        for i in range(7):
            await b.send("a", f"s{i}", "body")
        loop = asyncio.get_running_loop()
        end = loop.time() + 15
        while len([m async for m in a.messages(limit=100)]) < 7:
            assert loop.time() < end, "not delivered"
            await asyncio.sleep(0.05)
        assert [m.subject async for m in a.messages()] == [f"s{i}" for i in range(7)]
        assert [m.subject async for m in a.messages(limit=2)] == ["s5", "s6"]
        assert [m.subject async for m in a.messages(unread=True, after=2)] == [f"s{i}" for i in range(2, 7)]
        async with await connect("a", mesh=mesh_name, home=tmp_path) as c:  # the same through the socket
            assert [m.subject async for m in c.messages()] == [f"s{i}" for i in range(7)]


def _send_lines_once(m: Mesh, n: int) -> tuple[list[str], list[dict[str, object]]]:
    """`meshctl send -` of n lines a -> b: each line answered with its own id, each queued once at a."""
    text = "".join(json.dumps({"to": "b", "subject": f"m {i:04d}", "body": "x"}) + "\n" for i in range(n))
    r = m.ctl("send", "-", "--json", node="a", input=text)
    ids = [json.loads(x)["id"] for x in r.stdout.splitlines()]
    assert len(ids) == n and len(set(ids)) == n
    queued = json.loads(m.ctl("outbox", "--json", "--limit", "10000", node="a").stdout)
    assert sorted(e["id"] for e in queued) == sorted(ids)  # each line queued once
    return ids, queued


def test_send_many_whose_batch_answer_is_lost_answers_every_line_once(tmp_path: Path) -> None:
    """`meshctl send -` sends its lines as whole SendBatches; the node queues the first one, then the stream
    breaks before its answer: every line of the batches left unanswered is asked again with its key, so each
    line gets one truthful answer (its id), nothing is queued twice and nothing arrives twice."""
    m = Mesh(home=tmp_path / "home")
    try:
        _losing_sender(m, "SendStream:1")
        n = 2500  # three batches of SEND_MAX: the first's answer is lost, the others go with the stream
        ids, _ = _send_lines_once(m, n)

        def all_in() -> list[dict[str, object]] | None:
            got: list[dict[str, object]] = json.loads(
                m.ctl("inbox", "--json", "--limit", "10000", node="b").stdout
            )
            return got if len(got) >= n else None

        got = until(all_in, timeout=60, what="every line in b's inbox")
        assert sorted(str(x["id"]) for x in got) == sorted(ids)
        by_id = {str(x["id"]): x["subject"] for x in got}
        assert [by_id[i] for i in ids] == [f"m {i:04d}" for i in range(n)]  # each answer is its own line's
    finally:
        m.cleanup()


@pytest.mark.parametrize("lose", ["SendStream:3", "SendStream:3,Send:1"])
def test_a_batch_whose_every_answer_is_lost_is_asked_item_by_item_and_queued_once(
    tmp_path: Path, lose: str
) -> None:
    """A SendBatch carries one key for all its items: the node queues it, then its answer is lost on every
    stream it is tried on (SEND_MANY_TRIES); the client then asks each item unary, naming the batch's key
    and the item's place, and the node answers what the batch queued (with the second case, the first of
    those answers is lost too, and that item is asked again): every line once, nothing queued twice."""
    m = Mesh(home=tmp_path / "home")
    try:
        _losing_sender(m, lose)
        n = 300
        ids, queued = _send_lines_once(m, n)
        by_id = {str(e["id"]): e["subject"] for e in queued}
        assert [by_id[i] for i in ids] == [f"m {i:04d}" for i in range(n)]  # each answer is its own line's
    finally:
        m.cleanup()


@pytest.mark.parametrize("n", [1000, 5000])
async def test_many_concurrent_sends_over_a_stream_that_breaks_are_each_answered_once(
    tmp_path: Path, n: int
) -> None:
    """`n` concurrent `Client.send`s: the node queues the first SendBatch, then the stream breaks before its
    answer, so every send pending on it (the rest of the burst) is asked again, unary, with its key. Each
    send gets its one id (no NodeUnavailable: unary Sends beyond limits.UNARY_AT_ONCE wait their turn at
    the client; all at once, hundreds of 5,000 came back CANCELLED), and each is queued once."""
    import asyncio

    from mesh.client import Client
    from mesh.paths import find_node

    m = Mesh(home=tmp_path / "home")
    try:
        _losing_sender(m, "SendStream:1")
        async with Client(find_node(m.home, m.name, "a")) as api:
            got = await asyncio.gather(
                *(api.send("b", f"m {i:05d}", "body") for i in range(n)), return_exceptions=True
            )
        failed = [g for g in got if isinstance(g, BaseException)]
        assert not failed, f"{len(failed)} of {n} sends failed, e.g. {failed[0]!r}"
        ids = [g.id for g in got if not isinstance(g, BaseException)]
        assert len(set(ids)) == n  # one id each
        queued = json.loads(m.ctl("outbox", "--json", "--limit", "10000", node="a").stdout)
        assert sorted(str(e["id"]) for e in queued) == sorted(ids)  # each queued once, nothing else
    finally:
        m.cleanup()
