"""Real node processes on loopback, driven through meshctl: the mesh you can start and see."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import FAST, MESHCTL, NO_TIMED_DEATH, Mesh, until

ABC = {"a", "b", "c"}


def all_alive(mesh: Mesh, names: set[str]) -> bool:
    return all({n for n, s in mesh.states(node).items() if s == "alive"} == names for node in names)


def test_three_nodes_via_peer_seeds_see_each_other(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    # c knows only b: a is found through b's gossip.
    mesh.up("c", "--no-mdns", "--peer", mesh.nodes["b"].address, *FAST)
    until(lambda: all_alive(mesh, ABC), what="a, b, c all alive everywhere")
    st = mesh.status("c", via_cli=True)
    assert set(st) == ABC
    for m in st.values():
        assert set(m) >= {
            "name",
            "node_id",
            "role",
            "state",
            "action",
            "target",
            "phase",
            "progress",
            "last_seen",
        }
    assert st["c"]["is_self"] and not st["a"]["is_self"]


def test_three_nodes_via_mdns_see_each_other(mesh: Mesh) -> None:
    for n in sorted(ABC):
        mesh.up(n, *FAST)
    until(lambda: all_alive(mesh, ABC), what="mDNS: a, b, c all alive everywhere")


def test_heartbeat_on_one_shows_on_the_others(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    mesh.up("c", "--no-mdns", "--peer", a.address, *FAST)
    until(lambda: all_alive(mesh, ABC))
    mesh.ctl(
        "heartbeat",
        "--action",
        "build",
        "--target",
        "i-match",
        "--phase",
        "tests",
        "--progress",
        "40",
        "--note",
        "green so far",
        node="b",
    )
    for viewer in ("a", "c"):
        m = until(
            lambda v=viewer: (s := mesh.status(v)["b"])["action"] == "build" and s, what=f"{viewer} sees b"
        )
        assert (m["target"], m["phase"], m["progress"], m["note"]) == ("i-match", "tests", 40, "green so far")
    # A partial update keeps the other fields.
    mesh.ctl("heartbeat", "--progress", "60", node="b")
    m = until(lambda: (s := mesh.status("a")["b"])["progress"] == 60 and s)
    assert m["action"] == "build" and m["target"] == "i-match"


def test_down_shows_left_not_dead(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    until(lambda: all_alive(mesh, {"a", "b"}))
    r = mesh.ctl("down", node="b")
    assert "left" in r.stdout
    # `down` returns only once the node has left: the peer already shows it.
    assert mesh.states("a")["b"] == "left"


def test_sigterm_leaves_gracefully(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    until(lambda: all_alive(mesh, {"a", "b"}))
    mesh.signal("b", signal.SIGTERM)
    until(lambda: mesh.states("a")["b"] == "left", what="b left after SIGTERM")


def test_sigkill_shows_dead_at_once(mesh: Mesh) -> None:
    # Default beats, no death by silence for 600 s: only the refused reconnect can make it dead at all (so
    # the wait can be generous for a loaded machine without letting the timer pass the test).
    a = mesh.up("a", "--no-mdns", *NO_TIMED_DEATH)
    mesh.up("b", "--no-mdns", "--peer", a.address, *NO_TIMED_DEATH)
    until(lambda: all_alive(mesh, {"a", "b"}))
    mesh.signal("b", signal.SIGKILL)
    until(lambda: mesh.states("a")["b"] == "dead", timeout=60, what="b dead after SIGKILL")
    assert mesh.states("a")["a"] == "alive"


def test_sigstop_suspect_then_back_to_alive_on_sigcont(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    until(lambda: all_alive(mesh, {"a", "b"}))
    mesh.signal("b", signal.SIGSTOP)
    until(lambda: mesh.states("a")["b"] == "suspect", what="b suspect while stopped")
    mesh.signal("b", signal.SIGCONT)
    until(lambda: mesh.states("a")["b"] == "alive", what="b alive after SIGCONT")


def test_sigstop_long_enough_is_dead_then_alive_again(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    until(lambda: all_alive(mesh, {"a", "b"}))
    mesh.signal("b", signal.SIGSTOP)
    seen: list[str] = []

    def dead() -> bool:
        seen.append(mesh.states("a")["b"])
        return seen[-1] == "dead"

    until(dead, what="b dead while stopped")
    assert "suspect" in seen or seen == ["dead"]  # suspect first, unless a poll missed it
    assert seen.index("dead") >= 1 or seen == ["dead"]
    # b itself does not blame a for its own stall: after SIGCONT both are alive again.
    mesh.signal("b", signal.SIGCONT)
    until(lambda: mesh.states("a")["b"] == "alive", what="b alive after SIGCONT")
    assert mesh.states("b")["a"] == "alive"


def test_other_mesh_never_appears(mesh: Mesh, tmp_path: Path) -> None:
    mesh.up("a", *FAST)
    other = Mesh(home=tmp_path / "other-home")
    try:
        other.up("x", "--peer", mesh.nodes["a"].address, *FAST)
        mesh.up("b", *FAST)
        until(lambda: all_alive(mesh, {"a", "b"}))
        assert set(mesh.status("a")) == {"a", "b"}
        assert set(other.status("x")) == {"x"}
    finally:
        other.cleanup()


def test_second_live_node_with_same_name_fails_clearly(mesh: Mesh, tmp_path: Path) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    # Same home: the node lock says so at once.
    r = mesh.ctl("up", "--name", "a", "--detach", "--no-mdns", check=False)
    assert r.returncode == 2 and "already running" in r.stderr
    # Another home (another machine) that joined with the token: the mesh says the name is taken.
    token = mesh.ctl("join-token").stdout.strip()
    mesh.ctl("init", "--from", "-", home=tmp_path / "h2", input=token)
    r = mesh.ctl("up", "--name", "a", "--detach", "--peer", a.address, home=tmp_path / "h2", check=False)
    assert r.returncode == 2, r.stderr
    assert "taken" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert set(mesh.status("a")) == {"a"}


def test_watch_json_streams_changes(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    watcher = subprocess.Popen(
        [*MESHCTL, "watch", "--json", "--node", "a"],
        env=mesh.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines(watcher)

        def next_event() -> dict[str, Any]:  # within a deadline, saying what came, rather than hang
            try:
                line = lines.get(timeout=30.0)
            except queue.Empty:
                raise AssertionError(f"no event within 30 s; b's so far: {events}") from None
            assert line, f"watch ended; b's events so far: {events}"
            ev: dict[str, Any] = json.loads(line)
            return ev

        events: list[tuple[str, str, str, str, int]] = []
        first = next_event()
        assert first["event"] == "snapshot" and first["member"]["name"] == "a"
        mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
        mesh.ctl("heartbeat", "--action", "deploy", "--progress", "90", node="b")
        mesh.ctl("down", node="b")
        while not events or events[-1][:3] != ("state", "b", "left"):
            ev = next_event()
            m = ev["member"]
            if m["name"] == "b":  # a's own events (e.g. steward changes) interleave
                events.append((ev["event"], m["name"], m["state"], m["action"], m["progress"]))
        assert events[0][:3] == ("joined", "b", "alive")
        assert ("status", "b", "alive", "deploy", 90) in events
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) == 0


def test_watch_pid_leaves_when_the_session_exits(mesh: Mesh) -> None:
    a = mesh.up("a", "--no-mdns", *FAST)
    session = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        mesh.up("b", "--no-mdns", "--peer", a.address, "--watch-pid", str(session.pid), *FAST)
        until(lambda: all_alive(mesh, {"a", "b"}))
        assert session.stdin is not None
        session.stdin.close()
        session.wait(timeout=10)
        until(lambda: mesh.states("a")["b"] == "left", what="b left after its session exited")
    finally:
        session.kill()


def test_watch_pid_of_missing_process_is_refused(mesh: Mesh) -> None:
    r = mesh.ctl("up", "--name", "a", "--detach", "--no-mdns", "--watch-pid", "999999999", check=False)
    assert r.returncode == 2 and "no such process" in r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["heartbeat", "--progress", "140"], "0 to 100"),
        (["heartbeat", "--progress", "lots"], "0 to 100"),
        (["heartbeat", "--note", "x" * 600], "limit is 512"),
        (["heartbeat", "--action", "bad\x07bell"], "control characters"),
    ],
)
def test_bad_status_values_are_rejected(mesh: Mesh, args: list[str], needle: str) -> None:
    mesh.up("a", "--no-mdns", *FAST)
    before = mesh.status("a")["a"]
    r = mesh.ctl(*args, node="a", check=False)
    assert r.returncode == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    keys = ("action", "target", "phase", "progress", "note", "status_updated_at")
    after = mesh.status("a")["a"]
    assert {k: after[k] for k in keys} == {k: before[k] for k in keys}


@pytest.mark.parametrize(("name", "needle"), [("", "must not be empty"), ("bad name", "invalid name")])
def test_bad_names_are_rejected(mesh: Mesh, name: str, needle: str) -> None:
    r = mesh.ctl("up", "--name", name, "--detach", check=False)
    assert r.returncode == 2 and needle in r.stderr


def test_control_socket_is_private(mesh: Mesh) -> None:
    mesh.up("a", "--no-mdns", *FAST)
    info = json.loads((mesh.home / "meshes" / mesh.name / "nodes" / "a" / "node.json").read_text())
    mode = stat.S_IMODE(os.stat(info["socket"]).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(mesh.home / "meshes" / mesh.name / "nodes" / "a").st_mode) == 0o700


def test_no_node_and_ambiguous_node_errors(mesh: Mesh) -> None:
    r = mesh.ctl("status", check=False)
    assert r.returncode == 2 and "no node is running" in r.stderr
    a = mesh.up("a", "--no-mdns", *FAST)
    mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    r = mesh.ctl("status", check=False)
    assert r.returncode == 2 and "several nodes" in r.stderr and "a (mesh" in r.stderr
    assert mesh.ctl("status", "--json", node="b").returncode == 0


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """Every line `proc` writes, as it comes ("" at its end), read by a thread."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line)
        out.put("")

    threading.Thread(target=pump, daemon=True).start()
    return out


