"""meshctl's hot verbs over the node's wire (mesh.wireclient) on real node processes: every light verb, its
errors and exit codes, a node that is not running, and sockets that are not ours refused."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mesh.paths import find_node
from mesh.wireclient import WireClient
from tests.integration.harness import FAST, Mesh, until

NOBODY = 65534


def two(mesh: Mesh) -> None:
    mesh.up("a", "--no-mdns", *FAST)
    mesh.up("b", "--no-mdns", *FAST, "--peer", mesh.nodes["a"].address)
    until(lambda: mesh.states("a").get("b") == "alive" and mesh.states("b").get("a") == "alive", what="a, b")


def test_every_light_verb_against_a_real_node(mesh: Mesh) -> None:
    two(mesh)
    # status: the plain rows and --json, the same members the gRPC API lists
    rows = mesh.ctl("status", node="a").stdout.splitlines()
    assert sorted(r.split("\t")[0] for r in rows) == ["a", "b"]
    got = json.loads(mesh.ctl("status", "--json", node="a").stdout)
    assert {m["name"] for m in got} == {"a", "b"} and got[0]["is_self"] is True
    # heartbeat: published, and seen by the other node
    mesh.ctl("heartbeat", "--action", "build", "--target", "x", "--progress", "40", "--note", "n", node="a")
    until(lambda: mesh.status("b")["a"]["progress"] == 40, what="b sees a's heartbeat")
    assert mesh.status("b")["a"]["action"] == "build"
    r = mesh.ctl("heartbeat", "--phase", "tests", "--json", node="a")
    assert json.loads(r.stdout) == {"ok": True, "node": "a"}
    # claim: granted with a token, then held by the node after the CLI exited
    r = mesh.ctl("claim", "service", "i-match", "--ttl", "2h", "--json", node="a")
    first = json.loads(r.stdout)
    assert first["granted"] and first["holder"] == "a" and first["token"] > 0
    r = mesh.ctl("claim", "service", "i-match", "--json", node="b", check=False)
    assert r.returncode == 3 and json.loads(r.stdout)["holder"] == "a"
    r = mesh.ctl("claim", "service", "i-match", node="b", check=False)
    assert r.returncode == 3 and "held by a until" in r.stderr
    r = mesh.ctl("claim", "path", "src/**", "docs/*.md", node="a")
    assert r.stdout.startswith("claimed path/{docs/*.md,src/**} — token ")
    until(lambda: len(mesh.status("a")["a"]["claims"]) == 2, what="a's claims in its status")
    # release: items and paths, and what was not held
    r = mesh.ctl("release", "service", "i-match", "--json", node="a")
    assert json.loads(r.stdout) == {"released": True, "count": 1, "type": "service", "name": "i-match"}
    assert mesh.ctl("release", "path", "src/**", node="a").stdout == "released path/src/**\n"
    r = mesh.ctl("release", "service", "i-match", node="a")
    assert r.stdout == "service/i-match was not held by this session (nothing to release)\n"
    code = mesh.ctl("claim", "service", "i-match", "--json", node="b")
    assert json.loads(code.stdout)["token"] > first["token"]
    # send / broadcast: queued for the named sessions
    r = mesh.ctl("send", "b", "hello", "over the wire", "--json", node="a")
    sent = json.loads(r.stdout)
    assert sent["recipients"] == ["b"]
    assert mesh.ctl("send", "all", "x", "--all", node="a", check=False).returncode == 0
    inbox = until(
        lambda: [
            m for m in json.loads(mesh.ctl("inbox", "--json", node="b").stdout) if m["id"] == sent["id"]
        ],
        what="b got the message",
    )
    assert inbox[0]["body"] == "over the wire"


def test_the_wire_client_and_the_grpc_client_answer_alike(mesh: Mesh) -> None:
    """WireClient without a loop (the wire) and inside one (gRPC): the same values and error classes."""
    two(mesh)
    node = find_node(mesh.home, mesh.name, "a")
    api = WireClient(node)
    assert api.light

    def wire(coro):  # type: ignore[no-untyped-def]
        from mesh.cli.main import drive

        return drive(coro)

    async def over_grpc(verb: str, *args: object) -> object:
        async with WireClient(node) as c:
            assert not c.light
            return await getattr(c, verb)(*args)

    info_w = wire(api.info())
    info_g = asyncio.run(over_grpc("info"))
    assert (info_w.name, info_w.node_id, info_w.stewards) == (info_g.name, info_g.node_id, info_g.stewards)  # type: ignore[attr-defined]
    names_w = [m.name for m in wire(api.members())]
    names_g = [m.name for m in asyncio.run(over_grpc("members"))]  # type: ignore[attr-defined]
    assert names_w == names_g == ["a", "b"]
    # meshctl status's one round trip: the same two answers either way
    members_w, both_w = wire(api.members_and_info())
    members_g, both_g = asyncio.run(over_grpc("members_and_info"))  # type: ignore[misc]
    assert [m.name for m in members_w] == [m.name for m in members_g] == ["a", "b"]
    assert both_w.node_id == both_g.node_id == info_w.node_id
    granted = wire(api.claim_once("task/t1", 60.0))
    assert [c.resource for c in wire(api.held())] == ["task/t1"]
    (g,), (w,) = asyncio.run(over_grpc("held")), wire(api.held())  # type: ignore[misc]
    # the wire carries floats bit-exact; the gRPC codec rounds the last bit or so
    assert (g.resource, g.holder, g.token) == (w.resource, w.holder, w.token)
    assert abs(g.expires_at - w.expires_at) < 1e-3
    assert granted.token > 0 and granted.valid_until > 0
    from mesh.errors import ClaimDenied, InvalidInput, UnknownRecipient

    b = WireClient(find_node(mesh.home, mesh.name, "b"))
    with pytest.raises(ClaimDenied) as denied:
        wire(b.claim_once("task/t1", 60.0))
    assert denied.value.holder == "a" and denied.value.expires_at
    with pytest.raises(InvalidInput):
        wire(api.claim_once("task/bad name!", 60.0))
    # requests sent together: the first error is raised once every answer was read, so the connection
    # stays in step (the next call gets its own answer, not the one left over)
    with pytest.raises(InvalidInput):
        api._calls([("claim_once", {"resource": "task/bad name!"}), ("members", {})])
    assert [c.resource for c in wire(api.held())] == ["task/t1"]
    with pytest.raises(UnknownRecipient):
        wire(api.send("nobody-ever", "s", "b"))
    assert wire(api.release("task", "t1")) is True
    assert wire(api.release("task", "t1")) is False
    record = wire(api.heartbeat(action="a", progress=5))
    assert (record.action, record.progress, record.name) == ("a", 5, "a")
    wire(api.close())
    wire(b.close())


def test_a_claim_that_waited_leaves_its_connection_usable(mesh: Mesh) -> None:
    """A claim with `wait` is answered while the node watches the connection for the client going away; the
    next request on the same connection must be served (the watch's pending read once made it fail)."""
    two(mesh)
    api = WireClient(find_node(mesh.home, mesh.name, "a"))
    from mesh.cli.main import drive

    for i in range(3):
        granted = drive(api.claim_once(f"task/w{i}", 60.0, wait=5.0))
        assert granted.resource == f"task/w{i}"
        assert [c.resource for c in drive(api.held())] == [f"task/w{j}" for j in range(i + 1)]
    assert drive(api.release("task", "w0")) is True
    drive(api.close())


def test_bad_input_and_a_node_that_is_not_running(mesh: Mesh) -> None:
    mesh.up("a", "--no-mdns", *FAST)
    for args, needle in (
        (["claim", "service", "bad name!"], "invalid claim name"),
        (["heartbeat", "--progress", "101"], "progress"),
        (["send", "nobody-ever", "s", "b"], "nobody-ever"),
        (["claim", "service", "x", "--ttl", "30d"], "ttl"),
    ):
        r = mesh.ctl(*args, node="a", check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, (args, r.stderr)
    assert mesh.status("a")["a"]["claims"] == []
    r = mesh.ctl("status", node="absent", check=False)
    assert r.returncode == 2 and r.stderr.startswith("meshctl: no node named 'absent' is running")
    assert len(r.stderr.strip().splitlines()) == 1
    r = mesh.ctl("claim", "service", "x", node="absent", check=False)
    assert r.returncode == 2 and "no node named 'absent'" in r.stderr


def _fake_node(mesh: Mesh, name: str, sock: Path) -> tuple[Path, int]:
    """A node.json naming `sock` as the wire, with its lock held (by this process): a 'running' node."""
    sd = mesh.home / "meshes" / mesh.name / "nodes" / name
    sd.mkdir(parents=True, mode=0o700)
    info = {"name": name, "mesh": mesh.name, "node_id": "x" * 16, "pid": os.getpid(),
            "socket": str(sd / "control.sock"), "address": "127.0.0.1:1",
            "hook_socket": str(sock)}  # fmt: skip
    (sd / "node.json").write_text(json.dumps(info))
    fd = os.open(sd / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return sd, fd


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a socket of another uid")
def test_a_socket_of_another_user_is_refused(mesh: Mesh) -> None:
    mesh.homes.add(mesh.home)
    # 1. the socket file belongs to another user (in a short private directory, as a node puts a socket whose
    # natural path is too long for AF_UNIX: a long temp root must not break the test)
    sd, fd = _fake_node(mesh, "theirs", Path("/nonexistent"))
    sock_dir = Path(tempfile.mkdtemp(prefix="w-"))
    sock = sock_dir / "w.sock"
    server = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, os\n"
         f"s = socket.socket(socket.AF_UNIX); s.bind({str(sock)!r})\n"
         f"os.chown({str(sock)!r}, {NOBODY}, {NOBODY})\n"
         f"os.setuid({NOBODY}); s.listen(); print('ready', flush=True)\n"
         "c, _ = s.accept(); c.recv(100)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        info = json.loads((sd / "node.json").read_text()) | {"hook_socket": str(sock)}
        (sd / "node.json").write_text(json.dumps(info))
        r = mesh.ctl("status", node="theirs", check=False)
        assert r.returncode == 2 and "refusing" in r.stderr and "not a socket of this user" in r.stderr
        # 2. the socket is ours, but the process serving it runs as another user (SO_PEERCRED)
        os.chown(sock, 0, 0)
        r = mesh.ctl("claim", "service", "x", node="theirs", check=False)
        assert r.returncode == 2 and f"runs as uid {NOBODY}" in r.stderr, r.stderr
        # 3. the directory is not private
        os.chmod(sock_dir, 0o755)
        r = mesh.ctl("status", node="theirs", check=False)
        assert r.returncode == 2 and "not private" in r.stderr
    finally:
        server.kill()
        server.wait()
        os.close(fd)
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_a_claim_that_waits_is_cancelled_when_the_cli_goes_away(mesh: Mesh) -> None:
    """Ctrl-C (or a kill) during `claim --wait` ends the wait at the node: nothing is granted after."""
    two(mesh)
    mesh.ctl("claim", "service", "s", node="a")
    env = mesh.env()
    p = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli.main", "claim", "service", "s", "--wait", "60", "--node", "b"],
        env=env,
    )
    time.sleep(1.0)  # no event to await from outside: the claim is inside its wait at the node
    p.kill()
    p.wait()
    mesh.ctl("release", "service", "s", node="a")
    time.sleep(2.0)  # the wait would have been granted within this, had it not been cancelled
    assert [c["name"] for c in mesh.status("b")["b"]["claims"]] == []
    r = mesh.ctl("claim", "service", "s", "--json", node="a")
    assert json.loads(r.stdout)["holder"] == "a"


def test_waiting_claims_through_mesh_connect_stay_on_their_connection_and_a_hang_up_cancels_them(
    mesh: Mesh,
) -> None:
    """mesh.connect's Client asks claims with a `wait` over the hook wire, where the node runs them in the
    connection's task and watches for a hang-up only once they wait: one granted at once, and a waiter
    granted on release, are answered on the lane's one connection, which serves the next request; a client
    that gives up (its connection closes) cancels its claim at the node: it is not granted after."""
    from mesh.client import Client
    from mesh.errors import ClaimDenied

    two(mesh)
    a_node, b_node = (find_node(mesh.home, mesh.name, n) for n in ("a", "b"))
    res = "service/waiting"

    async def run() -> None:
        a, b = Client(a_node), Client(b_node)
        try:
            await b.claim_once(res, 60.0, 5.0)
            conn = b._lane._conn
            assert conn is not None and not b._lane.broken  # it went over the wire
            assert await b.release("service", "waiting")
            assert (await b.claim_once(res, 60.0, 5.0)).holder == "b"
            assert await b.release("service", "waiting")
            # A waiter, granted when the holder releases: past the node's WATCH_AFTER, on the same connection.
            await a.claim_once(res, 60.0, 5.0)  # b's release reaches the stewards in its own time
            waiter = asyncio.create_task(b.claim_once(res, 60.0, 30.0))
            await asyncio.sleep(0.2)  # nothing to await from outside: the claim is inside its wait at b
            assert not waiter.done()
            assert await a.release("service", "waiting")
            got = await waiter
            assert got.holder == "b" and b._lane._conn is conn
            assert await b.release("service", "waiting") and b._lane._conn is conn  # it serves the next one
            # A client that gives up: its connection closes and the node cancels the claim, so the next
            # claimant (a, waiting behind nobody) is granted at once and b never holds it.
            await a.claim_once(res, 60.0, 5.0)
            waiter = asyncio.create_task(b.claim_once(res, 60.0, 60.0))
            await asyncio.sleep(0.2)  # as above: the claim is queued at the stewards, behind a
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert await a.release("service", "waiting")
            try:
                again = await a.claim_once(res, 60.0, 5.0)
            except ClaimDenied as e:  # b's claim lived on, was granted, and holds it
                pytest.fail(f"a cancelled claim was granted: {e}")
            assert again.holder == "a"
            assert await b.held() == []
        finally:
            for c in (a, b):
                await c.close()

    asyncio.run(run())


def test_a_client_sends_and_follows_over_the_wire_and_asks_grpc_when_the_wire_cannot(
    mesh: Mesh, tmp_path: Path
) -> None:
    """mesh.connect's Client: a lone send and the inbox stream take the hook wire (same values as gRPC); a
    wire that does not speak the `api` op (an older node: a classless error) sends it to gRPC instead."""
    from mesh.client import Client
    from mesh.core.values import replace
    from mesh.errors import UnknownRecipient

    two(mesh)
    a_node, b_node = (find_node(mesh.home, mesh.name, n) for n in ("a", "b"))
    assert a_node.hook_socket is not None and b_node.hook_socket is not None

    async def old_wire(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline():
            writer.write(b'{"error": "unknown op \'api\'; ops: check"}\n')
        writer.close()

    async def run() -> None:
        a, b = Client(a_node), Client(b_node)
        grpc_b = Client(replace(b_node, hook_socket=None))
        follow = b.messages(follow=True)
        try:
            sent = await a.send("b", "over the wire", "body")
            assert a._lane._conn is not None and not a._lane.broken  # it went over the wire
            got = await anext(follow)
            assert (got.id, got.subject, got.body, got.from_name) == (sent.id, "over the wire", "body", "a")
            listed = [m async for m in grpc_b.messages(limit=10)]
            assert listed == [got]  # the same value over gRPC as over the wire
            with pytest.raises(UnknownRecipient):
                await a.send("nobody-ever", "s", "b")
            # A wire that does not speak the op: the client asks gRPC, and does not try the wire again.
            private = tmp_path / "old"
            private.mkdir(mode=0o700)
            server = await asyncio.start_unix_server(old_wire, path=str(private / "w.sock"))
            old = Client(replace(a_node, hook_socket=private / "w.sock"))
            try:
                again = await old.send("b", "via grpc", "x")
                assert old._lane.broken and again.recipients == ("b",)
                assert (await anext(follow)).id == again.id
                assert [m.id async for m in old.messages(limit=10)] == []  # a's own inbox, via gRPC
            finally:
                await old.close()
                server.close()
        finally:
            await follow.aclose()
            for c in (a, b, grpc_b):
                await c.close()

    asyncio.run(run())


def test_the_wire_inbox_stream_lines_errors_and_a_client_that_leaves(mesh: Mesh) -> None:
    """The `api` op's stream verb on a raw connection: item lines then end; bad arguments one error line
    (with its class); a follower that hangs up ends its stream and the node serves the next one."""
    import socket

    two(mesh)
    mesh.ctl("send", "b", "one", "first", node="a")
    until(lambda: json.loads(mesh.ctl("inbox", "--json", node="b").stdout), what="delivered")
    path = str(find_node(mesh.home, mesh.name, "b").hook_socket)

    def ask(args: dict[str, object], lines: int) -> list[dict[str, object]]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(json.dumps({"op": "api", "verb": "messages", "args": args}).encode() + b"\n")
            f = s.makefile("rb")
            return [json.loads(f.readline()) for _ in range(lines)]

    item, end = ask({"limit": 10}, 2)
    assert item["item"]["subject"] == "one" and item["item"]["from_name"] == "a"  # type: ignore[index]
    assert end == {"ok": True, "end": True}
    (bad,) = ask({"limit": "ten"}, 1)
    assert bad["class"] == "InvalidInput" and "limit" in str(bad["error"])
    (bad,) = ask({"colour": 1}, 1)
    assert bad["class"] == "InvalidInput"
    for _ in range(70):  # more than MAX_FOLLOWERS (64) that leave after their first item: none held on to
        (got,) = ask({"follow": True}, 1)
        assert got["item"]["subject"] == "one"  # type: ignore[index]
    item, end = ask({"limit": 1}, 2)
    assert end == {"ok": True, "end": True}


def test_a_node_without_the_api_op_is_asked_over_grpc(tmp_path: Path) -> None:
    """An older node's hook wire answers "unknown op 'api'": the light verbs go to gRPC, same results."""
    old = Mesh(home=tmp_path / "home", extra_env={"MESH_TEST_OLD_WIRE": "1"})
    try:
        old.up("a", "--no-mdns", *FAST)
        entry = "import sys; from mesh.cli.main import entry; sys.argv[0] = 'meshctl'; entry()"
        env = old.env() | {"MESH_NODE": "a"}
        env.pop("PYTHONPATH", None)  # the client is plain meshctl, only the node has the tap

        def ctl(*args: str) -> subprocess.CompletedProcess[str]:
            cmd = [sys.executable, "-X", "importtime", "-c", entry, *args]
            return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

        st = ctl("status", "--json")
        assert st.returncode == 0, st.stderr[-500:]
        assert [m["name"] for m in json.loads(st.stdout)] == ["a"]
        imported = {
            ln.rsplit("|", 1)[1].strip() for ln in st.stderr.splitlines() if ln.startswith("import time:")
        }
        assert "grpc" in imported  # it did fall back (the wire refused the verb)
        got = ctl("claim", "service", "x", "--json")
        assert got.returncode == 0 and json.loads(got.stdout)["granted"] is True, got.stderr[-500:]
        assert ctl("claim", "service", "x").returncode == 0  # held by this session already: granted again
        assert ctl("heartbeat", "--progress", "7").returncode == 0
        assert old.status("a")["a"]["progress"] == 7
        rel = ctl("release", "service", "x", "--json")
        assert rel.returncode == 0 and json.loads(rel.stdout)["released"] is True, rel.stderr[-500:]
        bad = ctl("claim", "service", "bad name!")
        said = [ln for ln in bad.stderr.splitlines() if not ln.startswith("import time:")]
        assert bad.returncode == 2 and len(said) == 1 and "bad name!" in said[0], bad.stderr[-500:]
    finally:
        old.cleanup()


def test_client_claims_take_the_wire_and_never_ask_twice(mesh: Mesh, tmp_path: Path) -> None:
    """mesh.connect's Client: claim_once and release take the hook wire (the same values and errors as over
    gRPC); a wire without the `api` op sends them to gRPC; a wire that took the request and hung up without
    answering is NodeUnavailable, and the claim is NOT asked again over gRPC (it has no idempotency key)."""
    from mesh.client import Client
    from mesh.core.values import replace
    from mesh.errors import ClaimDenied, NodeUnavailable

    two(mesh)
    a_node, b_node = (find_node(mesh.home, mesh.name, n) for n in ("a", "b"))

    async def old_wire(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline():
            writer.write(b'{"error": "unknown op \'api\'; ops: check"}\n')
        writer.close()

    async def mute_wire(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()  # read the request, then hung up: the node may have carried it out

    async def run() -> None:
        a, b = Client(a_node), Client(b_node)
        grpc_a = Client(replace(a_node, hook_socket=None))
        servers = []
        try:
            got = await a.claim_once("service/wired", 600.0)
            assert a._lane._conn is not None and not a._lane.broken  # it went over the wire
            assert (got.resource, got.holder, got.token > 0) == ("service/wired", "a", True)
            assert [(c.resource, c.token) for c in await grpc_a.held()] == [("service/wired", got.token)]
            with pytest.raises(ClaimDenied, match="held by a") as denied:
                await b.claim_once("service/wired", 600.0)
            assert denied.value.holder == "a"
            assert await a.release("service", "wired") is True
            assert await a.release("service", "wired") is False
            assert await grpc_a.held() == []
            # A wire without the op: gRPC claims and releases instead, and the wire is not tried again.
            private = tmp_path / "old"
            private.mkdir(mode=0o700)
            servers.append(await asyncio.start_unix_server(old_wire, path=str(private / "w.sock")))
            old = Client(replace(a_node, hook_socket=private / "w.sock"))
            try:
                again = await old.claim_once("service/old-wire", 600.0)
                assert old._lane.broken and again.holder == "a"
                assert await old.release("service", "old-wire") is True
            finally:
                await old.close()
            # A wire that took the request and said nothing: not carried out twice behind the caller's back.
            mute = tmp_path / "mute"
            mute.mkdir(mode=0o700)
            servers.append(await asyncio.start_unix_server(mute_wire, path=str(mute / "w.sock")))
            lost = Client(replace(a_node, hook_socket=mute / "w.sock"))
            try:
                with pytest.raises(NodeUnavailable):
                    await lost.claim_once("service/unanswered", 600.0)
                with pytest.raises(NodeUnavailable):
                    await lost.release("service", "anything")
            finally:
                await lost.close()
            assert await grpc_a.held() == []  # the unanswered claim was never asked of the node
        finally:
            for s in servers:
                s.close()
            for c in (a, b, grpc_a):
                await c.close()

    asyncio.run(run())
