"""The dialer's rule for a loopback peer whose local name refuses: gRPC only once the peer's port accepts.

A node binds its local name before its port, so a refused name with a refused port is a peer not up yet (the
dial fails; seeds and gossip dials retry), and an open port with the name still refused is a peer that takes
no local links (gRPC). Falling back to gRPC at once made a peer that came up during the gRPC connect a gRPC
link for good. Real TCP ports on 127.0.0.1; the local dial's outcomes are scripted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from bench.procs import free_ports
from mesh._runtime.dialer import Dialer, _Local
from mesh._runtime.lifecycle import Lifecycle
from mesh.core.errors import NodeUnavailable
from mesh.core.membership import PeerInfo


def _dialer(local_outcomes: list[_Local], calls: list[str]) -> Dialer:
    me = PeerInfo("zzzzzzzz", "inc00000", "me", address="127.0.0.1:1")
    d = Dialer(me=me, mesh="m", credentials=None, clock=SimpleNamespace(now=lambda: 0.0), life=Lifecycle(),
               links=SimpleNamespace(links={}), hub=SimpleNamespace(core=SimpleNamespace(members={})),  # type: ignore[arg-type]
               handshake=None, spawn=lambda coro, name: asyncio.get_running_loop().create_task(coro),  # type: ignore[arg-type]
               local=True)  # fmt: skip

    async def dial_local(address: str) -> _Local:
        calls.append("local")
        return local_outcomes.pop(0)

    async def dial_grpc(address: str) -> None:
        calls.append("grpc")

    d._dial_local = dial_local  # type: ignore[method-assign]
    d._dial_grpc = dial_grpc  # type: ignore[method-assign]
    return d


@contextlib.asynccontextmanager
async def _open_port() -> AsyncIterator[str]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_name_and_port_refused_is_a_peer_not_up_yet() -> None:
    calls: list[str] = []
    d = _dialer([_Local.REFUSED], calls)
    with pytest.raises(NodeUnavailable, match="not listening"):
        await d.dial(f"127.0.0.1:{free_ports(1)[0]}", None)
    assert calls == ["local"]  # no gRPC call that a peer coming up meanwhile would answer


async def test_port_open_means_the_name_is_bound_now() -> None:
    # The peer came up between the refused name and the probe: the second local dial links.
    calls: list[str] = []
    d = _dialer([_Local.REFUSED, _Local.LINKED], calls)
    async with _open_port() as address:
        await d.dial(address, None)
    assert calls == ["local", "local"]


async def test_port_open_and_name_refused_is_a_peer_without_local_links() -> None:
    calls: list[str] = []
    d = _dialer([_Local.REFUSED, _Local.REFUSED], calls)
    async with _open_port() as address:
        await d.dial(address, None)
    assert calls == ["local", "local", "grpc"]


async def test_not_local_goes_to_grpc_without_a_probe() -> None:
    calls: list[str] = []
    d = _dialer([_Local.NOT_LOCAL], calls)
    await d.dial(f"127.0.0.1:{free_ports(1)[0]}", None)  # nothing listens: a probe would have failed the dial
    assert calls == ["local", "grpc"]