# ---------------------------------------------------------------------- members known by hearsay (no link)


def _unix_connected(x: Any, y: Any) -> bool:
    """x's process holds a unix stream whose other end y accepted on its local-link socket (`ss -x`: local
    address, inode, peer address, peer inode, process)."""
    from mesh._transport import local

    name = local.socket_name(y.address)
    if name is None:
        return False
    if shutil.which("ss") is None:
        # Without ss a local link is invisible here: "not connected" would pass vacuously.
        pytest.skip("needs ss (iproute2) to see local links")
    out = subprocess.run(["ss", "-xpnH"], capture_output=True, text=True, check=False).stdout
    rows = [r.split() for r in out.splitlines()]
    rows = [r for r in rows if len(r) >= 9 and r[0] == "u_str"]
    accepted = {r[5] for r in rows if r[4] == "@" + name[1:] and f"pid={y.pid}," in r[8]}
    return any(r[7] in accepted and f"pid={x.pid}," in r[8] for r in rows)


def _connected(a: Any, b: Any) -> bool:
    """True if either node's process holds a TCP connection to the other's peer port, or a unix stream to
    its local-link socket (a link, or a dial)."""
    import psutil  # type: ignore[import-untyped]  # no types-psutil in the venv

    if _unix_connected(a, b) or _unix_connected(b, a):
        return True

    def port(p: Any) -> int:
        return int(p.address.rpartition(":")[2])

    for x, y in ((a, b), (b, a)):
        proc = psutil.Process(x.pid)
        conns = getattr(proc, "net_connections", proc.connections)  # psutil < 6 names it connections
        for c in conns(kind="tcp"):
            if c.raddr and c.raddr.port == port(y) and c.status == psutil.CONN_ESTABLISHED:
                return True
    return False


