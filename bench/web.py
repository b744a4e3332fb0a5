"""The live page: update latency after a heartbeat, and what open pages cost the node.

Three real node processes (`meshctl up`, TLS) on 127.0.0.1; node `a` serves the page itself (`up --web`).
A heartbeat is published on node `b` (through its control socket, as `meshctl heartbeat` does); it travels
b → a over the peer link, into a's watch stream, through the page's feed, and out as a Server-Sent Event.

- `update_p50/p99`: heartbeat sent → the new picture read off the event stream by a page client in this
  process (3 pages open: 2 raw SSE clients + 1 headless Chromium, or 3 SSE clients without Chromium).
- `browser_update_p50/p99`: heartbeat sent → the card's note changed in Chromium's DOM (a MutationObserver
  stamps Date.now(); both clocks are this host's wall clock).
- `watch_p50`: the same heartbeat → a gRPC `watch` client of node a sees it: what the page adds on top.
- `meshctl_web_update_p50/p99`: the same through `meshctl web` (a separate process, one more local hop).
- `node_cpu_*`: node a's CPU (% of one core) with no page and with 3 pages open, idle and under a load of
  one heartbeat per second on each node; `meshctl_web_cpu_load`: the `meshctl web` process under that load.
Reference: Redis pub/sub delivery latency measured in the same run (section `redis`), and the node's own
CPU without pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import refs
from bench.membership import MESHCTL, Cluster, _all_alive, _poll, cluster
from bench.procs import free_ports, managed_process, sample_usage, summarize_s
from bench.sections import Context, SectionSkipped, section

URL_RE = re.compile(rb"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]+)")


class PageClient:
    """One open page as the server sees it: an SSE stream, parsed; remembers when each note of `b` arrived."""

    def __init__(self, port: int, token: str, watched: str = "b") -> None:
        self.port, self.token, self.watched = port, token, watched
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer.write(
            f"GET /events?token={self.token} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"event stream refused: {head[:60]!r}")
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            block = await reader.readuntil(b"\n\n")
            now = time.monotonic()
            if not block.startswith(b"event: state"):
                continue
            data = json.loads(block.split(b"data: ", 1)[1])
            for m in data["members"]:
                if m["name"] == self.watched and m["note"] not in self.seen:
                    self.seen[m["note"]] = now
                    self.changed.set()

    async def wait_for(self, note: str, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while note not in self.seen:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline and note not in self.seen:
                raise TimeoutError(f"page never showed note {note!r}")
        return self.seen[note]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._writer is not None:
            self._writer.close()


@contextlib.asynccontextmanager
async def pages(port: int, token: str, n: int) -> AsyncIterator[list[PageClient]]:
    clients = [PageClient(port, token) for _ in range(n)]
    try:
        for c in clients:
            await c.open()
        yield clients
    finally:
        for c in clients:
            await c.close()


def _client(c: Cluster, name: str) -> Any:
    from mesh.client import Client
    from mesh.paths import RunningNode

    sock = c.socket(name)
    if sock is None:
        raise RuntimeError(f"node {name} has no control socket")
    return Client(RunningNode(name=name, mesh=c.mesh, node_id="?", pid=0, socket=sock, address="",
                              state_dir=sock.parent))  # fmt: skip


async def _url_in(log: Path, timeout: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            m = URL_RE.search(await asyncio.to_thread(log.read_bytes))
            if m:
                return int(m.group(1)), m.group(2).decode()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no page URL in {log}")


class Watcher:
    """A gRPC watch client of node a: when it saw each note of `b` (the reference under the page)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        async def follow() -> None:
            async for ev in self.client.watch(snapshot=False):
                if ev.kind != "board" and ev.member.name == "b" and ev.member.note not in self.seen:
                    self.seen[ev.member.note] = time.monotonic()

        self._task = asyncio.create_task(follow())
        await asyncio.sleep(0.2)  # subscribed before the first round
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


Beat = Callable[[str], Awaitable[None]]


async def _rounds(
    beat: Beat, clients: list[PageClient], n: int, tag: str, after: Beat | None = None
) -> tuple[list[float], dict[str, float]]:
    """n heartbeats, one at a time; seconds until every page had each. Returns (samples, t0 by note)."""
    samples: list[float] = []
    starts: dict[str, float] = {}
    for i in range(n):
        note = f"{tag} {i}"
        t0 = starts[note] = time.monotonic()
        await beat(note)
        for c in clients:
            samples.append(await c.wait_for(note) - t0)
        if after is not None:
            await after(note)
        await asyncio.sleep(0.02)
    return samples, starts


