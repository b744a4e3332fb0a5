"""A claimant that holds leases through the API, as a separate process: safety measured where work is done.

    python -m tests.integration.api_holder --home H --mesh M --node N
        --resources '["job/r0","path/src/**"]' --out FILE

Connects to node N (`mesh.connect`), then forever: claim a random resource (with a short wait), hold it for a
random time doing "work" in small steps, release. Every step that acts on the lease first reads the host's
monotonic clock (CLOCK_BOOTTIME, shared by every process of the host) and then checks that the lease is
still valid; only then it records a *belief point* `{ev: valid, t}`. So each recorded `t` is an instant at
which this process believed it held the item — measured at the API holder, not at the node. A node that is
paused, killed or cut off, or this process itself being paused, can only end beliefs; the checker
(`api_intervals` + `claims_checker.check_intervals`) proves they never overlap across holders and that
tokens increase.

Records (JSON lines, flushed each): `{ev: acquired|valid|released|lost|denied|unavailable, id, node,
resource, token, t}`; `id` is this process (pid) and the node process that granted the lease (its pid, read
before and after the claim; a lease whose node restarted in between is released unrecorded): a shared path
claim is a lease per holder identity, so its tokens start over when the node restarts under a client that
reconnected on its own (the client's wire lane and gRPC channel both do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from tests.integration.claims_checker import Interval

STEP = 0.02  # seconds between belief points while holding


class Recorder:
    def __init__(self, out: TextIO, ident: str, node: str) -> None:
        self.out, self.ident, self.node = out, ident, node

    def __call__(self, ev: str, resource: str, token: int, t: float) -> None:
        rec = {"ev": ev, "id": self.ident, "node": self.node, "resource": resource, "token": token, "t": t}
        self.out.write(json.dumps(rec) + "\n")
        self.out.flush()


async def run(args: argparse.Namespace) -> None:
    from mesh.client import Client, connect
    from mesh.clock import BootClock
    from mesh.errors import ClaimDenied, MeshError, NoQuorum

    clock = BootClock()
    rng = random.Random(args.seed)
    resources = json.loads(args.resources)
    out = open(args.out, "a", buffering=1)  # noqa: SIM115 - closed at the end of run()
    record = Recorder(out, f"{args.node}:{os.getpid()}", args.node)
    client: Client | None = None
    try:
        while True:
            if client is None:
                try:
                    client = await connect(args.node, mesh=args.mesh, home=Path(args.home))
                except MeshError:
                    await asyncio.sleep(0.2)
                    continue
            resource = rng.choice(resources)
            type_, _, name = resource.partition("/")
            try:
                node_pid = (await asyncio.wait_for(client.info(), 5.0)).pid
                lease = await asyncio.wait_for(
                    client.claim(type_, name, ttl=rng.uniform(2.0, 8.0), wait=rng.uniform(0.2, 2.0)), 15.0
                )
                granted_by = (await asyncio.wait_for(client.info(), 5.0)).pid
            except ClaimDenied:
                record("denied", resource, 0, clock.now())
                continue
            except NoQuorum:
                record("unavailable", resource, 0, clock.now())
                await asyncio.sleep(0.1)
                continue
            except (MeshError, TimeoutError):
                with contextlib.suppress(Exception):
                    await client.close()
                client = None
                await asyncio.sleep(0.2)
                continue
            if granted_by != node_pid:  # the node restarted around the claim: whose lease it is, is unknown
                with contextlib.suppress(MeshError, TimeoutError):
                    await asyncio.wait_for(lease.release(), 5.0)
                continue
            record.ident = f"{args.node}:{os.getpid()}@{node_pid}"
            t = clock.now()
            if lease.is_valid():  # validity is a prefix: valid now means valid at t, read before
                record("acquired", resource, lease.token, t)
            hold_until = clock.now() + rng.uniform(0.0, 3.0)
            while True:
                t = clock.now()
                if not lease.is_valid():
                    record("lost", resource, lease.token, clock.now())
                    break
                record("valid", resource, lease.token, t)
                if t >= hold_until:
                    record("released", resource, lease.token, t)
                    with contextlib.suppress(MeshError, TimeoutError):
                        await asyncio.wait_for(lease.release(), 5.0)
                    break
                await asyncio.sleep(STEP)
            with contextlib.suppress(MeshError, TimeoutError):
                await asyncio.wait_for(lease.release(), 5.0)
    finally:
        out.close()


def api_intervals(records: Iterable[dict[str, Any]]) -> list[Interval]:
    """Belief intervals at the API holders: from `acquired` to the last instant the holder believed."""
    spans: dict[tuple[str, str, int], list[float]] = {}
    node: dict[str, str] = {}
    ended: dict[tuple[str, str, int], str] = {}
    for r in records:
        if r["ev"] not in ("acquired", "valid", "released", "lost"):
            continue
        key = (str(r["id"]), str(r["resource"]), int(r["token"]))
        node[key[0]] = str(r.get("node", "?"))
        if r["ev"] == "lost":
            ended[key] = "lost"
            continue
        if r["ev"] == "released":
            ended.setdefault(key, "released")
        s = spans.setdefault(key, [float(r["t"]), float(r["t"])])
        s[0], s[1] = min(s[0], float(r["t"])), max(s[1], float(r["t"]))
    return [
        Interval(res, ident, node[ident], token, a, b, ended.get((ident, res, token), "deadline"))
        for (ident, res, token), (a, b) in spans.items()
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.integration.api_holder")
    ap.add_argument("--home", required=True)
    ap.add_argument("--mesh", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--resources", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    loop = asyncio.new_event_loop()
    task = loop.create_task(run(args))
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