def _b_and_c_never_dial_each_other(mesh: Mesh, *timing: str) -> tuple[Any, Any, Any]:
    """a seeds b and c; b and c are told of each other by a's gossip but do not dial each other on it, nor
    for the ring (they watch nobody; a watches both)."""
    a = mesh.up("a", "--no-mdns", *timing)
    mesh.extra_env["MESH_TEST_WATCHERS"] = "0"
    mesh.extra_env["MESH_TEST_NO_GOSSIP_DIAL"] = "c"
    b = mesh.up("b", "--no-mdns", "--peer", a.address, *timing)
    mesh.extra_env["MESH_TEST_NO_GOSSIP_DIAL"] = "b"
    c = mesh.up("c", "--no-mdns", "--peer", a.address, *timing)
    del mesh.extra_env["MESH_TEST_NO_GOSSIP_DIAL"], mesh.extra_env["MESH_TEST_WATCHERS"]
    until(lambda: all_alive(mesh, ABC), what="b and c list each other from a's gossip alone")
    assert not _connected(b, c)
    return a, b, c


def test_a_member_known_by_hearsay_is_listed_and_its_death_seen_without_a_link(mesh: Mesh) -> None:
    _b_and_c_never_dial_each_other(mesh, *NO_TIMED_DEATH)
    mesh.signal("c", signal.SIGKILL)
    # b has no link to c that could be refused: a's verdict (its own refused redial) is all b can hear. No
    # timer declares anyone dead for 600 s, so a generous wait still proves that path.
    until(lambda: mesh.states("b")["c"] == "dead", timeout=60, what="c dead at b after SIGKILL")
    assert mesh.states("b")["b"] == "alive"
    assert mesh.status("b")["c"]["state"] == "dead"


