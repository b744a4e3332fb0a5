"""The control API servicer (unix socket, 0600): what meshctl, connect() and tools use."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._transport import codec
from mesh._transport.codec import event_to_pb, view_to_pb
from mesh._transport.status import streaming, unary
from mesh._version import __version__
from mesh.errors import InvalidInput

if TYPE_CHECKING:
    from mesh._runtime import NodeRuntime

Ctx = grpc.aio.ServicerContext[Any, Any]


class ControlServicer(pbg.ControlServicer):
    """Serves one node's control API."""

    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt

    @unary
    async def Info(self, request: pb.Empty, context: Ctx) -> pb.NodeInfo:
        rt = self.rt
        assert rt.me is not None
        return pb.NodeInfo(
            node=codec.peer_to_pb(rt.me),
            mesh=rt.config.mesh,
            state_dir=str(rt.state_dir),
            pid=os.getpid(),
            version=__version__,
        )

    @unary
    async def Members(self, request: pb.Empty, context: Ctx) -> pb.MemberList:
        return pb.MemberList(members=[view_to_pb(v) for v in self.rt.members()])

    @unary
    async def SetStatus(self, request: pb.StatusUpdate, context: Ctx) -> pb.Status:
        changes: dict[str, Any] = {}
        for f in ("action", "target", "phase", "note", "role"):
            if request.HasField(f):
                changes[f] = getattr(request, f)
        if request.HasField("progress"):
            if request.progress > 100:
                raise InvalidInput(f"progress must be a whole number from 0 to 100, not {request.progress}")
            changes["progress"] = request.progress
        record = self.rt.set_status(**changes)
        return codec.status_to_pb(record)

    @streaming
    async def Watch(self, request: pb.WatchRequest, context: Ctx) -> AsyncIterator[pb.Event]:
        async for ev in self.rt.watch(snapshot=request.snapshot):
            yield event_to_pb(ev)

    @unary
    async def Shutdown(self, request: pb.ShutdownRequest, context: Ctx) -> pb.Empty:
        self.rt.request_stop(request.reason or "meshctl down")
        return pb.Empty()


async def serve_control(rt: NodeRuntime, path: Path) -> grpc.aio.Server:
    """Start the control server on a unix socket that only this user can use."""
    server = grpc.aio.server()
    pbg.add_ControlServicer_to_server(ControlServicer(rt), server)
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
