"""The live page: one node's view of the whole mesh, for people, in a browser on 127.0.0.1.

A face of the one API: the page reads a `MeshAPI` (a `Client` of a running node for `meshctl web`, the
`Node` itself for `up --web`) and nothing below it.

    async with LivePage(client_connector(home, mesh, "session-1"), node_name="session-1", mesh=mesh) as page:
        print(page.url)          # http://127.0.0.1:PORT/?token=…
        ...                      # serves until the block ends

`feed.py` keeps the picture from one upstream watch; `server.py` serves it (static files, JSON, Server-Sent
Events) read-only, behind a per-start token and a Host check; `static/` is the page itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from mesh.api import MeshAPI
from mesh.web.feed import Connector, Feed
from mesh.web.server import PageServer

if TYPE_CHECKING:
    from mesh.node import Node

__all__ = ["Connector", "Feed", "LivePage", "PageServer", "client_connector", "node_connector", "serve_node"]


def client_connector(home: Path, mesh: str | None, name: str) -> Connector:
    """For `meshctl web`: the running node `name`, found afresh at every (re)connect (a restart moves it)."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[MeshAPI]:
        from mesh.client import Client
        from mesh.paths import find_node

        async with Client(find_node(home, mesh, name)) as client:
            yield client

    return connect


def node_connector(node: MeshAPI) -> Connector:
    """For a page served by the node process itself (`up --web`, embedders): the `Node` object."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[MeshAPI]:
        yield node

    return connect


class LivePage:
    """A `Feed` and the `PageServer` in front of it: `start()` returns the URL; `close()` stops both."""

    def __init__(self, connect: Connector, *, node_name: str, mesh: str, port: int = 0) -> None:
        from mesh._version import __version__

        self.feed = Feed(connect, node_name=node_name, mesh=mesh, version=__version__)
        self.server = PageServer(self.feed, port=port)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> str:
        """Listen on 127.0.0.1 and start following the node; returns the page's URL (with its token)."""
        url = await self.server.start()
        self._task = asyncio.create_task(self.feed.run(), name="web-feed")
        return url

    async def close(self) -> None:
        await self.server.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> LivePage:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def serve_node(node: Node, port: int | None) -> LivePage | None:
    """`up --web [PORT]`: the page served by the node process itself (None when not asked for).

    Call it before `node.start()`: the port is bound at once (a busy one fails `up` before the node joins),
    and the page follows the node as soon as it is up.
    """
    if port is None:
        return None
    from mesh.errors import ConfigError

    page = LivePage(node_connector(node), node_name=node.name, mesh=node.config.mesh, port=port)
    try:
        await page.start()
    except OSError as e:
        raise ConfigError(f"--web: cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
    return page
