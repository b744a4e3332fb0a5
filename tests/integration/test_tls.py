"""Mutual TLS with mesh credentials: a real grpc.aio server and clients on 127.0.0.1, generic handler."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh import security
from mesh.core.values import replace

METHOD = "/meshtest.Echo/Call"
TIMEOUT = 10.0


@dataclass
class Server:
    address: str
    creds: security.Credentials
    seen: list[tuple[str | None, str | None]] = field(default_factory=list)
    """(peer_identity(context), creds.peer_identity(context)) per call that reached the handler."""


async def _start(creds: security.Credentials) -> tuple[grpc.aio.Server, Server]:
    info: Server | None = None

    async def call(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        assert info is not None
        info.seen.append((security.peer_identity(context), info.creds.peer_identity(context)))
        return b"echo:" + request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "meshtest.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
            )
        ]
    )
    port = server.add_secure_port("127.0.0.1:0", creds.server_credentials())
    await server.start()
    info = Server(f"127.0.0.1:{port}", creds)
    return server, info


@pytest.fixture
async def member_server(tmp_path: Path) -> AsyncIterator[Server]:
    creds, _ = security.ensure_credentials(tmp_path, "tls", "node-a")
    server, info = await _start(creds)
    yield info
    await server.stop(None)


async def _call(channel: grpc.aio.Channel) -> bytes:
    stub = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    result: Any = await stub(b"hi", timeout=TIMEOUT)
    assert isinstance(result, bytes)
    return result


async def _member_call(address: str, creds: security.Credentials) -> bytes:
    async with grpc.aio.secure_channel(
        address, creds.channel_credentials(), options=creds.channel_options()
    ) as channel:
        return await _call(channel)


async def _refused(channel_factory: Any) -> grpc.aio.AioRpcError:
    async with channel_factory() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _call(channel)
    return e.value


async def test_member_client_gets_in_and_server_sees_its_node_id(
    tmp_path: Path, member_server: Server
) -> None:
    client = security.load_credentials(tmp_path, "tls", "node-b")
    assert await _member_call(member_server.address, client) == b"echo:hi"
    assert member_server.seen == [("node-b", "node-b")]


async def test_client_of_another_ca_with_the_same_mesh_name_is_refused(
    tmp_path: Path, member_server: Server
) -> None:
    rogue, created = security.ensure_credentials(tmp_path / "rogue", "tls", "rogue")
    assert created and rogue.fingerprint != member_server.creds.fingerprint
    err = await _refused(
        lambda: grpc.aio.secure_channel(
            member_server.address, rogue.channel_credentials(), options=rogue.channel_options()
        )
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    # Even trusting our CA (a stolen ca.crt is not secret) does not help without a leaf it signed.
    impostor = replace(rogue, ca_pem=member_server.creds.ca_pem)
    err = await _refused(
        lambda: grpc.aio.secure_channel(
            member_server.address, impostor.channel_credentials(), options=impostor.channel_options()
        )
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert member_server.seen == []
    # The server shrugged it off and still serves members.
    member = security.load_credentials(tmp_path, "tls", "node-b")
    assert await _member_call(member_server.address, member) == b"echo:hi"


async def test_plaintext_client_is_refused(tmp_path: Path, member_server: Server) -> None:
    err = await _refused(lambda: grpc.aio.insecure_channel(member_server.address))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert security.handshake_refusal(err) is None  # the server just closed the socket
    assert member_server.seen == []


async def test_tls_client_without_a_certificate_is_refused(tmp_path: Path, member_server: Server) -> None:
    creds = member_server.creds
    err = await _refused(
        lambda: grpc.aio.secure_channel(
            member_server.address,
            grpc.ssl_channel_credentials(root_certificates=creds.ca_pem),
            options=creds.channel_options(),
        )
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert member_server.seen == []


async def test_member_refuses_a_server_of_another_ca(tmp_path: Path) -> None:
    rogue, _ = security.ensure_credentials(tmp_path / "rogue", "tls", "rogue")
    server, info = await _start(rogue)
    try:
        member, _ = security.ensure_credentials(tmp_path, "tls", "node-b")
        err = await _refused(
            lambda: grpc.aio.secure_channel(
                info.address, member.channel_credentials(), options=member.channel_options()
            )
        )
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert security.handshake_refusal(err) == "certificate not issued by this mesh's CA"
        assert info.seen == []
    finally:
        await server.stop(None)


async def test_expired_leaf_is_refused(tmp_path: Path, member_server: Server) -> None:
    ca = security.load_ca(tmp_path, "tls")
    stale = ca.issue("node-old", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=60))
    assert stale.not_after < dt.datetime.now(dt.UTC)
    err = await _refused(
        lambda: grpc.aio.secure_channel(
            member_server.address, stale.channel_credentials(), options=stale.channel_options()
        )
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert member_server.seen == []
    # A member dialling a node whose leaf expired learns why.
    stale_server, info = await _start(stale)
    try:
        member = security.load_credentials(tmp_path, "tls", "node-b")
        err = await _refused(
            lambda: grpc.aio.secure_channel(
                info.address, member.channel_credentials(), options=member.channel_options()
            )
        )
        assert security.handshake_refusal(err) == "certificate expired (or clocks disagree)"
    finally:
        await stale_server.stop(None)


async def test_after_rotation_old_members_are_refused(tmp_path: Path, member_server: Server) -> None:
    old_member = security.load_credentials(tmp_path, "tls", "node-b")
    security.rotate(tmp_path, "tls")
    # The running server keeps the old CA until restarted (documented); a restarted node uses the new one.
    restarted, _ = security.ensure_credentials(tmp_path, "tls", "node-a")
    server, info = await _start(restarted)
    try:
        err = await _refused(
            lambda: grpc.aio.secure_channel(
                info.address, old_member.channel_credentials(), options=old_member.channel_options()
            )
        )
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        new_member = security.load_credentials(tmp_path, "tls", "node-b")
        assert await _member_call(info.address, new_member) == b"echo:hi"
        assert info.seen == [("node-b", "node-b")]
    finally:
        await server.stop(None)


async def test_leaf_for_another_mesh_name_is_not_an_identity_in_this_mesh(
    tmp_path: Path, member_server: Server
) -> None:
    # Same CA used under another mesh name (not possible through import_token, but defend in depth).
    ca = security.load_ca(tmp_path, "tls")
    other = security.MeshCA("other", ca.cert, ca.key).issue("node-x")
    # Dialling verifies the server's mesh name: a client expecting mesh "other" refuses our server ...
    err = await _refused(
        lambda: grpc.aio.secure_channel(
            member_server.address, other.channel_credentials(), options=other.channel_options()
        )
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert security.handshake_refusal(err) == "certificate is for another mesh name"
    # ... and if it forces the right name, the server sees it, but not as a member of mesh "tls".
    async with grpc.aio.secure_channel(
        member_server.address, other.channel_credentials(), options=member_server.creds.channel_options()
    ) as channel:
        assert await _call(channel) == b"echo:hi"
    assert member_server.seen == [("node-x", None)]
