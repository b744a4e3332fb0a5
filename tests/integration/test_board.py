"""The board on real node processes: every node keeps a full replica, edits survive the editor's death,
both sides of a partition edit and converge, a node away for 1,000 edits catches up; the CLI's faces."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.integration.harness import FAST, MESHCTL, Mesh, until

NO_MDNS = ["--no-mdns", *FAST]


def board(mesh: Mesh, node: str) -> dict[str, Any]:
    """`board --json` of every task (dropped included) and milestone, through the API in-process (fast)."""
    return asyncio.run(_board(mesh, node))


async def _board(mesh: Mesh, node: str) -> dict[str, Any]:
    from mesh.client import connect
    from mesh.errors import MeshError

    try:
        async with await connect(node, mesh=mesh.name, home=mesh.nodes[node].home) as c:
            return (await c.board(dropped=True)).to_json()
    except MeshError as e:
        raise AssertionError(str(e)) from None


def titles(b: dict[str, Any]) -> list[str]:
    return sorted(t["title"] for t in b["tasks"])


def task_of(mesh: Mesh, node: str, task: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in board(mesh, node)["tasks"] if t["id"] == task)
    return found


def add(mesh: Mesh, node: str, *args: str) -> str:
    """`task add` (or any verb printing an id): the id printed."""
    out = mesh.ctl(*args, node=node).stdout.strip()
    assert len(out.splitlines()) == 1, out
    return out


def pair(mesh: Mesh, *extra: str) -> None:
    a = mesh.up("a", *NO_MDNS, *extra)
    mesh.up("b", *NO_MDNS, "--peer", a.address)
    until(lambda: mesh.states("a").get("b") == "alive" and mesh.states("b").get("a") == "alive")


def converged(mesh: Mesh, nodes: list[str]) -> dict[str, Any] | None:
    boards = [board(mesh, n) for n in nodes]
    return boards[0] if all(b == boards[0] for b in boards[1:]) else None


def test_edits_reach_every_node_with_state_milestone_and_role(mesh: Mesh) -> None:
    pair(mesh, "--role", "dev")
    ms = add(mesh, "a", "milestone", "add", "Ship 1.0", "--step", "design", "--step", "build")
    t1 = add(mesh, "a", "task", "add", "fix the flaky test", "--priority", "P0", "--milestone", ms,
             "--step", "2", "--role", "dev")  # fmt: skip
    t2 = add(mesh, "b", "task", "add", "write the tour", "--role", "docs", "--note", "README first")
    b = until(lambda: len((x := board(mesh, "b"))["tasks"]) == 2 and x, what="b has both tasks")
    assert [(t["priority"], t["title"], t["state"]) for t in b["tasks"]] == [
        ("P0", "fix the flaky test", "open"),
        ("P2", "write the tour", "open"),
    ]
    first = b["tasks"][0]
    assert (first["id"], first["milestone"], first["milestone_title"], first["role"]) == (
        t1, ms, "Ship 1.0", "dev"
    )  # fmt: skip
    # Claim on b: a sees it claimed by b, until when; a's own claim is refused (exit 3, naming b).
    r = mesh.ctl("task", "claim", t1, "--ttl", "2h", "--json", node="b")
    claim = json.loads(r.stdout)
    assert claim["granted"] and claim["holder"] == "b" and claim["type"] == "task" and claim["token"] > 0
    refused = mesh.ctl("task", "claim", t1, node="a", check=False)
    assert refused.returncode == 3 and "claimed by b" in refused.stderr
    row = until(lambda: (t := task_of(mesh, "a", t1))["holder"] == "b" and t, what="a shows b's claim")
    assert row["state"] == "claimed" and row["until"]
    mine = json.loads(mesh.ctl("board", "--json", "--mine", node="b").stdout)
    assert [t["id"] for t in mine["tasks"]] == [t1]
    assert json.loads(mesh.ctl("board", "--json", "--mine", node="a").stdout)["tasks"] == []
    p2 = json.loads(mesh.ctl("board", "--json", "--priority", "P2", node="a").stdout)
    assert [t["id"] for t in p2["tasks"]] == [t2]
    # Done on b releases b's claim; the milestone's progress follows on a.
    mesh.ctl("task", "done", t1, node="b")
    shown = until(
        lambda: (
            (m := json.loads(mesh.ctl("milestone", "show", ms, "--json", node="a").stdout))["done"] == 1 and m
        ),
        what="a sees the milestone progress",
    )
    assert (shown["done"], shown["total"], shown["percent"]) == (1, 1, 100)
    assert [(s["text"], s["done"], s["total"]) for s in shown["steps"]] == [("design", 0, 0), ("build", 1, 1)]
    until(lambda: mesh.ctl("claims", "--json", node="a").stdout.strip() == "[]", what="claim released")
    # Edit and drop from a; b converges to the same board.
    mesh.ctl("task", "edit", t2, "--priority", "P1", "--title", "write the tour (short)", node="a")
    mesh.ctl("task", "drop", t2, node="a")
    final = until(lambda: converged(mesh, ["a", "b"]), what="a and b agree")
    dropped = next(t for t in final["tasks"] if t["id"] == t2)
    assert (dropped["priority"], dropped["title"], dropped["state"]) == (
        "P1",
        "write the tour (short)",
        "dropped",
    )
    # Plain output: grouped by priority, with state, milestone and role.
    lines = mesh.ctl("board", "--dropped", node="b").stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["P0", final["tasks"][0]["short_id"], "done"]
    assert lines[0].split("\t")[4:] == ["Ship 1.0", "dev"]


BAD_INPUT = [
    (["task", "add", ""], "title must not be empty"),
    (["task", "add", "x", "--priority", "P7"], "priority must be one of P0, P1, P2, P3"),
    (["task", "add", "x" * 100_000], "the limit is 200"),
    (["task", "add", "x", "--milestone", "zzzz-9"], "no milestone has the id 'zzzz-9'"),
    (["task", "edit", "zzzz-9", "--title", "y"], "no task has the id 'zzzz-9'"),
    (["task", "edit", "TASK"], "nothing to change"),
    (["task", "done", "zzzz-9"], "no task has the id 'zzzz-9'"),
    (["task", "claim", "nonsense"], "no task has the id 'nonsense'"),
    (["task", "add", "x", "--role", "has space"], "invalid role"),
    (["milestone", "show", "zzzz-9"], "no milestone has the id 'zzzz-9'"),
    (["milestone", "add", "m", "--step", ""], "step must not be empty"),
    (["board", "--priority", "P9"], "priority must be one of"),
    (["stats", "--since", "soon"], "not a duration"),
]


def test_bad_input_is_one_line_exit_2_and_changes_nothing(mesh: Mesh) -> None:
    mesh.up("a", *NO_MDNS)
    task = add(mesh, "a", "task", "add", "the only task")
    before = board(mesh, "a")
    for args, needle in BAD_INPUT:
        r = mesh.ctl(*[task if a == "TASK" else a for a in args], node="a", check=False)
        assert r.returncode == 2, (args, r)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert board(mesh, "a") == before, args


def test_a_claim_on_a_done_task_is_refused(mesh: Mesh) -> None:
    mesh.up("a", *NO_MDNS)
    task = add(mesh, "a", "task", "add", "finished already")
    mesh.ctl("task", "done", task, node="a")
    r = mesh.ctl("task", "claim", task, node="a", check=False)
    assert r.returncode == 2 and "is done" in r.stderr
    assert mesh.ctl("claims", "--json", node="a").stdout.strip() == "[]"


def test_both_sides_of_a_partition_edit_then_every_node_shows_one_board(mesh: Mesh, tmp_path: Path) -> None:
    part = tmp_path / "partition"
    part.write_text("")
    mesh.extra_env["MESH_TEST_FAULTS"] = str(part)
    a = mesh.up("a", *NO_MDNS)
    mesh.up("b", *NO_MDNS, "--peer", a.address)
    mesh.up("c", *NO_MDNS, "--peer", a.address)
    until(lambda: all(mesh.states(n).get(o) == "alive" for n in "abc" for o in "abc"), what="all alive")
    shared = add(mesh, "a", "task", "add", "shared task", "--priority", "P2")
    other = add(mesh, "c", "task", "add", "second shared task")
    ms = add(mesh, "b", "milestone", "add", "M", "--step", "one")
    until(lambda: converged(mesh, ["a", "b", "c"]) and len(board(mesh, "a")["tasks"]) == 2, what="shared")

    part.write_text("a\nb c\n")  # a | b c: the links stay open, nothing crosses them
    cut = ("suspect", "dead")
    until(lambda: mesh.states("a")["b"] in cut and mesh.states("b")["a"] in cut, what="the sides are cut")
    mesh.ctl("task", "edit", shared, "--title", "title from a", node="a")
    only_a = add(mesh, "a", "task", "add", "filed on a during the partition")
    mesh.ctl("task", "done", other, node="a")
    mesh.ctl("task", "edit", shared, "--priority", "P0", node="b")  # another field: both edits survive
    time.sleep(0.01)  # the later of two writes to one field wins: make b's clearly later on the wall clock
    mesh.ctl("task", "edit", shared, "--title", "title from b", node="b")
    only_c = add(mesh, "c", "task", "add", "filed on c during the partition", "--milestone", ms)
    mesh.ctl("task", "drop", other, node="c")  # later than a's done: dropped wins
    assert only_a not in {t["id"] for t in board(mesh, "b")["tasks"]}
    assert only_c not in {t["id"] for t in board(mesh, "a")["tasks"]}

    part.write_text("")  # heal
    final = until(lambda: converged(mesh, ["a", "b", "c"]), timeout=30, what="one board on every node")
    by_id = {t["id"]: t for t in final["tasks"]}
    assert (by_id[shared]["title"], by_id[shared]["priority"]) == ("title from b", "P0")
    assert by_id[other]["state"] == "dropped"
    assert {only_a, only_c} <= by_id.keys()
    assert next(m for m in final["milestones"] if m["id"] == ms)["total"] == 1


def test_an_edit_survives_its_editor_killed_right_after_the_command_returned(
    mesh: Mesh, tmp_path: Path
) -> None:
    part = tmp_path / "partition"
    part.write_text("")
    mesh.extra_env["MESH_TEST_FAULTS"] = str(part)
    b = mesh.up("b", *NO_MDNS)
    mesh.up("a", *NO_MDNS, "--peer", b.address)
    until(lambda: mesh.states("b").get("a") == "alive")
    part.write_text("a\nb\n")  # the edit cannot leave a before it dies: only a's store has it
    until(lambda: mesh.states("a")["b"] in ("suspect", "dead"), what="a stops hearing b")
    task = add(mesh, "a", "task", "add", "written just before the crash")
    mesh.signal("a", signal.SIGKILL)
    assert board(mesh, "b")["tasks"] == []
    part.write_text("")
    mesh.restart("a")
    assert [t["id"] for t in board(mesh, "a")["tasks"]] == [task]  # durable before the command returned
    until(lambda: [t["id"] for t in board(mesh, "b")["tasks"]] == [task], what="b gets it after the restart")


async def _edits(mesh: Mesh, node: str, n: int) -> None:
    """`n` edits through the API: adds, edits of every field, done, drop and reopen."""
    from mesh.client import connect

    async with await connect(node, mesh=mesh.name, home=mesh.nodes[node].home) as c:
        ms = await c.milestone_add("catch-up", steps=["s1", "s2"])
        live: list[str] = []
        dropped: list[str] = []
        for k in range(n - 1):
            i = k % 10
            if i < 3 or not live:
                live.append((await c.task_add(f"task {k}", priority=f"P{k % 4}", role="dev")).id)
            elif i < 7:
                await c.task_edit(
                    live[k % len(live)], title=f"edit {k}", note=f"n{k}", milestone=ms.id, step="2"
                )
            elif i == 7:
                await c.task_done(live[k % len(live)])
            elif i == 8:
                dropped.append(live.pop(k % len(live)))
                await c.task_drop(dropped[-1])
            elif dropped:
                live.append(dropped.pop(0))
                await c.task_reopen(live[-1])
            else:
                await c.task_edit(live[0], priority="P0")


def test_a_node_offline_during_1000_edits_catches_up(mesh: Mesh) -> None:
    pair(mesh)
    mesh.ctl("down", node="b")
    asyncio.run(_edits(mesh, "a", 1000))
    want = board(mesh, "a")
    assert len(want["tasks"]) > 250
    mesh.restart("b")
    until(lambda: board(mesh, "b") == want, timeout=60, what="b catches up after 1,000 missed edits")


def test_a_late_joiner_gets_the_whole_board(mesh: Mesh) -> None:
    a = mesh.up("a", *NO_MDNS)
    asyncio.run(_edits(mesh, "a", 60))
    mesh.up("c", *NO_MDNS, "--peer", a.address)
    until(lambda: converged(mesh, ["a", "c"]), what="the newcomer has everything")


def _read_events(lines: queue.Queue[str], want: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Lines of a `watch --json` process: the first one (the snapshot: it is subscribed) when `want` is 0,
    else `want` board events (or fail at the deadline)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"only {got} arrived") from None
        assert line, "watch ended"
        ev = json.loads(line)
        if want == 0:
            return [ev]
        if ev["event"] == "board":
            got.append(ev)
            if len(got) == want:
                return got


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


def test_watch_shows_board_changes(mesh: Mesh) -> None:
    pair(mesh)
    watcher = subprocess.Popen(
        [*MESHCTL, "watch", "--json", "--node", "b"],
        env=mesh.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        lines = _lines(watcher)
        assert _read_events(lines, 0)[0]["event"] == "snapshot"  # subscribed from here on
        task = add(mesh, "a", "task", "add", "seen live", "--priority", "P1")
        mesh.ctl("task", "done", task, node="b")
        first, second = _read_events(lines, 2)
        fields = ("change", "entity", "id", "title", "state", "local")
        assert tuple(first[f] for f in fields) == ("task.add", "task", task, "seen live", "open", False)
        assert (second["change"], second["id"], second["state"], second["local"]) == (
            "task.state", task, "done", True
        )  # fmt: skip
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=10) == 0


def test_export_writes_read_only_views(mesh: Mesh, tmp_path: Path) -> None:
    pair(mesh, "--role", "dev")
    ms = add(mesh, "a", "milestone", "add", "Ship", "--step", "one", "--step", "two")
    add(mesh, "a", "task", "add", "the task", "--milestone", ms, "--step", "1", "--role", "dev")
    mesh.ctl("send", "b", "hello", "from a", node="a")
    until(lambda: len(board(mesh, "b")["tasks"]) == 1)
    until(lambda: json.loads(mesh.ctl("inbox", "--json", node="b").stdout), what="b has the message")
    out = tmp_path / "export"
    r = json.loads(mesh.ctl("export", "--dir", str(out), "--json", node="b").stdout)
    names = sorted(Path(f).relative_to(out).as_posix() for f in r["files"])
    short = board(mesh, "b")["milestones"][0]["short_id"]
    assert names == ["CURRENT_STATE.md", "MESSAGES.md", f"MILESTONES/{short}.md", "REGISTRY.json"]
    for name in ("CURRENT_STATE.md", "MESSAGES.md", f"MILESTONES/{short}.md"):
        first = (out / name).read_text().splitlines()[0]
        assert first.startswith("> Read-only view") and "not read back" in first, name
    state = (out / "CURRENT_STATE.md").read_text()
    assert "## Board" in state and "the task" in state and "## Milestones" in state
    registry = json.loads((out / "REGISTRY.json").read_text())
    assert registry["_read_only"].startswith("Read-only view")
    assert sorted(s["name"] for s in registry["sessions"]) == ["a", "b"]
    assert {r["role"]: r["covered"] for r in registry["roles"]} == {"dev": True}
    milestone = (out / f"MILESTONES/{short}.md").read_text()
    assert "# Ship" in milestone and "- [ ] 1. one (0/1)" in milestone and "the task" in milestone
    messages = (out / "MESSAGES.md").read_text()
    assert "### hello" in messages and "a → b" in messages and "from a" in messages


def test_state_includes_the_board(mesh: Mesh) -> None:
    mesh.up("a", *NO_MDNS)
    add(mesh, "a", "task", "add", "in the state", "--priority", "P3")
    text = mesh.ctl("state", node="a").stdout
    assert "## Board" in text and "### P3" in text and "in the state" in text


def test_roles_without_a_live_session_are_shown(mesh: Mesh) -> None:
    a = mesh.up("a", *NO_MDNS, "--role", "dev")
    mesh.up("b", *NO_MDNS, "--role", "docs", "--peer", a.address)
    until(lambda: mesh.states("a").get("b") == "alive")
    add(mesh, "a", "task", "add", "test plan", "--role", "qa")

    def roles() -> dict[str, dict[str, Any]]:
        return {r["role"]: r for r in json.loads(mesh.ctl("status", "--by-role", "--json", node="a").stdout)}

    now = roles()
    assert (now["dev"]["live"], now["docs"]["live"], now["qa"]["covered"], now["qa"]["open_tasks"]) == (
        ["a"], ["b"], False, 1
    )  # fmt: skip
    mesh.signal("b", signal.SIGKILL)
    gone = until(lambda: (r := roles())["docs"]["live"] == [] and r, what="docs loses its only session")
    assert gone["docs"]["away"] == ["b"] and not gone["docs"]["covered"]
    text = mesh.ctl("status", "--by-role", node="a").stdout
    assert "NO LIVE SESSION" in text and "qa" in text


def test_stats_counts_refusals_tasks_done_uptime_and_replies(mesh: Mesh) -> None:
    pair(mesh)
    ms = add(mesh, "a", "milestone", "add", "M")
    task = add(mesh, "a", "task", "add", "one", "--milestone", ms)
    until(lambda: len(board(mesh, "b")["tasks"]) == 1)
    mesh.ctl("task", "claim", task, node="a")
    assert mesh.ctl("task", "claim", task, node="b", check=False).returncode == 3
    mesh.ctl("task", "done", task, node="a")
    sent = json.loads(mesh.ctl("send", "b", "q", "?", "--json", node="a").stdout)
    mesh.ctl("send", "a", "re: q", "!", "--reply-to", sent["id"], node="b")

    def stats(node: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(mesh.ctl("stats", "--json", "--since", "1h", node=node).stdout)
        return out

    s = until(lambda: (x := stats("a"))["replies"]["count"] == 1 and x, what="a pairs b's reply")
    assert s["claims"]["overlaps"] == []
    assert s["replies"]["by_reply"] == 1 and s["replies"]["p50_s"] is not None
    assert s["tasks_done"] == [{"milestone": ms, "title": "M", "done": 1}]
    uptime = {u["session"]: u for u in s["uptime"]}
    assert set(uptime) == {"a", "b"} and uptime["a"]["ratio"] == 1.0
    sb = stats("b")
    assert sb["claims"]["refused"] == 1 and sb["claims"]["refused_by_item"] == {f"task/{task}": 1}
    assert sb["tasks_done"] == s["tasks_done"]
    text = mesh.ctl("stats", node="b").stdout
    assert "1 collision(s) refused; 0 overlap(s)" in text and "heartbeat uptime" in text
