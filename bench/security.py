"""TLS cost: peer-link round trip and stream throughput (tls_cost), and claim latency, TLS on vs off."""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.membership import _all_alive, _poll, cluster
from bench.procs import free_ports
from bench.sections import Context, section
from bench.tls_cost import tls_cost


async def _claim_p50(sock: object, rounds: int) -> float:
    from mesh.client import Client
    from mesh.paths import RunningNode

    node = RunningNode(name="?", mesh="?", node_id="?", pid=0, socket=sock, address="", state_dir=sock.parent)  # type: ignore[attr-defined,arg-type]
    samples = []
    async with Client(node) as c:
        for i in range(rounds):
            t0 = time.perf_counter()
            await c.claim_once(f"bench/r{i % 8}", 60.0, 0.0)
            samples.append(time.perf_counter() - t0)
            await c.release("bench", f"r{i % 8}")
    return statistics.median(samples) * 1000


def claim_latency(tls: bool, rounds: int) -> float:
    """Median claim latency (ms) on a 3-node mesh with 3 stewards, TLS on or off."""
    with cluster() as c:
        names = ["n0", "n1", "n2"]
        ports = free_ports(3)
        extra = [] if tls else ["--insecure"]
        for i, name in enumerate(names):
            seed = f"127.0.0.1:{ports[0]}"
            c.start(name, "--no-mdns", "--port", str(ports[i]), "--peer", seed, "--lease", "2", *extra)
        asyncio.run(_poll(c, names, _all_alive(names), timeout=30))
        sock = c.socket("n0")
        assert sock is not None

        async def stewards() -> int:
            from mesh.client import Client
            from mesh.paths import RunningNode

            node = RunningNode(
                name="?", mesh="?", node_id="?", pid=0, socket=sock, address="", state_dir=sock.parent
            )
            async with Client(node) as cl:
                return len((await cl.info()).stewards)

        deadline = time.monotonic() + 60
        while asyncio.run(stewards()) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        return asyncio.run(_claim_p50(sock, rounds))


@section("security", timeout_s=600)
def security(ctx: Context) -> None:
    """TLS on vs off: unary round trip, stream throughput, claim latency (claim overhead target ≤ 15 %)."""
    r = asyncio.run(tls_cost(n=ctx.rounds(2000, 300), rounds=ctx.rounds(5, 2)))
    for key, v in r.items():
        if isinstance(v, dict):
            ctx.record(
                f"tls_overhead_{key}",
                v["overhead_pct"],
                "%",
                note=f"plain {v['plain']:.4g} vs TLS {v['tls']:.4g}",
            )
    rounds = ctx.rounds(300, 50)
    plain = claim_latency(False, rounds)
    tls = claim_latency(True, rounds)
    ctx.record("claim_p50_plain", plain, "ms", note="3 nodes, 3 stewards, --insecure")
    ctx.record("claim_p50_tls", tls, "ms", note="3 nodes, 3 stewards, mutual TLS")
    ctx.record("claim_tls_overhead", 100 * (tls - plain) / plain, "%", target=15.0)
