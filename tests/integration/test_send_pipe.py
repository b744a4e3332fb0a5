"""A busy `Client.send` on a real node: the SendStream coalesces. While a batch awaits its answer, the sends
that follow wait for it and go as one batch, unless SECOND_AT of them are queued; every send is answered
once, with its own message, in the order it was made."""

from __future__ import annotations

import asyncio
from typing import Any

from mesh import client as client_mod
from tests.integration.harness import FAST, Mesh, until

NO_MDNS = ["--no-mdns", *FAST]


def test_busy_sends_go_in_few_big_batches_each_answered_once(mesh: Mesh) -> None:
    a = mesh.up("a", *NO_MDNS)
    mesh.up("b", *NO_MDNS, "--peer", a.address)
    until(lambda: mesh.states("a").get("b") == "alive")

    async def run() -> tuple[list[tuple[int, int]], list[str], list[str]]:
        written: list[tuple[int, int]] = []  # (sends in the batch, batches in flight before it)
        async with await client_mod.connect("a", mesh=mesh.name, home=mesh.home) as c:
            pipe = c._pipe
            take = pipe._take

            def spy() -> Any:
                flying = len(pipe._in_flight)
                batch = take()
                written.append((len(batch.columns.subject) or len(batch.items), flying))
                return batch

            pipe._take = spy  # type: ignore[method-assign]
            subjects = [f"p {i:04d}" for i in range(1200)]
            sent = await asyncio.gather(*(c.send("b", s, "x" * 50) for s in subjects))
        return written, subjects, [s.id for s in sent]

    written, subjects, ids = asyncio.run(run())
    assert len(set(ids)) == len(ids) == 1200  # one message each
    # In the order made: the node numbers a stream's messages as it queues them.
    assert [int(i.rsplit("-", 1)[1]) for i in ids] == sorted(int(i.rsplit("-", 1)[1]) for i in ids)
    assert sum(n for n, _ in written) <= 1200  # the first send may have gone over the hook wire
    for n, flying in written:
        assert flying < client_mod.PIPE_DEPTH
        assert flying == 0 or n >= client_mod.SECOND_AT, written  # a second batch only when big
    until(lambda: len(_inbox_subjects(mesh)) == 1200, timeout=60, what="b has every message")
    assert _inbox_subjects(mesh) == subjects


def _inbox_subjects(mesh: Mesh) -> list[str]:
    import json

    got = json.loads(mesh.ctl("inbox", "--json", "--limit", "10000", node="b").stdout)
    return [m["subject"] for m in got]
