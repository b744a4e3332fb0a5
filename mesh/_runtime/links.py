"""The link table: one live link per peer, and everything a peer sends after its Hello.

    register(link) ── tie-break (the link dialed by the smaller node id wins) ──▶ membership hello,
                      gossip of the live members to the newcomer, a watch request if we watch it,
                      services' on_link_up
    on_frame(link, f) ── frame filters (taps) ──▶ heard, status, gossip (members learned by hearsay, and
                      a hint for the dialer),
                      watch requests, verdicts, service messages (claims, mail, board: decoded by the
                      codec, routed by type), leave
    link_down(link) ──▶ membership unlinked; services' on_link_down; a redial if the peer may still be alive
    carry(link, frames) ── FrameBudget ──▶ on_frame, with the link's writer, until either side ends it
                      ──▶ link_down (every transport's read loop: gRPC dialed and accepted, local links)

A frame that breaks the protocol raises (ProtocolError, LimitExceeded): carry ends the link and returns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable

from mesh import limits, taps
from mesh._proto import mesh_pb2 as pb
from mesh._runtime.lifecycle import Lifecycle
from mesh._runtime.members import WATCH_ON, MemberHub, is_gone
from mesh._services.context import PeerService
from mesh._transport import codec, guard
from mesh._transport.peer import Link, frame
from mesh.core import validate
from mesh.core.errors import InvalidInput, LimitExceeded, MeshError, ProtocolError
from mesh.core.membership import Liveness, Member, MemberJoined, MembershipEvent, PeerInfo
from mesh.core.status import StatusRecord
from mesh.core.watch import RELAY_FANOUT

log = logging.getLogger("mesh")

_REACHABLE = frozenset((Liveness.ALIVE, Liveness.SUSPECT))
GOSSIP_FANOUT = 3  # peers told of a member that just joined (see gossip_new)

# PeerFrame fields that only carry service messages (codec.service_messages): frames of nothing else in a
# batch are routed together.
_SERVICE_FIELDS = frozenset(
    ("claims", "wants", "mail", "mail_acks", "receipts", "receipt_acks", "board", "board_sync")
)


class LinkTable:
    """Live links by peer node id; the one place frames enter the node."""

    def __init__(self, me: PeerInfo, hub: MemberHub, life: Lifecycle, clock_now: Callable[[], float]) -> None:
        self.me = me
        self.hub = hub
        self.life = life
        self.now = clock_now
        self.links: dict[str, Link] = {}
        self.services: list[PeerService] = []
        self._routes: dict[type, PeerService] = {}
        self.on_gossip: Callable[[PeerInfo], None] = lambda info: None
        self.on_lost: Callable[[PeerInfo], None] = lambda peer: None
        self.on_ensure: Callable[[PeerInfo], None] = lambda peer: None  # the dialer's, once it exists
        self._filters = taps.frame_filters()
        self._refs: dict[bytes, PeerInfo | None] = {}  # gossip refs decoded (None: refused), by their bytes
        hub.listeners.append(self._on_member)
        hub.send_to, hub.ensure, hub.relay, hub.hint = self.send, self.ensure, self.relay, self.hint

    def _on_member(self, ev: MembershipEvent, m: Member | None) -> None:
        if isinstance(ev, MemberJoined) and m is not None and not m.hearsay:
            self.gossip_new(m.info)  # a member we only heard of: whoever linked it gossips it

    def attach(self, service: PeerService) -> None:
        """Route `service.accepts` to `service`, and tell it about links coming and going."""
        self.services.append(service)
        for t in service.accepts:
            self._routes[t] = service

    # ------------------------------------------------------------------ sending

    def send(self, node_id: str, f: pb.PeerFrame, droppable: bool = False) -> bool:
        """Queue `f` on the link to `node_id`; False if there is none."""
        link = self.links.get(node_id)
        if link is None or link.closed.is_set():
            return False
        link.send(f, droppable)
        return True

    def ensure(self, node_id: str) -> bool:
        """True if a live link to `node_id` is open; else ask for one (a dial, if it is a live member we
        know an address for) and return False: the caller's message waits for the link (a service resends
        what is unacked when `on_link_up` says the link came)."""
        link = self.links.get(node_id)
        if link is not None and not link.closed.is_set():
            return True
        m = self.hub.core.members.get(node_id)
        if m is not None and not m.is_self and m.info.address and m.state in _REACHABLE:
            self.on_ensure(m.info)
        return False

    def hint(self, node_id: str) -> None:
        """Propose a dial to a live member we have no link to, as gossip would (the dialer's on_gossip:
        deferred to the tie-break, a few dials at once, a refused port is its death)."""
        m = self.hub.core.members.get(node_id)
        if node_id in self.links or m is None or m.is_self or not m.info.address:
            return
        if m.state in _REACHABLE:
            self.on_gossip(m.info)

    def broadcast(self, f: pb.PeerFrame, droppable: bool = False) -> None:
        for link in self.links.values():
            link.send(f, droppable)

    def relay(self, f: pb.PeerFrame) -> None:
        """Pass news on to RELAY_FANOUT live links picked at random (an epidemic: each node that news
        changed passes it on once, so it crosses a mesh that is not a full mesh of links)."""
        live = [link for link in self.links.values() if not link.closed.is_set()]
        for link in random.sample(live, min(RELAY_FANOUT, len(live))):
            link.send(f, False)

    def gossip_new(self, info: PeerInfo) -> None:
        """Tell a few other peers, picked at random, about a member that just joined.

        Not every peer: each node that links to the newcomer does this too, so telling all made a forming
        mesh send n^2 frames per node (n^3 in all: 48 nodes spent most of their start-up CPU on it). The
        newcomer learns every live member from the first node it links to (`register`) and dials them
        itself; this epidemic (each node that links it tells GOSSIP_FANOUT more) is the backstop.
        """
        msg = frame(gossip=pb.Gossip(peers=[codec.peer_to_pb(info)]))
        others = [link for pid, link in self.links.items() if pid != info.node_id]
        for link in random.sample(others, min(GOSSIP_FANOUT, len(others))):
            link.send(msg)

    # ------------------------------------------------------------------ links coming and going

    def register(self, link: Link, status: StatusRecord | None) -> bool:
        """Adopt a link whose handshake completed; False if an existing link to that peer wins."""
        if self.life.stopping:
            return False
        pid = link.peer.node_id
        cur = self.links.get(pid)
        if cur is not None and not cur.closed.is_set():
            keep_dialer = min(self.me.node_id, pid)
            same_incarnation = cur.peer.incarnation == link.peer.incarnation
            if same_incarnation and cur.dialer == keep_dialer and link.dialer != keep_dialer:
                return False
            cur.superseded = True
            cur.close()
        self.links[pid] = link
        self.hub.apply(self.hub.core.hello(link.peer, status, self.now()))
        if pid in self.hub.core.watching:
            link.send(WATCH_ON)  # a new link: the peer's beats to us went with the old one
        # Tell the newcomer about everyone else we see alive (one seed is enough to find the whole mesh).
        peers = [
            codec.peer_to_pb(m.info)
            for m in self.hub.core.live()
            if not m.is_self and m.info.node_id != pid and m.info.address
        ]
        if peers:
            link.send(frame(gossip=pb.Gossip(peers=peers)))
        for s in self.services:
            s.on_link_up(link.peer)
        return True

    def link_down(self, link: Link) -> None:
        """A link ended (EOF, error, or we closed it)."""
        pid = link.peer.node_id
        if self.links.get(pid) is not link:
            return
        del self.links[pid]
        if self.life.stopping:
            return
        self.hub.beat_to.discard(pid)
        self.hub.apply(self.hub.core.unlinked(pid, self.now()))
        for s in self.services:
            s.on_link_down(link.peer)
        if link.superseded or is_gone(self.hub.core.members.get(pid), link.peer.incarnation):
            return
        self.on_lost(link.peer)

    async def carry(
        self, link: Link, frames: AsyncIterator[pb.PeerFrame], *, linger: float = 1.0
    ) -> MeshError | None:
        """Run a registered link: its writer, and each of `frames` (the transport's reads) charged to the
        link's FrameBudget and applied, until the frames end (the peer ended the stream, or it broke), or a
        frame breaks the protocol (that error is returned), or our side ends it (`link.close()`: the writer
        flushed and finished) and the peer has not ended its side `linger` s later. Then the writer gets 1 s
        to flush, and the link is down. Closing the transport itself is the caller's, after.

        `linger`: a peer that reads our end of stream (a half-close, gRPC's done_writing) ends its side in
        turn; until then it may still be reading what we sent last (a Leave), and cancelling a gRPC read
        cancels the call, so the read goes on that long. 0 for an accepted gRPC stream, which the peer sees
        end only when its handler returns."""
        writer = asyncio.ensure_future(link.run_writer())
        reader = asyncio.ensure_future(self._read(link, frames))
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            if not reader.done() and linger > 0:
                await asyncio.wait((reader,), timeout=linger)
            return reader.result() if reader.done() else None
        finally:
            link.close()
            reader.cancel()
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(1.0):
                    await writer
            self.link_down(link)

    async def _read(self, link: Link, frames: AsyncIterator[pb.PeerFrame]) -> MeshError | None:
        budget = guard.FrameBudget(self.now())
        try:
            async for f in frames:
                budget.charge(f.ByteSize(), self.now(), max(1, len(f.batch)))
                self.on_frame(link, f)
        except MeshError as e:
            return e
        return None

    # ------------------------------------------------------------------ frames

    def on_frame(self, link: Link, f: pb.PeerFrame) -> None:
        """Everything a peer sends after its Hello."""
        if self.links.get(link.peer.node_id) is not link:
            return  # a superseded duplicate link; its twin carries the traffic
        if f.batch:
            self._on_batch(link, f)
            return
        if self._filters and any(drop(self.me.name, link.peer.name) for drop in self._filters):
            return
        peer = link.peer
        now = self.now()
        hub = self.hub
        hub.apply(hub.core.heard(peer.node_id, now))
        if f.HasField("status"):
            record = codec.status_from_pb(f.status)
            if record.node_id != peer.node_id or record.incarnation != peer.incarnation:
                raise ProtocolError("a peer may only publish its own status (this incarnation's)")
            hub.apply(hub.core.status_update(record, now))
        if f.HasField("gossip"):
            if len(f.gossip.peers) > limits.MAX_GOSSIP_PEERS:
                n, most = len(f.gossip.peers), limits.MAX_GOSSIP_PEERS
                raise LimitExceeded(f"gossip lists {n} peers (at most {most})")
            for ref in f.gossip.peers:
                if ref.node_id in self.links or ref.node_id == self.me.node_id:
                    continue  # a hint the dialer would drop: not worth decoding (n^2 of them as a mesh forms)
                info = self._hint(ref)
                if info is None:
                    continue  # one bad hint does not spoil the others
                hub.apply(hub.core.learned(info, now))  # listed alive now, by hearsay (Membership.learned)
                self.on_gossip(info)
        if f.HasField("watch"):
            hub.watch_asked(peer.node_id, f.watch.on)
        if f.verdicts:
            if len(f.verdicts) > limits.MAX_VERDICTS:
                n, most = len(f.verdicts), limits.MAX_VERDICTS
                raise LimitExceeded(f"{n} verdicts in one frame (at most {most})")
            for v in f.verdicts:
                hub.apply(hub.core.verdict(codec.verdict_from_pb(v), now))
        if self._routes:
            self._route(peer, codec.service_messages(f))
        if f.HasField("leave"):
            try:
                reason = validate.text(f.leave.reason, "leave reason")  # it goes to the log and to watchers
            except InvalidInput as e:
                raise ProtocolError(str(e)) from None
            hub.apply(hub.core.left(peer.node_id, now, f"left: {reason}"))

    def _hint(self, ref: pb.NodeRef) -> PeerInfo | None:
        """A gossip ref as a member (None if it breaks a rule), checked once per distinct ref: as a mesh
        forms, every link brings the peer's whole member list, so each node reads each member's ref again
        and again (~500 refs per node at 48 nodes), and checking its fields was most of reading it."""
        key = ref.SerializeToString()
        if key in self._refs:
            return self._refs[key]
        try:
            info: PeerInfo | None = codec.peer_from_pb(ref)
        except ProtocolError:
            info = None
        if len(self._refs) >= limits.MAX_GOSSIP_PEERS:
            self._refs.clear()  # bounded: members come and go (a new incarnation is a new ref)
        self._refs[key] = info
        return info

    def _on_batch(self, link: Link, f: pb.PeerFrame) -> None:
        """Frames the peer queued in one turn, applied in order. A run of frames that carry only service
        messages (mail batches and acks, claims) reaches each service as one list, as if one frame had carried
        them: a service then does once what it would have done per frame (one ack applied of several
        cumulative ones). Any other frame is applied whole, in its place."""
        if len(f.batch) > limits.MAX_FRAME_BATCH:
            raise LimitExceeded(f"{len(f.batch)} frames in one batch (at most {limits.MAX_FRAME_BATCH})")
        if len(f.ListFields()) != 1:
            raise ProtocolError("a batch frame carries nothing but its frames")
        pending: list[object] = []
        for sub in f.batch:
            if sub.batch:
                raise ProtocolError("a batch frame inside a batch frame")
            fields = sub.ListFields()
            if self._routes and fields and all(fd.name in _SERVICE_FIELDS for fd, _ in fields):
                if self._filters and any(drop(self.me.name, link.peer.name) for drop in self._filters):
                    continue
                self.hub.apply(self.hub.core.heard(link.peer.node_id, self.now()))
                pending += codec.service_messages(sub)
                continue
            self._route(link.peer, pending)
            pending = []
            self.on_frame(link, sub)
        self._route(link.peer, pending)

    def _route(self, peer: PeerInfo, msgs: list[object]) -> None:
        if not msgs:
            return
        by_service: dict[int, tuple[PeerService, list[object]]] = {}
        for m in msgs:
            s = self._routes.get(type(m))
            if s is not None:
                by_service.setdefault(id(s), (s, []))[1].append(m)
        for s, batch in by_service.values():
            s.on_messages(peer, batch)