def test_mail_to_a_member_with_no_open_link_dials_it_on_demand(mesh: Mesh) -> None:
    _, b, c = _b_and_c_never_dial_each_other(mesh)
    r = json.loads(mesh.ctl("send", "c", "hello", "over a link made for it", "--json", node="b").stdout)
    until(lambda: any(m["id"] == r["id"] for m in json.loads(mesh.ctl("inbox", "--json", node="c").stdout)),
          what="the message reached c")  # fmt: skip
    until(lambda: _connected(b, c), what="b and c linked for the mail")


def test_a_live_hearsay_member_suspected_by_its_watcher_is_dialed_and_stays_alive(
    mesh: Mesh, tmp_path: Path
) -> None:
    # a and c cannot hear each other (a partition file naming only them); b knows c by hearsay only. a
    # suspects c and then holds it dead, and tells b. c's refutations go to its own links, which b is not
    # one of: b must reach c itself (an on-demand link) rather than let a suspicion nobody answers kill it.
    faults = tmp_path / "partition"
    mesh.extra_env["MESH_TEST_FAULTS"] = str(faults)
    a = mesh.up("a", "--no-mdns", *FAST)
    mesh.extra_env["MESH_TEST_WATCHERS"] = "0"  # b and c watch nobody (no link for the ring); a watches both
    mesh.extra_env["MESH_TEST_NO_GOSSIP_DIAL"] = "c"
    b = mesh.up("b", "--no-mdns", "--peer", a.address, *FAST)
    mesh.extra_env["MESH_TEST_NO_GOSSIP_DIAL"] = "b"
    c = mesh.up("c", "--no-mdns", "--peer", a.address, *FAST)
    del mesh.extra_env["MESH_TEST_NO_GOSSIP_DIAL"], mesh.extra_env["MESH_TEST_WATCHERS"]
    until(lambda: all_alive(mesh, ABC), what="b and c list each other from a's gossip alone")
    assert not _connected(b, c)
    # a times c out (its verdicts reach b). It need not hold c dead: c's refutations, once b has linked
    # it, are relayed to a by b (verdicts travel by epidemic), so a sees c suspect, then alive, in turns —
    # a window too short to catch by polling `status` (it flaked so): a's watch stream sees every change.
    watcher = subprocess.Popen([*MESHCTL, "watch", "--json", "--node", "a"], env=mesh.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        lines = _lines(watcher)
        first = json.loads(lines.get(timeout=30.0))
        assert first["event"] == "snapshot"
        faults.write_text("a\nc\n")
        seen: list[tuple[str, str]] = []
        while not seen or seen[-1][1] == "alive":
            try:
                line = lines.get(timeout=30.0)
            except queue.Empty:
                raise AssertionError(f"a never suspected c within 30 s; c's events at a: {seen}") from None
            assert line, f"a's watch ended; c's events at a: {seen}"
            ev = json.loads(line)
            if ev["member"]["name"] == "c":
                seen.append((ev["event"], ev["member"]["state"]))
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=10)
    until(lambda: _connected(b, c), what="b dialed c when told it was suspected")
    until(lambda: mesh.states("b")["c"] == "alive", timeout=10, what="c alive at b")
    assert mesh.states("c")["b"] == "alive"
