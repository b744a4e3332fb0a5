"""MeshError <-> gRPC status, at one place on each side of every API."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mesh.errors import ERROR_CLASS_KEY, MeshError, NodeUnavailable, from_status

log = logging.getLogger("mesh.rpc")

T = TypeVar("T")


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Servicer decorator: a MeshError becomes its gRPC status (and class name, in trailing metadata)."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await fn(self, request, context)
        except MeshError as e:
            context.set_trailing_metadata(((ERROR_CLASS_KEY, type(e).__name__),))
            await context.abort(e.grpc_status, str(e))
            raise  # unreachable: abort raises

    return wrapper


def streaming(fn: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    """The same for server-streaming methods."""

    @functools.wraps(fn)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[T]:
        try:
            async for item in fn(self, request, context):
                yield item
        except MeshError as e:
            context.set_trailing_metadata(((ERROR_CLASS_KEY, type(e).__name__),))
            await context.abort(e.grpc_status, str(e))

    return wrapper


def to_mesh_error(e: grpc.aio.AioRpcError) -> MeshError:
    """The MeshError a server raised (or NodeUnavailable when the node could not be reached)."""
    cls_name = None
    items: Any = e.trailing_metadata() or ()
    for key, value in items:
        if key == ERROR_CLASS_KEY:
            cls_name = str(value)
    if cls_name is None and e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return NodeUnavailable(f"node unavailable: {e.details()}")
    if cls_name is None and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return NodeUnavailable("node did not answer in time")
    return from_status(e.code(), e.details() or e.code().name, cls_name)
