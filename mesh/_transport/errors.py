"""MeshError <-> gRPC status: the one table, and the one place on each side of every API that uses it.

A server-side MeshError becomes its status code plus its exact class name (and a denied claim's holder) in
trailing metadata; the client rebuilds the same class from them. A gRPC error with no class name (the node
was unreachable, the deadline passed) becomes NodeUnavailable or the class its status code stands for.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from mesh import limits
from mesh.core.errors import (
    AmbiguousNode,
    AuthError,
    ClaimDenied,
    ClaimError,
    ClaimLost,
    ConfigError,
    InvalidInput,
    LimitExceeded,
    MeshError,
    MessageError,
    NameTaken,
    NodeNotFound,
    NodeUnavailable,
    NoQuorum,
    PermissionDenied,
    ProtocolError,
    StateDamaged,
    StorageError,
    StorageFull,
    UnknownId,
    UnknownRecipient,
    error_classes,
)

S = grpc.StatusCode

# How each class travels; a subclass not listed travels as its nearest listed base.
STATUS: dict[type[MeshError], grpc.StatusCode] = {
    MeshError: S.UNKNOWN,
    ConfigError: S.INVALID_ARGUMENT,  # and InvalidInput
    NodeNotFound: S.NOT_FOUND,
    UnknownId: S.NOT_FOUND,
    AmbiguousNode: S.FAILED_PRECONDITION,
    NameTaken: S.ALREADY_EXISTS,
    NodeUnavailable: S.UNAVAILABLE,
    ClaimError: S.FAILED_PRECONDITION,  # and ClaimDenied
    ClaimLost: S.ABORTED,
    NoQuorum: S.UNAVAILABLE,
    MessageError: S.FAILED_PRECONDITION,
    UnknownRecipient: S.NOT_FOUND,
    LimitExceeded: S.RESOURCE_EXHAUSTED,
    AuthError: S.UNAUTHENTICATED,
    PermissionDenied: S.PERMISSION_DENIED,
    ProtocolError: S.INVALID_ARGUMENT,
    StorageError: S.FAILED_PRECONDITION,
    StorageFull: S.RESOURCE_EXHAUSTED,
    StateDamaged: S.DATA_LOSS,
}

# The class a bare status code stands for, when the sender named none.
_BY_STATUS: dict[grpc.StatusCode, type[MeshError]] = {
    S.INVALID_ARGUMENT: InvalidInput,
    S.NOT_FOUND: NodeNotFound,
    S.ALREADY_EXISTS: NameTaken,
    S.UNAVAILABLE: NodeUnavailable,
    S.RESOURCE_EXHAUSTED: LimitExceeded,
    S.UNAUTHENTICATED: AuthError,
    S.PERMISSION_DENIED: PermissionDenied,
    S.ABORTED: ClaimLost,
    S.FAILED_PRECONDITION: MeshError,
    S.DATA_LOSS: StateDamaged,
}

# Errors whose exact class must survive the trip (the status code alone is ambiguous): sent in metadata.
ERROR_CLASS_KEY = "mesh-error"
HOLDER_KEY = "mesh-holder"
HOLDER_ID_KEY = "mesh-holder-id"
EXPIRES_KEY = "mesh-expires-at"

log = logging.getLogger("mesh.rpc")

T = TypeVar("T")


def status_of(e: MeshError) -> grpc.StatusCode:
    """The gRPC status `e` travels as."""
    return next(STATUS[c] for c in type(e).__mro__ if c in STATUS)


def from_status(code: grpc.StatusCode, details: str, class_name: str | None = None) -> MeshError:
    """Rebuild the MeshError a server raised, from its status (and class name, if it sent one)."""
    cls = error_classes().get(class_name or "") or _BY_STATUS.get(code, MeshError)
    # Built from the message alone: classes whose constructor takes more (a core's InvalidField(field,
    # message), UnknownId(kind, given)) keep their class defaults for what did not travel.
    err = cls.__new__(cls)
    MeshError.__init__(err, details)
    return err


def _trailers(e: MeshError) -> tuple[tuple[str, str], ...]:
    md: list[tuple[str, str]] = [(ERROR_CLASS_KEY, type(e).__name__)]
    if isinstance(e, ClaimDenied):
        md.append((HOLDER_KEY, e.holder))
        if e.holder_id:
            md.append((HOLDER_ID_KEY, e.holder_id))
        if e.expires_at:
            md.append((EXPIRES_KEY, repr(e.expires_at)))
    return tuple(md)


async def abort(context: grpc.aio.ServicerContext[Any, Any], e: MeshError) -> None:
    """End the RPC with `e` as its status (and class, in trailing metadata)."""
    context.set_trailing_metadata(_trailers(e))
    await context.abort(status_of(e), str(e))


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Servicer decorator: a MeshError becomes its gRPC status (and class name, in trailing metadata)."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await fn(self, request, context)
        except MeshError as e:
            await abort(context, e)
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
            await abort(context, e)

    return wrapper


# Failures after which the caller cannot know whether the node carried the call out (the stream broke, the
# answer was lost): a call is retried on them only with an idempotency key (Client.send does).
_AMBIGUOUS = {S.UNAVAILABLE, S.UNKNOWN, S.CANCELLED, S.DEADLINE_EXCEEDED, S.INTERNAL}


def ambiguous(e: grpc.aio.AioRpcError) -> bool:
    """True if `e` leaves open whether the node did what was asked (no MeshError came back, only a fault)."""
    items: Any = e.trailing_metadata() or ()
    return e.code() in _AMBIGUOUS and not any(str(k) == ERROR_CLASS_KEY for k, _ in items)


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
        return ClaimDenied(
            e.details() or "",
            holder=md.get(HOLDER_KEY, ""),
            expires_at=expires,
            holder_id=md.get(HOLDER_ID_KEY, ""),
        )
    if cls_name is None and e.code() in (S.UNAVAILABLE, S.CANCELLED):
        return NodeUnavailable(f"node unavailable: {e.details()}")
    if cls_name is None and e.code() == S.DEADLINE_EXCEEDED:
        return NodeUnavailable("node did not answer in time")
    if cls_name is None and e.code() == S.RESOURCE_EXHAUSTED and "larger than max" in (e.details() or ""):
        # gRPC's own size check ("Received message larger than max (N vs. M)") fired before any mesh code.
        return LimitExceeded(
            f"the request is larger than the {limits.MAX_MESSAGE_BYTES // 2**20} MiB a node accepts in one "
            "call; send less at once (a message body is at most 64 KiB)"
        )
    return from_status(e.code(), e.details() or e.code().name, cls_name)