async def _browser_probe(url: str, stack: contextlib.AsyncExitStack, ctx: Context) -> Any:
    """A Chromium tab on the page with a MutationObserver stamping b's note changes; None without Chromium."""
    try:
        from bench.procs import ensure_binary

        await asyncio.to_thread(ensure_binary, "chromium", "chromium")
        from tests.integration.browser import chromium, until_page
    except (SectionSkipped, ImportError) as e:
        ctx.log(f"no browser figure: {e}")
        return None
    import tempfile

    profile = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mesh-bench-chromium-")))
    page = await stack.enter_async_context(chromium(profile))
    await page.call("Page.navigate", url=url)
    await until_page(page, "document.querySelectorAll('#cards li').length || null", lambda v: v >= 3, 20,
                     "three cards")  # fmt: skip
    await page.evaluate(
        """(() => { window.__seen = {};
        new MutationObserver(() => {
          const n = document.querySelector('#cards li[data-name="b"] .note');
          if (n && !(n.textContent in window.__seen)) window.__seen[n.textContent] = Date.now();
        }).observe(document.getElementById('cards'), {subtree: true, childList: true, characterData: true});
        return true; })()"""
    )
    return page


async def _cpu(pids: list[int], seconds: float, load: list[Any] | None) -> list[float]:
    """CPU % of each pid over `seconds`, while (optionally) each client heartbeats once a second."""
    stop = asyncio.Event()

    async def beat(client: Any, offset: float) -> None:
        await asyncio.sleep(offset)
        i = 0
        while not stop.is_set():
            i += 1
            await client.heartbeat(progress=i % 101)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    tasks = [asyncio.create_task(beat(c, k / 3)) for k, c in enumerate(load or [])]
    try:
        usage = await asyncio.to_thread(sample_usage, pids, seconds)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    by_pid = {u.pid: u.cpu_percent for u in usage}
    return [by_pid.get(p, float("nan")) for p in pids]


@section("web", timeout_s=600, needs=("redis",))
async def web(ctx: Context) -> None:
    """Live page: update latency after a heartbeat (SSE and in Chromium), node CPU with 3 pages open."""
    n = ctx.rounds(200, 30)
    secs = ctx.rounds(15, 4)
    with cluster() as c:
        ports = free_ports(3)
        seed = f"127.0.0.1:{ports[0]}"
        c.start("a", "--no-mdns", "--port", str(ports[0]), "--web")
        for name, port in (("b", ports[1]), ("c", ports[2])):
            c.start(name, "--no-mdns", "--port", str(port), "--peer", seed)
        await _poll(c, ["a", "b", "c"], _all_alive(["a", "b", "c"]), timeout=30)
        port, token = await _url_in(c.home / "a.log")
        clients = {name: _client(c, name) for name in ("a", "b", "c")}
        try:
            weight = await _page_weight(port, token) / 1024
            ctx.record("page_weight_kb", weight, "KB", target=150.0, note="index.html + app.js + app.css")
            await _latency(ctx, port, token, clients, n)
            await _node_cpu(ctx, port, token, c.procs["a"].pid, list(clients.values()), secs)
            await _meshctl_web(ctx, c, clients, n, secs)
        finally:
            for cl in clients.values():
                await cl.close()


async def _latency(ctx: Context, port: int, token: str, clients: dict[str, Any], n: int) -> None:
    """Heartbeat on b -> the page of a: at SSE clients, in Chromium's DOM, and (reference) at a watch."""
    b = clients["b"]
    walls: dict[str, float] = {}
    browser: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        page = await _browser_probe(f"http://127.0.0.1:{port}/?token={token}", stack, ctx)

        async def beat(note: str) -> None:
            walls[note] = time.time()  # Chromium stamps Date.now(), the wall clock: read just before
            await b.heartbeat(note=note)

        async def in_browser(note: str) -> None:
            if page is None:
                return
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                seen = await page.evaluate(f"window.__seen[{json.dumps(note)}] || null")
                if seen:
                    browser.append(seen / 1000 - walls[note])
                    return
                await asyncio.sleep(0.005)
            raise TimeoutError(f"Chromium never showed {note!r}")

        n_sse = 2 if page is not None else 3
        async with pages(port, token, n_sse) as sse, Watcher(clients["a"]) as w:
            await _rounds(beat, sse, 5, "warm-up")
            samples, starts = await _rounds(beat, sse, n, "round", in_browser)
            watch = [w.seen[k] - t0 for k, t0 in starts.items() if k in w.seen]
    s = summarize_s(samples)
    note = f"n={n} heartbeats x {n_sse} SSE pages (+{3 - n_sse} Chromium); heartbeat on b -> page of a"
    ctx.record("update_p50", s.p50_ms, "ms", target=1000.0, ref=refs.REDIS_PUBSUB_P50, note=note)
    ctx.record("update_p99", s.p99_ms, "ms", target=1000.0, ref=refs.REDIS_PUBSUB_P99,
               note=f"max {s.max_ms:.1f} ms")  # fmt: skip
    if browser:
        bs = summarize_s(browser)
        ctx.record("browser_update_p50", bs.p50_ms, "ms", target=1000.0, ref=refs.REDIS_PUBSUB_P50,
                   note=f"n={len(browser)}; heartbeat -> Chromium's DOM changed")  # fmt: skip
        ctx.record("browser_update_p99", bs.p99_ms, "ms", target=1000.0, ref=refs.REDIS_PUBSUB_P99,
                   note=f"max {bs.max_ms:.1f} ms")  # fmt: skip
    if watch:
        ws = summarize_s(watch)
        ctx.record("watch_p50", ws.p50_ms, "ms", ref=refs.REDIS_PUBSUB_P50,
                   note=f"n={len(watch)}; the same heartbeats at a gRPC watch client of a")  # fmt: skip


