"""The dialer's gossip dial slots: a dial that linked frees its slot at once, so a newcomer that hears of
more members than it has slots links them all without waiting out a retry pause (a regression: each slot
was held GOSSIP_RETRY after its dial linked, and the last members of a staggered join came 0.5 s late)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from mesh._runtime import dialer as dialer_mod
from mesh._runtime.dialer import GOSSIP_DIALS_AT_ONCE, Dialer
from mesh._runtime.lifecycle import Lifecycle
from mesh.core.membership import PeerInfo


def _dialer(linked: dict[str, Any], dials: list[str]) -> Dialer:
    me = PeerInfo("zzzzzzzz", "inc00000", "me", address="127.0.0.1:1")
    life = Lifecycle()  # joining: a new node defers no hint
    d = Dialer(me=me, mesh="m", credentials=None, clock=SimpleNamespace(now=lambda: 0.0), life=life,  # type: ignore[arg-type]
               links=SimpleNamespace(links=linked), hub=SimpleNamespace(core=SimpleNamespace(members={})),  # type: ignore[arg-type]
               handshake=None, spawn=lambda coro, name: asyncio.get_running_loop().create_task(coro))  # type: ignore[arg-type]  # fmt: skip

    async def dial_quietly(address: str, expected: str | None) -> None:
        dials.append(address)
        await asyncio.sleep(0)
        linked[expected or address] = object()  # the handshake completed: linked

    d.dial_quietly = dial_quietly  # type: ignore[method-assign]
    return d


async def test_linked_dials_free_their_slots_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dialer_mod, "GOSSIP_RETRY", 3600.0)  # a slot held for a retry pause would never free
    linked: dict[str, Any] = {}
    dials: list[str] = []
    d = _dialer(linked, dials)
    peers = [PeerInfo(f"node{i:04d}", "inc00000", f"p{i}", address=f"127.0.0.1:{100 + i}") for i in range(10)]
    assert len(peers) > GOSSIP_DIALS_AT_ONCE
    for p in peers:
        d.on_gossip(p)
    for _ in range(200):
        if len(linked) == len(peers):
            break
        await asyncio.sleep(0)
    assert sorted(linked) == sorted(p.node_id for p in peers)
    assert sorted(dials) == sorted(p.address for p in peers)  # each dialed once
