"""meshctl mcp: serve this session's mesh tools to a coding agent over MCP (stdio)."""

from __future__ import annotations

import argparse
from typing import Any

from mesh.cli.main import common_parser, run


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mcp",
        parents=[common_parser()],
        help="serve the mesh as MCP tools on stdin/stdout (for a coding agent)",
        description="Serve MCP over stdio: status, set_status, claim, release, send, inbox. The session is "
        "the node named by --node / $MESH_NODE, else the node watching this agent, else the only one.",
    )
    p.set_defaults(func=cmd_mcp)


def cmd_mcp(args: argparse.Namespace) -> int:
    import os

    from mesh.mcp_server import serve_stdio

    if args.node:
        os.environ["MESH_NODE"] = args.node
    return run(_serve(args, serve_stdio))


async def _serve(args: argparse.Namespace, serve: Any) -> int:
    from pathlib import Path

    await serve(Path(args.home), args.mesh if args.mesh_explicit else None)
    return 0
