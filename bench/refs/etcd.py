"""Reference: etcd's lock service (v3lock) measured from Python, on loopback, in the same run.

What one **lock round** is (`etcd.lock_round_*`): what a one-shot claimant such as `meshctl claim` would do
with etcd — LeaseGrant(TTL 10 s) → Lock(name, lease) → Unlock(key) → LeaseRevoke(lease), four sequential
unary RPCs from ONE long-lived client (channel already connected). The revoke belongs to the round: a real
lock user that does not revoke leaves a lease (and, if it crashed, the lock) alive for its TTL; it is also
what `etcdctl lock` and clientv3's `concurrency.Session.Close()` do. `etcd.lock_unlock_*` is the cheaper
pattern of a long-lived session: Lock + Unlock on a lease granted once (kept alive by the session).

Client: gRPC (grpc.aio, one HTTP/2 channel) with a handful of wire-compatible messages built at import
time from descriptors (no generated code, nothing fetched). It is the fairest choice: it is the same
grpc.aio stack and protobuf runtime the mesh nodes use, so a ratio compares servers rather than client
libraries; and it is etcd's native API — the JSON gateway (`/v3/lock/lock`, measured too, as
`etcd.http_lock_round_*`, over one keep-alive http.client connection) re-enters etcd over an internal gRPC
connection, adding a hop and JSON on both sides.

Contention (`etcd.contended_handovers`): 4 clients, each with its own channel and lease, loop Lock → Unlock
on one name for 10 s; a handover is an acquisition by a different client than the previous one. etcd's
lock is a FIFO queue of keys; a waiter watches its predecessor's key from the revision it last read
(clientv3 concurrency `waitDelete`, `Watch(key, WithRev(rev))`), which makes it an "unsynced" watcher that
etcd's mvcc `syncWatchersLoop` catches up on a ~100 ms tick — so handovers run at tens per second, not at
the ~1 ms an uncontended Lock takes. That is etcd's behaviour for every client, not a client artefact.

Server: Debian's etcd-server (3.4.x), data dirs in a temp dir on the local disk with etcd's defaults
(every write fsyncs its WAL before the reply — etcd's real durability, which is part of what a lock costs
there). The reference is a THREE-member cluster on loopback — it replicates every lock through Raft to a
majority, the same work our claims do (a steward majority) — measured through a client of one member;
the single-member figures are reported beside it (suffix ``_1m``; one member replicates nothing).
Started with free ports, stopped at the end whatever happens.

Also measured on the 3-member cluster, as references for issue 8's figures: ``formation_s``, the time from
the third member's start until the cluster is healthy (it elected a leader and serves), and
``takeover_s``, the time another client waits for a lock whose holder died right after taking it (its
lease, TTL 10 s like our default lease, is never kept alive again).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import random
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from bench import refs
from bench.procs import LOOPBACK, ensure_binary, free_ports, managed_process, summarize_s, tail, wait_until
from bench.sections import Context, section

# -- wire-compatible messages (field numbers and types from etcd's rpc.proto and v3lock.proto) ----------
# Message names are ours; only the field numbers/types and the RPC paths below must match etcd's.
_I64 = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
_U64 = descriptor_pb2.FieldDescriptorProto.TYPE_UINT64
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_MSG = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_MESSAGES: dict[str, list[tuple[str, int, int]]] = {
    "ResponseHeader": [("cluster_id", 1, _U64), ("member_id", 2, _U64), ("revision", 3, _I64)],
    "LeaseGrantRequest": [("TTL", 1, _I64), ("ID", 2, _I64)],
    "LeaseGrantResponse": [("header", 1, _MSG), ("ID", 2, _I64), ("TTL", 3, _I64), ("error", 4, _STRING)],
    "LeaseRevokeRequest": [("ID", 1, _I64)],
    "LeaseRevokeResponse": [("header", 1, _MSG)],
    "LockRequest": [("name", 1, _BYTES), ("lease", 2, _I64)],
    "LockResponse": [("header", 1, _MSG), ("key", 2, _BYTES)],
    "UnlockRequest": [("key", 1, _BYTES)],
    "UnlockResponse": [("header", 1, _MSG)],
}
_PKG = "sessionmesh.bench.etcd"


def _build_messages() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="sessionmesh_bench_etcd.proto", package=_PKG, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        m = fdp.message_type.add(name=name)
        for fname, number, ftype in fields:
            f = m.field.add(name=fname, number=number, type=ftype)
            f.label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            if ftype == _MSG:
                f.type_name = f".{_PKG}.ResponseHeader"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    fd = pool.FindFileByName(fdp.name)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name]) for name in _MESSAGES}


_M = _build_messages()


class EtcdClient:
    """The four lock-related RPCs of etcd v3 over one grpc.aio channel."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self._grant = self._rpc("/etcdserverpb.Lease/LeaseGrant", "LeaseGrantRequest", "LeaseGrantResponse")
        self._revoke = self._rpc(
            "/etcdserverpb.Lease/LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse"
        )
        self._lock = self._rpc("/v3lockpb.Lock/Lock", "LockRequest", "LockResponse")
        self._unlock = self._rpc("/v3lockpb.Lock/Unlock", "UnlockRequest", "UnlockResponse")

    def _rpc(self, path: str, req: str, resp: str) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(
            path, request_serializer=_M[req].SerializeToString, response_deserializer=_M[resp].FromString
        )

    async def lease_grant(self, ttl_s: int) -> int:
        """Grant a lease; returns its id."""
        r = await self._grant(_M["LeaseGrantRequest"](TTL=ttl_s), timeout=10)
        if r.error:
            raise RuntimeError(f"LeaseGrant: {r.error}")
        return int(r.ID)

    async def lease_revoke(self, lease: int) -> None:
        """Revoke a lease (deletes the keys attached to it, so a held lock is freed)."""
        await self._revoke(_M["LeaseRevokeRequest"](ID=lease), timeout=10)

    async def lock(self, name: bytes, lease: int, timeout_s: float = 30) -> bytes:
        """Block until `name` is locked for `lease`; returns the ownership key."""
        r = await self._lock(_M["LockRequest"](name=name, lease=lease), timeout=timeout_s)
        return bytes(r.key)

    async def unlock(self, key: bytes) -> None:
        """Release the lock held under `key`."""
        await self._unlock(_M["UnlockRequest"](key=key), timeout=10)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close(None)


