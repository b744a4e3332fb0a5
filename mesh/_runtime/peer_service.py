"""The peer API server and servicer: accepts links that peers dial (the inbound half of `Dialer`).

Admission by the certificate's identity comes before anything is read (so streams held open without a
Hello count too); the first frame must be a Hello that passes the Handshake; then frames go to the link
table until the peer ends the stream or breaks the protocol (the link ends with that error's status).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._runtime.hello import Handshake, Refusal
from mesh._runtime.lifecycle import Lifecycle
from mesh._runtime.links import LinkTable
from mesh._transport import guard
from mesh._transport import peer as _peer
from mesh._transport.errors import abort
from mesh._transport.peer import EOF, SERVER_OPTIONS, frame, frames
from mesh.clock import Clock
from mesh.core.errors import ConfigError, LimitExceeded, ProtocolError
from mesh.core.ratelimit import LogLimiter

if TYPE_CHECKING:
    from mesh._tls import Credentials

log = logging.getLogger("mesh")

Ctx = grpc.aio.ServicerContext[Any, Any]


def peer_server(bind: str, port: int, credentials: Credentials | None) -> tuple[grpc.aio.Server, int]:
    """The peer API's server, bound (not started) on bind:port; the port it got (port 0: any free one)."""
    server = grpc.aio.server(
        options=SERVER_OPTIONS,
        interceptors=[guard.SafeDecode()],
        maximum_concurrent_rpcs=limits.PEER_MAX_CONCURRENT_RPCS,
    )
    listen = f"{bind}:{port}"
    try:
        if credentials is not None:
            got = server.add_secure_port(listen, credentials.server_credentials())
        else:
            got = server.add_insecure_port(listen)
    except RuntimeError:  # grpc.aio reports a failed bind this way
        got = 0
    if got == 0:
        raise ConfigError(
            f"cannot listen on {bind}:{port}: the port is in use (by another node or program) "
            "or the address is not one of this host's; choose another --port/--bind (0 = any free port)"
        )
    return server, got


class PeerServicer(pbg.PeerServicer):
    """Accepts links dialed by peers."""

    def __init__(
        self,
        *,
        credentials: Credentials | None,
        clock: Clock,
        life: Lifecycle,
        links: LinkTable,
        handshake: Handshake,
    ) -> None:
        self.credentials = credentials
        self.clock = clock
        self.life = life
        self.links = links
        self.handshake = handshake
        self._admission = guard.PeerAdmission()  # inbound Link streams per peer identity
        self._log_limit = LogLimiter()

    def _refusal(self, key: str, msg: str, *args: Any) -> None:
        """Log a refused link or frame: a few lines per peer, then one per 10 s (no flood)."""
        if self._log_limit.allow(key, self.clock.now()):
            log.warning(msg, *args)

    async def Link(self, request_iterator: Any, context: Ctx) -> None:
        # Plaintext (benchmarks only) has no identity: count by address.
        who = self.credentials.peer_identity(context) if self.credentials is not None else None
        key = who or str(context.peer())
        try:
            self._admission.admit(key, self.clock.now())
        except LimitExceeded as e:
            self._refusal(key, "refused a link from %s (%s): %s", key, context.peer(), e)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        try:
            await self._serve(context, who, key)
        finally:
            self._admission.release(key)

    async def _serve(self, context: Ctx, who: str | None, key: str) -> None:
        try:
            async with asyncio.timeout(limits.HELLO_TIMEOUT):
                first = await context.read()
        except TimeoutError:
            return
        if first is EOF or not isinstance(first, pb.PeerFrame) or not first.HasField("hello"):
            why = first.reason if isinstance(first, guard.Undecodable) else "not a hello"
            self._refusal(key, "refused a link from %s: first frame %s", key, why)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first frame must be a hello")
            return
        if self.credentials is not None and (who is None or who != first.hello.node.node_id):
            self._refusal(key, "refused a link from %s: its certificate is not for node %r", context.peer(),
                          first.hello.node.node_id[:64])  # fmt: skip
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "certificate does not match the node id")
            return
        try:
            info, status = self.handshake.check(first.hello)
        except Refusal as r:
            await context.write(frame(reject=pb.Reject(reason=r.reason, detail=r.detail)))  # type: ignore[arg-type]
            return
        except ProtocolError as e:
            self._refusal(key, "refused a link from %s: %s", key, e)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad hello: {e}")
            return
        if not self.life.serving:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node is stopping")
            return
        await context.write(self.handshake.hello())

        async def finish() -> None:
            return None

        link = _peer.Link(info, dialer=info.node_id, outbound=False, write=context.write, finish=finish,
                          batches=first.hello.frame_batches, columns=first.hello.mail_columns)  # fmt: skip
        if not self.links.register(link, status):
            return
        # linger 0: the peer sees this stream end only when this handler returns.
        violation = await self.links.carry(link, frames(context.read), linger=0)
        if violation is not None:
            self._refusal(key, "closed the link from %s: %s", link.peer.name, violation)
            await abort(context, violation)
