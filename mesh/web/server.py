"""A small read-only HTTP/1.1 server on 127.0.0.1 for the live page: static files, JSON, Server-Sent Events.

Standard library only (asyncio streams): the page needs GET, a few fixed routes and one event stream, which
is less code than wiring a framework, and adds nothing to install for every session's node.

Every request must carry the per-start token (`?token=…`, compared in constant time) and a Host header naming
this very listener (`127.0.0.1:PORT` or `localhost:PORT`): a web page elsewhere that rebinds its DNS name to
127.0.0.1 sends its own Host and is refused, and without the token nothing is served at all. Nothing here
changes state: anything but GET/HEAD is 405. Every response forbids loading anything from elsewhere (CSP).

Bounded: at most `MAX_CONNECTIONS` connections and `MAX_STREAMS` event streams (503 beyond), request heads
of at most `HEAD_MAX` bytes read within `HEAD_TIMEOUT`; a stream whose reader stops reading for
`SLOW_CLIENT_TIMEOUT` is closed (its page reconnects and gets a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from mesh.web.feed import Feed

log = logging.getLogger("mesh.web")

HOST = "127.0.0.1"
MAX_CONNECTIONS = 64
MAX_STREAMS = 16
HEAD_MAX = 16 * 1024
HEAD_TIMEOUT = 5.0
SLOW_CLIENT_TIMEOUT = 10.0
KEEPALIVE = 15.0  # an SSE comment this often: proxies and dead peers show up as write errors
RETRY_MS = 1000  # EventSource reconnects this soon after the stream breaks

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # the token is in the URL: never hand it to anyone
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
_STATIC = {
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 431: "Request Header Fields Too Large", 503: "Service Unavailable",
}  # fmt: skip


def _asset(name: str) -> bytes:
    return resources.files("mesh.web").joinpath("static", name).read_bytes()


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class _BadRequest(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class PageServer:
    """Serves one `Feed` to browsers on 127.0.0.1; `url` carries the token."""

    def __init__(self, feed: Feed, port: int = 0, token: str | None = None) -> None:
        self.feed = feed
        self.token = token or secrets.token_urlsafe(24)
        self._want_port = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.streams = 0
        self._index = _asset("index.html")
        self._files = {path: (_asset(name), ctype) for path, (name, ctype) in _STATIC.items()}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.token}"

    async def start(self) -> str:
        """Listen (loopback only); returns the page's URL."""
        self._server = await asyncio.start_server(self._accept, HOST, self._want_port, limit=HEAD_MAX)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        for t in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    # ------------------------------------------------------------------ connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._conns) >= MAX_CONNECTIONS:
            await self._respond(writer, 503, b"too many connections\n", extra=(("Retry-After", "2"),))
            return
        self._conns.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                req = await _read_request(reader)
        except _BadRequest as e:
            await self._respond(writer, e.status, f"{e}\n".encode())
            await _linger(reader, writer)
            return
        status, why = self._check(req)
        if status:
            extra = (("Allow", "GET, HEAD"),) if status == 405 else ()
            await self._respond(writer, status, f"{why}\n".encode(), extra=extra, head=req.method == "HEAD")
            return
        head = req.method == "HEAD"
        if req.path == "/":
            body = self._index.replace(b"{{TOKEN}}", self.token.encode())
            await self._respond(writer, 200, body, "text/html; charset=utf-8", head=head)
        elif req.path in self._files:
            data, ctype = self._files[req.path]
            await self._respond(writer, 200, data, ctype, head=head)
        elif req.path == "/api/state":
            await self._respond(writer, 200, self.feed.state_json(), "application/json", head=head)
        elif req.path == "/events" and not head:
            await self._stream(reader, writer)
        else:
            await self._respond(writer, 404, b"not found\n", head=head)

    def _check(self, req: _Request) -> tuple[int, str]:
        """(status, reason) refusing the request, or (0, "") to serve it."""
        host = req.headers.get("host", "")
        if host not in (f"{HOST}:{self.port}", f"localhost:{self.port}"):
            return 403, "this page is served only as http://127.0.0.1:PORT (Host header refused)"
        if req.method not in ("GET", "HEAD"):
            return 405, "read-only: only GET and HEAD"
        given = req.query.get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return 401, "a token is required: open the URL that `meshctl web` printed"
        return 0, ""

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        ctype: str = "text/plain; charset=utf-8",
        *,
        extra: tuple[tuple[str, str], ...] = (),
        head: bool = False,
    ) -> None:
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body))), ("Connection", "close")]
        writer.write(_head(status, [*headers, *_COMMON_HEADERS, *extra]) + (b"" if head else body))
        async with asyncio.timeout(SLOW_CLIENT_TIMEOUT):
            await writer.drain()

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server-Sent Events: the whole picture now, then again after every change (coalesced)."""
        if self.streams >= MAX_STREAMS:
            await self._respond(writer, 503, b"too many open pages\n", extra=(("Retry-After", "5"),))
            return
        self.streams += 1
        self.feed.page_opened()
        # The browser sends nothing more on this connection: a read that ends means the page is gone, and
        # its slot (and the feed's polling, if it was the last page) is freed at once, not at the next write.
        gone = asyncio.ensure_future(reader.read(1))
        try:
            headers = [("Content-Type", "text/event-stream"), ("Connection", "keep-alive"),
                       *_COMMON_HEADERS]  # fmt: skip
            writer.write(_head(200, headers) + f"retry: {RETRY_MS}\n\n".encode())
            sent = -1
            while True:
                change = asyncio.ensure_future(self.feed.wait_changed(sent, KEEPALIVE))
                await asyncio.wait((gone, change), return_when=asyncio.FIRST_COMPLETED)
                if gone.done():
                    change.cancel()
                    return
                version = change.result()
                if version != sent:
                    writer.write(b"event: state\ndata: " + self.feed.state_json() + b"\n\n")
                    sent = version
                else:
                    writer.write(b": keep-alive\n\n")
                # A page that stops reading (a frozen tab) is dropped instead of buffering without bound;
                # a page that only reads slowly skips versions, since each message is the whole picture.
                async with asyncio.timeout(SLOW_CLIENT_TIMEOUT):
                    await writer.drain()
        finally:
            gone.cancel()
            self.streams -= 1
            self.feed.page_closed()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After refusing a request we did not read in full: say so, then read a little of the rest.

    Closing with unread input makes the kernel send a reset, which can destroy the refusal before the
    client reads it; reading (at most 64 KiB, for at most a second) lets the answer arrive intact.
    """
    with contextlib.suppress(Exception):
        writer.write_eof()
    budget = 64 * 1024
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            while budget > 0 and (chunk := await reader.read(min(budget, 16 * 1024))):
                budget -= len(chunk)


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_request(reader: asyncio.StreamReader) -> _Request:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, "request head too large") from None
    try:
        text = raw.decode("latin-1")
        line, *header_lines = text[:-4].split("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        raise _BadRequest(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise _BadRequest(400, "HTTP/1.x only")
    headers: dict[str, str] = {}
    for h in header_lines:
        name, sep, value = h.partition(":")
        if not sep:
            raise _BadRequest(400, "malformed header")
        key = name.strip().lower()
        if key == "host" and key in headers:
            raise _BadRequest(400, "several Host headers")
        headers[key] = value.strip()
    parts = urlsplit(target)
    return _Request(method, parts.path, parse_qs(parts.query), headers)
