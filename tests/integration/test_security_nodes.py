"""Only members get in: real node processes against rogue nodes, plaintext and impostor clients, other uids.

The helpers at the top (member credentials, raw Link calls) are shared with test_fuzz.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh import security
from mesh._proto import mesh_pb2 as pb
from mesh.config import PROTO_VERSION
from tests.integration.harness import FAST, Mesh, Proc, until

CALL_TIMEOUT = 5.0
REFUSAL = re.compile(r"refused (a link|peer)")


# ----------------------------------------------------------------------------------------------- helpers


def member_creds(mesh: Mesh, node_id: str, home: Path | None = None) -> security.Credentials:
    """A valid leaf of the mesh CA under `home` for `node_id` (what any member could mint)."""
    return security.load_ca(home or mesh.home, mesh.name).issue(node_id)


def hello(mesh_name: str, node_id: str, name: str, incarnation: str = "inc-1") -> pb.PeerFrame:
    """A well-formed Hello frame for a node that does not listen anywhere."""
    return pb.PeerFrame(
        hello=pb.Hello(
            mesh=mesh_name,
            proto_version=PROTO_VERSION,
            node=pb.NodeRef(node_id=node_id, name=name, incarnation=incarnation, address="127.0.0.1:9"),
            lease=10.0,  # the default claims timing: a mismatch is refused before anything else
            rho=0.01,
        )
    )


def secure_channel(address: str, creds: security.Credentials) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, creds.channel_credentials(), options=creds.channel_options())


async def link_call(
    channel: grpc.aio.Channel, frames: Sequence[pb.PeerFrame | bytes], timeout: float = CALL_TIMEOUT
) -> tuple[grpc.StatusCode | None, list[bytes]]:
    """Send `frames` on one Peer.Link stream (bytes go out raw), half-close, read all: (status, replies).

    The status is None when the server ended the stream while we were still writing: the client library then
    reports its own INTERNAL error and the server's status is lost (the node's log is checked instead).
    """
    raw = channel.stream_stream(
        "/mesh.v1.Peer/Link", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    call: Any = raw(timeout=timeout)
    replies: list[bytes] = []
    try:
        for f in frames:
            await call.write(f if isinstance(f, bytes) else f.SerializeToString())
        await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        # The server ended the call while we were still writing: the client library reports that as its own
        # INTERNAL/"execute_batch" error; what the server said is the call's final status, read below.
        pass
    try:
        async for r in call:
            replies.append(r)
    except grpc.aio.AioRpcError as e:
        return _server_code(e.code(), e.details()), replies
    return _server_code(await call.code(), await call.details()), replies


def _server_code(code: grpc.StatusCode, details: str | None) -> grpc.StatusCode | None:
    """The status the server sent, or None where the client library replaced it with its own write error."""
    if code == grpc.StatusCode.INTERNAL and (details or "").startswith("Internal error from Core"):
        return None
    return code


def node_json(proc: Proc, mesh: Mesh) -> dict[str, Any]:
    path = proc.home / "meshes" / mesh.name / "nodes" / proc.name / "node.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def node_log(proc: Proc, mesh: Mesh) -> str:
    return (proc.home / "meshes" / mesh.name / "nodes" / proc.name / "node.log").read_text()


def names(mesh: Mesh, node: str) -> set[str]:
    return set(mesh.status(node))


# ------------------------------------------------------------------------------------------------- tests


def test_rogue_node_with_its_own_ca_cannot_join(mesh: Mesh, tmp_path: Path) -> None:
    # mDNS on: the members also find the rogue (same mesh name) and dial it, so both sides refuse.
    a = mesh.up("a", *FAST)
    mesh.up("b", "--peer", a.address, *FAST)
    until(lambda: names(mesh, "a") == {"a", "b"} == names(mesh, "b"), what="a and b see each other")
    rogue = Mesh(home=tmp_path / "rogue-home", name=mesh.name)
    try:
        x = rogue.up("x", "--peer", a.address, *FAST)  # `up` succeeds: the rogue is just alone
        assert (
            security.load_ca(rogue.home, mesh.name).fingerprint
            != security.load_ca(mesh.home, mesh.name).fingerprint
        )
        until(lambda: REFUSAL.search(node_log(x, rogue)), what="the rogue logs the refusal")
        # Let it retry its seed (and the members their mDNS candidate) for a while: nobody gets in.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert names(mesh, "a") == {"a", "b"}
            assert names(mesh, "b") == {"a", "b"}
            assert names(rogue, "x") == {"x"}
            time.sleep(0.1)
        assert rogue.ctl("status", "--json", node="x").returncode == 0
        for log in (node_log(a, mesh), node_log(mesh.nodes["b"], mesh), node_log(x, rogue)):
            refusals = [line for line in log.splitlines() if REFUSAL.search(line)]
            assert len(refusals) <= 3, refusals  # reported, not a flood
            assert "Traceback" not in log
    finally:
        rogue.cleanup()


def test_plaintext_client_is_refused(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)

    async def attempt() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(a.address) as channel:
            code, replies = await link_call(channel, [hello(mesh.name, "plain-1", "plain")])
        assert replies == []
        return code

    assert asyncio.run(attempt()) == grpc.StatusCode.UNAVAILABLE
    assert names(mesh, "a") == {"a"}


def test_valid_certificate_for_another_node_id_is_permission_denied(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    b = mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    until(lambda: names(mesh, "a") == {"a", "b"})
    creds = member_creds(mesh, "mallory-1")

    async def attempts() -> list[grpc.StatusCode]:
        codes = []
        async with secure_channel(a.address, creds) as channel:
            # Claiming to be a stranger, an existing member (b), or the node itself: all refused the same way.
            for node_id, name in (("victim-1", "victim"), (b.node_id, "b"), (a.node_id, "a")):
                code, replies = await link_call(channel, [hello(mesh.name, node_id, name)])
                assert replies == []  # refused before it is told anything
                codes.append(code)
        return codes

    assert asyncio.run(attempts()) == [grpc.StatusCode.PERMISSION_DENIED] * 3
    st = mesh.status("a")
    assert set(st) == {"a", "b"} and st["b"]["node_id"] == b.node_id and st["b"]["state"] == "alive"
    assert "certificate is not for node" in node_log(a, mesh)


def _as_uid(uid: int, gid: int) -> tuple[list[str], Any]:
    """(argv prefix, preexec_fn) that run a command as uid/gid with no supplementary groups.

    setpriv (util-linux) when there is one: a preexec_fn forces a real fork() (no vfork), and forking this
    process while its gRPC threads are busy makes gRPC print "skipping fork() handlers" into the output."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"], None

    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return [], drop


