"""Local links: peer links between nodes of one host and uid on a unix stream (mesh._transport.local).

    listener (abstract name of our advertised loopback address) ── SO_PEERCRED: our uid? ── Hello (CA digest
    too) ── our Hello or a Reject ──▶ LinkTable.register ──▶ LinkTable.carry (the same frames as a gRPC link)
    Dialer.dial(loopback address) ── connect the name: nothing there → gRPC as before; else the mirror image

Everything after the handshake (tie-break, frames, batches, budget, link_down and redial) is the gRPC link's:
the same `Link` and `LinkTable`. See mesh._transport.local for why this is as safe as mutual TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._runtime.hello import Handshake, Refusal
from mesh._runtime.lifecycle import Lifecycle
from mesh._runtime.links import LinkTable
from mesh._transport import guard, local
from mesh._transport.peer import Link, frame, frames
from mesh.clock import Clock
from mesh.core.errors import LimitExceeded, ProtocolError
from mesh.core.ratelimit import LogLimiter

log = logging.getLogger("mesh")


class LocalListener:
    """Accepts local links dialed by nodes of this host and uid."""

    def __init__(self, *, clock: Clock, life: Lifecycle, links: LinkTable, handshake: Handshake) -> None:
        self.clock = clock
        self.life = life
        self.links = links
        self.handshake = handshake
        self.name: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self._admission = guard.PeerAdmission()  # local links per peer node id
        self._log_limit = LogLimiter()

    def _refusal(self, key: str, msg: str, *args: Any) -> None:
        if self._log_limit.allow(key, self.clock.now()):
            log.warning(msg, *args)

    async def start(self, address: str) -> str | None:
        """Listen on the abstract name of `address`; None when listening (or when `address` is not loopback:
        links stay on gRPC), else why not: the name is taken (another node of this uid advertises the same
        address, so its port is taken too). The caller says so once its own port is bound (if that fails,
        the port in use is the one thing to tell)."""
        name = local.socket_name(address)
        if name is None:
            return None
        try:
            self._server = await asyncio.start_unix_server(self._on_conn, name, limit=local.READ_LIMIT)
        except OSError as e:
            return f"local links off: cannot listen on {name[1:]!r}: {e.strerror or e}"
        self.name = name
        return None

    async def stop(self) -> None:
        """Stop accepting and end every local link this listener accepted."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._conns):
            t.cancel()
        for t in list(self._conns):
            with contextlib.suppress(BaseException):
                await t

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        side = local.StreamSide(writer)
        self._conns.add(task)
        try:
            uid = local.peer_uid(writer)
            if uid != os.getuid():
                # Not our user: it could not read our CA key, so it gets nothing here (mTLS on the port).
                self._refusal("uid", "refused a local link from uid %s (this node runs as uid %s)",
                              uid, os.getuid())  # fmt: skip
                return
            if len(self._conns) > limits.PEER_MAX_CONNECTIONS:
                self._refusal("conns", "refused a local link: %d open", len(self._conns) - 1)
                return
            await self._serve(reader, side)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            side.close()
            self._conns.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, side: local.StreamSide) -> None:
        try:
            async with asyncio.timeout(limits.HELLO_TIMEOUT):
                first = await local.read_frame(reader)
        except (TimeoutError, ProtocolError, OSError):
            return
        if first is None or not first.HasField("hello"):
            self._refusal("hello", "refused a local link: the first frame is not a hello")
            return
        key = first.hello.node.node_id[:64]
        try:
            self._admission.admit(key, self.clock.now())
        except LimitExceeded as e:
            self._refusal(key, "refused a local link from %r: %s", key, e)
            return
        try:
            try:
                info, status = self.handshake.check(first.hello, local=True)
            except Refusal as r:
                # Another CA is logged by the dialer (once per address), as a TLS handshake failure is: a
                # refused node redials for its life, so logging here too would report each pair twice.
                side.write_nowait(frame(reject=pb.Reject(reason=r.reason, detail=r.detail)))  # type: ignore[arg-type]
                return
            except ProtocolError as e:
                self._refusal(key, "refused a local link from %r: %s", key, e)
                return
            if not self.life.serving:
                return
            side.write_nowait(self.handshake.hello(local=True))
            link = Link(info, dialer=info.node_id, outbound=False, write=side.write, finish=side.finish,
                        batches=first.hello.frame_batches, columns=first.hello.mail_columns,
                        local=True, write_now=side.write_now)  # fmt: skip
            if not self.links.register(link, status):
                return
            # The writer flushes what is queued (a Leave) and half-closes; the socket closes after (_on_conn).
            violation = await self.links.carry(link, frames(lambda: local.read_frame(reader)))
            if violation is not None:
                self._refusal(key, "closed the local link from %s: %s", link.peer.name, violation)
        finally:
            self._admission.release(key)
