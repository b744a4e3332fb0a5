"""`NodeRuntime`: a running node's parts, started in order and stopped in reverse. The only owner of asyncio
tasks, servers and the node's lock.

    start:  lock ─▶ node.db (identity) ─▶ TLS credentials ─▶ peer server (PeerServicer)
            ─▶ member table (MemberHub), links (LinkTable), handshake, dialer
            ─▶ services (mail, board, stats, claims) on a ServiceContext ─▶ the node's faces (`serve`:
               control socket, hook wire)                                                       JOINING
            ─▶ timers, pid watch, mDNS ─▶ seeds dialed, join window ─▶ node.json              READY
    stop:   claims released ─▶ leave sent on every link ─▶ tasks cancelled ─▶ servers stopped
            ─▶ services closed ─▶ store closed, lock released                                  STOPPED
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._proto import mesh_pb2_grpc as pbg
from mesh._runtime.context import RuntimeContext
from mesh._runtime.dialer import Dialer
from mesh._runtime.hello import Handshake
from mesh._runtime.lifecycle import Lifecycle, Phase
from mesh._runtime.links import LinkTable
from mesh._runtime.local_links import LocalListener
from mesh._runtime.members import MemberHub
from mesh._runtime.peer_service import PeerServicer, peer_server
from mesh._runtime.pidwatch import watch_pid
from mesh._services.board import BoardService
from mesh._services.claims import ClaimsService
from mesh._services.mail import MailService
from mesh._services.stats import StatsService
from mesh._transport import local
from mesh._transport.peer import Link, frame
from mesh.clock import BootClock, Clock, wall
from mesh.config import PROTO_VERSION, NodeConfig
from mesh.core.errors import NameTaken
from mesh.core.membership import Membership, PeerInfo
from mesh.core.status import StatusRecord
from mesh.paths import (
    NodeLock,
    RunningNode,
    control_socket_path,
    ensure_private_dir,
    hook_socket_path,
    node_dir,
    remove_node_file,
    write_node_file,
)
from mesh.store import Store, new_id
from mesh.views import MemberView, WatchEvent

if TYPE_CHECKING:
    from mesh._tls import Credentials

log = logging.getLogger("mesh")

# Tasks without which the node would be half-alive (no heartbeats, no resends, no renewals): if one ends
# with an error, the node leaves the mesh and exits with that error's one line rather than linger.
ESSENTIAL_TASKS = frozenset({"timers", "mail-timer", "claims-timer"})


class NodeRuntime:
    """A running node: servers, links, discovery, timers, and the services they carry."""

    def __init__(self, config: NodeConfig, clock: Clock | None = None) -> None:
        self.config = config.validate()
        self.clock = clock or BootClock()
        self.home = config.home_dir
        self.state_dir = node_dir(self.home, config.mesh, config.name)
        self.incarnation = new_id()
        self.node_id = ""
        self.address = ""
        self.socket_path: Path | None = None
        self.life = Lifecycle()
        self.credentials: Credentials | None = None
        self.created_credentials = False
        self.store: Store | None = None
        self.hub: MemberHub | None = None
        self.link_table: LinkTable | None = None
        self.dialer: Dialer | None = None
        self.claims: ClaimsService = None  # type: ignore[assignment]  # set in start()
        self.mail: MailService = None  # type: ignore[assignment]  # set in start()
        self.board: BoardService = None  # type: ignore[assignment]  # set in start()
        self.stats: StatsService = None  # type: ignore[assignment]  # set in start()
        self._lock = NodeLock(self.state_dir)
        self._peer_server: grpc.aio.Server | None = None
        self._local: LocalListener | None = None
        self._servicer: PeerServicer | None = None
        self.hook_socket_path: Path | None = None
        self._faces: list[Callable[[], Awaitable[None]]] = []  # how to stop each face (control, hook wire)
        self._discovery: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ start

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
        self.life.move(Phase.STARTING)
        try:
            await self._open()
            self.life.move(Phase.JOINING)
            if serve is not None:
                await serve()
            await self._join()
        except BaseException:
            await self._teardown()
            raise
        self.life.move(Phase.READY, at=self.clock.now())
        for svc in (self.claims, self.mail, self.board, self.stats):
            svc.start()
        log.info("node %s (%s) ready: mesh %s, peer API %s, %d peer(s)",
                 cfg.name, self.node_id, cfg.mesh, self.address, len(self.links))  # fmt: skip

    async def _open(self) -> None:
        """Identity, credentials, the peer server, and every part and service (nothing dialed yet)."""
        cfg = self.config
        self.store = Store(self.state_dir / "node.db")
        self.node_id = self.store.node_id()
        if cfg.tls:
            from mesh._leaf import node_credentials

            self.credentials, self.created_credentials = node_credentials(
                self.home, cfg.mesh, self.node_id, self.state_dir
            )
            if self.created_credentials:
                log.warning("created credentials for mesh %r (CA %s) under %s; other machines join with "
                            "'meshctl join-token' / 'meshctl init --from TOKEN'",
                            cfg.mesh, self.credentials.fingerprint, self.home)  # fmt: skip
        # The local listener before the peer port is bound: a bound port accepts connections before its
        # server starts, so a node dialing us meanwhile found no local listener, fell back to gRPC and kept
        # that link for good (mutual TLS on every frame: half the links of two nodes started at once, and the
        # delivery latency between them ~0.4 ms worse). A port given (--port) names the listener before the
        # bind; port 0 is bound first, but nobody can dial it before we tell its number.
        port = cfg.port
        server = None
        if port == 0:
            server, port = peer_server(cfg.bind, port, self.credentials)
            self._peer_server = server
        host = cfg.bind if cfg.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.address = cfg.advertise or f"{host}:{port}"
        me = PeerInfo(self.node_id, self.incarnation, cfg.name, cfg.role, self.address, started_at=wall())
        self._assemble(me)
        refused = await self._local.start(self.address) if self._local is not None else None
        if server is None:
            server, _ = peer_server(cfg.bind, port, self.credentials)  # ConfigError when the port is taken
            self._peer_server = server
        if refused is not None:
            log.warning("%s", refused)
            self._local = None
        assert self._servicer is not None
        pbg.add_PeerServicer_to_server(self._servicer, server)
        await server.start()

    def _assemble(self, me: PeerInfo) -> None:
        """Build the parts around the membership core, and the services on their context."""
        cfg = self.config
        status = StatusRecord(node_id=me.node_id, incarnation=me.incarnation, name=cfg.name, role=cfg.role)
        core = Membership(me=me, timing=cfg.timing, now=self.clock.now(), status=status)
        links = self.link_table = LinkTable(me, MemberHub(core, self.clock, self.life, self._broadcast),
                                            self.life, self.clock.now)  # fmt: skip
        hub = self.hub = links.hub
        creds = self.credentials
        handshake = Handshake(cfg, me, core, self.life, creds.ca_sha256() if creds is not None else b"")
        # Local links stand in for mTLS between nodes of one uid: without TLS, nothing to stand in for.
        use_local = cfg.local_links and creds is not None and local.supported()
        dialer = self.dialer = Dialer(me=me, mesh=cfg.mesh, credentials=creds, clock=self.clock,
                                      life=self.life, links=links, hub=hub, handshake=handshake,
                                      spawn=self._spawn, local=use_local)  # fmt: skip
        if use_local:
            self._local = LocalListener(clock=self.clock, life=self.life, links=links, handshake=handshake)
        links.on_gossip, links.on_lost, links.on_ensure = dialer.on_gossip, dialer.on_lost, dialer.ensure
        self._servicer = PeerServicer(credentials=self.credentials, clock=self.clock, life=self.life,
                                      links=links, handshake=handshake)  # fmt: skip

        ctx = RuntimeContext(me=me, mesh=cfg.mesh, home=self.home, state_dir=self.state_dir, clock=self.clock,
                             spawn=self._spawn, links=links, hub=hub)  # fmt: skip
        self.mail = MailService(ctx)
        links.attach(self.mail)
        self.board = BoardService(ctx)
        links.attach(self.board)
        self.stats = StatsService(ctx, self.mail, self.board)
        self.claims = ClaimsService(ctx, cfg.lease_config, bootstrap=cfg.bootstrap)
        links.attach(self.claims)
        self.socket_path = control_socket_path(self.state_dir)
        self.hook_socket_path = hook_socket_path(self.state_dir)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _join(self) -> None:
        """Timers, discovery and seeds; return once joined (a name conflict found meanwhile raises)."""
        cfg, life, dialer = self.config, self.life, self.dialer
        assert self.hub is not None and dialer is not None
        fatal: asyncio.Future[Any] = life.arm()
        self._spawn(self.hub.run_timer(), "timers")
        if cfg.watch_pid is not None:
            watch_pid(cfg.watch_pid, self.request_stop, self._spawn)
        if cfg.mdns:
            from mesh.discovery import Discovery

            adv_host, _, adv_port = self.address.rpartition(":")
            self._discovery = Discovery(node_id=self.node_id, mesh=cfg.mesh, proto_version=PROTO_VERSION,
                                        host=adv_host, port=int(adv_port), interfaces=cfg.mdns_interfaces,
                                        on_candidate=dialer.on_candidate)  # fmt: skip
            await self._discovery.start()
        # Ask the seeds, listen a moment, then report ready.
        seeds = [asyncio.ensure_future(dialer.dial(addr, None)) for addr in cfg.peers]
        window = asyncio.ensure_future(asyncio.sleep(cfg.join_window if cfg.mdns else 0))
        joined: asyncio.Future[list[Any]] = asyncio.gather(*seeds, window, return_exceptions=True)
        done, _ = await asyncio.wait({joined, fatal}, return_when=asyncio.FIRST_COMPLETED)
        if fatal in done:
            joined.cancel()
            raise fatal.result()
        for r in joined.result():
            if isinstance(r, NameTaken):
                raise r
        for addr in cfg.peers:
            # A seed that was not up yet (or goes away before anyone else is known) is retried for our life.
            self._spawn(dialer.keep_seed(addr), f"seed-{addr}")
        # Let dials already under way (gossip, mDNS) finish their handshake so the first view is complete.
        deadline = self.clock.now() + limits.HELLO_TIMEOUT
        while dialer.dialing and self.clock.now() < deadline and not fatal.done():
            await asyncio.sleep(0.01)
        if (err := life.failed()) is not None:
            raise err
        assert self.socket_path is not None
        hook = None if self.hook_socket_path is None else str(self.hook_socket_path)
        write_node_file(self.state_dir, RunningNode(name=cfg.name, mesh=cfg.mesh, node_id=self.node_id,
                        pid=os.getpid(), socket=str(self.socket_path), address=self.address,
                        state_dir=str(self.state_dir), hook_socket=hook,
                        watch_pid=cfg.watch_pid))  # fmt: skip

    def add_face(self, stop: Callable[[], Awaitable[None]]) -> None:
        """A face started (control socket, hook wire): `stop` runs on teardown before the services close,
        so no request outlives them."""
        self._faces.append(stop)

    # ------------------------------------------------------------------ stop

    @property
    def serving(self) -> bool:
        """True from the moment the services exist until the node stops."""
        return self.life.serving

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the node to leave gracefully (safe from signal handlers and RPCs)."""
        self.life.request_stop(reason)

    async def wait_stop_requested(self) -> str:
        """Block until someone asks this node to stop; returns why."""
        return await self.life.wait_stop_requested()

    async def stop(self, reason: str = "down") -> None:
        """Leave gracefully: peers see `left` at once; then close everything."""
        if self.life.stopping:
            await self.life.stopped.wait()
            return
        if self.claims is not None and self.life.phase is Phase.READY:
            await self.claims.release_all()
        self.life.move(Phase.STOPPING)
        log.info("leaving the mesh (%s)", reason)
        if self.mail is not None:
            self.mail.send_owed_acks()  # queued before the Leave: senders see these messages delivered
        leave = frame(leave=pb.Leave(reason=reason[:128]))
        links = list(self.links.values())
        for link in links:
            link.send(leave)
            link.close()
        if links:
            await asyncio.wait([asyncio.ensure_future(link.closed.wait()) for link in links], timeout=1.0)
        await self._teardown()

    async def _teardown(self) -> None:
        if self.life.phase is Phase.STOPPED:
            return
        if not self.life.stopping:
            self.life.move(Phase.STOPPING)
        if self.hub is not None:
            self.hub.close()
        if self._discovery is not None:
            with contextlib.suppress(Exception):
                await self._discovery.stop()
            self._discovery = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._local is not None:
            await self._local.stop()
        if self._peer_server is not None:
            await self._peer_server.stop(0.2)
        for stop_face in self._faces:
            await stop_face()
        # Services close after their tasks and every RPC that could touch them have ended.
        for svc in (self.claims, self.mail, self.board, self.stats):
            if svc is not None:
                svc.close()
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        remove_node_file(self.state_dir)
        if self.store is not None:
            self.store.close()
            self.store = None
        self._lock.release()
        self.life.move(Phase.STOPPED)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        err = task.exception()
        log.error("task %s failed", task.get_name(), exc_info=err)
        if task.get_name() in ESSENTIAL_TASKS and not self.life.stopping:
            self.request_stop(f"{task.get_name()} failed: {type(err).__name__}: {str(err)[:200]}")

    # ------------------------------------------------------------------ for the Node facade

    @property
    def links(self) -> dict[str, Link]:
        return self.link_table.links if self.link_table is not None else {}

    @property
    def membership(self) -> Membership | None:
        return self.hub.core if self.hub is not None else None

    def _broadcast(self, f: pb.PeerFrame, droppable: bool) -> None:
        if self.link_table is not None:
            self.link_table.broadcast(f, droppable)

    def members(self) -> list[MemberView]:
        assert self.hub is not None
        return self.hub.members()

    def watch(self, snapshot: bool = True) -> AsyncIterator[WatchEvent]:
        assert self.hub is not None
        return self.hub.watch(snapshot)

    def set_status(self, **changes: Any) -> StatusRecord:
        assert self.hub is not None
        return self.hub.set_status(**changes)
