"""The live page's HTTP face against a real embedded node: access rules, headers, weight, the event stream.

The node is a real `mesh.Node` (gRPC on loopback, its own SQLite store); the page server is the production
one; requests are raw HTTP over a socket, so every header the server sends or refuses is visible.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from mesh import Node, NodeConfig
from mesh.web import LivePage, node_connector, server

PAGE_WEIGHT_MAX = 150 * 1024

# One node and page for the module (a node takes ~1 s to start); no test changes what another asserts on.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Node, LivePage]]:
    name = "web-" + uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("web-home")
    cfg = NodeConfig.fast("solo", home=home, mesh=name, mdns=False, join_window=0.0)
    async with Node(config=cfg) as node:
        async with LivePage(node_connector(node), node_name="solo", mesh=name) as p:
            yield node, p


async def request(
    p: LivePage, path: str, *, method: str = "GET", host: str | None = None, token: bool = True
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", p.server.port)
    if token:
        path += ("&" if "?" in path else "?") + "token=" + p.server.token
    host = host if host is not None else f"127.0.0.1:{p.server.port}"
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return parse(raw)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split(" ")[1]), headers, body


async def test_listens_on_loopback_only_and_the_url_carries_a_fresh_token(page: Any) -> None:
    _, p = page
    assert p.server._server is not None
    assert {s.getsockname()[0] for s in p.server._server.sockets} == {"127.0.0.1"}
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{32}", p.url)
    other = server.PageServer(p.feed)
    assert other.token != p.server.token


@pytest.mark.parametrize("path", ["/", "/app.js", "/app.css", "/api/state", "/events", "/nope"])
async def test_every_path_needs_the_token(page: Any, path: str) -> None:
    _, p = page
    status, _, _ = await request(p, path, token=False)
    assert status == 401
    status, _, _ = await request(p, path + "?token=" + "x" * len(p.server.token), token=False)
    assert status == 401


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:1", "localhost", "127.0.0.1", ""])
async def test_a_foreign_host_header_is_refused_even_with_the_token(page: Any, host: str) -> None:
    _, p = page
    status, _, body = await request(p, "/api/state", host=host.format(port=p.server.port))
    assert status == 403 and b"Host" in body


async def test_localhost_host_is_accepted(page: Any) -> None:
    _, p = page
    status, _, _ = await request(p, "/api/state", host=f"localhost:{p.server.port}")
    assert status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_read_only(page: Any, method: str) -> None:
    _, p = page
    status, headers, _ = await request(p, "/api/state", method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD"


async def test_headers_forbid_remote_loads_and_leaking_the_token(page: Any) -> None:
    _, p = page
    for path in ("/", "/app.js", "/app.css", "/api/state", "/nope"):
        _, headers, _ = await request(p, path)
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp, path
        assert not re.search(r"https?:|\*|//", csp), f"CSP allows a remote source: {csp}"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"


async def test_page_weight_and_nothing_from_elsewhere(page: Any) -> None:
    """Everything the page loads comes from this server; the total stays under 150 KB."""
    _, p = page
    status, headers, html = await request(p, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    refs = re.findall(rb'(?:src|href)="([^"]+)"', html)
    assert refs, "the page references its script and style"
    total = len(html)
    for ref in refs:
        url = ref.decode()
        if url.startswith("#") or url.startswith("data:"):
            continue
        assert url.startswith("/") and not url.startswith("//"), f"not served by the node: {url}"
        assert p.server.token in url, f"asset URL without the token: {url}"
        status, _, body = await request(p, url.split("?")[0])
        assert status == 200, url
        total += len(body)
        assert not re.search(rb"https?://|url\(\s*['\"]?//|@import", body), f"{url} loads something remote"
    assert total <= PAGE_WEIGHT_MAX, f"page weight {total} B > {PAGE_WEIGHT_MAX} B"


async def test_state_json_has_the_whole_picture(page: Any) -> None:
    node, p = page
    await node.heartbeat(action="build", target="i-match", phase="tests", progress=40, note="going well")

    async def built() -> dict[str, Any]:
        status, headers, body = await request(p, "/api/state")
        assert status == 200 and headers["content-type"] == "application/json"
        return json.loads(body)  # type: ignore[no-any-return]

    state = await poll(built, lambda s: s["members"] and s["members"][0]["note"] == "going well")
    me = state["members"][0]
    assert (me["name"], me["state"], me["progress"], me["is_self"]) == ("solo", "alive", 40, True)
    assert state["upstream"]["connected"] is True
    assert (await poll(built, lambda s: s["board"] is not None))["board"] == []  # empty: the page says so
    assert state["node"] == {"name": "solo", "mesh": p.feed.mesh, "software": p.feed.software}


async def test_the_page_of_an_embedded_node_shows_its_steward_epoch(page: Any) -> None:
    # The page reads the node's MeshAPI, so `up --web` (the Node itself) shows the epoch as meshctl web does.
    node, p = page
    info = await poll(node.info, lambda i: i.epoch > 0)

    async def built() -> dict[str, Any]:
        _, _, body = await request(p, "/api/state")
        return json.loads(body)  # type: ignore[no-any-return]

    state = await poll(built, lambda s: s["stewards"]["epoch"] == info.epoch)
    assert state["stewards"]["members"] == [{"name": "solo", "state": "alive"}]


async def test_event_stream_sends_a_snapshot_then_each_change(page: Any) -> None:
    node, p = page
    async with sse(p) as events:
        first = await next_state(events)
        assert [m["name"] for m in first["members"]] == ["solo"]
        await node.heartbeat(note="first change")
        changed = await next_state(events, lambda s: s["members"][0]["note"] == "first change")
        assert changed["version"] > first["version"]
        assert any(a["text"].endswith("— first change") for a in changed["activity"])


async def test_event_streams_are_bounded_and_a_closed_page_frees_its_slot(page: Any) -> None:
    _, p = page
    streams = []
    try:
        for _ in range(server.MAX_STREAMS):
            streams.append(await open_sse(p))
        await poll(lambda: _count(p), lambda n: n == server.MAX_STREAMS)
        status, headers, _ = await request(p, "/events")
        assert status == 503 and "retry-after" in headers
        _, w = streams.pop()
        w.close()
        await poll(lambda: _count(p), lambda n: n == server.MAX_STREAMS - 1)
        streams.append(await open_sse(p))
        status, headers, _ = await request(p, "/events", method="HEAD")  # HEAD never opens a stream
        assert status == 404
    finally:
        for _, w in streams:
            w.close()


async def _count(p: LivePage) -> int:
    return p.server.streams


async def test_bad_requests_are_refused_without_harm(page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, p = page
    for raw, want in (
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / SPDY/9\r\nHost: x\r\n\r\n", 400),
        (b"GET /?token=%s HTTP/1.1\r\nX: %s\r\n\r\n" % (p.server.token.encode(), b"a" * 20000), 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", p.server.port)
        writer.write(raw)
        status, _, _ = parse(await asyncio.wait_for(reader.read(), 10))
        writer.close()
        assert status == want, raw[:40]
    # A client that never finishes its request is cut off, not kept forever.
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", p.server.port)
    writer.write(b"GET / HTTP/1.1\r\n")
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    # Still serving.
    status, _, _ = await request(p, "/api/state")
    assert status == 200


# ---------------------------------------------------------------------- helpers


async def poll(fn: Any, ok: Any, timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        got = await fn()
        if ok(got):
            return got
        if loop.time() > end:
            raise AssertionError(f"condition not met in time; last: {got!r}")
        await asyncio.sleep(0.02)


async def open_sse(p: LivePage) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", p.server.port)
    req = f"GET /events?token={p.server.token} HTTP/1.1\r\nHost: 127.0.0.1:{p.server.port}\r\n\r\n"
    writer.write(req.encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    return reader, writer


class sse:  # used as `async with sse(page) as events`
    def __init__(self, p: LivePage) -> None:
        self.p = p

    async def __aenter__(self) -> asyncio.StreamReader:
        self.reader, self.writer = await open_sse(self.p)
        return self.reader

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()


async def next_state(reader: asyncio.StreamReader, ok: Any = None, timeout: float = 10.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        block = await asyncio.wait_for(reader.readuntil(b"\n\n"), max(0.01, end - loop.time()))
        lines = block.decode().splitlines()
        if "event: state" in lines:
            data = json.loads("".join(x[len("data: ") :] for x in lines if x.startswith("data: ")))
            if ok is None or ok(data):
                return data  # type: ignore[no-any-return]
