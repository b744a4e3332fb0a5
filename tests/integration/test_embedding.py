"""The embedding API: `from mesh import Node` in one asyncio program, real gRPC over loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import mesh
from mesh import ClaimDenied, Node, NodeConfig
from tests.integration.harness import async_until


def cfg(name: str, home: Path, mesh_name: str, **kw: object) -> NodeConfig:
    return NodeConfig.fast(name, home=home, mesh=mesh_name, mdns=False, lease=1.0, join_window=0.0, **kw)


@pytest.fixture
def mesh_name() -> str:
    return "emb-" + uuid.uuid4().hex[:8]


async def test_two_nodes_heartbeat_members_watch(tmp_path: Path, mesh_name: str) -> None:
    # The next state event of b must be its leaving: a detector that suspects after 0.6 s of silence would
    # let a stalled test process (two nodes, one loop, a loaded machine) put a spurious suspect first.
    slow = {"suspect_after": 10.0, "dead_after": 20.0}
    async with Node(config=cfg("a", tmp_path, mesh_name, **slow)) as a:
        events = a.watch()
        async with Node(config=cfg("b", tmp_path, mesh_name, peers=(a.address,), **slow)) as b:
            ev = await asyncio.wait_for(anext(events), 30)
            while ev.kind != "joined":  # status events (a's own, steward changes) may come first
                ev = await asyncio.wait_for(anext(events), 30)
            assert ev.member.name == "b"
            await b.heartbeat(action="build", target="i-match", phase="tests", progress=40)

            async def seen() -> bool:
                ms = {m.name: m for m in await a.members()}
                return ms["b"].action == "build" and ms["b"].progress == 40

            await async_until(seen)
            with pytest.raises(mesh.InvalidInput, match="0 to 100"):
                await b.heartbeat(progress=140)
        ev = await asyncio.wait_for(_next_state(events, "b"), 30)
        assert ev == "left"


async def _next_state(events: AsyncIterator[mesh.MemberEvent], name: str) -> str:
    async for ev in events:
        if ev.kind == "state" and ev.member.name == name:
            return ev.member.state
    raise AssertionError("watch ended")


async def test_claim_context_manager_denied_and_released(tmp_path: Path, mesh_name: str) -> None:
    async with Node(config=cfg("a", tmp_path, mesh_name)) as a:
        async with Node(config=cfg("b", tmp_path, mesh_name, peers=(a.address,))) as b:
            await async_until(
                lambda: a._rt.claims.core.config is not None and b._rt.claims.core.config is not None
            )
            async with a.claim("service", "i-match", ttl=60) as lease:
                assert lease.token > 0 and lease.resource == "service/i-match" and not lease.lost.is_set()
                with pytest.raises(ClaimDenied) as denied:
                    await b.claim("service", "i-match", ttl=60)
                assert denied.value.holder == "a" and denied.value.expires_at is not None
                await async_until(lambda: _holders_are(b, "service/i-match", ["a"]))
            # Released on leaving the block: b gets it now, with a larger token.
            second = await b.claim("service", "i-match", ttl=60)
            assert second.token > lease.token
            await second.release()


async def _holders_are(node: Node, resource: str, want: list[str]) -> bool:
    return await _holders(node, resource) == want


async def _holders(node: Node, resource: str) -> list[str]:
    return [c.holder for c in await node.claims() if c.resource == resource]


async def test_lease_lost_fires_when_the_stewards_are_gone(tmp_path: Path, mesh_name: str) -> None:
    a = await Node(config=cfg("a", tmp_path, mesh_name)).start()  # genesis: the only steward
    try:
        async with Node(config=cfg("b", tmp_path, mesh_name, peers=(a.address,))) as b:
            await async_until(lambda: b._rt.claims.core.config is not None)
            lease = await b.claim("task", "t1", ttl=60)
            # The steward dies without a word (no leave): b cannot renew and must say so within a lease.
            await a._rt._teardown()
            await asyncio.wait_for(lease.lost.wait(), 30)  # its own timer; a cap, not a figure
            assert lease.lost.is_set()
    finally:
        await a._rt._teardown()


async def test_connect_to_a_running_node(tmp_path: Path, mesh_name: str) -> None:
    async with Node(config=cfg("a", tmp_path, mesh_name)) as a:
        await async_until(lambda: a._rt.claims.core.config is not None)
        async with await mesh.connect("a", mesh=mesh_name, home=tmp_path) as client:
            info = await client.info()
            assert info.name == "a" and info.node_id == a.node_id
            await client.heartbeat(action="review", progress=10)
            assert (await a.members())[0].action == "review"
            async with client.claim("file", "src/app.py", ttl=30) as lease:
                assert lease.token > 0
                await async_until(lambda: _holders_are(a, "file/src/app.py", ["a"]))
            await async_until(lambda: _empty(a))
        with pytest.raises(mesh.NodeNotFound):
            await mesh.connect("nobody", mesh=mesh_name, home=tmp_path)


async def test_held_and_paging_forward_agree_on_both_faces(tmp_path: Path, mesh_name: str) -> None:
    # held() and messages(after=...) came with the hook wire; the Client must answer as the Node does.
    async with Node(config=cfg("a", tmp_path, mesh_name)) as a:
        await async_until(lambda: a._rt.claims.core.config is not None)
        async with await mesh.connect("a", mesh=mesh_name, home=tmp_path) as client:
            assert await a.held() == await client.held() == []
            granted = await client.claim_once("task/x", 60.0)
            for face in (a, client):
                # Exact at once (claims() shows it only once the status is published).
                assert [(c.resource, c.holder, c.token) for c in await face.held()] == [
                    ("task/x", "a", granted.token)
                ]
            async with Node(config=cfg("b", tmp_path, mesh_name, peers=(a.address,))) as b:
                for i in range(5):
                    await b.send("a", f"s{i}", "body")
                await async_until(lambda: _inbox_size(a, 5))
            seqs = [m.local_seq async for m in a.messages()]
            for face in (a, client):
                page = [m.subject async for m in face.messages(after=seqs[1], limit=2)]
                assert page == ["s2", "s3"]  # the first two after it, not the newest two
                assert [m.subject async for m in face.messages(after=seqs[-1])] == []
            assert await client.release("task", "x") and await a.held() == []


async def _inbox_size(node: Node, n: int) -> bool:
    return len([m async for m in node.messages()]) == n


async def _empty(node: Node) -> bool:
    return not await node.claims()
