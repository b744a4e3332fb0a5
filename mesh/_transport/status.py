"""MeshError <-> gRPC status, at one place on each side of every API."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mesh.errors import ERROR_CLASS_KEY, ClaimDenied, MeshError, NodeUnavailable, from_status

HOLDER_KEY = "mesh-holder"
EXPIRES_KEY = "mesh-expires-at"

log = logging.getLogger("mesh.rpc")

T = TypeVar("T")


def _trailers(e: MeshError) -> tuple[tuple[str, str], ...]:
    md: list[tuple[str, str]] = [(ERROR_CLASS_KEY, type(e).__name__)]
    if isinstance(e, ClaimDenied):
        md.append((HOLDER_KEY, e.holder))
        if e.expires_at:
            md.append((EXPIRES_KEY, repr(e.expires_at)))
    return tuple(md)


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Servicer decorator: a MeshError becomes its gRPC status (and class name, in trailing metadata)."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await fn(self, request, context)
        except MeshError as e:
            context.set_trailing_metadata(_trailers(e))
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
            context.set_trailing_metadata(_trailers(e))
            await context.abort(e.grpc_status, str(e))

    return wrapper


def to_mesh_error(e: grpc.aio.AioRpcError) -> MeshError:
    """The MeshError a server raised (or NodeUnavailable when the node could not be reached)."""
    items: Any = e.trailing_metadata() or ()
    md = {str(k): str(v) for k, v in items}
    cls_name = md.get(ERROR_CLASS_KEY)
    if cls_name == "ClaimDenied":
        try:
            expires = float(md[EXPIRES_KEY]) if EXPIRES_KEY in md else None
        except ValueError:
            expires = None
        return ClaimDenied(e.details() or "", holder=md.get(HOLDER_KEY, ""), expires_at=expires)
    if cls_name is None and e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return NodeUnavailable(f"node unavailable: {e.details()}")
    if cls_name is None and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return NodeUnavailable("node did not answer in time")
    return from_status(e.code(), e.details() or e.code().name, cls_name)
