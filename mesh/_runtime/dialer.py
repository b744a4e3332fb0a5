"""Outbound links: dialing a candidate, redialing a lost peer, keeping seeds, following gossip hints.

seeds (config) ─┐
mDNS candidate ─┼──▶ dial(address) ── Hello both ways ──▶ LinkTable.register ──▶ read loop
gossip hint ────┘    │    (Handshake checks theirs)
                     └ loopback: the local name first; refused, with the port refused too: not up (the dial
                       fails); with the port open: no local links there, gRPC
link lost ──▶ redial: a refused TCP connect means the process is gone (dead at once); else retry
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from typing import TYPE_CHECKING, Any

import grpc

from mesh import limits, taps
from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._runtime.hello import Handshake, Refusal
from mesh._runtime.lifecycle import Lifecycle
from mesh._runtime.links import LinkTable
from mesh._runtime.members import MemberHub, is_gone
from mesh._services.context import Spawn
from mesh._transport import local
from mesh._transport.peer import CHANNEL_OPTIONS, EOF, Link, frames
from mesh.clock import Clock
from mesh.core import validate
from mesh.core.errors import InvalidInput, MeshError, NameTaken, NodeUnavailable, ProtocolError
from mesh.core.membership import Liveness, PeerInfo

if TYPE_CHECKING:
    from mesh._tls import Credentials

log = logging.getLogger("mesh")

HELLO_TIMEOUT = limits.HELLO_TIMEOUT
PROBE_TIMEOUT = 1.0
REDIAL_MIN, REDIAL_MAX = 0.2, 5.0
SEED_LOOK = 2.0  # how often a linked seed is looked at (each look is a wake-up of an idle node)
# A gossip hint about a peer with a smaller node id waits this long before its dial: that peer heard of us by
# the same gossip and dials too, and the tie-break keeps its link, so ours would be a wasted TLS handshake
# (half of all handshakes when a mesh forms). Only if no link came meanwhile do we dial.
GOSSIP_DEFER = 1.0
# ...but not while this node is new: the members it hears of (its seed's list) learn of it only by gossip, a
# few peers at a time, so a newcomer that deferred would wait for dials that come late (staggered joins).
JOIN_WINDOW = 3.0
GOSSIP_DIALS_AT_ONCE = min(4, limits.MAX_GOSSIP_DIALS)
GOSSIP_TRIES, GOSSIP_RETRY = 3, 0.5  # a gossip dial that failed (a peer busy forming) is tried again


class _Local(enum.Enum):
    """How a local dial ended."""

    LINKED = "linked"  # a local link (or the peer's own link to us won the tie-break)
    REFUSED = "refused"  # nothing listens on the peer's local name
    NOT_LOCAL = "not local"  # not a loopback address, or the name is another uid's: gRPC is the way


class Dialer:
    """Opens and keeps the links this node dials."""

    def __init__(
        self,
        *,
        me: PeerInfo,
        mesh: str,
        credentials: Credentials | None,
        clock: Clock,
        life: Lifecycle,
        links: LinkTable,
        hub: MemberHub,
        handshake: Handshake,
        spawn: Spawn,
        local: bool = False,
    ) -> None:
        self.me = me
        self.local = local
        """Try a local link (unix stream) before gRPC for loopback addresses."""
        self.mesh = mesh
        self.credentials = credentials
        self.clock = clock
        self.life = life
        self.links = links
        self.hub = hub
        self.handshake = handshake
        self.spawn = spawn
        self.dialing: set[str] = set()  # addresses being dialed
        self._redialing: set[str] = set()  # node ids with a redial loop
        self._gossip_dials = 0  # dials started by gossip, under way (at most GOSSIP_DIALS_AT_ONCE)
        self._refusals_logged: set[str] = set()
        self._deferred: set[str] = set()  # node ids whose gossip dial waits out GOSSIP_DEFER
        self._gossip_for: set[str] = set()  # node ids with a gossip dial under way (or waiting its turn)
        self._hints: dict[str, PeerInfo] = {}  # gossip hints waiting for a dial slot, by node id
        self._skip = taps.gossip_dial_filters()

    # ------------------------------------------------------------------ what proposes a dial

    def on_candidate(self, node_id: str, address: str) -> None:
        """mDNS proposes a peer."""
        if self.life.stopping or node_id == self.me.node_id or node_id in self.links.links:
            return
        self.spawn(self.dial_quietly(address, node_id), f"dial-{address}")

    def on_gossip(self, info: PeerInfo, *, now: bool = False) -> None:
        """A peer told us about a member: a hint, not an order.

        One gossip dial per member at a time and GOSSIP_DIALS_AT_ONCE in all: when a whole mesh forms at
        once, every node hears of every other at the same moment, and dialing them all together made every
        handshake slow enough to time out (each timed-out dial a TLS handshake and a stream on both sides
        for nothing, and tried again: congestion collapse). A hint beyond that waits (the latest per
        member) and starts when a dial ends, so the mesh does not depend on the hint coming again.
        """
        if not self._wanted(info) or info.address in self.dialing or info.node_id in self._gossip_for:
            return
        if self._skip and any(skip(self.me.name, info.name) for skip in self._skip):
            return
        # A new node defers to no one: the members it hears of (its seed's list) do not know it yet.
        if not now and info.node_id < self.me.node_id and not self._new():
            if info.node_id not in self._deferred:
                self._deferred.add(info.node_id)
                asyncio.get_running_loop().call_later(GOSSIP_DEFER, self._undefer, info)
            return
        if self._gossip_dials >= GOSSIP_DIALS_AT_ONCE:
            if len(self._hints) < limits.MAX_GOSSIP_PEERS or info.node_id in self._hints:
                self._hints[info.node_id] = info
            return
        self._gossip_dials += 1
        self._gossip_for.add(info.node_id)
        task = self.spawn(self._gossip_dial(info), f"dial-{info.address}")
        task.add_done_callback(lambda _: self._gossip_dial_done(info.node_id))

    def _new(self) -> bool:
        """Joining, or ready for less than JOIN_WINDOW."""
        at = self.life.ready_at
        if not self.life.ready.is_set() or at is None:
            return True
        # From the moment it became ready, not from the first hint after it (a node that heard no hint for
        # a while would take itself for new and dial, with the newcomer, the link only one of them keeps).
        return self.clock.now() - at < JOIN_WINDOW

    def _undefer(self, info: PeerInfo) -> None:
        self._deferred.discard(info.node_id)
        if not self.life.stopping:
            self.on_gossip(info, now=True)

    def _wanted(self, info: PeerInfo) -> bool:
        """A member worth a gossip dial: not us, not linked, not known dead or gone in that incarnation."""
        if info.node_id == self.me.node_id or info.node_id in self.links.links or self.life.stopping:
            return False
        m = self.hub.core.members.get(info.node_id)
        return not (
            m is not None
            and m.info.incarnation == info.incarnation
            and m.state in (Liveness.DEAD, Liveness.LEFT)
        )

    async def _gossip_dial(self, info: PeerInfo) -> None:
        for attempt in range(GOSSIP_TRIES):
            # Looked at before the pause too: a dial that linked frees its slot now, not GOSSIP_RETRY later
            # (holding it made a newcomer link its peers 4 per half second: a straggler 0.5 s after the rest).
            if not self._wanted(info):
                return
            if attempt:
                await asyncio.sleep(GOSSIP_RETRY * attempt)
                if not self._wanted(info):
                    return
            await self.dial_quietly(info.address, info.node_id)
            if self._wanted(info) and await _port_refused(info.address):
                # Gossip of a member that is gone (the teller had not heard yet): nobody else may tell us,
                # since it never linked us, so our own refused connect is the evidence (dead at once).
                m = self.hub.core.members.get(info.node_id)
                if m is not None and m.info.incarnation == info.incarnation:
                    self.hub.apply(self.hub.core.refused(info.node_id, self.clock.now()))
                return

    def _gossip_dial_done(self, node_id: str) -> None:
        self._gossip_dials -= 1
        self._gossip_for.discard(node_id)
        while self._hints and self._gossip_dials < GOSSIP_DIALS_AT_ONCE and not self.life.stopping:
            _, info = self._hints.popitem()
            self.on_gossip(info, now=True)

    def ensure(self, info: PeerInfo) -> None:
        """A service has something for a member with no open link: dial it now (no deferring to the
        tie-break, no gossip slot: a correspondent is waiting)."""
        if self.life.stopping or info.node_id in self.links.links or info.address in self.dialing:
            return
        if info.node_id in self._redialing or info.node_id in self._gossip_for:
            return  # a dial for it is under way already
        self.spawn(self._ensure_dial(info), f"dial-{info.address}")

    async def _ensure_dial(self, info: PeerInfo) -> None:
        await self.dial_quietly(info.address, info.node_id)
        if self._wanted(info) and await _port_refused(info.address):
            # A member we never linked (known by hearsay, now on our ring or reminded of a verdict) whose
            # port refuses: the process is gone, dead at once (its watch's dial grace is not waited out).
            m = self.hub.core.members.get(info.node_id)
            if m is not None and m.info.incarnation == info.incarnation:
                self.hub.apply(self.hub.core.refused(info.node_id, self.clock.now()))

    def on_lost(self, peer: PeerInfo) -> None:
        """A link to a peer that may still be alive ended: redial it (one loop per peer)."""
        if peer.node_id in self._redialing:
            return
        self._redialing.add(peer.node_id)
        self.spawn(self._redial(peer), f"redial-{peer.name}")

    async def _redial(self, peer: PeerInfo) -> None:
        """Probe the peer's port: refused means the process is gone (dead now); then keep trying to relink."""
        delay = REDIAL_MIN
        try:
            while not self.life.stopping:
                if is_gone(self.hub.core.members.get(peer.node_id), peer.incarnation):
                    return
                if peer.node_id in self.links.links:
                    return
                if await _port_refused(peer.address):
                    self.hub.apply(self.hub.core.refused(peer.node_id, self.clock.now()))
                else:
                    with contextlib.suppress(MeshError):
                        await self.dial(peer.address, peer.node_id)
                    if peer.node_id in self.links.links:
                        return
                await asyncio.sleep(delay)
                delay = min(REDIAL_MAX, delay * 2)
        finally:
            self._redialing.discard(peer.node_id)

    async def keep_seed(self, address: str) -> None:
        """A seed is retried for the node's life whenever no link to it is open."""
        delay = REDIAL_MIN
        while not self.life.stopping:
            if any(link.peer.address == address for link in self.links.links.values()):
                # Linked: a lost link is redialed by on_lost at once; this loop only has to look now and then.
                delay = REDIAL_MIN
                await asyncio.sleep(SEED_LOOK)
                continue
            await self.dial_quietly(address, None)
            await asyncio.sleep(delay)
            delay = min(REDIAL_MAX, delay * 2)

    # ------------------------------------------------------------------ dialing

    async def dial_quietly(self, address: str, expected: str | None) -> None:
        try:
            await self.dial(address, expected)
        except NameTaken as e:
            if not self.life.ready.is_set():
                self.life.fail(e)
            else:
                log.warning("%s", e)
        except MeshError as e:
            log.debug("dial %s failed: %s", address, e)

    async def dial(self, address: str, expected: str | None) -> None:
        """Open a link to `address` (no-op if one is open or being opened): a local link when the address is
        loopback and a node of our uid listens on its name, else gRPC."""
        if address in self.dialing or address == self.me.address or self.life.stopping:
            return
        if expected is not None and expected in self.links.links:
            return
        self.dialing.add(address)
        try:
            if self.local and await self._local_first(address):
                return
            await self._dial_grpc(address)
        finally:
            self.dialing.discard(address)

    async def _local_first(self, address: str) -> bool:
        """A local link to `address` if its node has one; False: dial gRPC.

        Nothing listening on the local name is not yet a reason for gRPC: the peer may not be up yet. A node
        binds its local name before its port, so only a port that accepts while the name still refuses says
        the peer takes no local links (an older node, `--no-local-links`). Falling back at once lost the race
        with a peer coming up meanwhile: a gRPC call waits for its connect (channel set-up, a reconnect
        backoff of up to 2 s after a refused one), a peer that bound name and port within that wait took the
        call, and the two kept a gRPC link with mutual TLS on every frame for good (seen in 2 of 7 meshes of
        12 started at once, always with the seed, which late joiners dial before it is up)."""
        got = await self._dial_local(address)
        if got is not _Local.REFUSED:
            return got is _Local.LINKED
        if await _port_refused(address):
            raise NodeUnavailable(f"peer {address} is not listening (not up yet, or gone)")
        return await self._dial_local(address) is _Local.LINKED

    async def _dial_local(self, address: str) -> _Local:
        """Try a local link: LINKED (or a link of the peer's own won the tie-break), REFUSED (nothing listens
        on the name), or NOT_LOCAL (not a loopback address, or its socket is another uid's: dial gRPC)."""
        name = local.socket_name(address)
        if name is None:
            return _Local.NOT_LOCAL
        try:
            reader, writer = await asyncio.open_unix_connection(name, limit=local.READ_LIMIT)
        except OSError:  # nothing listens on that name (ECONNREFUSED for an abstract name): see _local_first
            return _Local.REFUSED
        side = local.StreamSide(writer)
        handed_over = False
        try:
            uid = local.peer_uid(writer)
            if uid != os.getuid():
                if address not in self._refusals_logged:
                    self._refusals_logged.add(address)
                    log.warning("not linking %s locally: its socket is served by uid %s", address, uid)
                return _Local.NOT_LOCAL
            side.write_nowait(self.handshake.hello(local=True))
            try:
                async with asyncio.timeout(HELLO_TIMEOUT):
                    first = await local.read_frame(reader)
            except (TimeoutError, OSError, ProtocolError) as e:
                raise NodeUnavailable(f"peer {address} unreachable: {why(e)}") from None
            if first is not None and (
                (first.HasField("reject") and first.reject.reason == pb.Reject.WRONG_CA)
                or (first.HasField("hello") and first.hello.ca_sha256 != self.handshake.ca_sha256)
            ):
                if address not in self._refusals_logged:
                    self._refusals_logged.add(address)
                    log.warning("refused peer at %s: not issued by this mesh's CA (a node of another mesh "
                                "with the same name?)", address)  # fmt: skip
                raise NodeUnavailable(f"peer {address}: its mesh CA is not ours")
            info, status = self._accept_answer(address, side, first)
            assert first is not None  # _accept_answer raised otherwise
            link = Link(info, dialer=self.me.node_id, outbound=True, write=side.write, finish=side.finish,
                        batches=first.hello.frame_batches, columns=first.hello.mail_columns,
                        local=True, write_now=side.write_now)  # fmt: skip
            if not self.links.register(link, status):
                return _Local.LINKED
            handed_over = True
            self.spawn(self._run_local(link, reader, side), f"link-{info.name}")
            return _Local.LINKED
        finally:
            if not handed_over:
                side.close()

    async def _run_local(self, link: Link, reader: asyncio.StreamReader, side: local.StreamSide) -> None:
        try:
            violation = await self.links.carry(link, frames(lambda: local.read_frame(reader)))
        finally:
            side.close()
        if violation is not None:
            log.warning("closing the link to %s: bad frame: %s", link.peer.name, violation)

    async def _dial_grpc(self, address: str) -> None:
        channel = self._channel(address)
        handed_over = False
        try:
            call = pbg.PeerStub(channel).Link()
            try:
                await call.write(self.handshake.hello())
                async with asyncio.timeout(HELLO_TIMEOUT):
                    first = await call.read()
            except (grpc.aio.AioRpcError, TimeoutError) as e:
                call.cancel()
                self._log_refusal(address, e)
                raise NodeUnavailable(f"peer {address} unreachable: {why(e)}") from None
            info, status = self._accept_answer(address, call, first)

            async def finish() -> None:
                with contextlib.suppress(Exception):
                    await call.done_writing()

            link = Link(info, dialer=self.me.node_id, outbound=True, write=call.write, finish=finish,
                        batches=first.hello.frame_batches, columns=first.hello.mail_columns)  # fmt: skip
            if not self.links.register(link, status):
                call.cancel()
                return
            handed_over = True
            self.spawn(self._run_outbound(link, call, channel), f"link-{info.name}")
        finally:
            if not handed_over:
                await channel.close(None)

    def _accept_answer(self, address: str, call: Any, first: Any) -> tuple[PeerInfo, Any]:
        """The dialed peer's first frame: its Hello (checked), or a Reject (raised as the matching error)."""
        if first is EOF or not isinstance(first, pb.PeerFrame):
            raise NodeUnavailable(f"peer {address} closed the link")
        if first.HasField("reject"):
            call.cancel()
            detail = repr(first.reject.detail[: limits.REJECT_DETAIL_MAX])[1:-1]  # no raw control chars
            if first.reject.reason == pb.Reject.NAME_TAKEN:
                raise NameTaken(f"cannot join mesh {self.mesh!r}: {detail}")
            if address not in self._refusals_logged:
                self._refusals_logged.add(address)
                log.warning("peer %s refused the link: %s", address, detail)
            raise NodeUnavailable(f"peer {address} refused the link: {detail}")
        if not first.HasField("hello"):
            call.cancel()
            raise NodeUnavailable(f"peer {address} broke the protocol (no hello)")
        try:
            return self.handshake.check(first.hello)
        except Refusal as r:
            call.cancel()
            if r.reason == pb.Reject.NAME_TAKEN:
                raise NameTaken(r.detail) from None
            raise NodeUnavailable(r.detail) from None
        except ProtocolError as e:
            call.cancel()
            raise NodeUnavailable(f"peer {address} sent a bad hello: {e}") from None

    def _channel(self, address: str) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        creds = self.credentials
        return grpc.aio.secure_channel(
            address, creds.channel_credentials(), options=CHANNEL_OPTIONS + creds.channel_options()
        )

    def _log_refusal(self, address: str, e: BaseException) -> None:
        """Log a TLS handshake failure (another mesh's credentials?) once per address, not per try."""
        if not isinstance(e, grpc.aio.AioRpcError) or self.credentials is None:
            return
        from mesh._tls import handshake_refusal

        reason = handshake_refusal(e)
        if reason is not None and address not in self._refusals_logged:
            self._refusals_logged.add(address)
            log.warning(
                "refused peer at %s: %s (a node of another mesh with the same name?)", address, reason
            )

    async def _run_outbound(self, link: Link, call: Any, channel: grpc.aio.Channel) -> None:
        try:
            violation = await self.links.carry(link, frames(call.read))
        finally:
            call.cancel()
            await channel.close(None)
        if violation is not None:
            # One line, then the link goes (a redial follows): a repeating peer cannot flood the log.
            log.warning("closing the link to %s: bad frame: %s", link.peer.name, violation)


def why(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e)


async def _port_refused(address: str) -> bool:
    """True if a TCP connect to `address` is actively refused (nothing listens: the process is gone)."""
    try:
        host, port = validate.address(address)
    except InvalidInput:
        return False
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return False
