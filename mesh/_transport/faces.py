"""The node's local faces — its control socket (gRPC) and its hook wire — bound when the node starts; the
code that serves each loads when its first client comes.

Most nodes are never asked anything on their local sockets (a mesh of 12 sessions' nodes whose agents run
no hooks, whose `meshctl` runs all go to one node), yet the servers' modules (`mesh._transport.control`
with `mesh._transport.api_codec` and `mesh.api`; `mesh._transport.hookwire` with `mesh.briefing`,
`mesh.pathclaims` and `mesh._transport.wirecodec`) would stay in every node's memory for its whole life
(issue 15: ~0.4 MB of a node's Python heap). So both sockets are bound at start — node.json names them at
once, and a client that comes early is served, never refused — and each face's module comes in, once,
with its first call (a few ms, then nothing more on any later call).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mesh import limits
from mesh._transport import guard
from mesh._transport.wiresock import small_reads

if TYPE_CHECKING:
    from mesh._transport.hookwire import HookWire
    from mesh.api import MeshAPI


async def serve_control(api: MeshAPI, path: Path) -> grpc.aio.Server:
    """Start the control server on a unix socket that only this user can use (the servicer loads at the
    first call: `_LazyControl`)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", limits.MAX_MESSAGE_BYTES),
        ],
        interceptors=[guard.SafeDecode()],
        maximum_concurrent_rpcs=limits.CONTROL_MAX_CONCURRENT_RPCS,
    )
    server.add_generic_rpc_handlers((_LazyControl(api),))
    # umask first, so the socket is never briefly open to others between bind and chmod.
    old = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix:{path}")
        await server.start()
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    await asyncio.sleep(0)
    return server


class _LazyControl(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """The control service's methods, found by name in the handlers `mesh._transport.control` makes at the
    first call (the same handlers the generated `add_ControlServicer_to_server` registers)."""

    def __init__(self, api: MeshAPI) -> None:
        self.api = api
        self._handler: grpc.GenericRpcHandler[Any, Any] | None = None

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if self._handler is None:
            from mesh._transport.control import control_handler

            self._handler = control_handler(self.api)
        return self._handler.service(handler_call_details)


class HookListener:
    """The hook wire's unix socket (0600) for one node; its connections are served by a `HookWire` made
    at the first one."""

    def __init__(self, api: MeshAPI, path: Path) -> None:
        self.api = api
        self.path = path
        self._server: asyncio.Server | None = None
        self._wire: HookWire | None = None
        self._making: asyncio.Lock | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)  # never briefly open to others between bind and chmod
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=limits.HOOK_LINE_MAX
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def wire(self) -> HookWire:
        """The wire serving this socket, made at the first call (two first connections make one)."""
        if self._wire is None:
            if self._making is None:
                self._making = asyncio.Lock()
            async with self._making:
                if self._wire is None:
                    from mesh._transport.hookwire import HookWire

                    self._wire = HookWire(self.api, await self.api.info(), self.path)
        return self._wire

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        small_reads(writer.transport)  # a lone send is one read here (see wiresock.small_reads)
        try:
            wire = await self.wire()
        except BaseException:
            writer.close()
            raise
        await wire.serve(reader, writer)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._wire is not None:
            await self._wire.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def serve_hookwire(api: MeshAPI, path: Path) -> HookListener:
    """Start the hook wire for a node, served on its API (the node's own `Node`)."""
    listener = HookListener(api, path)
    await listener.start()
    return listener
