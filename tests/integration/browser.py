"""Headless Chromium driven over the DevTools protocol, for tests that look at a page as a person would.

Chromium is Debian's package (`.ci/install-chromium` installs it); the protocol is a websocket, spoken with
the `websockets` package (a dev dependency: a websocket client by hand would be framing and masking code
that is not what these tests are about). `chromium_or_skip()` gives the reason when there is no browser.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--remote-debugging-port=0",
]  # fmt: skip


def chromium_or_skip() -> str:
    """The Chromium binary, or skip the test saying why (and how to get it)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    reason = "Chromium is not installed (run .ci/install-chromium, or apt-get install chromium, as root)"
    print(f"SKIP: {reason}")
    pytest.skip(reason)


class Page:
    """One browser tab over the DevTools protocol: navigate, evaluate, screenshot."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        await self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:  # events (none subscribed, but some arrive regardless) are skipped
            reply = json.loads(await asyncio.wait_for(self._ws.recv(), 30))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        r = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(r["data"]))


@contextlib.asynccontextmanager
async def chromium(profile: Path, width: int = 1400, height: int = 1000) -> AsyncIterator[Page]:
    """A fresh headless Chromium (its own profile dir) with one tab; killed on exit."""
    from websockets.asyncio.client import connect

    binary = chromium_or_skip()
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    proc = subprocess.Popen(  # noqa: ASYNC220 — a browser for the whole test, not a call to await
        [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        port = await _devtools_port(profile, proc)
        tab = await _first_tab(port)
        async with connect(tab["webSocketDebuggerUrl"], max_size=64 * 2**20) as ws:
            yield Page(ws)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def _devtools_port(profile: Path, proc: subprocess.Popen[bytes]) -> int:
    # Chromium writes the port it chose (for --remote-debugging-port=0) into this file once listening.
    f = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited during start-up (code {proc.returncode})")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(f.read_text().splitlines()[0])
        await asyncio.sleep(0.05)
    raise AssertionError("chromium did not open its DevTools port within 30 s")


async def _first_tab(port: int) -> dict[str, Any]:
    # The port file can appear a moment before the DevTools HTTP endpoint answers.
    deadline = time.monotonic() + 10
    while True:
        try:
            targets = json.loads(await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/json/list"))
            return next(t for t in targets if t.get("type") == "page")  # type: ignore[no-any-return]
        except (OSError, StopIteration):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()  # type: ignore[no-any-return]


async def until_page(page: Page, expression: str, ok: Any, timeout: float, what: str) -> Any:
    """Evaluate `expression` until `ok(value)` holds (polling the DOM; never a sleep as a wait).

    A null value means "not there yet" (the page is still loading) and is never passed to `ok`.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await page.evaluate(expression)
        if last is not None and ok(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; page showed: {last!r}")
        await asyncio.sleep(0.05)