# -- server ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EtcdServer:
    """A running etcd (one member, or the member the client talks to)."""

    client_port: int
    version: str
    members: int = 1
    formation_s: float = 0.0  # from the last member's start until every member is healthy

    @property
    def target(self) -> str:
        """host:port for gRPC and HTTP clients."""
        return f"{LOOPBACK}:{self.client_port}"


def etcd_version(binary: str) -> str:
    """The version `etcd --version` reports."""
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    m = re.search(r"etcd Version:\s*(\S+)", out)
    return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else "unknown"


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=0.5)
        try:
            conn.request("GET", "/health")
            body = conn.getresponse().read()
        finally:
            conn.close()
        return bool(json.loads(body).get("health") == "true")
    except (OSError, ValueError, http.client.HTTPException):
        return False


@contextmanager
def running_etcd(
    binary: str, workdir: Path, *, members: int = 1, start_timeout_s: float = 20.0
) -> Iterator[EtcdServer]:
    """Start an etcd cluster of `members` on free loopback ports, data under `workdir`; stop it on exit."""
    ports = free_ports(2 * members)
    clients, peers = ports[:members], ports[members:]
    names = [f"m{i}" for i in range(members)]
    cluster = ",".join(f"{n}=http://{LOOPBACK}:{p}" for n, p in zip(names, peers, strict=True))
    with ExitStack() as stack:
        procs = []
        for i, name in enumerate(names):
            client_url, peer_url = f"http://{LOOPBACK}:{clients[i]}", f"http://{LOOPBACK}:{peers[i]}"
            argv = [
                binary,
                f"--name={name}",
                f"--data-dir={workdir / name}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster={cluster}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-level=warn",
            ]
            procs.append(stack.enter_context(managed_process(argv, log_path=workdir / f"{name}.log")))
            last_start = time.monotonic()
        try:
            wait_until(
                lambda: any(p.poll() is not None for p in procs) or all(_healthy(c) for c in clients),
                start_timeout_s,
                interval_s=0.01,
                what="etcd healthy",
            )
        except TimeoutError:
            raise RuntimeError(
                f"etcd did not become healthy; log tail:\n{tail(workdir / 'm0.log')}"
            ) from None
        formed = time.monotonic() - last_start
        for p, name in zip(procs, names, strict=True):
            if p.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {p.returncode}; log tail:\n{tail(workdir / f'{name}.log')}"
                )
        yield EtcdServer(clients[0], etcd_version(binary), members, formed)


