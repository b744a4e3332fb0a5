"""The node runtime: the only code that touches asyncio. It carries the sans-IO cores out.

discovery (mDNS, seeds, gossip) ──candidates──▶ dial ──▶ Link ◀── accept (Peer servicer)
Link frames ──▶ Membership core ──events──▶ watchers, gossip, store
timers: one loop ticks the cores and sends heartbeats
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._transport import codec, guard
from mesh._transport import peer as _peer
from mesh._transport.errors import abort
from mesh._transport.peer import CHANNEL_OPTIONS, EOF, SERVER_OPTIONS, Link, frame
from mesh.clock import BootClock, Clock, wall
from mesh.config import PROTO_VERSION, NodeConfig
from mesh.core import validate
from mesh.core.membership import (
    Liveness,
    LivenessChanged,
    Member,
    MemberForgotten,
    MemberJoined,
    Membership,
    MembershipEvent,
    PeerInfo,
    StatusChanged,
)
from mesh.core.status import StatusRecord
from mesh.errors import (
    ConfigError,
    InvalidInput,
    LimitExceeded,
    MeshError,
    NameTaken,
    NodeUnavailable,
    ProtocolError,
)
from mesh.paths import (
    NodeLock,
    RunningNode,
    control_socket_path,
    ensure_private_dir,
    node_dir,
    remove_node_file,
    write_node_file,
)
from mesh.store import Store, new_id
from mesh.testing import faults
from mesh.views import MemberEvent, MemberView

if TYPE_CHECKING:
    from mesh._claims import ClaimsService
    from mesh._mail import MailService
    from mesh._tls import Credentials

log = logging.getLogger("mesh")

HELLO_TIMEOUT = limits.HELLO_TIMEOUT
CLAIMS_PUBLISH_DELAY = 0.05
UNREAD_DEBOUNCE = 0.5  # a burst of messages is one status update, not thousands
PROBE_TIMEOUT = 1.0
REDIAL_MIN, REDIAL_MAX = 0.2, 5.0


@dataclass
class _Watcher:
    queue: asyncio.Queue[MemberEvent | None]
    overflowed: bool = False


class NodeRuntime:
    """A running node: servers, links, discovery, timers, and the cores they drive."""

    def __init__(self, config: NodeConfig, clock: Clock | None = None) -> None:
        self.config = config.validate()
        self.clock = clock or BootClock()
        self.home = config.home_dir
        self.state_dir = node_dir(self.home, config.mesh, config.name)
        self.incarnation = new_id()
        self.node_id = ""
        self.address = ""
        self.socket_path: Path | None = None
        self.me: PeerInfo | None = None
        self.membership: Membership | None = None
        self.store: Store | None = None
        self.links: dict[str, Link] = {}
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stop_reason = ""
        self._fatal: asyncio.Future[MeshError] | None = None
        self._lock = NodeLock(self.state_dir)
        self._peer_server: grpc.aio.Server | None = None
        self._servers: list[grpc.aio.Server] = []  # the node's faces (control socket), stopped with it
        self._discovery: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dialing: set[str] = set()  # addresses being dialed
        self._redialing: set[str] = set()  # node ids with a redial loop
        self._watchers: list[_Watcher] = []
        self._hb_seq = 0
        self._stopping = False
        self.started_mono = 0.0
        self.credentials: Credentials | None = None
        self.claims: ClaimsService = None  # type: ignore[assignment]  # set in start()
        self.mail: MailService = None  # type: ignore[assignment]  # set in start()
        self.created_credentials = False
        self._refusals_logged: set[str] = set()
        self._unread_pending = False
        self._claims_pending = False
        self._gossip_dials = 0  # dials started by gossip, under way (bounded: limits.MAX_GOSSIP_DIALS)
        self._admission = guard.PeerAdmission()  # inbound Link streams per peer identity
        # Test-only partitions (MESH_TEST_FAULTS=FILE, see mesh/testing/faults.py); None in normal use.
        self._faults = faults.from_env(self.config.name)

    # ================================================================== lifecycle

    async def start(self, serve: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start servers and discovery, join the mesh; return once ready (raise if it cannot start).

        `serve` runs once the services exist, before the join: the node's faces (its control socket) start
        there, so they answer while the node is still joining.
        """
        cfg = self.config
        ensure_private_dir(self.state_dir)
        if not self._lock.acquire():
            pid = self._lock.holder_pid()
            raise NameTaken(
                f"node {cfg.name!r} is already running in mesh {cfg.mesh!r} under {self.home}"
                + (f" (pid {pid})" if pid else "")
            )
        try:
            await self._start(serve)
        except BaseException:
            await self._teardown()
            raise

    async def _start(self, serve: Callable[[], Awaitable[None]] | None) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._fatal = loop.create_future()
        self.store = Store(self.state_dir / "node.db")
        self.node_id = self.store.node_id()
        now = self.clock.now()
        self.started_mono = now

        if cfg.tls:
            from mesh._tls import node_credentials

            self.credentials, created = node_credentials(self.home, cfg.mesh, self.node_id, self.state_dir)
            self.created_credentials = created
            if created:
                log.warning(
                    "created credentials for mesh %r (CA %s) under %s; other machines join with "
                    "'meshctl join-token' / 'meshctl init --from TOKEN'",
                    cfg.mesh,
                    self.credentials.fingerprint,
                    self.home,
                )
        self._peer_server = grpc.aio.server(
            options=SERVER_OPTIONS,
            interceptors=[guard.SafeDecode()],
            maximum_concurrent_rpcs=limits.PEER_MAX_CONCURRENT_RPCS,
        )
        pbg.add_PeerServicer_to_server(_PeerServicer(self), self._peer_server)
        listen = f"{cfg.bind}:{cfg.port}"
        if self.credentials is not None:
            port = self._peer_server.add_secure_port(listen, self.credentials.server_credentials())
        else:
            port = self._peer_server.add_insecure_port(listen)
        if port == 0:
            raise ConfigError(
                f"cannot listen on {cfg.bind}:{cfg.port} (in use or not an address of this host)"
            )
        host = cfg.bind if cfg.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.address = cfg.advertise or f"{host}:{port}"
        await self._peer_server.start()

        self.me = PeerInfo(
            node_id=self.node_id,
            incarnation=self.incarnation,
            name=cfg.name,
            role=cfg.role,
            address=self.address,
            started_at=wall(),
        )
        status = StatusRecord(
            node_id=self.node_id, incarnation=self.incarnation, name=cfg.name, role=cfg.role
        )
        self.membership = Membership(me=self.me, timing=cfg.timing, now=now, status=status)
        from mesh._claims import ClaimsService

        self.claims = ClaimsService(self, cfg.lease_config, bootstrap=cfg.bootstrap)
        from mesh._mail import MailService

        self.mail = MailService(self)

        self.socket_path = control_socket_path(self.state_dir)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if serve is not None:
            await serve()

        self._spawn(self._timer_loop(), "timers")
        if cfg.watch_pid is not None:
            self._watch_pid(cfg.watch_pid)

        if cfg.mdns:
            from mesh.discovery import Discovery

            adv_host, _, adv_port = self.address.rpartition(":")
            self._discovery = Discovery(
                node_id=self.node_id,
                mesh=cfg.mesh,
                proto_version=PROTO_VERSION,
                host=adv_host,
                port=int(adv_port),
                interfaces=cfg.mdns_interfaces,
                on_candidate=self._on_candidate,
            )
            await self._discovery.start()

        # Join: ask the seeds, listen a moment, then report ready (a name conflict found meanwhile aborts).
        seeds = [asyncio.ensure_future(self._dial(addr, None)) for addr in cfg.peers]
        window = asyncio.ensure_future(asyncio.sleep(cfg.join_window if cfg.mdns else 0))
        joined: asyncio.Future[list[Any]] = asyncio.gather(*seeds, window, return_exceptions=True)
        fatal: asyncio.Future[Any] = self._fatal
        done, _ = await asyncio.wait({joined, fatal}, return_when=asyncio.FIRST_COMPLETED)
        if self._fatal in done:
            joined.cancel()
            raise self._fatal.result()
        for r in joined.result():
            if isinstance(r, NameTaken):
                raise r
        for addr in cfg.peers:
            # A seed that was not up yet (or goes away before anyone else is known) is retried for our life.
            self._spawn(self._keep_seed(addr), f"seed-{addr}")
        # Let dials already under way (gossip, mDNS) finish their handshake so the first view is complete.
        deadline = self.clock.now() + HELLO_TIMEOUT
        while self._dialing and self.clock.now() < deadline and not self._fatal.done():
            await asyncio.sleep(0.01)
        if self._fatal.done():
            raise self._fatal.result()

        write_node_file(
            self.state_dir,
            RunningNode(
                name=cfg.name,
                mesh=cfg.mesh,
                node_id=self.node_id,
                pid=os.getpid(),
                socket=self.socket_path,
                address=self.address,
                state_dir=self.state_dir,
            ),
        )
        self.ready.set()
        self.claims.start()
        self.mail.start()
        log.info(
            "node %s (%s) ready: mesh %s, peer API %s, %d peer(s)",
            cfg.name,
            self.node_id,
            cfg.mesh,
            self.address,
            len(self.links),
        )

    def add_server(self, server: grpc.aio.Server) -> None:
        """A face's server: stopped on teardown before the services close (no RPC outlives them)."""
        self._servers.append(server)

    @property
    def serving(self) -> bool:
        """True from the moment the services exist until the node stops."""
        return self.mail is not None and not self._stopping

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the node to leave gracefully (safe from signal handlers and RPCs)."""
        if not self._stop_requested.is_set():
            self._stop_reason = reason
            self._stop_requested.set()

    async def wait_stop_requested(self) -> str:
        """Block until someone asks this node to stop; returns why."""
        await self._stop_requested.wait()
        return self._stop_reason

    async def stop(self, reason: str = "down") -> None:
        """Leave gracefully: peers see `left` at once; then close everything."""
        if self._stopping:
            await self.stopped.wait()
            return
        if self.claims is not None and self.ready.is_set():
            await self.claims.release_all()
        self._stopping = True
        log.info("leaving the mesh (%s)", reason)
        leave = frame(leave=pb.Leave(reason=reason[:128]))
        links = list(self.links.values())
        for link in links:
            link.send(leave)
            link.close()
        if links:
            await asyncio.wait([asyncio.ensure_future(link.closed.wait()) for link in links], timeout=1.0)
        await self._teardown()

    async def _teardown(self) -> None:
        self._stopping = True
        for w in self._watchers:
            w.queue.put_nowait(None)
        if self._discovery is not None:
            with contextlib.suppress(Exception):
                await self._discovery.stop()
            self._discovery = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._peer_server is not None:
            await self._peer_server.stop(0.2)
        for server in self._servers:
            await server.stop(0.2)
        # Services close after their tasks and every RPC that could touch them have ended.
        if self.claims is not None:
            self.claims.close()
        if self.mail is not None:
            self.mail.close()
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        remove_node_file(self.state_dir)
        if self.store is not None:
            self.store.close()
            self.store = None
        self._lock.release()
        self.stopped.set()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    def _watch_pid(self, pid: int) -> None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise ConfigError(f"--watch-pid {pid}: no such process") from None
        except PermissionError:
            pass
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._spawn(self._poll_pid(pid), "watch-pid")
            return
        loop = asyncio.get_running_loop()

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            log.info("watched process %d exited; leaving", pid)
            self.request_stop(f"session process {pid} exited")

        loop.add_reader(fd, exited)

    async def _poll_pid(self, pid: int) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                self.request_stop(f"session process {pid} exited")
                return
            except PermissionError:
                pass

    # ================================================================== timers

    async def _timer_loop(self) -> None:
        timing = self.config.timing
        next_beat = self.clock.now()
        while True:
            now = self.clock.now()
            if now >= next_beat:
                self._hb_seq += 1
                beat = frame(heartbeat=pb.Heartbeat(seq=self._hb_seq))
                for link in self.links.values():
                    link.send(beat, droppable=True)
                next_beat = now + timing.heartbeat_interval
            self._apply(self._m.tick(now))
            wake = min(next_beat, now + timing.tick_interval)
            md = self._m.next_deadline()
            if md is not None:
                wake = min(wake, max(md, now + 0.001))
            await asyncio.sleep(max(0.0, wake - self.clock.now()))

    # ================================================================== membership events

    @property
    def _m(self) -> Membership:
        assert self.membership is not None
        return self.membership

    def _apply(self, events: list[MembershipEvent]) -> None:
        for ev in events:
            m = self._m.members.get(ev.node_id)
            if isinstance(ev, MemberJoined):
                assert m is not None
                log.info("%s %s (%s) at %s", "rejoined" if ev.restarted else "joined", m.info.name,
                         m.info.node_id, m.info.address)  # fmt: skip
                if self.mail is not None:
                    self.mail.remember(m.info.node_id, m.info.name)
                self._gossip_new(m.info)
                self._publish("joined", m)
            elif isinstance(ev, LivenessChanged):
                if m is None:
                    continue
                log.info("%s is %s (%s)", m.info.name, ev.current.value, ev.reason)
                self._publish("state", m, previous=ev.previous.value)
                if ev.current in (Liveness.DEAD, Liveness.LEFT) and self.mail is not None:
                    self.mail.remember(m.info.node_id, m.info.name)  # last seen, for broadcast retention
            elif isinstance(ev, StatusChanged):
                if m is not None:
                    self._publish("status", m)
            elif isinstance(ev, MemberForgotten):
                log.info("forgot %s (%s)", ev.name, ev.node_id)

    def view(self, m: Member) -> MemberView:
        """A member as the public API shows it (monotonic times mapped to wall clock)."""
        now, w = self.clock.now(), wall()
        st = m.status
        last_seen = w if m.is_self else w - (now - m.last_heard)
        return MemberView(
            name=m.info.name,
            node_id=m.info.node_id,
            role=(st.role if st and st.role else m.info.role),
            state=m.state.value,
            action=st.action if st else "",
            target=st.target if st else "",
            phase=st.phase if st else "",
            progress=st.progress if st else 0,
            note=st.note if st else "",
            last_seen=last_seen,
            is_self=m.is_self,
            address=m.info.address,
            incarnation=m.info.incarnation,
            state_since=w - (now - m.state_since),
            status_version=st.version if st else 0,
            status_updated_at=st.updated_at if st else 0.0,
            steward=f"{m.info.node_id}/{m.info.incarnation}" in self._stewards(),
            claims=st.claims if st else (),
            unread=self.mail.store.unread_count()
            if m.is_self and self.mail is not None
            else (st.unread if st else 0),
        )

    def _stewards(self) -> tuple[str, ...]:
        cfg = self.claims.core.config if self.claims is not None else None
        return cfg.stewards if cfg is not None else ()

    def publish_claims(self) -> None:
        """The set of held claims changed: publish it in this node's status record, shortly.

        Deferred a moment so the status fan-out to every peer does not delay the claim's own answer, and a
        burst of grants and releases is one update.
        """
        if self._claims_pending:
            return
        self._claims_pending = True

        def publish() -> None:
            self._claims_pending = False
            if not self._stopping and self.claims is not None:
                self.set_status(claims=tuple(self.claims.held_view()))

        asyncio.get_running_loop().call_later(CLAIMS_PUBLISH_DELAY, publish)

    def publish_unread(self) -> None:
        """This node's unread count changed: publish it in its status, at most about once a second."""
        if self._unread_pending:
            return
        self._unread_pending = True

        def publish() -> None:
            self._unread_pending = False
            if self._stopping or self.mail is None:
                return
            n = self.mail.store.unread_count()
            st = self._m.status
            if st is not None and st.unread != n:
                self.set_status(unread=n)

        asyncio.get_running_loop().call_later(UNREAD_DEBOUNCE, publish)

    def publish_config(self) -> None:
        """The steward config changed: watchers see every member's steward flag afresh."""
        for m in self._m.members.values():
            self._publish("status", m)

    def _publish(self, kind: str, m: Member, previous: str | None = None) -> None:
        if not self._watchers:
            return
        ev = MemberEvent(kind=kind, member=self.view(m), at=wall(), previous=previous)
        for w in self._watchers:
            if w.queue.qsize() < limits.WATCH_QUEUE_MAX:
                w.queue.put_nowait(ev)
            elif not w.overflowed:  # a watcher that stopped reading: end it rather than grow without bound
                w.overflowed = True
                w.queue.put_nowait(None)

    def watch(self, snapshot: bool = True) -> AsyncIterator[MemberEvent]:
        """Events as they happen (after a snapshot of every member, if asked), until the node stops.

        Subscribed when called, not at the first `anext`: nothing that happens in between is missed.
        """
        if len(self._watchers) >= limits.MAX_WATCHERS:
            log.warning("refused a watch: %d watchers already", len(self._watchers))
            raise LimitExceeded(f"too many watchers (at most {limits.MAX_WATCHERS})")
        w = _Watcher(asyncio.Queue())
        if snapshot:
            for m in self._m.snapshot():
                w.queue.put_nowait(MemberEvent(kind="snapshot", member=self.view(m), at=wall()))
        self._watchers.append(w)
        return self._drain(w)

    async def _drain(self, w: _Watcher) -> AsyncIterator[MemberEvent]:
        try:
            while True:
                ev = await w.queue.get()
                if ev is None:
                    if w.overflowed:
                        log.warning("ended a watch that fell %d events behind", limits.WATCH_QUEUE_MAX)
                        raise LimitExceeded(f"watch fell {limits.WATCH_QUEUE_MAX} events behind; watch again")
                    return
                yield ev
        finally:
            if w in self._watchers:
                self._watchers.remove(w)

    def members(self) -> list[MemberView]:
        """Every member this node knows, self first."""
        return [self.view(m) for m in self._m.snapshot()]

    def set_status(self, **changes: Any) -> StatusRecord:
        """Publish a new version of this node's status (validated) to every peer."""
        current = self._m.status
        assert current is not None
        record = current.update(wall=wall(), **changes)
        self._apply(self._m.set_own_status(record))
        msg = frame(status=codec.status_to_pb(record))
        for link in self.links.values():
            link.send(msg)
        return record

    # ================================================================== links

    def _hello(self) -> pb.PeerFrame:
        assert self.me is not None
        hello = pb.Hello(
            mesh=self.config.mesh,
            proto_version=PROTO_VERSION,
            node=codec.peer_to_pb(self.me),
            lease=self.config.lease,
            rho=self.config.rho,
        )
        if self._m.status is not None:
            hello.status.CopyFrom(codec.status_to_pb(self._m.status))
        return frame(hello=hello)

    def check_hello(self, hello: pb.Hello) -> tuple[PeerInfo, StatusRecord | None]:
        """Validate a peer's Hello; raises _Refusal (to send back) or InvalidInput."""
        if hello.mesh != self.config.mesh:
            raise _Refusal(pb.Reject.WRONG_MESH, f"this node is in mesh {self.config.mesh!r}")
        if hello.proto_version != PROTO_VERSION:
            raise _Refusal(
                pb.Reject.BAD_VERSION, f"protocol {PROTO_VERSION} expected, got {hello.proto_version}"
            )
        if hello.lease != self.config.lease or hello.rho != self.config.rho:
            raise _Refusal(
                pb.Reject.TIMING_MISMATCH,
                f"claims timing differs: lease {hello.lease:g}s rho {hello.rho:g}, here "
                f"{self.config.lease:g}s rho {self.config.rho:g} (all nodes of a mesh need the same --lease)",
            )
        info = codec.peer_from_pb(hello.node)
        status = codec.status_from_pb(hello.status) if hello.HasField("status") else None
        if status is not None and (status.node_id != info.node_id or status.incarnation != info.incarnation):
            raise InvalidInput("hello status belongs to another node")
        if info.node_id == self.node_id:
            raise _Refusal(pb.Reject.SELF, "dialed itself")
        holder = self._m.holder_of_name(info.name)
        if holder is not None and holder.info.node_id != info.node_id:
            if holder.is_self and not self.ready.is_set():
                # We are the newcomer: the name belongs to the node that was here first.
                self._fail(NameTaken(f"name {info.name!r} is already taken by a live node in mesh "
                                     f"{self.config.mesh!r} (at {info.address})"))  # fmt: skip
            raise _Refusal(
                pb.Reject.NAME_TAKEN, f"name {info.name!r} is taken by a live node ({holder.info.address})"
            )
        return info, status

    def _fail(self, err: MeshError) -> None:
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(err)

    def register(self, link: Link, status: StatusRecord | None) -> bool:
        """Adopt a link whose handshake completed; False if an existing link to that peer wins."""
        if self._stopping:
            return False
        pid = link.peer.node_id
        cur = self.links.get(pid)
        if cur is not None and not cur.closed.is_set():
            keep_dialer = min(self.node_id, pid)
            same_incarnation = cur.peer.incarnation == link.peer.incarnation
            if same_incarnation and cur.dialer == keep_dialer and link.dialer != keep_dialer:
                return False
            cur.superseded = True
            cur.close()
        self.links[pid] = link
        self._apply(self._m.hello(link.peer, status, self.clock.now()))
        # Tell the newcomer about everyone else we see alive (one seed is enough to find the whole mesh).
        peers = [
            codec.peer_to_pb(m.info)
            for m in self._m.live()
            if not m.is_self and m.info.node_id != pid and m.info.address
        ]
        if peers:
            link.send(frame(gossip=pb.Gossip(peers=peers)))
        self.claims.on_link_up(link)
        self.mail.on_link_up(link)
        return True

    def on_frame(self, link: Link, f: pb.PeerFrame) -> None:
        """Everything a peer sends after its Hello."""
        if self.links.get(link.peer.node_id) is not link:
            return  # a superseded duplicate link; its twin carries the traffic
        if self._faults is not None and self._faults.drops(link.peer.name):
            return
        now = self.clock.now()
        self._apply(self._m.heard(link.peer.node_id, now))
        if f.HasField("status"):
            record = codec.status_from_pb(f.status)
            if record.node_id != link.peer.node_id or record.incarnation != link.peer.incarnation:
                raise InvalidInput("a peer may only publish its own status (this incarnation's)")
            self._apply(self._m.status_update(record, now))
        if f.HasField("gossip"):
            if len(f.gossip.peers) > limits.MAX_GOSSIP_PEERS:
                n, most = len(f.gossip.peers), limits.MAX_GOSSIP_PEERS
                raise LimitExceeded(f"gossip lists {n} peers (at most {most})")
            for ref in f.gossip.peers:
                try:
                    info = codec.peer_from_pb(ref)
                except InvalidInput:
                    continue
                self._on_gossip(info)
        if f.claims:
            self.claims.on_frames(link, f.claims)
        if f.wants:
            self.claims.on_wants(f.wants)
        if f.HasField("mail") or f.mail_acks or f.receipts or f.receipt_acks:
            self.mail.on_frame(link, f)
        if f.HasField("leave"):
            reason = validate.text(f.leave.reason, "leave reason")  # it goes to the log and to watchers
            self._apply(self._m.left(link.peer.node_id, now, f"left: {reason}"))

    def link_down(self, link: Link) -> None:
        """A link ended (EOF, error, or we closed it)."""
        pid = link.peer.node_id
        if self.links.get(pid) is link:
            del self.links[pid]
        else:
            return
        if self.mail is not None and not self._stopping:
            self.mail.on_link_down(pid)
        if self._stopping or link.superseded:
            return
        m = self._m.members.get(pid)
        if m is None or m.state is Liveness.LEFT or m.info.incarnation != link.peer.incarnation:
            return
        self._start_redial(link.peer)

    def _start_redial(self, peer: PeerInfo) -> None:
        if peer.node_id in self._redialing:
            return
        self._redialing.add(peer.node_id)
        self._spawn(self._redial(peer), f"redial-{peer.name}")

    async def _redial(self, peer: PeerInfo) -> None:
        """Probe the peer's port: refused means the process is gone (dead now); then keep trying to relink."""
        delay = REDIAL_MIN
        try:
            while not self._stopping:
                m = self._m.members.get(peer.node_id)
                if m is None or m.state is Liveness.LEFT or m.info.incarnation != peer.incarnation:
                    return
                if peer.node_id in self.links:
                    return
                if await _port_refused(peer.address):
                    self._apply(self._m.refused(peer.node_id, self.clock.now()))
                else:
                    with contextlib.suppress(MeshError):
                        await self._dial(peer.address, peer.node_id)
                    if peer.node_id in self.links:
                        return
                await asyncio.sleep(delay)
                delay = min(REDIAL_MAX, delay * 2)
        finally:
            self._redialing.discard(peer.node_id)

    async def _keep_seed(self, address: str) -> None:
        delay = REDIAL_MIN
        while not self._stopping:
            if not any(link.peer.address == address for link in self.links.values()):
                await self._dial_quietly(address, None)
            else:
                delay = REDIAL_MIN
            await asyncio.sleep(delay)
            delay = min(REDIAL_MAX, delay * 2)

    def _on_candidate(self, node_id: str, address: str) -> None:
        """mDNS proposes a peer."""
        if self._stopping or node_id == self.node_id or node_id in self.links:
            return
        self._spawn(self._dial_quietly(address, node_id), f"dial-{address}")

    def _on_gossip(self, info: PeerInfo) -> None:
        if info.node_id == self.node_id or info.node_id in self.links or self._stopping:
            return
        m = self._m.members.get(info.node_id)
        if (
            m is not None
            and m.info.incarnation == info.incarnation
            and m.state in (Liveness.DEAD, Liveness.LEFT)
        ):
            return
        if self._gossip_dials >= limits.MAX_GOSSIP_DIALS or info.address in self._dialing:
            return  # a hint, not an order: it comes again with the next gossip
        self._gossip_dials += 1
        task = self._spawn(self._dial_quietly(info.address, info.node_id), f"dial-{info.address}")
        task.add_done_callback(self._gossip_dial_done)

    def _gossip_dial_done(self, _: asyncio.Task[Any]) -> None:
        self._gossip_dials -= 1

    def _gossip_new(self, info: PeerInfo) -> None:
        msg = frame(gossip=pb.Gossip(peers=[codec.peer_to_pb(info)]))
        for pid, link in self.links.items():
            if pid != info.node_id:
                link.send(msg)

    async def _dial_quietly(self, address: str, expected: str | None) -> None:
        try:
            await self._dial(address, expected)
        except NameTaken as e:
            if not self.ready.is_set():
                self._fail(e)
            else:
                log.warning("%s", e)
        except MeshError as e:
            log.debug("dial %s failed: %s", address, e)

    async def _dial(self, address: str, expected: str | None) -> None:
        """Open a link to `address` (no-op if one is open or being opened)."""
        if address in self._dialing or address == self.address or self._stopping:
            return
        if expected is not None and expected in self.links:
            return
        self._dialing.add(address)
        channel = self._channel(address)
        handed_over = False
        try:
            stub = pbg.PeerStub(channel)
            call = stub.Link()
            try:
                await call.write(self._hello())
                async with asyncio.timeout(HELLO_TIMEOUT):
                    first = await call.read()
            except (grpc.aio.AioRpcError, TimeoutError) as e:
                call.cancel()
                self._log_refusal(address, e)
                raise NodeUnavailable(f"peer {address} unreachable: {_why(e)}") from None
            if first is EOF or not isinstance(first, pb.PeerFrame):
                raise NodeUnavailable(f"peer {address} closed the link")
            if first.HasField("reject"):
                call.cancel()
                detail = repr(first.reject.detail[: limits.REJECT_DETAIL_MAX])[1:-1]  # no raw control chars
                if first.reject.reason == pb.Reject.NAME_TAKEN:
                    raise NameTaken(f"cannot join mesh {self.config.mesh!r}: {detail}")
                if address not in self._refusals_logged:
                    self._refusals_logged.add(address)
                    log.warning("peer %s refused the link: %s", address, detail)
                raise NodeUnavailable(f"peer {address} refused the link: {detail}")
            if not first.HasField("hello"):
                call.cancel()
                raise NodeUnavailable(f"peer {address} broke the protocol (no hello)")
            try:
                info, status = self.check_hello(first.hello)
            except _Refusal as r:
                call.cancel()
                if r.reason == pb.Reject.NAME_TAKEN:
                    raise NameTaken(r.detail) from None
                raise NodeUnavailable(r.detail) from None
            except InvalidInput as e:
                call.cancel()
                raise NodeUnavailable(f"peer {address} sent a bad hello: {e}") from None

            async def finish() -> None:
                with contextlib.suppress(Exception):
                    await call.done_writing()

            link = Link(info, dialer=self.node_id, outbound=True, write=call.write, finish=finish)
            if not self.register(link, status):
                call.cancel()
                return
            handed_over = True
            self._spawn(self._run_outbound(link, call, channel), f"link-{info.name}")
        finally:
            self._dialing.discard(address)
            if not handed_over:
                await channel.close(None)

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
        writer = asyncio.ensure_future(link.run_writer())
        budget = guard.FrameBudget(self.clock.now())
        try:
            while True:
                f = await call.read()
                if f is EOF:
                    break
                try:
                    budget.charge(f.ByteSize(), self.clock.now())
                    self.on_frame(link, f)
                except MeshError as e:
                    # One line, then the link goes (a redial follows): a repeating peer cannot flood the log.
                    log.warning("closing the link to %s: bad frame: %s", link.peer.name, e)
                    break
        except grpc.aio.AioRpcError as e:
            log.debug("%r ended: %s", link, _why(e))
        finally:
            link.close()
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(1.0):
                    await writer
            call.cancel()
            await channel.close(None)
            self.link_down(link)


