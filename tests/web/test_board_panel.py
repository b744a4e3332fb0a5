"""The board panel: the live page draws the node's real board (the API's `board()`), by priority, with who
claimed what, and redraws when the board changes (a board event in the watch stream).

The page is drawn in headless Chromium when it is installed (the JSON is checked either way).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from mesh import Node, NodeConfig
from mesh.web import LivePage, node_connector


async def test_board_panel_shows_tasks_by_priority(tmp_path: Path) -> None:
    cfg = NodeConfig.fast(
        "solo", home=tmp_path, mesh="web-" + uuid.uuid4().hex[:8], mdns=False, join_window=0.0
    )
    async with Node(config=cfg) as node:
        async with LivePage(node_connector(node), node_name="solo", mesh=cfg.mesh) as page:
            page.feed.page_opened()
            await _until(page, lambda s: s["board"] == [])  # the board is empty, and the page says so
            await node.task_add("write the tour", priority="P2", role="docs")
            urgent = await node.task_add("fix the flaky claim test", priority="P0", role="i-match")
            deadline = time.monotonic() + 10
            while node._rt.claims.core.config is None:  # genesis: the first steward config
                assert time.monotonic() < deadline, "no steward config"
                await asyncio.sleep(0.02)
            await node.task_claim(urgent.id)
            state = await _until(page, lambda s: len(s["board"]) == 2 and s["board"][0]["holder"])
            tasks = state["board"]
            assert [(t["priority"], t["title"], t["state"]) for t in tasks] == [
                ("P0", "fix the flaky claim test", "claimed"),
                ("P2", "write the tour", "open"),
            ]
            assert tasks[0]["id"] == urgent.id and tasks[0]["holder"] == "solo"
            assert any(a["kind"] == "board" and "fix the flaky" in a["text"] for a in state["activity"])
            await _in_chromium(page, tmp_path)


async def _until(page: LivePage, ok: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = json.loads(page.feed.state_json())
        if ok(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"not shown in time: {state}")
        await asyncio.sleep(0.02)


async def _in_chromium(page: LivePage, tmp_path: Path) -> None:
    from tests.integration.browser import chromium, chromium_or_skip, until_page

    try:
        chromium_or_skip()
    except pytest.skip.Exception:
        return  # the JSON above is the panel's contract; the drawing is checked where Chromium is
    async with chromium(tmp_path / "profile") as tab:
        await tab.call("Page.navigate", url=page.url)
        shown = "document.querySelector('#board .tasks') ? document.getElementById('board').innerText : null"
        text = await until_page(tab, shown, lambda t: "fix the flaky claim test" in t, 10, "the board panel")
        assert text.index("P0") < text.index("fix the flaky claim test") < text.index("P2")
        assert "by solo" in text and "No board yet" not in text