# -- measurements --------------------------------------------------------------------------------------------


@dataclass
class RoundTimes:
    """Per-step and whole-round latencies (seconds) of the uncontended lock round."""

    grant: list[float]
    lock: list[float]
    unlock: list[float]
    revoke: list[float]
    round: list[float]


async def lock_rounds(client: EtcdClient, n: int, warmup: int, name: bytes) -> RoundTimes:
    """`n` full rounds (grant, lock, unlock, revoke), timed per step, after `warmup` untimed ones."""
    t = RoundTimes([], [], [], [], [])
    pc = time.perf_counter
    for i in range(warmup + n):
        t0 = pc()
        lease = await client.lease_grant(10)
        t1 = pc()
        key = await client.lock(name, lease)
        t2 = pc()
        await client.unlock(key)
        t3 = pc()
        await client.lease_revoke(lease)
        t4 = pc()
        if i >= warmup:
            t.grant.append(t1 - t0)
            t.lock.append(t2 - t1)
            t.unlock.append(t3 - t2)
            t.revoke.append(t4 - t3)
            t.round.append(t4 - t0)
    return t


async def session_rounds(client: EtcdClient, n: int, warmup: int, name: bytes) -> list[float]:
    """`n` Lock+Unlock pairs on one lease granted up front (a long-lived session's pattern)."""
    lease = await client.lease_grant(60)
    out: list[float] = []
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            key = await client.lock(name, lease)
            await client.unlock(key)
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    finally:
        await client.lease_revoke(lease)
    return out


@dataclass(frozen=True)
class Contention:
    """Outcome of the contended run."""

    acquisitions: int
    handovers: int
    elapsed_s: float
    overlaps: int


async def contended(target: str, clients: int, duration_s: float, name: bytes) -> Contention:
    """`clients` clients, each on its own channel and lease, loop Lock → Unlock on one name."""
    conns = [EtcdClient(target) for _ in range(clients)]
    leases = [await c.lease_grant(60) for c in conns]
    holder: int | None = None
    last_holder: int | None = None
    acquisitions = handovers = overlaps = 0
    start = time.perf_counter()
    stop_at = start + duration_s
    end = start

    async def worker(i: int) -> None:
        nonlocal holder, last_holder, acquisitions, handovers, overlaps, end
        c = conns[i]
        while time.perf_counter() < stop_at:
            key = await c.lock(name, leases[i])
            # Sanity check of the reference itself: nobody else may believe they hold it now.
            if holder is not None:
                overlaps += 1
            holder = i
            acquisitions += 1
            if last_holder is not None and last_holder != i:
                handovers += 1
            last_holder = i
            end = time.perf_counter()
            # Cleared before Unlock is sent: once it is sent, another client may be granted before we return.
            holder = None
            await c.unlock(key)

    try:
        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(clients))), duration_s + 30)
    finally:
        for c, lease in zip(conns, leases, strict=True):
            try:
                await c.lease_revoke(lease)
            except grpc.aio.AioRpcError:
                pass
            await c.close()
    return Contention(acquisitions, handovers, end - start, overlaps)


class HttpGateway:
    """etcd's v3 JSON gateway over ONE keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body, return the decoded JSON reply (raises on an error reply)."""
        self.conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data: dict[str, Any] = json.loads(resp.read())
        if resp.status != 200 or "error" in data:
            raise RuntimeError(f"{path}: {resp.status} {data}")
        return data

    def round(self, name_b64: str) -> None:
        """The same lock round as the gRPC one: grant, lock, unlock, revoke."""
        lease = self.call("/v3/lease/grant", {"TTL": 10})["ID"]
        key = self.call("/v3/lock/lock", {"name": name_b64, "lease": lease})["key"]
        self.call("/v3/lock/unlock", {"key": key})
        self.call("/v3/lease/revoke", {"ID": lease})

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def http_rounds(port: int, n: int, warmup: int, name: bytes) -> list[float]:
    """`n` timed lock rounds through the JSON gateway."""
    gw = HttpGateway(port)
    name_b64 = base64.b64encode(name).decode()
    out: list[float] = []
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            gw.round(name_b64)
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    finally:
        gw.close()
    return out


