"""The board panel, ready for issue 12: a source with a `board()` verb fills it; without one it says so.

The API has no board verb yet, so the source here is a real embedded node plus `board()` answering with a
view of the real board core (`mesh.core.board`) — the shape the API will hand out. The page is drawn in
headless Chromium when it is installed (the JSON is checked either way).
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
from mesh.core.board import Board, BoardView
from mesh.web import LivePage, node_connector


class WithBoard:
    """A node's verbs plus `board()` (what issue 12 adds to the API)."""

    def __init__(self, node: Node, view: BoardView) -> None:
        self._node, self._view = node, view

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    async def board(self) -> BoardView:
        return self._view


def board_view() -> tuple[BoardView, str]:
    b = Board("0aaaaaaa")
    now = int(time.time() * 1000)
    b.add_task(now, "write the tour", priority="P2", role="docs")
    urgent = b.add_task(now + 1, "fix the flaky claim test", priority="P0", role="i-match")
    return b.view({urgent.id: ("session-2", time.time() + 3600)}), urgent.id


async def test_board_panel_shows_tasks_by_priority(tmp_path: Path) -> None:
    view, urgent = board_view()
    cfg = NodeConfig.fast(
        "solo", home=tmp_path, mesh="web-" + uuid.uuid4().hex[:8], mdns=False, join_window=0.0
    )
    async with Node(config=cfg) as node:
        async with LivePage(node_connector(WithBoard(node, view)), node_name="solo", mesh=cfg.mesh) as page:
            page.feed.page_opened()  # the board is polled while a page is open
            state = await _until(page, lambda s: s["board"])
            tasks = state["board"]
            assert [(t["priority"], t["title"], t["state"]) for t in tasks] == [
                ("P0", "fix the flaky claim test", "claimed"),
                ("P2", "write the tour", "open"),
            ]
            assert tasks[0]["id"] == urgent and tasks[0]["holder"] == "session-2"
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
        assert "by session-2" in text and "No board yet" not in text
