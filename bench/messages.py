"""Message benchmarks: direct throughput and latency, broadcast to 11 peers, `meshctl send` wall time.

Every node is a real `meshctl up` process (TLS on, the default) on 127.0.0.1 under a throwaway home with a
mesh name of its own; this process drives them through their control sockets (`mesh.client.Client`), as an
embedding tool would. Bodies are 200 bytes; every message is durable (SQLite WAL) on both sides.

- `direct_throughput`: N sends from this process to node `a` through `mesh.Client` (many in flight at once:
  the client's SendStream batches them, the node group-commits each batch), all addressed to `b`; from the
  first send until `b` has stored the last one (its `received_at`, a wall stamp on the same host).
  `send_accept_rate`: until the last send returned (each returns once durably queued in `a`'s outbox).
- `direct_throughput_batched`: the same, as one `Client.send_many` of N (SendBatches of 1000 built by the
  client, an answer per message): the cheap path for a client with many to send (`meshctl send -` uses it).
  The control-API rows note this process's CPU per message: it shares the box's 2 cores with the nodes.
- `direct_throughput_embedded(_batched)`: sender `a` embedded here (`mesh.Node`): gathers of 1000
  `node.send`s, or `node.send_many` of 1000 per call.
- `delivery_p50/p99`: one message at a time; from just before `send` to the moment `b`'s followed inbox
  stream (`messages(follow=True)`, opened here) yields it. A lone send and the follow go over the nodes'
  hook wire, as `mesh.connect`'s Client does (the Clients here are given the socket node.json names).
- `broadcast_11_p50`: 12-node mesh, one broadcast at a time; until all 11 followers have it.
- `meshctl_send_wall_median`: a fresh `meshctl send` process per run, as an agent runs it.
- `meshctl_send_many_throughput`: one `meshctl send -` process fed N JSON lines (`Client.send_many`).

Targets (issue 15): every durable throughput row >= 1.0x Redis Streams in the same run (pipelined, consumer
group + ack); delivery p50 <= 1 ms and p99 <= 5 ms one at a time; broadcast to 11 peers p50 <= 5 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bench import refs
from bench.membership import MESHCTL, Cluster, _all_alive, _poll, cluster
from bench.procs import free_ports, summarize_s
from bench.sections import Context, section

if TYPE_CHECKING:
    from mesh.client import Client

T = TypeVar("T", bound=tuple[float, ...])
BODY = "x" * 200
REPEATS = 3  # runs of each throughput row (each >= ~3 s on this box); the median run is recorded
INFLIGHT = 600  # concurrent sends from this process: enough for the node to commit them in groups
CLIENTS = 2  # control-socket channels the senders are spread over
LATENCY_ONLY = os.environ.get("MESH_BENCH_MESSAGES") == "latency"
"""`MESH_BENCH_MESSAGES=latency`: only the latency rows (delivery, send return, broadcast to 11), about a
minute: an A/B sitting of base and branch runs each side several times under the heavy lock (at most 5 min a
run), where the whole section takes longer."""


def _client(c: Cluster, name: str) -> Client:
    from mesh.client import Client
    from mesh.paths import RunningNode, hook_socket_path

    sock = c.socket(name)
    if sock is None:
        raise RuntimeError(f"node {name} has no control socket")
    hook = hook_socket_path(sock.parent)  # as node.json names it (lone sends and follows go over it)
    node = RunningNode(
        name=name, mesh=c.mesh, node_id="?", pid=0, socket=sock, address="", state_dir=sock.parent,
        hook_socket=hook if hook.exists() else None,
    )  # fmt: skip
    return Client(node)


def _start(c: Cluster, names: list[str]) -> None:
    ports = free_ports(len(names))
    seed = f"127.0.0.1:{ports[0]}"
    for name, port in zip(names, ports, strict=True):
        c.start(name, "--no-mdns", "--port", str(port), "--peer", seed)


async def _newest(client: Client) -> tuple[int, float]:
    """(local_seq, received_at) of the newest inbox message, (0, 0.0) when empty."""
    last = (0, 0.0)
    async for item in client.messages(limit=1):
        last = (item.local_seq, item.received_at)
    return last


async def _wait_seq(client: Client, want: int, timeout: float, interval: float = 0.05) -> float:
    """Poll the newest inbox local_seq until it reaches `want`; returns that message's received_at."""
    deadline = time.monotonic() + timeout
    while True:
        seq, received_at = await _newest(client)
        if seq >= want:
            return received_at
        if time.monotonic() > deadline:
            raise TimeoutError(f"inbox reached local_seq {seq}, wanted {want} within {timeout:.0f} s")
        await asyncio.sleep(interval)