async def _node_cpu(ctx: Context, port: int, token: str, pid: int, load: list[Any], secs: float) -> None:
    """Node a's CPU without a page and with 3 open, idle and under 1 heartbeat/s on each node."""
    base_idle = (await _cpu([pid], secs, None))[0]
    base_load = (await _cpu([pid], secs, load))[0]
    async with pages(port, token, 3):
        await asyncio.sleep(0.5)
        open_idle = (await _cpu([pid], secs, None))[0]
        open_load = (await _cpu([pid], secs, load))[0]
    me = ctx.section
    ctx.record("node_cpu_no_pages_idle", base_idle, "%", note=f"node a over {secs:g} s")
    ctx.record("node_cpu_3_pages_idle", open_idle, "%", target=1.0, ref=f"{me}.node_cpu_no_pages_idle",
               note="up --web, 3 SSE pages open, nothing changing")  # fmt: skip
    ctx.record("node_cpu_no_pages_load", base_load, "%", note="3 heartbeats/s across the mesh")
    ctx.record("node_cpu_3_pages_load", open_load, "%", ref=f"{me}.node_cpu_no_pages_load",
               note="up --web, 3 SSE pages open, 3 heartbeats/s across the mesh")  # fmt: skip


async def _meshctl_web(ctx: Context, c: Cluster, clients: dict[str, Any], n: int, secs: float) -> None:
    """The same page from `meshctl web`, a separate process next to node a (one more local hop)."""
    log = c.home / "meshctl-web.log"
    b = clients["b"]

    async def beat(note: str) -> None:
        await b.heartbeat(note=note)

    with managed_process(
        [*MESHCTL, "web", "--no-open"], log_path=log, env=dict(c.env(), MESH_NODE="a")
    ) as proc:
        port, token = await _url_in(log)
        async with pages(port, token, 3) as sse:
            await _rounds(beat, sse, 5, "mw-warm-up")
            samples, _ = await _rounds(beat, sse, max(20, n // 2), "mw")
            node_cpu, web_cpu = await _cpu([c.procs["a"].pid, proc.pid], secs, list(clients.values()))
    s = summarize_s(samples)
    ctx.record("meshctl_web_update_p50", s.p50_ms, "ms", target=1000.0, ref=refs.REDIS_PUBSUB_P50,
               note=f"n={len(samples) // 3} x 3 pages; meshctl web (its own process) -> node a")  # fmt: skip
    ctx.record("meshctl_web_update_p99", s.p99_ms, "ms", target=1000.0, ref=refs.REDIS_PUBSUB_P99,
               note=f"max {s.max_ms:.1f} ms")  # fmt: skip
    ctx.record("meshctl_web_cpu_load", web_cpu, "%", ref=f"{ctx.section}.node_cpu_no_pages_load",
               note=f"meshctl web, 3 pages, 3 heartbeats/s; node a meanwhile {node_cpu:.2f} %")  # fmt: skip


async def _page_weight(port: int, token: str) -> int:
    total = 0
    for path in ("/", "/app.js", "/app.css"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path}?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        raw = await reader.read()
        writer.close()
        total += len(raw.partition(b"\r\n\r\n")[2])
    return total


if __name__ == "__main__":  # pragma: no cover — `python -m bench.run --only web` is the way in
    sys.exit("run: python -m bench.run --only web")
