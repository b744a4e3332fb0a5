"""The mail service's low-latency paths on real nodes (embedded `mesh.Node`s of one process, linked over
loopback): a broadcast's recipient list is cached but a newcomer is in the next broadcast; a recipient holds
its ack back (ACK_DELAY) yet acks at once after a full batch, and sends what it owes before it leaves."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mesh import Node, NodeConfig
from mesh._services import mail
from mesh.core import mailbox as mb
from tests.integration.harness import async_until


def cfg(name: str, home: Path, mesh_name: str, **kw: object) -> NodeConfig:
    # Slow failure detection: one loop carries every node here, and a stalled test process must not make a
    # spurious suspect (a departure is announced by the Leave, not detected).
    return NodeConfig.fast(
        name, home=home, mesh=mesh_name, mdns=False, lease=1.0, join_window=0.0, suspect_after=10.0,
        dead_after=20.0, **kw,
    )  # fmt: skip


@pytest.fixture
def mesh_name() -> str:
    return "mail-" + uuid.uuid4().hex[:8]


async def _alive(node: Node, names: set[str]) -> bool:
    return names <= {m.name for m in await node.members() if m.state == "alive"}


async def _states(node: Node) -> dict[str, str]:
    return {e.id + "/" + e.to_name: e.state.value for e in await node.outbox()}


async def test_a_broadcast_after_a_join_reaches_the_newcomer(tmp_path: Path, mesh_name: str) -> None:
    async with Node(config=cfg("a", tmp_path, mesh_name)) as a:
        async with Node(config=cfg("b", tmp_path, mesh_name, peers=(a.address,))):
            await async_until(lambda: _alive(a, {"a", "b"}), what="a sees b")
            first = await a.broadcast("one", "before c")
            again = await a.broadcast("two", "still before c")  # served from the cached list
            assert first.recipients == again.recipients == ("b",)
            async with Node(config=cfg("c", tmp_path, mesh_name, peers=(a.address,))) as c:
                await async_until(lambda: _alive(a, {"a", "b", "c"}), what="a sees c")
                sent = await a.broadcast("three", "after c joined")
                assert sorted(sent.recipients) == ["b", "c"]
                await async_until(
                    lambda: _got(c, sent.id), what="the newcomer has the broadcast sent after it joined"
                )
                assert [m.subject async for m in c.messages()] == ["three"]
            # A member that left is still a recipient (it gets the message when it returns).
            later = await a.broadcast("four", "c is away")
            assert sorted(later.recipients) == ["b", "c"]


async def _got(node: Node, mid: str) -> bool:
    return mid in [m.id async for m in node.messages()]


async def test_a_held_ack_goes_out_before_the_recipient_leaves(
    tmp_path: Path, mesh_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mail, "ACK_DELAY", 3600.0)  # held for the whole test unless something sends it
    async with Node(config=cfg("a", tmp_path, mesh_name)) as a:
        b = await Node(config=cfg("b", tmp_path, mesh_name, peers=(a.address,))).start()
        try:
            await async_until(lambda: _alive(a, {"a", "b"}), what="a sees b")
            sent = await a.send("b", "hi", "held ack")
            await async_until(lambda: _got(b, sent.id), what="b stored the message")
            assert (await _states(a))[f"{sent.id}/b"] == "queued"  # b's ack is held back
        finally:
            await b.stop("test over")
        # b is gone: only the ack it sent before its Leave can mark the message delivered.
        await async_until(
            lambda: _delivered(a, f"{sent.id}/b"), what="the held ack reached a before b's Leave"
        )


async def _delivered(node: Node, key: str) -> bool:
    return (await _states(node)).get(key) == "delivered"


async def test_a_full_batch_is_acked_at_once(
    tmp_path: Path, mesh_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mail, "ACK_DELAY", 3600.0)
    async with Node(config=cfg("a", tmp_path, mesh_name)) as a:
        async with Node(config=cfg("b", tmp_path, mesh_name, peers=(a.address,))):
            await async_until(lambda: _alive(a, {"a", "b"}), what="a sees b")
            n = mail.ACK_AT_ONCE
            sent = await a.send_many([mb.SendItem("b", f"m {i}", "x") for i in range(n)])
            assert all(not isinstance(s, Exception) for s in sent)

            async def all_delivered() -> bool:
                return {e.state.value for e in await a.outbox(limit=n)} == {"delivered"}

            await async_until(all_delivered, what=f"{n} messages acked without waiting for ACK_DELAY")
