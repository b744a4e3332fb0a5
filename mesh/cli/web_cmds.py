"""meshctl web: the live page of the mesh, served by a process next to this session's node."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from typing import Any

from mesh.cli.main import common_parser, run
from mesh.errors import InvalidInput


def register(sub: Any) -> None:
    w = sub.add_parser(
        "web",
        parents=[common_parser()],
        help="a live page of the mesh in your browser (127.0.0.1 only)",
        description="Serve a live, read-only page of the whole mesh as this session's node sees it, on "
        "127.0.0.1. The first line printed is the page's URL (with a token made for this start); "
        "runs until Ctrl-C.",
    )
    w.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free port)")
    w.add_argument("--no-open", action="store_true", help="do not open a browser")
    w.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port must be 0-65535, not {args.port}")
    try:
        return run(_web(args))
    except KeyboardInterrupt:
        return 0


async def _web(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mesh.paths import find_node
    from mesh.web import LivePage, client_connector

    # Resolve the node once (a clear error now if there is none); afterwards the page follows it by name,
    # through restarts.
    node = find_node(args.home, args.mesh if args.mesh_explicit else None, args.node)
    connector = client_connector(Path(args.home), node.mesh, node.name)
    page = LivePage(connector, node_name=node.name, mesh=node.mesh, port=args.port)
    try:
        url = await page.start()
    except OSError as e:
        raise InvalidInput(f"cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}") from None
    try:
        print(url, flush=True)
        where = f"node {node.name} (mesh {node.mesh})"
        print(f"serving the live page of {where}; Ctrl-C to stop", file=sys.stderr, flush=True)
        if not args.no_open:
            open_browser(url)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGHUP):  # Ctrl-C arrives as KeyboardInterrupt
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await page.close()
    return 0


def open_browser(url: str) -> None:
    """Open the page with the standard library's webbrowser, off the event loop (it may block)."""
    import webbrowser

    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
