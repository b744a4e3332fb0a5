"""Local links: nodes of one host and uid link over an abstract unix stream; anyone else gets nothing there.

Real node processes; the raw connectors below speak the framing by hand (4-byte length + PeerFrame). The
other-uid cases run a stdlib-only child as `nobody` (setpriv): skipped when this test does not run as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mesh._proto import mesh_pb2 as pb
from mesh._tls import credentials_dir, pem_sha256
from mesh._transport import codec, local
from mesh._transport.peer import MAX_FRAME_BYTES
from mesh.config import PROTO_VERSION
from mesh.core.membership import PeerInfo
from mesh.store import new_id
from tests.integration.harness import FAST, NO_TIMED_DEATH, Mesh, free_ports, until

pytestmark = pytest.mark.skipif(not local.supported(), reason="local links need Linux (abstract sockets)")

NO_MDNS = ("--no-mdns",)
NOBODY = 65534
as_root = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to run as another uid"
)


def _info(mesh: Mesh, node: str) -> Any:
    from mesh.client import connect

    async def ask() -> Any:
        async with await connect(node, mesh=mesh.name, home=mesh.home) as c:
            return await c.info()

    return asyncio.run(ask())


def _links(mesh: Mesh, node: str) -> tuple[int, int]:
    i = _info(mesh, node)
    return i.local_links, i.grpc_links


def _pair(mesh: Mesh, *extra: str) -> None:
    a = mesh.up("a", *FAST, *NO_MDNS, *extra)
    mesh.up("b", *FAST, *NO_MDNS, "--peer", a.address, *extra)
    until(lambda: mesh.states("a").get("b") == "alive" and mesh.states("b").get("a") == "alive")


def _hello(
    mesh: Mesh, ca_sha256: bytes | None = None, columns: bool = False, me: PeerInfo | None = None
) -> pb.PeerFrame:
    """A Hello as a node of this mesh would send on a local link (a fresh node id and name, unless `me`);
    `columns`: it reads mail by column (mail_columns), as this version's nodes do; without, an older one."""
    ca = (credentials_dir(mesh.home, mesh.name) / "ca.crt").read_bytes()
    me = me or PeerInfo(new_id(), new_id(), "raw-" + new_id()[:6], "", "127.0.0.1:1")
    digest = pem_sha256(ca) if ca_sha256 is None else ca_sha256
    h = pb.Hello(mesh=mesh.name, proto_version=PROTO_VERSION, node=codec.peer_to_pb(me), lease=10.0, rho=0.01,
                 frame_batches=True, mail_columns=columns, ca_sha256=digest)  # fmt: skip
    return pb.PeerFrame(hello=h)


async def _exchange(address: str, data: bytes, timeout: float = 10.0) -> list[pb.PeerFrame | None]:
    """Connect to the local link name of `address`, send `data`, and return the frames read until EOF
    (None last if the node closed the stream), or until `timeout`."""
    name = local.socket_name(address)
    assert name is not None
    reader, writer = await asyncio.open_unix_connection(name)
    got: list[pb.PeerFrame | None] = []
    try:
        writer.write(data)
        async with asyncio.timeout(timeout):
            while True:
                f = await local.read_frame(reader)
                got.append(f)
                if f is None:
                    break
    except TimeoutError:
        pass
    finally:
        writer.close()
    return got


@pytest.mark.parametrize("transport", ["local", "grpc"])
def test_two_nodes_link_and_carry_traffic(mesh: Mesh, transport: str) -> None:
    _pair(mesh, *(() if transport == "local" else ("--no-local-links",)))
    want = (1, 0) if transport == "local" else (0, 1)
    assert _links(mesh, "a") == want and _links(mesh, "b") == want
    sent = json.loads(mesh.ctl("send", "b", "build", "green", "--json", node="a").stdout)
    got = until(lambda: json.loads(mesh.ctl("inbox", "--json", node="b").stdout), what="b has the message")
    assert [m["id"] for m in got] == [sent["id"]]
    r = mesh.ctl("claim", "service", "i-match", "--json", node="b", check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    mesh.ctl("release", "service", "i-match", node="b")
    mesh.ctl("down", node="b")
    until(lambda: mesh.states("a").get("b") == "left", what="a hears b's Leave")
    assert _links(mesh, "a") == (0, 0)


def test_nodes_started_at_once_link_locally(mesh: Mesh) -> None:
    """Two nodes started together, each dialing the seed's port: the link is local. A port accepts connections
    once bound, before its server starts; the local listener used to start after the bind, and a dial in
    between fell back to gRPC for good (half the time for two nodes started at once)."""
    ports = free_ports(2)
    seed = f"127.0.0.1:{ports[0]}"
    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(mesh.up, n, *FAST, *NO_MDNS, "--port", str(p), "--peer", seed)
                   for n, p in zip("ab", ports, strict=True)]  # fmt: skip
        for f in started:
            f.result()
    until(lambda: mesh.states("a").get("b") == "alive" and mesh.states("b").get("a") == "alive")
    assert _links(mesh, "a") == (1, 0) and _links(mesh, "b") == (1, 0)