async def _run_window(n: int, inflight: int, one: Callable[[int], Awaitable[object]]) -> None:
    """Call `one(i)` for i in range(n) with at most `inflight` calls outstanding."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(min(inflight, n))))


class _Follower:
    """A followed inbox: stamps every message by subject with perf_counter as the stream yields it."""

    def __init__(self, client: Client, round_: _Round | None = None) -> None:
        self.client = client
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.round = round_
        self.task = asyncio.create_task(self._run())
        if round_ is not None:
            self.task.add_done_callback(round_.follower_ended)

    async def _run(self) -> None:
        async for item in self.client.messages(follow=True):
            self.seen[item.subject] = time.perf_counter()
            self.changed.set()
            if self.round is not None:
                self.round.tick(item.subject)

    async def wait_for(self, subject: str, timeout: float = 10.0) -> float:
        async with asyncio.timeout(timeout):
            while subject not in self.seen:
                if self.task.done():
                    self.task.result()
                    raise RuntimeError("inbox follow stream ended")
                self.changed.clear()
                await self.changed.wait()
        return self.seen[subject]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


class _Round:
    """One broadcast's wait for all its followers: each follower's task ticks it as it stamps the subject, and
    one future ends the wait when the last has it. (A wait_for per follower was a task, a timer and a wake-up
    each per round, 11 of them in the process that also reads the 11 followers' streams, on the same 2 cores
    as the nodes: the harness's own work delayed the stamps it measures.)"""

    def __init__(self) -> None:
        self.subject = ""
        self.left = 0
        self.done: asyncio.Future[None] | None = None

    def expect(self, subject: str, followers: int) -> asyncio.Future[None]:
        """Arm the round for `subject` (before it is sent: a follower may see it before `send` returns)."""
        self.subject, self.left = subject, followers
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def tick(self, subject: str) -> None:
        if subject == self.subject and self.done is not None and not self.done.done():
            self.left -= 1
            if self.left == 0:
                self.done.set_result(None)

    def follower_ended(self, task: asyncio.Task[None]) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(RuntimeError("inbox follow stream ended"))


async def _delivery_latency(c: Cluster, n: int, warmup: int) -> tuple[list[float], list[float]]:
    """(send -> followed inbox yields it, send -> send returned) in seconds, one message at a time."""
    a, b = _client(c, "a"), _client(c, "b")
    follower = _Follower(b)
    delivered: list[float] = []
    queued: list[float] = []
    try:
        for i in range(warmup + n):
            subject = f"lat {i}"
            t0 = time.perf_counter()
            await a.send("b", subject, BODY)
            t_q = time.perf_counter()
            t1 = await follower.wait_for(subject)
            if i >= warmup:
                delivered.append(t1 - t0)
                queued.append(t_q - t0)
    finally:
        await follower.stop()
        await a.close()
        await b.close()
    return delivered, queued


def _cpu() -> float:
    """CPU seconds of this process so far (the bench's client shares the box's cores with the nodes)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _direct_throughput(c: Cluster, n: int, batched: bool = False) -> tuple[float, float, float, float]:
    """(end-to-end msgs/s, sender acceptance msgs/s, seconds, this process's CPU µs per message) for `n`
    sends a -> b: concurrent `Client.send`s, or with `batched` one `Client.send_many` of all n."""
    from mesh.core.mailbox import SendItem

    senders = [_client(c, "a") for _ in range(CLIENTS)]
    b = _client(c, "b")
    try:
        base, _ = await _newest(b)

        async def one(i: int) -> object:
            s = senders[i % CLIENTS]
            return await s.send("b", f"tp {i}", BODY)

        w0 = time.time()
        t0 = time.perf_counter()
        c0 = _cpu()
        if batched:
            got = await senders[0].send_many([SendItem("b", f"tp {i}", BODY) for i in range(n)])
            if bad := [g for g in got if isinstance(g, Exception)]:
                raise RuntimeError(f"{len(bad)} sends failed, the first: {bad[0]!r}")
        else:
            await _run_window(n, INFLIGHT, one)
        t_accept = time.perf_counter() - t0
        cpu_us = (_cpu() - c0) / n * 1e6
        last_received = await _wait_seq(b, base + n, timeout=240)
        e2e = last_received - w0
        return n / e2e, n / t_accept, e2e, cpu_us
    finally:
        for s in senders:
            await s.close()
        await b.close()


async def _embedded_throughput(
    c: Cluster, n: int, chunk: int, repeats: int, batched: bool = False
) -> list[tuple[float, float, float]]:
    """Per run (end-to-end msgs/s, acceptance msgs/s, seconds): sender `a` embedded here (`mesh.Node`) -> node
    `b`, `repeats` runs of `n` on the same two nodes; `chunk` sends per gather, or with `batched` one
    `Node.send_many` of `chunk` items."""
    from mesh import Node
    from mesh.core.mailbox import SendItem

    b_port, a_port = free_ports(2)
    c.start("b", "--no-mdns", "--port", str(b_port))
    await _poll(c, ["b"], lambda _n, _st: True, timeout=30)
    node = Node(name="a", mesh=c.mesh, home=c.home, port=a_port, peers=(f"127.0.0.1:{b_port}",), mdns=False)
    await node.start()
    b = _client(c, "b")
    runs = []
    try:
        await _poll(c, ["b"], _all_alive(["a", "b"]), timeout=30)
        await node.send("b", "warm", BODY)
        await _wait_seq(b, 1, timeout=30)
        for _ in range(repeats):
            base_seq, _ = await _newest(b)
            w0 = time.time()
            t0 = time.perf_counter()
            for i in range(0, n, chunk):
                part = range(i, min(n, i + chunk))
                if batched:
                    got = await node.send_many([SendItem("b", f"emb {j}", BODY) for j in part])
                    if bad := [g for g in got if isinstance(g, Exception)]:
                        raise RuntimeError(f"{len(bad)} sends failed, the first: {bad[0]!r}")
                else:
                    # One gather = one loop turn of sends = one group-committed transaction in the node.
                    await asyncio.gather(*(node.send("b", f"emb {j}", BODY) for j in part))
            t_accept = time.perf_counter() - t0
            last_received = await _wait_seq(b, base_seq + n, timeout=240, interval=0.02)
            e2e = last_received - w0
            runs.append((n / e2e, n / t_accept, e2e))
        return runs
    finally:
        await b.close()
        await node.stop()


def _median_run(runs: Sequence[T]) -> tuple[T, str]:
    """The run with the median end-to-end rate (the first field), and 'a, b, c' of all runs' rates."""
    ordered = sorted(runs, key=lambda r: r[0])
    return ordered[len(ordered) // 2], ", ".join(f"{r[0]:,.0f}" for r in runs)


def _meshctl_send_walls(c: Cluster, runs: int) -> list[float]:
    walls = []
    for i in range(runs):
        t0 = time.perf_counter()
        subprocess.run([*MESHCTL, "send", "--node", "a", "b", f"cli {i}", BODY], env=c.env(), check=True,
                       capture_output=True, timeout=30)  # fmt: skip
        walls.append(time.perf_counter() - t0)
    return walls


async def _meshctl_send_many(c: Cluster, n: int) -> tuple[float, float]:
    """(end-to-end msgs/s, seconds the process ran): one `meshctl send -` process, n JSON lines a -> b."""
    b = _client(c, "b")
    try:
        base, _ = await _newest(b)
        one = {"to": "b", "body": BODY}
        lines = "".join(json.dumps({**one, "subject": f"many {i}"}) + "\n" for i in range(n))
        w0 = time.time()
        t0 = time.perf_counter()
        await asyncio.to_thread(
            subprocess.run, [*MESHCTL, "send", "-", "--node", "a"], input=lines.encode(), env=c.env(),
            check=True, capture_output=True, timeout=240,
        )  # fmt: skip
        ran = time.perf_counter() - t0
        last_received = await _wait_seq(b, base + n, timeout=240)
        return n / (last_received - w0), ran
    finally:
        await b.close()


async def _broadcast(c: Cluster, names: list[str], rounds: int, warmup: int, n_tp: int) -> dict[str, float]:
    src = _client(c, names[0])
    rcpts = [_client(c, n) for n in names[1:]]
    each = _Round()
    followers = [_Follower(r, each) for r in rcpts]
    out: dict[str, float] = {}
    try:
        # The sender's member directory must hold all 11 before a broadcast reaches them all.
        deadline = time.monotonic() + 30
        while True:
            rep = await src.broadcast("bc warm", BODY)
            if len(rep.recipients) == len(rcpts):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"broadcast reached only {len(rep.recipients)} of {len(rcpts)} peers")
            await asyncio.sleep(0.2)
        await asyncio.gather(*(f.wait_for("bc warm") for f in followers))
        all_lat: list[float] = []
        per_rcpt: list[float] = []
        for i in range(warmup + rounds):
            subject = f"bc {i}"
            everyone = each.expect(subject, len(followers))
            t0 = time.perf_counter()
            await src.broadcast(subject, BODY)
            async with asyncio.timeout(10.0):
                await everyone
            got = [f.seen[subject] for f in followers]
            if i >= warmup:
                all_lat.append(max(got) - t0)
                per_rcpt.extend(g - t0 for g in got)
        s = summarize_s(all_lat)
        out["all_p50"], out["all_p99"], out["all_max"] = s.p50_ms, s.p99_ms, s.max_ms
        out["one_p50"] = summarize_s(per_rcpt).p50_ms
        for f in followers:
            await f.stop()
        followers = []
        if not n_tp:
            return out
        # Throughput: many broadcasts in flight; until every recipient's inbox holds all of them.
        bases = [(await _newest(r))[0] for r in rcpts]
        w0 = time.time()
        t0 = time.perf_counter()
        await _run_window(n_tp, INFLIGHT // 2, lambda i: src.broadcast(f"bt {i}", BODY))
        t_accept = time.perf_counter() - t0
        lasts = await asyncio.gather(
            *(_wait_seq(r, base + n_tp, timeout=240) for r, base in zip(rcpts, bases, strict=True))
        )
        e2e = max(lasts) - w0
        out["tp_broadcasts"] = n_tp / e2e
        out["tp_deliveries"] = n_tp * len(rcpts) / e2e
        out["tp_accept"] = n_tp / t_accept
    finally:
        for f in followers:
            await f.stop()
        await src.close()
        for r in rcpts:
            await r.close()
    return out


def _link_trouble(c: Cluster) -> str:
    """Lines of the nodes' logs that say a link was cut for exceeding a limit (they skew the figures)."""
    hits = []
    for log in sorted(Path(c.home).glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "frames/s" in line or "MiB/s" in line or "RESOURCE_EXHAUSTED" in line:
                hits.append(f"{log.stem}: {line.strip()}")
    return "; ".join(hits[:3])


async def _link_kinds(c: Cluster, names: list[str]) -> str:
    """How the nodes' peer links run: same-host unix streams or gRPC with mTLS (the slower path, which a
    node takes only when its local dial failed) — a figure from a gRPC-linked mesh is not comparable."""
    local = grpc = 0
    for name in names:
        client = _client(c, name)
        try:
            info = await client.info()
        finally:
            await client.close()
        local, grpc = local + info.local_links, grpc + info.grpc_links
    return f"links: {local} local, {grpc} gRPC" + (" (NOT ALL LOCAL)" if grpc else "")


def _with_trouble(note: str, c: Cluster) -> str:
    trouble = _link_trouble(c)
    return note + (f"; LINK LIMIT HIT: {trouble}" if trouble else "")


async def _control_rows(ctx: Context, c: Cluster) -> None:
    """meshctl send wall time and the throughput rows through the control API, on the latency run's two
    nodes."""
    walls = _meshctl_send_walls(c, ctx.rounds(20, 5))
    ctx.record("meshctl_send_wall_median", statistics.median(walls) * 1000, "ms",
               note=f"median of {len(walls)} `meshctl send b SUBJECT BODY` processes")  # fmt: skip

    n_tp = ctx.rounds(60_000, 3_000)
    reps = ctx.rounds(REPEATS, 1)
    runs = [await _direct_throughput(c, n_tp) for _ in range(reps)]
    (e2e, accept, secs, cpu_us), rates = _median_run(runs)
    note = (f"n={n_tp} in {secs:.2f} s, median of {reps} runs ({rates}); control API (Client.send"
            f" pipelined on SendStream), {INFLIGHT} in flight over {CLIENTS} clients; the client"
            f" (this process, on the same cores) used {cpu_us:.1f} µs CPU per message")  # fmt: skip
    ctx.record("direct_throughput", e2e, "msg/s", higher_is_better=True,
               ref=refs.REDIS_STREAMS_THROUGHPUT, ref_is_target=True,
               note=_with_trouble(note, c))  # fmt: skip
    ctx.record("direct_throughput_vs_pubsub", e2e, "msg/s", higher_is_better=True,
               ref=refs.REDIS_PUBSUB_THROUGHPUT, note="same run as direct_throughput")  # fmt: skip
    ctx.record("send_accept_rate", accept, "msg/s", higher_is_better=True,
               note="sends durably queued in a's outbox per second (same run)")  # fmt: skip
    runs = [await _direct_throughput(c, n_tp, batched=True) for _ in range(reps)]
    (e2e, accept, secs, cpu_us), rates = _median_run(runs)
    note = (f"n={n_tp} in {secs:.2f} s, median of {reps} runs ({rates}); control API, one"
            f" Client.send_many (SendBatches of 1000 on the SendStream, an answer per message); the"
            f" client used {cpu_us:.1f} µs CPU per message; accepted {accept:,.0f}/s")  # fmt: skip
    ctx.record("direct_throughput_batched", e2e, "msg/s", higher_is_better=True,
               ref=refs.REDIS_STREAMS_THROUGHPUT, ref_is_target=True,
               note=_with_trouble(note, c))  # fmt: skip
    n_many = ctx.rounds(60_000, 3_000)
    many = [await _meshctl_send_many(c, n_many) for _ in range(reps)]
    (e2e, ran), rates = _median_run(many)
    ctx.record("meshctl_send_many_throughput", e2e, "msg/s", higher_is_better=True,
               ref=refs.REDIS_STREAMS_THROUGHPUT, ref_is_target=True,
               note=f"one `meshctl send -` process, {n_many} JSON lines (it ran {ran:.2f} s, start-up"
                    f" included) -> the last in b's inbox; median of {reps} runs ({rates})")  # fmt: skip


async def _embedded_rows(ctx: Context) -> None:
    """The throughput rows of a sender embedded in this process (two clusters of two nodes)."""
    with cluster() as c:
        n_emb = ctx.rounds(100_000, 20_000)
        chunk = 1000
        emb = await _embedded_throughput(c, n_emb, chunk, ctx.rounds(REPEATS, 1))
        (e2e, accept, secs), rates = _median_run(emb)
        note = (f"n={n_emb} in {secs:.2f} s, median of {len(emb)} runs ({rates}); sender embedded in the"
                f" bench process (mesh.Node), {chunk} per gather; recipient a meshctl node")  # fmt: skip
        ctx.record("direct_throughput_embedded", e2e, "msg/s", higher_is_better=True,
                   ref=refs.REDIS_STREAMS_THROUGHPUT, ref_is_target=True,
                   note=_with_trouble(note, c))  # fmt: skip
        ctx.record("direct_throughput_embedded_vs_pubsub", e2e, "msg/s", higher_is_better=True,
                   ref=refs.REDIS_PUBSUB_THROUGHPUT, note="same run as the figure above")  # fmt: skip
        ctx.record("send_accept_rate_embedded", accept, "msg/s", higher_is_better=True,
                   note="node.send() calls durably queued per second (same run)")  # fmt: skip

    with cluster() as c:  # the same two nodes anew: `_embedded_throughput` starts them
        emb = await _embedded_throughput(c, n_emb, chunk, ctx.rounds(REPEATS, 1), batched=True)
        (e2e, accept, secs), rates = _median_run(emb)
        note = (f"n={n_emb} in {secs:.2f} s, median of {len(emb)} runs ({rates}); sender embedded,"
                f" Node.send_many of {chunk} per call (an answer per message);"
                f" accepted {accept:,.0f}/s")  # fmt: skip
        ctx.record("direct_throughput_embedded_batched", e2e, "msg/s", higher_is_better=True,
                   ref=refs.REDIS_STREAMS_THROUGHPUT, ref_is_target=True,
                   note=_with_trouble(note, c))  # fmt: skip


@section("messages", timeout_s=600, needs=("redis",))
async def messages(ctx: Context) -> None:
    """Direct throughput and latency, broadcast to 11 peers, meshctl send wall time (real nodes, TLS)."""
    with cluster() as c:
        names = ["a", "b"]
        _start(c, names)
        await _poll(c, names, _all_alive(names), timeout=30)

        n_lat = ctx.rounds(1000, 100)  # p99 is then the 10th worst, not the 5th
        delivered, queued = await _delivery_latency(c, n_lat, warmup=30)
        s = summarize_s(delivered)
        links = await _link_kinds(c, names)
        ctx.record("delivery_p50", s.p50_ms, "ms", target=1.0, ref=refs.REDIS_STREAMS_P50,
                   note=f"n={n_lat}, one at a time; send -> b's followed inbox has it; {links}")  # fmt: skip
        ctx.record("delivery_p99", s.p99_ms, "ms", target=5.0, ref=refs.REDIS_STREAMS_P99,
                   note=f"n={n_lat}; max {s.max_ms:.2f} ms")  # fmt: skip
        q = summarize_s(queued)
        ctx.record("send_return_p50", q.p50_ms, "ms",
                   note="send -> returned (durably in a's outbox), one at a time")  # fmt: skip

        if not LATENCY_ONLY:
            await _control_rows(ctx, c)

    if not LATENCY_ONLY:
        await _embedded_rows(ctx)

    with cluster() as c:
        names = ["n00", *(f"n{i:02d}" for i in range(1, 12))]
        _start(c, names)
        await _poll(c, names, _all_alive(names), timeout=60)
        rounds = ctx.rounds(60, 5)  # a p50 of 20 moved by a millisecond between runs
        n_btp = 0 if LATENCY_ONLY else ctx.rounds(2000, 200)
        r = await _broadcast(c, names, rounds, warmup=3, n_tp=n_btp)
        links = await _link_kinds(c, names)
        ctx.record("broadcast_11_p50", r["all_p50"], "ms", target=5.0,
                   note=f"n={rounds}; broadcast -> all 11 followers have it; one recipient p50 "
                        f"{r['one_p50']:.2f} ms; {links}")  # fmt: skip
        ctx.record("broadcast_11_p99", r["all_p99"], "ms", note=f"n={rounds}; max {r['all_max']:.2f} ms")
        if n_btp:
            ctx.record("broadcast_11_throughput", r["tp_broadcasts"], "msg/s", higher_is_better=True,
                       note=f"n={n_btp} broadcasts, {r['tp_deliveries']:,.0f} deliveries/s; accepted "
                            f"{r['tp_accept']:,.0f}/s")  # fmt: skip
        trouble = _link_trouble(c)
        if trouble:
            ctx.log(f"link limits hit during broadcast: {trouble}")
