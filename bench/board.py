"""Board benchmarks: an edit visible on all 12 nodes, catch-up after 1,000 missed edits, `meshctl board`
with 10,000 tasks. Real `meshctl up` processes (TLS on) on 127.0.0.1; the bench drives them through their
control sockets (`mesh.client.Client`), as an embedding tool would.

- `edit_visible_12_p50/p99`: a 12-node mesh; the bench follows `watch` on the 11 other nodes and files a
  task on n00 (`task_add`: durable in n00's store when it returns); until all 11 watch streams have yielded
  its board event (each node applied it and, since a remote op is saved before its event, stored it).
  Reference, same run: **etcd put + watch** — a single-member etcd, 11 watchers (one gRPC channel each, as
  11 sessions would hold), a Put, until all 11 Watch streams have the event. That is the design the board
  replaces: one shared store every session watches. Both sides durable on the writer before the reply;
  etcd fsyncs its WAL on every write, the mesh's SQLite WAL commits without fsync (survives any process
  crash, not a host power cut: see mesh/boardstore.py), which favours the mesh by an fsync (~0.1-1 ms).
- `catch_up_1000`: node b is down while a makes 1,000 edits (adds, edits of every field, done, drop,
  reopen); b starts again; from b's sync request (sent when its link to a comes up) to the last batch of
  a's answer applied and saved, as b logs it ("board: in step with a"). Reference, same run: an etcd
  watcher that missed 1,000 puts resumes from its last revision (`start_revision`), until it has received
  all 1,000 events.
- `board_10k_wall`: `meshctl board` (plain output, piped) on a node whose board holds 10,000 tasks;
  median wall time of fresh processes, alternated with `python3 -c pass` (the floor of any Python CLI).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from bench.membership import MESHCTL, Cluster, _all_alive, _poll, cluster
from bench.messages import _client, _start
from bench.procs import ensure_binary, summarize_s
from bench.refs.etcd import running_etcd
from bench.sections import Context, section

if TYPE_CHECKING:
    from mesh.client import Client

# -- etcd Put and Watch: wire-compatible messages (field numbers from etcd's rpc.proto and kv.proto) -----
_T = descriptor_pb2.FieldDescriptorProto
_MESSAGES: dict[str, list[tuple[str, int, int, str]]] = {
    "Header": [("cluster_id", 1, _T.TYPE_UINT64, ""), ("member_id", 2, _T.TYPE_UINT64, ""),
               ("revision", 3, _T.TYPE_INT64, "")],
    "PutRequest": [("key", 1, _T.TYPE_BYTES, ""), ("value", 2, _T.TYPE_BYTES, "")],
    "PutResponse": [("header", 1, _T.TYPE_MESSAGE, "Header")],
    "CreateRequest": [("key", 1, _T.TYPE_BYTES, ""), ("range_end", 2, _T.TYPE_BYTES, ""),
                      ("start_revision", 3, _T.TYPE_INT64, "")],
    "WatchRequest": [("create_request", 1, _T.TYPE_MESSAGE, "CreateRequest")],
    "KeyValue": [("key", 1, _T.TYPE_BYTES, ""), ("mod_revision", 3, _T.TYPE_INT64, ""),
                 ("value", 5, _T.TYPE_BYTES, "")],
    "Event": [("type", 1, _T.TYPE_INT32, ""), ("kv", 2, _T.TYPE_MESSAGE, "KeyValue")],
    "WatchResponse": [("header", 1, _T.TYPE_MESSAGE, "Header"), ("watch_id", 2, _T.TYPE_INT64, ""),
                      ("created", 3, _T.TYPE_BOOL, ""), ("events", 11, _T.TYPE_MESSAGE, "Event")],
}  # fmt: skip
_PKG = "sessionmesh.bench.etcdkv"


def _build() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="sessionmesh_bench_etcdkv.proto", package=_PKG, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, ref in fields:
            repeated = name == "WatchResponse" and fname == "events"
            f = m.field.add(name=fname, number=number, type=ftype)
            f.label = _T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL
            if ref:
                f.type_name = f".{_PKG}.{ref}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    fd = pool.FindFileByName(fdp.name)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name]) for name in _MESSAGES}


_M = _build()


class _Kv:
    """etcd's KV.Put and Watch.Watch over one grpc.aio channel."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self._put = self.channel.unary_unary(
            "/etcdserverpb.KV/Put",
            request_serializer=_M["PutRequest"].SerializeToString,
            response_deserializer=_M["PutResponse"].FromString,
        )
        self._watch = self.channel.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=_M["WatchRequest"].SerializeToString,
            response_deserializer=_M["WatchResponse"].FromString,
        )

    async def put(self, key: bytes, value: bytes) -> int:
        r = await self._put(_M["PutRequest"](key=key, value=value), timeout=10)
        return int(r.header.revision)

    async def watch(self, prefix: bytes, start_revision: int = 0) -> Any:
        """A created watch stream on every key under `prefix` (from `start_revision`, if given)."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        create = _M["CreateRequest"](key=prefix, range_end=end, start_revision=start_revision)
        call = self._watch()
        await call.write(_M["WatchRequest"](create_request=create))
        first = await call.read()
        if not first.created:
            raise RuntimeError("etcd did not create the watch")
        return call

    async def close(self) -> None:
        await self.channel.close(None)


async def _etcd_fan_out(target: str, watchers: int, rounds: int, warmup: int) -> list[float]:
    writer = _Kv(target)
    kvs = [_Kv(target) for _ in range(watchers)]
    calls = [await kv.watch(b"board/") for kv in kvs]
    lat: list[float] = []
    try:
        for i in range(warmup + rounds):
            key = f"board/t{i}".encode()
            t0 = time.perf_counter()
            await writer.put(key, b"x" * 100)

            async def seen(call: Any, key: bytes = key) -> float:
                while True:
                    r = await call.read()
                    if any(e.kv.key == key for e in r.events):
                        return time.perf_counter()

            done = await asyncio.gather(*(seen(c) for c in calls))
            if i >= warmup:
                lat.append(max(done) - t0)
    finally:
        for c in calls:
            c.cancel()
        for kv in [writer, *kvs]:
            await kv.close()
    return lat


async def _etcd_catch_up(target: str, n: int) -> float:
    """Seconds for a watcher resuming from its last revision to receive the `n` puts it missed."""
    kv = _Kv(target)
    try:
        first = await kv.put(b"away/start", b"")
        for i in range(n):
            await kv.put(f"away/t{i % 300}".encode(), b"x" * 100)
        t0 = time.perf_counter()
        call = await kv.watch(b"away/", start_revision=first + 1)
        got = 0
        while got < n:
            got += len((await call.read()).events)
        elapsed = time.perf_counter() - t0
        call.cancel()
        return elapsed
    finally:
        await kv.close()


# -- the mesh -------------------------------------------------------------------------------------------


class _BoardFollower:
    """A node's watch stream: stamps every board event's id with perf_counter as it is yielded."""

    def __init__(self, client: Client) -> None:
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.ready = asyncio.Event()
        self.client = client
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from mesh.views import BoardEvent

        async for ev in self.client.watch(snapshot=True):
            self.ready.set()  # the snapshot's first event: subscribed
            if isinstance(ev, BoardEvent):
                self.seen[ev.id] = time.perf_counter()
                self.changed.set()

    async def wait_for(self, eid: str, timeout: float = 10.0) -> float:
        async with asyncio.timeout(timeout):
            while eid not in self.seen:
                if self.task.done():
                    self.task.result()
                    raise RuntimeError("watch stream ended")
                self.changed.clear()
                await self.changed.wait()
        return self.seen[eid]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _mesh_fan_out(
    c: Cluster, names: list[str], rounds: int, warmup: int
) -> tuple[list[float], list[float]]:
    """(until all 11 watchers saw the edit, until task_add returned) per round, seconds."""
    src = _client(c, names[0])
    followers = [_BoardFollower(_client(c, n)) for n in names[1:]]
    visible: list[float] = []
    durable: list[float] = []
    try:
        await asyncio.wait_for(asyncio.gather(*(f.ready.wait() for f in followers)), 30)
        for i in range(warmup + rounds):
            t0 = time.perf_counter()
            row = await src.task_add(f"fan-out {i}", priority=f"P{i % 4}")
            t1 = time.perf_counter()
            done = await asyncio.gather(*(f.wait_for(row.id) for f in followers))
            if i >= warmup:
                visible.append(max(done) - t0)
                durable.append(t1 - t0)
    finally:
        for f in followers:
            await f.stop()
            await f.client.close()
        await src.close()
    return visible, durable


async def _edits(client: Client, n: int) -> None:
    """`n` edits: adds, edits of every field, done, drop and reopen (as tests/integration/test_board.py)."""
    ms = await client.milestone_add("catch-up", steps=["s1", "s2"])
    live: list[str] = []
    dropped: list[str] = []
    for k in range(n - 1):
        i = k % 10
        if i < 3 or not live:
            live.append((await client.task_add(f"task {k}", priority=f"P{k % 4}", role="dev")).id)
        elif i < 7:
            await client.task_edit(
                live[k % len(live)], title=f"edit {k}", note=f"n{k}", milestone=ms.id, step="2"
            )
        elif i == 7:
            await client.task_done(live[k % len(live)])
        elif i == 8:
            dropped.append(live.pop(k % len(live)))
            await client.task_drop(dropped[-1])
        elif dropped:
            live.append(dropped.pop(0))
            await client.task_reopen(live[-1])


async def _down(c: Cluster, name: str) -> None:
    proc = c.procs[name]
    argv = [*MESHCTL, "down", "--node", name]
    await asyncio.to_thread(subprocess.run, argv, env=c.env(), check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 30
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not stop")
        await asyncio.sleep(0.02)


_IN_STEP = re.compile(r"board: in step with a: (\d+) operation\(s\) in ([0-9.]+) ms")


async def _catch_up(c: Cluster, n: int) -> tuple[float, float, int, int]:
    """b restarts after missing `n` edits: (ms from its sync request to the end of a's answer, as b logs
    it; seconds from b's process start to b's board equal to a's; operations received; tasks)."""
    from mesh.errors import MeshError

    _start(c, ["a", "b"])
    await _poll(c, ["a", "b"], _all_alive(["a", "b"]), timeout=30)
    b_args = ("--no-mdns", "--log-level", "info", "--peer", _address(c, "a"))
    await _down(c, "b")
    a = _client(c, "a")
    try:
        await _edits(a, n)
        want = (await a.board(dropped=True)).to_json()
    finally:
        await a.close()
    log = c.home / "b.log"
    log.write_text("")
    t_start = time.perf_counter()
    c.start("b", *b_args)
    while True:
        if c.socket("b") is not None:
            b = _client(c, "b")
            try:
                if (await b.board(dropped=True)).to_json() == want:
                    equal = time.perf_counter() - t_start
                    break
            except MeshError:
                pass
            finally:
                await b.close()
        if time.perf_counter() - t_start > 120:
            raise TimeoutError("b did not catch up within 120 s")
        await asyncio.sleep(0.01)
    found = _IN_STEP.findall(log.read_text())
    if not found:
        raise RuntimeError("b logged no 'in step' line")
    ops, ms = max(found, key=lambda f: int(f[0]))
    return float(ms), equal, int(ops), len(want["tasks"])


def _address(c: Cluster, name: str) -> str:
    from mesh.paths import find_node

    return find_node(c.home, c.mesh, name).address


async def _fill(client: Client, n: int) -> None:
    for start in range(0, n, 200):
        await asyncio.gather(
            *(client.task_add(f"task {k} of the big board", priority=f"P{k % 4}", role=f"r{k % 12}")
              for k in range(start, min(n, start + 200)))
        )  # fmt: skip


def _walls(c: Cluster, rounds: int) -> dict[str, float]:
    python3 = shutil.which("python3") or sys.executable
    argv = {
        "board": [*MESHCTL, "board", "--node", "a"],
        "board_json": [*MESHCTL, "board", "--json", "--node", "a"],
        "python3_c_pass": [python3, "-c", "pass"],
    }
    samples: dict[str, list[float]] = {k: [] for k in argv}
    for a in argv.values():  # warm the page cache once
        subprocess.run(a, env=c.env(), check=True, capture_output=True, timeout=60)
    for _ in range(rounds):
        for k, a in argv.items():
            t0 = time.perf_counter()
            r = subprocess.run(a, env=c.env(), check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               timeout=60)  # fmt: skip
            samples[k].append(time.perf_counter() - t0)
            lines = r.stdout.count(b"\n")
            if k == "board" and lines < 10_000:
                raise RuntimeError(f"meshctl board printed {lines} lines, not 10,000")
    return {k: statistics.median(v) for k, v in samples.items()}


@section("board", timeout_s=900)
async def board(ctx: Context) -> None:
    """Board edit visible on 12 nodes (vs etcd put+watch), catch-up of 1,000 edits, board of 10k tasks."""
    rounds = ctx.rounds(200, 30)
    binary = ensure_binary("etcd", "etcd-server")
    with tempfile.TemporaryDirectory(prefix="bench-etcd-") as d, running_etcd(binary, Path(d)) as server:
        ctx.set_info("etcd-server", server.version)
        e = summarize_s(await _etcd_fan_out(server.target, 11, rounds, warmup=10))
        ctx.record(
            "etcd_put_watch_11_p50", e.p50_ms, "ms", note=f"n={rounds}; Put -> all 11 watch streams have it"
        )
        ctx.record("etcd_put_watch_11_p99", e.p99_ms, "ms", note=f"n={rounds}; max {e.max_ms:.2f} ms")
        etcd_catch_up = await _etcd_catch_up(server.target, 1000)
        ctx.record("etcd_watch_resume_1000", etcd_catch_up * 1000, "ms",
                   note="a watch resumed from its last revision receives 1,000 missed puts")  # fmt: skip

    with cluster() as c:
        names = [f"n{i:02d}" for i in range(12)]
        _start(c, names)
        await _poll(c, names, _all_alive(names), timeout=60)
        visible, durable = await _mesh_fan_out(c, names, rounds, warmup=10)
        v, dur = summarize_s(visible), summarize_s(durable)
        ctx.record("edit_visible_12_p50", v.p50_ms, "ms", ref="board.etcd_put_watch_11_p50",
                   note=f"n={rounds}; task_add on n00 -> all 11 other nodes' watch streams have it; "
                        f"task_add returned (durable on n00) p50 {dur.p50_ms:.2f} ms")  # fmt: skip
        ctx.record("edit_visible_12_p99", v.p99_ms, "ms", ref="board.etcd_put_watch_11_p99",
                   note=f"n={rounds}; max {v.max_ms:.2f} ms")  # fmt: skip

    with cluster() as c:
        n = 1000
        ms, equal, ops, tasks = await _catch_up(c, n)
        ctx.record("catch_up_1000", ms, "ms", ref="board.etcd_watch_resume_1000",
                   note=f"b's sync request on link up -> a's whole answer applied ({ops} operations: only "
                        f"winning writes are kept and sent; {tasks} tasks); b's board equal to a's "
                        f"{equal * 1000:.0f} ms after b's process started")  # fmt: skip

    with cluster() as c:
        _start(c, ["a"])
        await _poll(c, ["a"], _all_alive(["a"]), timeout=30)
        a = _client(c, "a")
        try:
            t0 = time.perf_counter()
            await _fill(a, 10_000)
            fill = time.perf_counter() - t0
        finally:
            await a.close()
        w = _walls(c, ctx.rounds(10, 3))
        ctx.record(
            "python3_c_pass", w["python3_c_pass"] * 1000, "ms", note="median, alternated with the runs below"
        )
        ctx.record("board_10k_wall", w["board"] * 1000, "ms", ref="board.python3_c_pass",
                   note=f"`meshctl board` (plain, piped) with 10,000 tasks; filed at "
                        f"{10_000 / fill:,.0f} tasks/s (200 concurrent task_add calls)")  # fmt: skip
        ctx.record("board_10k_json_wall", w["board_json"] * 1000, "ms", ref="board.python3_c_pass",
                   note="`meshctl board --json` with 10,000 tasks")  # fmt: skip
