"""Edge guards for both gRPC servers: undecodable requests, unexpected errors, and per-peer budgets.

gRPC parses a request before any servicer code runs; a message that is not valid protobuf (bad wire format,
bad UTF-8 in a string field) would otherwise surface as an exception inside gRPC, which answers UNKNOWN and
logs a traceback per request (a log flood anyone who can connect could cause). `SafeDecode` swaps every
method's deserializer for one that hands the servicer an `Undecodable` marker instead; unary methods are
answered INVALID_ARGUMENT here, streaming readers (Peer.Link) check for the marker themselves.

The budgets (`TokenBucket`, `PeerAdmission`) take `now` as an argument, like the cores.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from mesh import limits
from mesh.core.ratelimit import TokenBucket
from mesh.core.values import value
from mesh.errors import LimitExceeded

log = logging.getLogger("mesh.rpc")


@value
class Undecodable:
    """What a reader gets instead of a request that is not a valid protobuf message of the expected type."""

    reason: str


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except (DecodeError, ValueError, TypeError, UnicodeDecodeError) as e:
            return Undecodable(str(e)[:200])

    return decode


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], method: str, bad: Undecodable) -> None:
    log.warning("refused %s from %s: undecodable request (%s)", method, context.peer(), bad.reason)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable request: {bad.reason}")


def _unexpected(method: str, e: Exception) -> None:
    # One line, not a traceback per request (a hostile client could repeat it); the trace is kept at debug.
    log.error("internal error in %s: %s: %s", method, type(e).__name__, str(e)[:200])
    log.debug("internal error in %s", method, exc_info=e)


class SafeDecode(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Server interceptor: undecodable requests become INVALID_ARGUMENT, unexpected errors one log line."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler: Any = await continuation(handler_call_details)
        if handler is None:
            return None  # type: ignore[return-value]  # unknown method: gRPC answers UNIMPLEMENTED
        method = str(getattr(handler_call_details, "method", "?"))
        changes: dict[str, Any] = {"request_deserializer": _safe(handler.request_deserializer)}
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            fn = getattr(handler, kind)
            if fn is None:
                continue
            if inspect.isasyncgenfunction(fn):
                changes[kind] = _wrap_generator(fn, method, unary_request=kind.startswith("unary"))
            else:
                changes[kind] = _wrap_coroutine(fn, method, unary_request=kind.startswith("unary"))
        return handler._replace(**changes)  # type: ignore[no-any-return]


# Streaming requests: the servicer reads Undecodable markers itself (it knows how to refuse mid-stream); here
# only a unary request is checked before the servicer runs.


def _wrap_coroutine(
    fn: Callable[..., Awaitable[Any]], method: str, unary_request: bool
) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if unary_request and isinstance(request, Undecodable):
            await _refuse(context, method, request)
        try:
            return await fn(request, context)
        except grpc.aio.BaseError:  # abort() raises this: the status is already set
            raise
        except Exception as e:
            _unexpected(method, e)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (see the node's log)")

    return handle


def _wrap_generator(
    fn: Callable[..., AsyncIterator[Any]], method: str, unary_request: bool
) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if unary_request and isinstance(request, Undecodable):
            await _refuse(context, method, request)
        try:
            async for item in fn(request, context):
                yield item
        except grpc.aio.BaseError:
            raise
        except Exception as e:
            _unexpected(method, e)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (see the node's log)")

    return handle


# ------------------------------------------------------------------------------------------------ budgets


class FrameBudget:
    """What one link may deliver: frames and bytes per second (token buckets)."""

    def __init__(self, now: float) -> None:
        self.frames = TokenBucket(limits.LINK_FRAME_RATE, limits.LINK_FRAME_BURST, now)
        self.bytes = TokenBucket(limits.LINK_BYTE_RATE, limits.LINK_BYTE_BURST, now)

    def charge(self, size: int, now: float, frames: int = 1) -> None:
        """Account for `frames` frames (a batch's) of `size` bytes; LimitExceeded when the link is over its
        budget."""
        if not self.frames.take(now, frames):
            raise LimitExceeded(f"more than {limits.LINK_FRAME_RATE:g} frames/s on one link")
        if not self.bytes.take(now, size):
            raise LimitExceeded(f"more than {limits.LINK_BYTE_RATE // 1024 // 1024} MiB/s on one link")


class PeerAdmission:
    """Inbound Link streams per peer identity: how many are open, and how fast new ones come."""

    _PRUNE_AT = 1024  # identities remembered before idle ones are forgotten

    def __init__(self) -> None:
        self._open: dict[str, int] = {}
        self._accepts: dict[str, TokenBucket] = {}

    def admit(self, who: str, now: float) -> None:
        """Count a new stream from `who` (release it with `release`); LimitExceeded if over a bound."""
        if self._open.get(who, 0) >= limits.MAX_LINKS_PER_PEER:
            raise LimitExceeded(f"more than {limits.MAX_LINKS_PER_PEER} concurrent links from one peer")
        bucket = self._accepts.get(who)
        if bucket is None:
            if len(self._accepts) >= self._PRUNE_AT:
                self._accepts = {k: b for k, b in self._accepts.items() if not b.full(now)}
            bucket = self._accepts[who] = TokenBucket(limits.PEER_ACCEPT_RATE, limits.PEER_ACCEPT_BURST, now)
        if not bucket.take(now):
            raise LimitExceeded(f"more than {limits.PEER_ACCEPT_RATE:g} new links/s from one peer")
        self._open[who] = self._open.get(who, 0) + 1

    def release(self, who: str) -> None:
        """A stream admitted for `who` ended."""
        n = self._open.get(who, 0) - 1
        if n > 0:
            self._open[who] = n
        else:
            self._open.pop(who, None)

    def open_streams(self, who: str) -> int:
        """Streams currently open from `who`."""
        return self._open.get(who, 0)