async def takeover(target: str, ttl_s: int = 10) -> float:
    """Seconds another client waits for a lock whose holder died right after taking it (lease not kept)."""
    holder, waiter = EtcdClient(target), EtcdClient(target)
    name = f"bench/takeover/{random.getrandbits(32):x}".encode()
    try:
        lease = await holder.lease_grant(ttl_s)
        await holder.lock(name, lease)
        t0 = time.perf_counter()  # the holder is "dead" from here: nothing keeps its lease alive
        lease2 = await waiter.lease_grant(60)
        await waiter.lock(name, lease2, timeout_s=3 * ttl_s)
        dt = time.perf_counter() - t0
        await waiter.lease_revoke(lease2)
        return dt
    finally:
        await holder.close()
        await waiter.close()


async def _grpc_part(ctx: Context, server: EtcdServer, suffix: str = "") -> None:
    n = ctx.rounds(1000, 200)
    warmup = 50
    tag = random.Random().getrandbits(32)
    client = EtcdClient(server.target)
    try:
        await asyncio.wait_for(client.channel.channel_ready(), 10)
        t = await lock_rounds(client, n, warmup, f"bench/round/{tag:x}".encode())
        r = summarize_s(t.round)
        steps = " / ".join(
            f"{label} {summarize_s(xs).p50_ms:.2f}"
            for label, xs in (
                ("grant", t.grant),
                ("lock", t.lock),
                ("unlock", t.unlock),
                ("revoke", t.revoke),
            )
        )
        note = f"n={n}; p50 per step ms: {steps}"
        ctx.record(f"lock_round_p50{suffix}", r.p50_ms, "ms", note=note)
        ctx.record(f"lock_round_p99{suffix}", r.p99_ms, "ms", note=f"n={n}; max {r.max_ms:.2f} ms")
        s = summarize_s(await session_rounds(client, n, warmup, f"bench/session/{tag:x}".encode()))
        ctx.record(f"lock_unlock_p50{suffix}", s.p50_ms, "ms", note=f"n={n}; lock+unlock on a held lease")
        ctx.record(f"lock_unlock_p99{suffix}", s.p99_ms, "ms", note=f"n={n}")
    finally:
        await client.close()
    duration = 3.0 if ctx.quick else 10.0
    c = await contended(server.target, 4, duration, f"bench/contended/{tag:x}".encode())
    if c.overlaps:
        ctx.log(f"WARNING: {c.overlaps} overlapping holds observed in etcd's lock (client-side view)")
    ctx.record(
        f"contended_handovers{suffix}",
        c.handovers / c.elapsed_s,
        "1/s",
        higher_is_better=True,
        note=f"4 clients, {c.elapsed_s:.1f} s, {c.acquisitions} acquisitions, overlaps {c.overlaps}",
    )


@section("etcd", timeout_s=300)
def bench_etcd(ctx: Context) -> None:
    """etcd lock service: lock round p50/p99 (gRPC and JSON gateway), contended handovers/s."""
    binary = ensure_binary("etcd", "etcd-server")
    with (
        tempfile.TemporaryDirectory(prefix="bench-etcd-") as d,
        running_etcd(binary, Path(d), members=1) as one,
    ):
        ctx.log(f"etcd {one.version}, one member on {one.target}")
        asyncio.run(_grpc_part(ctx, one, suffix="_1m"))
    with (
        tempfile.TemporaryDirectory(prefix="bench-etcd3-") as d,
        running_etcd(binary, Path(d), members=3) as server,
    ):
        ctx.set_info("etcd-server", server.version)
        ctx.log(f"etcd {server.version}, three members (client on {server.target}), data in {d}")
        ctx.record("formation_s", server.formation_s, "s", note="3rd member's start -> all 3 healthy")
        asyncio.run(_grpc_part(ctx, server))
        t = asyncio.run(takeover(server.target))
        ctx.record(
            "takeover_s", t, "s", note="holder dead right after locking; lease TTL 10 s, not kept alive"
        )
        n = ctx.rounds(300, 100)
        h = summarize_s(http_rounds(server.client_port, n, 20, b"bench/http"))  # three members
        ctx.record(
            "http_lock_round_p50", h.p50_ms, "ms", ref=refs.ETCD_LOCK_ROUND_P50, note=f"n={n}; JSON gateway"
        )
        ctx.record("http_lock_round_p99", h.p99_ms, "ms", ref=refs.ETCD_LOCK_ROUND_P99, note=f"n={n}")
