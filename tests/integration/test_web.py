"""The live page on a real mesh: `meshctl web` in front of real node processes, looked at in real Chromium.

The browser test asserts on the rendered DOM (what a person sees), polling it with a deadline; how fast an
update arrives is a benchmark figure (`python -m bench.run --only web`), not a test assertion.
Set MESH_WEB_SCREENSHOT=docs/live-page.png to save what the browser showed (the README's picture).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.browser import chromium, chromium_or_skip, until_page
from tests.integration.harness import FAST, MESHCTL, Mesh, until

NO_MDNS = ["--no-mdns", *FAST]
URL_RE = re.compile(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]+)")

DOM = """(() => {
  if (!document.getElementById('conn')) return null;  // still loading
  const cards = [...document.querySelectorAll('#cards > li.card')].map((c) => {
    const bar = c.querySelector('[role=progressbar]');
    return {name: c.dataset.name, state: c.dataset.state, text: c.innerText,
            badge: c.querySelector('.badge').textContent.trim(),
            progress: bar ? bar.getAttribute('aria-valuenow') : null};
  });
  return {
    conn: document.getElementById('conn').dataset.conn,
    summary: document.getElementById('summary').textContent,
    cards,
    claims: [...document.querySelectorAll('#claims tbody tr')].map((r) => r.innerText),
    stewards: document.getElementById('stewards').innerText,
    board: document.getElementById('board').innerText,
    messages: [...document.querySelectorAll('#messages > li')].map((m) => m.innerText),
    activity: document.getElementById('activity').innerText,
    resources: performance.getEntriesByType('resource').map((e) => e.name),
  };
})()"""


@contextlib.contextmanager
def web(mesh: Mesh, node: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`meshctl web --no-open` for `node`; yields the process and the URL from its first line."""
    proc = subprocess.Popen(
        [*MESHCTL, "web", "--no-open", "--node", node, *args],
        env=mesh.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            try:
                first = pool.submit(proc.stdout.readline).result(timeout=30)  # type: ignore[union-attr]
            except concurrent.futures.TimeoutError:
                raise AssertionError("meshctl web printed no URL within 30 s") from None
        if not URL_RE.fullmatch(first.strip()):
            proc.kill()
            raise AssertionError(f"first line is not the URL: {first!r}; stderr: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        yield proc, first.strip()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def get(url: str, host: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_meshctl_web_bad_input_is_one_line_and_exit_2(mesh: Mesh, tmp_path: Path) -> None:
    r = mesh.ctl("web", "--no-open", check=False)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert "no node is running" in r.stderr
    mesh.up("solo", *NO_MDNS)
    r = mesh.ctl("web", "--no-open", "--port", "70000", check=False)
    assert r.returncode == 2 and "--port" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = mesh.ctl("web", "--no-open", "--port", str(port), check=False)
        assert r.returncode == 2 and "cannot listen" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    # A port that is free is used as given; the page answers only with the token and the right Host.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with web(mesh, "solo", "--port", str(port)) as (_, url):
        m = URL_RE.fullmatch(url)
        assert m is not None and int(m.group(1)) == port
        status, body = get(url.replace("/?", "/api/state?"))
        assert status == 200 and json.loads(body)["node"]["name"] == "solo"
        assert get(f"http://127.0.0.1:{port}/api/state")[0] == 401
        assert get(url, host=f"rebound.example:{port}")[0] == 403


def test_live_page_in_chromium_on_a_three_node_mesh(mesh: Mesh, tmp_path: Path) -> None:
    chromium_or_skip()
    if os.environ.get("MESH_WEB_SCREENSHOT"):
        mesh.name = "team"  # for the README's picture; the temp home keeps it apart from any other "team"
    s1 = mesh.up("session-1", *NO_MDNS, "--role", "i-match")
    s2 = mesh.up("session-2", *NO_MDNS, "--role", "docs", "--peer", s1.address)
    mesh.up("session-3", *NO_MDNS, "--role", "review", "--peer", s1.address)
    names = {"session-1", "session-2", "session-3"}

    def all_alive() -> bool:
        return all(mesh.states(n) == dict.fromkeys(names, "alive") for n in names)

    until(all_alive, what="three nodes see each other alive")
    mesh.ctl("heartbeat", "--action", "build", "--target", "i-match", "--phase", "tests", "--progress", "40",
             "--note", "unit tests green, integration running", node="session-1")  # fmt: skip
    mesh.ctl("heartbeat", "--action", "write", "--target", "README", "--phase", "tour", "--progress", "70",
             "--note", "tour section", node="session-2")  # fmt: skip
    mesh.ctl("heartbeat", "--action", "review", "--target", "PR-42", "--phase", "reading", "--progress", "15",
             node="session-3")  # fmt: skip

    # Claims need a steward config; it forms within seconds of the mesh.
    def claimed() -> bool:
        r = mesh.ctl("claim", "service", "i-match", "--ttl", "2h", node="session-1", check=False)
        return r.returncode == 0

    until(claimed, timeout=30, interval=0.3, what="the claim is granted")
    mesh.ctl("send", "session-1", "i-match", "green: can you update the docs?", node="session-2")
    mesh.ctl("send", "--all", "standup", "in 5 minutes", node="session-3")
    # The board: a task claimed by session-1, one open for docs, one done (filed on different nodes).
    ms = mesh.ctl(
        "milestone", "add", "Ship 1.0", "--step", "design", "--step", "build", node="session-3"
    ).stdout
    urgent = mesh.ctl("task", "add", "fix the flaky claim test", "--priority", "P0", "--milestone",
                      ms.strip(), "--role", "i-match", node="session-1").stdout.strip()  # fmt: skip
    until(lambda: mesh.ctl("task", "claim", urgent, node="session-1", check=False).returncode == 0,
          what="the task is claimed")  # fmt: skip
    mesh.ctl("task", "add", "write the tour", "--priority", "P1", "--role", "docs", node="session-2")
    done = mesh.ctl("task", "add", "pick a name", "--priority", "P2", node="session-3").stdout.strip()
    mesh.ctl("task", "done", done, node="session-3")

    with web(mesh, "session-1") as (_, url):
        asyncio.run(_look(mesh, url, tmp_path, names, s2.address))


async def _look(mesh: Mesh, url: str, tmp_path: Path, names: set[str], s2_address: str) -> None:
    """What the browser shows; the meshctl calls in here are short and block the loop only briefly."""
    port = URL_RE.fullmatch(url).group(1)  # type: ignore[union-attr]
    async with chromium(tmp_path / "chromium-profile") as page:
        await page.call("Page.navigate", url=url)
        shown = await until_page(
            page, DOM,
            lambda d: {c["name"] for c in d["cards"]} == names
            and all(c["state"] == "alive" for c in d["cards"])
            and any("service/i-match" in c for c in d["claims"])
            and len(d["messages"]) >= 2
            and "by session-1" in d["board"] and "pick a name" in d["board"],
            timeout=20, what="three live sessions, the claims, the messages and the board",
        )  # fmt: skip
        cards = {c["name"]: c for c in shown["cards"]}
        one = cards["session-1"]
        assert one["progress"] == "40" and one["badge"] == "● alive"
        for needle in ("build", "i-match", "tests", "unit tests green, integration running", "40%"):
            assert needle in one["text"], (needle, one["text"])
        assert cards["session-2"]["progress"] == "70" and "tour section" in cards["session-2"]["text"]
        claim = next(c for c in shown["claims"] if "service/i-match" in c)
        assert "session-1" in claim and re.search(r"\d+ h \d\d min|\d+:\d\d", claim), claim
        assert "session-1" in shown["stewards"]
        board = shown["board"]
        assert board.index("P0") < board.index("fix the flaky claim test") < board.index("P1")
        assert board.index("write the tour") < board.index("P2") < board.index("pick a name")
        assert "Ship 1.0" in board and "docs" in board
        # Messages: sender → recipient and subject; the body of a message to this node's own session.
        direct = next(m for m in shown["messages"] if "session-2 → session-1" in m)
        assert "i-match" in direct and "green: can you update the docs?" in direct
        assert any("session-3 → all" in m and "standup" in m for m in shown["messages"])
        assert "3 of 3 sessions alive" in shown["summary"] and shown["conn"] == "live"
        # Everything the page loaded came from the page's own server.
        ours = f"http://127.0.0.1:{port}/"
        assert shown["resources"] and all(r.startswith(ours) for r in shown["resources"])

        # A heartbeat on another node reaches the page by itself.
        mesh.ctl("heartbeat", "--progress", "90", "--note", "tests green", node="session-2")
        await until_page(
            page, DOM,
            lambda d: any(c["name"] == "session-2" and c["progress"] == "90"
                          and "tests green" in c["text"] for c in d["cards"]),
            timeout=30, what="session-2's heartbeat on the page",
        )  # fmt: skip

        # A killed session is marked dead, plainly, and stays on the page.
        mesh.signal("session-3", signal.SIGKILL)
        shown = await until_page(
            page, DOM,
            lambda d: any(c["name"] == "session-3" and c["state"] == "dead" for c in d["cards"]),
            timeout=15, what="session-3 shown dead",
        )  # fmt: skip
        dead = next(c for c in shown["cards"] if c["name"] == "session-3")
        assert dead["badge"] == "✕ dead" and "died" in dead["text"]
        assert "1 dead" in shown["summary"] and "session-3 is dead" in shown["activity"]
        if os.environ.get("MESH_WEB_SCREENSHOT"):
            # Still, as a person would see it a moment later (no change highlight in mid-fade).
            features = [{"name": "prefers-reduced-motion", "value": "reduce"}]
            await page.call("Emulation.setEmulatedMedia", features=features)
            await page.screenshot(Path(os.environ["MESH_WEB_SCREENSHOT"]))

        # The node restarts: the page says so, then reconnects by itself with a fresh picture.
        mesh.ctl("down", node="session-1")
        await until_page(page, DOM, lambda d: d["conn"] == "node", timeout=10,
                         what="the page says the node is not answering")  # fmt: skip
        mesh.up("session-1", *NO_MDNS, "--role", "i-match", "--peer", s2_address)
        mesh.ctl("heartbeat", "--note", "after the restart", node="session-2")
        await until_page(
            page, DOM,
            lambda d: d["conn"] == "live"
            and any(c["name"] == "session-2" and "after the restart" in c["text"] for c in d["cards"]),
            timeout=20, what="the page live again after the node restarted",
        )  # fmt: skip


def test_up_web_serves_the_page_from_the_node_process(mesh: Mesh) -> None:
    a = mesh.up("a", *NO_MDNS, "--web")
    r = mesh.ctl("up", "--name", "b", "--detach", "--web", *NO_MDNS, "--peer", a.address)
    url = r.stdout.splitlines()[0]
    assert URL_RE.fullmatch(url), r.stdout  # the first line of `up --web` is the page's URL
    api = url.replace("/?", "/api/state?")

    def both_shown() -> bool:
        status, body = get(api)
        state = json.loads(body)
        names = {m["name"]: m["state"] for m in state["members"]}
        return status == 200 and state["upstream"]["connected"] and names == {"a": "alive", "b": "alive"}

    until(both_shown, what="b's own page shows a and b alive")
    # A busy port fails `up` with one line, before the node joins.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        r = mesh.ctl("up", "--name", "c", "--detach", "--web", port, *NO_MDNS, check=False)
    assert r.returncode == 2 and "cannot listen" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "c" not in mesh.states("a")
    # The page goes with the node.
    mesh.ctl("down", node="b")
    with pytest.raises(OSError):
        urllib.request.urlopen(api, timeout=5)