class _Refusal(Exception):
    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _why(e: BaseException) -> str:
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


class _PeerServicer(pbg.PeerServicer):
    """Accepts links dialed by peers."""

    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self._log_limit = guard.LogLimiter()

    def _refusal(self, key: str, msg: str, *args: Any) -> None:
        """Log a refused link or frame: a few lines per peer, then one per 10 s (no flood)."""
        if self._log_limit.allow(key, self.rt.clock.now()):
            log.warning(msg, *args)

    async def Link(self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        rt = self.rt
        # Admission by the certificate's identity before anything is read, so that streams held open without
        # a hello (slow-loris) count too. Plaintext (benchmarks only) has no identity: count by address.
        who = rt.credentials.peer_identity(context) if rt.credentials is not None else None
        key = who or str(context.peer())
        try:
            rt._admission.admit(key, rt.clock.now())
        except LimitExceeded as e:
            self._refusal(key, "refused a link from %s (%s): %s", key, context.peer(), e)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        try:
            await self._serve(context, who, key)
        finally:
            rt._admission.release(key)

    async def _serve(self, context: grpc.aio.ServicerContext[Any, Any], who: str | None, key: str) -> None:
        rt = self.rt
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                first = await context.read()
        except TimeoutError:
            return
        if first is EOF or not isinstance(first, pb.PeerFrame) or not first.HasField("hello"):
            why = first.reason if isinstance(first, guard.Undecodable) else "not a hello"
            self._refusal(key, "refused a link from %s: first frame %s", key, why)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first frame must be a hello")
            return
        if rt.credentials is not None and (who is None or who != first.hello.node.node_id):
            self._refusal(key, "refused a link from %s: its certificate is not for node %r", context.peer(),
                          first.hello.node.node_id[:64])  # fmt: skip
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "certificate does not match the node id")
            return
        try:
            info, status = rt.check_hello(first.hello)
        except _Refusal as r:
            await context.write(frame(reject=pb.Reject(reason=r.reason, detail=r.detail)))  # type: ignore[arg-type]
            return
        except InvalidInput as e:
            self._refusal(key, "refused a link from %s: %s", key, e)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad hello: {e}")
            return
        if rt._stopping or rt.membership is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node is stopping")
            return
        await context.write(rt._hello())

        async def finish() -> None:
            return None

        link = Link(info, dialer=info.node_id, outbound=False, write=context.write, finish=finish)
        if not rt.register(link, status):
            return
        reader = asyncio.ensure_future(self._read_loop(link, context))
        writer = asyncio.ensure_future(link.run_writer())
        violation: MeshError | None = None
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not reader.cancelled():
                violation = reader.result()
        finally:
            link.close()
            reader.cancel()
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(1.0):
                    await writer
            rt.link_down(link)
        if violation is not None:
            self._refusal(key, "closed the link from %s: %s", link.peer.name, violation)
            await abort(context, violation)

    async def _read_loop(
        self, link: _peer.Link, context: grpc.aio.ServicerContext[Any, Any]
    ) -> MeshError | None:
        """Feed frames to the runtime until the peer ends; the first violation ends the link (returned)."""
        budget = guard.FrameBudget(self.rt.clock.now())
        while True:
            try:
                f = await context.read()
            except grpc.aio.AioRpcError:
                return None
            if f is EOF:
                return None
            if isinstance(f, guard.Undecodable):
                return ProtocolError(f"undecodable frame: {f.reason}")
            try:
                budget.charge(f.ByteSize(), self.rt.clock.now())
                self.rt.on_frame(link, f)
            except MeshError as e:
                return e