def test_killed_peer_on_a_local_link_is_dead_at_once(mesh: Mesh) -> None:
    a = mesh.up("a", *NO_TIMED_DEATH, *NO_MDNS)
    mesh.up("b", *NO_TIMED_DEATH, *NO_MDNS, "--peer", a.address)
    until(lambda: mesh.states("a").get("b") == "alive" and _links(mesh, "a") == (1, 0))
    mesh.signal("b", signal.SIGKILL)
    until(lambda: mesh.states("a").get("b") == "dead", what="EOF + refused port: b dead at once")


def test_hello_with_another_ca_is_refused(mesh: Mesh) -> None:
    a = mesh.up("a", *FAST, *NO_MDNS)
    got = asyncio.run(_exchange(a.address, local.encode(_hello(mesh, ca_sha256=b"\x00" * 32))))
    assert got and got[0] is not None and got[0].HasField("reject"), got
    assert got[0].reject.reason == pb.Reject.WRONG_CA and "another CA" in got[0].reject.detail
    assert got[-1] is None  # and the stream ends
    # The control: the right digest gets the node's Hello (and a link).
    good = asyncio.run(_exchange(a.address, local.encode(_hello(mesh)), timeout=2.0))
    assert good and good[0] is not None and good[0].HasField("hello"), good
    assert good[0].hello.ca_sha256 == _hello(mesh).hello.ca_sha256


@pytest.mark.parametrize("columns", [True, False])
def test_mail_goes_by_column_only_to_a_peer_that_says_it_reads_them(mesh: Mesh, columns: bool) -> None:
    # A peer whose Hello lacks mail_columns (an older node) gets envelopes; one that has it, columns. Either
    # way the batch decodes to the same messages.
    from mesh.client import connect

    a = mesh.up("a", *FAST, *NO_MDNS)
    me = PeerInfo(new_id(), new_id(), "raw-" + new_id()[:6], "", "127.0.0.1:1")

    async def run() -> tuple[pb.PeerFrame, pb.MailBatch]:
        name = local.socket_name(a.address)
        assert name is not None
        reader, writer = await asyncio.open_unix_connection(name)
        try:
            writer.write(local.encode(_hello(mesh, columns=columns, me=me)))
            first = await local.read_frame(reader)
            assert first is not None and first.HasField("hello"), first
            async with await connect("a", mesh=mesh.name, home=mesh.home) as c:
                async with asyncio.timeout(10):  # the node answered our Hello: its members list us at once
                    while me.name not in {m.name for m in await c.members()}:
                        await asyncio.sleep(0.02)
                await c.send(me.name, "hi", "by column?")
            async with asyncio.timeout(10):
                while True:
                    f = await local.read_frame(reader)
                    assert f is not None, "the link ended before a mail batch came"
                    for g in (f, *f.batch):
                        if g.HasField("mail"):
                            return first, g.mail
        finally:
            writer.close()

    hello, got = asyncio.run(run())
    assert hello.hello.mail_columns  # this node says it reads them
    assert (len(got.ids), len(got.messages)) == ((1, 0) if columns else (0, 1))
    (m,) = codec.batch_from_pb(got).messages
    assert (m.to_name, m.subject, m.body, m.seq) == (me.name, "hi", "by column?", 1)


def test_oversized_length_prefix_closes_without_reading(mesh: Mesh) -> None:
    a = mesh.up("a", *FAST, *NO_MDNS)
    # Only the header: a node that waited for the body would keep the stream open until our timeout.
    header = local.HEADER.pack(MAX_FRAME_BYTES + 1)
    assert asyncio.run(_exchange(a.address, header, timeout=10.0)) == [None]
    # On an open link too: after a good Hello, an oversized frame ends the link.
    got = asyncio.run(_exchange(a.address, local.encode(_hello(mesh)) + header, timeout=10.0))
    assert got and got[0] is not None and got[0].HasField("hello") and got[-1] is None, got


def test_no_local_links_flag_and_env(mesh: Mesh) -> None:
    mesh.extra_env["MESH_LOCAL_LINKS"] = "0"
    _pair(mesh)
    assert _links(mesh, "a") == (0, 1)
    name = local.socket_name(mesh.nodes["a"].address)
    assert name is not None
    assert not _abstract_bound(name)  # nothing listens locally


def _abstract_bound(name: str) -> bool:
    want = "@" + name[1:]
    return any(line.split()[-1] == want for line in Path("/proc/net/unix").read_text().splitlines()[1:]
               if len(line.split()) >= 8)  # fmt: skip