def _runs_as(python: str, drop: tuple[list[str], Any]) -> bool:
    try:
        r = subprocess.run(
            [*drop[0], python, "-c", "pass"], preexec_fn=drop[1], capture_output=True, timeout=30, cwd="/"
        )
    except OSError:
        return False
    return r.returncode == 0


_CONNECT = """
import os, socket, sys
target = sys.argv[1]
if target.isdigit():  # an O_PATH descriptor of the socket, inherited: skips the directories' permissions
    target = f"/proc/self/fd/{target}"
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(target)
except OSError as e:
    print(type(e).__name__, e.errno)
    sys.exit(1)
print("connected")
"""


def test_control_socket_refuses_another_local_user(mesh: Mesh) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as a second uid (nobody)")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user to act as a second uid")
    a = mesh.up("a", "--no-mdns", *FAST)
    sock = node_json(a, mesh)["socket"]
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    drop = _as_uid(nobody.pw_uid, nobody.pw_gid)
    # The client needs only the standard library, and an interpreter the other uid may execute.
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if _runs_as(p, drop)), None)
    if python is None:
        pytest.skip("no python interpreter that uid 'nobody' can execute")

    def connect_as_nobody(target: str, fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*drop[0], python, "-c", _CONNECT, target],
            preexec_fn=drop[1],
            pass_fds=fds,
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )

    # By path: refused (the private state dir alone already stops it).
    r = connect_as_nobody(sock)
    assert r.returncode == 1 and "PermissionError" in r.stdout, (r.stdout, r.stderr)
    # Through a descriptor that bypasses the directories: the socket's own mode (0600) refuses.
    fd = os.open(sock, os.O_PATH)
    try:
        r = connect_as_nobody(str(fd), (fd,))
        assert r.returncode == 1 and "PermissionError" in r.stdout, (r.stdout, r.stderr)
        # Control: the same route with the mode opened up does connect, so the refusal above is the mode's.
        os.chmod(sock, 0o666)
        try:
            r = connect_as_nobody(str(fd), (fd,))
            assert r.stdout.strip() == "connected", (r.stdout, r.stderr)
        finally:
            os.chmod(sock, 0o600)
    finally:
        os.close(fd)
    # The owner still gets in.
    own = socket.socket(socket.AF_UNIX)
    try:
        own.connect(sock)
    finally:
        own.close()
    assert mesh.ctl("status", "--json", node="a").returncode == 0


def test_expired_mesh_ca_refuses_to_start_with_a_clear_message(mesh: Mesh) -> None:
    # A CA made five years ago, valid for one: expired four years ago. Written the way init writes one.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=5 * 365)
    ca = security.create_ca(mesh.name, now=past, validity=dt.timedelta(days=365))
    cdir = security.credentials_dir(mesh.home, mesh.name)
    cdir.mkdir(parents=True, mode=0o700)
    for file, data in (("ca.crt", ca.cert_pem), ("ca.key", ca.key_pem)):
        (cdir / file).write_bytes(data)
        os.chmod(cdir / file, 0o600)
    r = mesh.ctl("up", "--name", "a", "--detach", "--no-mdns", *FAST, check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "expired" in lines[0] and "meshctl init --rotate" in lines[0], r.stderr
    # Nothing half-started is left behind, and the documented fix works.
    assert mesh.ctl("status", check=False).returncode == 2
    mesh.ctl("init", "--rotate")
    a = mesh.up("a", "--no-mdns", *FAST)
    assert names(mesh, "a") == {"a"} and a.pid > 0
    assert security.load_ca(mesh.home, mesh.name).fingerprint != ca.fingerprint


def test_leaf_issued_by_an_expired_ca_is_refused_by_a_member(mesh: Mesh) -> None:
    # A member that kept a leaf from before the CA was rotated, or a stale leaf: the handshake fails.
    a = mesh.up("a", "--no-mdns", *FAST)
    ca = security.load_ca(mesh.home, mesh.name)
    stale = ca.issue("stale-1", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=60))

    async def attempt() -> grpc.StatusCode:
        async with secure_channel(a.address, stale) as channel:
            code, _ = await link_call(channel, [hello(mesh.name, "stale-1", "stale")])
        return code

    assert asyncio.run(attempt()) == grpc.StatusCode.UNAVAILABLE
    assert names(mesh, "a") == {"a"}
