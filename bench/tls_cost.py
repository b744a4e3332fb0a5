"""What mutual TLS costs a peer link: unary round trip and bidi-stream throughput, TLS on vs off, 127.0.0.1.

Both modes run in one process with the same generic bytes handler and alternate in rounds (plain, tls,
plain, tls, …) so machine noise hits both; each figure is the median over rounds. Overheads are positive
when TLS is worse: latency (tls - plain) / plain, throughput (plain - tls) / plain.

    python -m bench.tls_cost [N]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from mesh import security

SERVICE = "meshbench.Echo"
UNARY = f"/{SERVICE}/Call"
STREAM = f"/{SERVICE}/Stream"
ACKED = f"/{SERVICE}/Acked"
MSG = b"x" * 32  # about a heartbeat or a vote
BATCH = 100
WARMUP = 200
CONNECTS = 20


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _ack(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    # One reply per burst (an empty frame ends a burst): measures one direction, like status fan-out.
    async for frame in requests:
        if not frame:
            yield b"k"


async def _ack_each(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    # One reply per frame, like a link that acknowledges every message.
    async for _ in requests:
        yield b"k"


def _handler() -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Call": grpc.unary_unary_rpc_method_handler(_echo),
            "Stream": grpc.stream_stream_rpc_method_handler(_ack),
            "Acked": grpc.stream_stream_rpc_method_handler(_ack_each),
        },
    )


class _Endpoint:
    """A server and a way to open channels to it, plain or with mesh credentials."""

    def __init__(self, creds: security.Credentials | None) -> None:
        self.creds = creds
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers([_handler()])
        if creds is None:
            port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            port = self.server.add_secure_port("127.0.0.1:0", creds.server_credentials())
        self.address = f"127.0.0.1:{port}"

    def channel(self) -> grpc.aio.Channel:
        if self.creds is None:
            return grpc.aio.insecure_channel(self.address)
        return grpc.aio.secure_channel(
            self.address, self.creds.channel_credentials(), options=self.creds.channel_options()
        )


def _unary(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(UNARY, request_serializer=None, response_deserializer=None)


async def _unary_latencies(channel: grpc.aio.Channel, n: int) -> list[float]:
    call = _unary(channel)
    for _ in range(WARMUP):
        await call(MSG)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call(MSG)
        out.append(time.perf_counter() - t0)
    return out


async def _connect_time(ep: _Endpoint) -> float:
    """New channel to first reply (TCP + TLS handshake + HTTP/2 setup), median of CONNECTS tries."""
    times = []
    for _ in range(CONNECTS):
        t0 = time.perf_counter()
        async with ep.channel() as channel:
            await _unary(channel)(MSG)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _stream_rate(channel: grpc.aio.Channel, frames: int, per_frame: int) -> float:
    """Messages per second one way over one open bidi stream, `per_frame` 32-byte messages per frame."""
    stub: Any = channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
    call = stub()
    frame = MSG * per_frame

    async def burst(count: int) -> None:
        for _ in range(count):
            await call.write(frame)
        await call.write(b"")
        await call.read()

    await burst(WARMUP)
    t0 = time.perf_counter()
    await burst(frames)
    elapsed = time.perf_counter() - t0
    await call.done_writing()
    return frames * per_frame / elapsed


async def _acked_rate(channel: grpc.aio.Channel, frames: int) -> float:
    """Messages per second over one open bidi stream when each message is answered (pipelined)."""
    stub: Any = channel.stream_stream(ACKED, request_serializer=None, response_deserializer=None)
    call = stub()

    async def run(count: int) -> None:
        async def sender() -> None:
            for _ in range(count):
                await call.write(MSG)

        task = asyncio.ensure_future(sender())
        for _ in range(count):
            await call.read()
        await task

    await run(WARMUP)
    t0 = time.perf_counter()
    await run(frames)
    elapsed = time.perf_counter() - t0
    await call.done_writing()
    return frames / elapsed


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _round(ep: _Endpoint, n: int) -> dict[str, float]:
    async with ep.channel() as channel:
        lat = await _unary_latencies(channel, n)
        stream = await _stream_rate(channel, n, 1)
        batched = await _stream_rate(channel, n, BATCH)
        acked = await _acked_rate(channel, n)
    return {
        "unary_p50_ms": _pct(lat, 0.50) * 1e3,
        "unary_p99_ms": _pct(lat, 0.99) * 1e3,
        "stream_msgs_per_s": stream,
        "stream_batched_msgs_per_s": batched,
        "stream_acked_msgs_per_s": acked,
        "connect_ms": await _connect_time(ep) * 1e3,
    }


_LOWER_IS_BETTER = {"unary_p50_ms", "unary_p99_ms", "connect_ms"}


async def tls_cost(n: int = 2000, rounds: int = 5) -> dict[str, Any]:
    """Async form of `measure_tls_cost` (for callers already inside an event loop)."""
    with tempfile.TemporaryDirectory(prefix="tls-cost-") as home:
        creds, _ = security.ensure_credentials(Path(home), "bench-tls", "bench-node")
    endpoints = {"plain": _Endpoint(None), "tls": _Endpoint(creds)}
    for ep in endpoints.values():
        await ep.server.start()
    samples: dict[str, list[dict[str, float]]] = {"plain": [], "tls": []}
    try:
        for i in range(rounds):
            # Alternate which mode goes first, so a load change on a shared machine does not favour one.
            for mode in ("plain", "tls") if i % 2 == 0 else ("tls", "plain"):
                samples[mode].append(await _round(endpoints[mode], n))
    finally:
        for ep in endpoints.values():
            await ep.server.stop(None)
    out: dict[str, Any] = {"n": n, "rounds": rounds, "batch": BATCH, "message_bytes": len(MSG)}
    for key in samples["plain"][0]:
        pairs = [(p[key], t[key]) for p, t in zip(samples["plain"], samples["tls"], strict=True)]
        # The overhead is the median of per-round ratios: each pair ran back to back, under the same load.
        overheads = [100 * ((t - p) if key in _LOWER_IS_BETTER else (p - t)) / p for p, t in pairs]
        out[key] = {
            "plain": round(statistics.median(p for p, _ in pairs), 4),
            "tls": round(statistics.median(t for _, t in pairs), 4),
            "overhead_pct": round(statistics.median(overheads), 1),
        }
    return out


def measure_tls_cost(n: int = 2000) -> dict[str, Any]:
    """Unary p50/p99, connect time, bidi-stream throughput (one-way unbatched / 100 per frame, and acked
    per message), TLS on vs off."""
    return asyncio.run(tls_cost(n))


def _table(result: dict[str, Any]) -> str:
    rows = [f"{'metric':<28}{'plain':>14}{'tls':>14}{'overhead':>10}"]
    for key, v in result.items():
        if isinstance(v, dict):
            rows.append(f"{key:<28}{v['plain']:>14,.3f}{v['tls']:>14,.3f}{v['overhead_pct']:>9.1f}%")
    return "\n".join(rows)


if __name__ == "__main__":
    res = measure_tls_cost(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
    print(_table(res))
    print(json.dumps(res))