_CONNECTOR = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect("\\0" + sys.argv[1])
    data = bytes.fromhex(sys.stdin.read())
    try:
        s.sendall(data)
        got = s.recv(65536)
    except (BrokenPipeError, ConnectionResetError):  # closed on us, our Hello unread: nothing received
        got = b""
    print(len(got), flush=True)
    """
)

_SQUATTER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\\0" + sys.argv[1])
    s.listen(8)
    print("listening", flush=True)
    c, _ = s.accept()
    c.settimeout(10)
    try:
        got = c.recv(65536)
    except OSError:
        got = b"timeout"
    print(len(got), flush=True)
    """
)


def _as(uid: int, script: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    cmd = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        sys.executable,
        "-I",
        "-c",
        script,
    ]
    return subprocess.Popen([*cmd, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kw)


@as_root
def test_another_uid_gets_no_local_link(mesh: Mesh) -> None:
    a = mesh.up("a", *FAST, *NO_MDNS)
    name = local.socket_name(a.address)
    assert name is not None
    hello = local.encode(_hello(mesh)).hex()
    # The same connector as our uid is answered (the node's Hello)...
    same = _as(os.getuid(), _CONNECTOR, name[1:])
    out, _ = same.communicate(hello, timeout=30)
    assert int(out) > 0
    # ...as another uid, with the same valid Hello, it is closed unanswered.
    other = _as(NOBODY, _CONNECTOR, name[1:])
    out, _ = other.communicate(hello, timeout=30)
    assert int(out) == 0
    assert _links(mesh, "a")[0] <= 1  # only the same-uid connector could have linked


@as_root
def test_dialer_refuses_a_local_socket_of_another_uid(mesh: Mesh) -> None:
    # Another user squats on the local name of a loopback address we dial: it must get no Hello from us
    # (the dialer checks SO_PEERCRED before writing) and we fall back to gRPC at that address.
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    name = local.socket_name(address)
    assert name is not None
    squat = _as(NOBODY, _SQUATTER, name[1:])
    try:
        assert squat.stdout is not None and squat.stdout.readline().strip() == "listening"
        mesh.up("a", *FAST, *NO_MDNS, "--peer", address)
        out, _ = squat.communicate(timeout=30)
        assert int(out.split()[-1]) == 0
    finally:
        squat.kill()
        squat.wait()


MESH_OF_12 = [f"n{i:02d}" for i in range(12)]
ROUNDS_OF_12 = 4
BUSY = 4  # busy-looping processes while a round starts: the race needs a loaded box (CI's 2 cores)


@contextlib.contextmanager
def _busy(n: int) -> Iterator[None]:
    """`n` processes that only burn CPU, for the duration: a node then waits for the CPU between its steps,
    as on a busy CI machine, and a dial's steps land far apart (the windows where start-up races bite)."""
    # Each also ends once this process is gone (or after 2 minutes): a killed test leaves none behind.
    burn = (
        "import os, time\nend = time.monotonic() + 120\n"
        f"while os.getppid() == {os.getpid()} and time.monotonic() < end: pass"
    )
    procs = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _all_linked(mesh: Mesh, names: list[str]) -> dict[str, tuple[int, int]] | None:
    """(local, gRPC) links of every node once each has a link to every other; None before."""
    kinds = {n: _links(mesh, n) for n in names}
    return kinds if all(sum(k) == len(names) - 1 for k in kinds.values()) else None


def test_twelve_nodes_started_at_once_link_locally(tmp_path: Path) -> None:
    """12 nodes started together on a busy box, each given the seed's port: every link is local, every round.

    The others often dial the seed before it is up. A dial whose local connect was refused used to fall back
    to gRPC at once; a seed that came up before that gRPC dial's connect (channel set-up: tens of ms when the
    CPU is contended) took the call, and the two kept a gRPC link (mutual TLS on every frame) for good."""
    for r in range(ROUNDS_OF_12):
        mesh = Mesh(home=tmp_path / f"round{r}")
        try:
            ports = free_ports(len(MESH_OF_12))
            seed = f"127.0.0.1:{ports[0]}"
            with _busy(BUSY), ThreadPoolExecutor(len(MESH_OF_12)) as pool:
                started = [pool.submit(mesh.up, n, *NO_MDNS, "--port", str(p), "--peer", seed)
                           for n, p in zip(MESH_OF_12, ports, strict=True)]  # fmt: skip
                for f in started:
                    f.result()
            kinds = until(partial(_all_linked, mesh, MESH_OF_12), timeout=60, what="a full mesh of links")
            grpc = {n: k[1] for n, k in kinds.items() if k[1]}
            assert not grpc, f"round {r}: gRPC links between nodes of one host: {grpc}"
        finally:
            mesh.cleanup()
