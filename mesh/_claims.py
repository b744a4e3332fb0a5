"""Claims in the runtime: carries the sans-IO ClaimsCore out over the peer links.

    meshctl claim / node.claim() ──▶ ClaimsService.claim ──▶ core.claim ──Send──▶ peer links (batched)
    peer frames (claims) ──▶ core.receive ──effects──▶ waiters, lease events, status (held claims), gossip
    one timer task ticks the core at its next deadline; a steward manager proposes one change at a time

Genesis (who creates the first steward config) is decided by a file lock next to the mesh's local state:
the node holding `<home>/meshes/<mesh>/genesis.lock` creates it if, once joined, it has learned none from a
peer; other nodes wait for the config to reach them. `--bootstrap` makes a node the genesis node without
the lock (a LAN mesh: name exactly one). The epoch starts above the highest this home has seen, so fencing
tokens keep increasing even across a restart of the whole mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mesh._proto import mesh_pb2 as pb
from mesh._transport import codec
from mesh._transport.peer import Link, frame
from mesh.clock import wall
from mesh.core.claims import (
    ClaimsCore,
    ConfigAnnounce,
    ConfigChanged,
    Denied,
    Effect,
    Granted,
    LeaseConfig,
    Lost,
    Released,
    Renewed,
    Send,
    StewardConfig,
    Unavailable,
)
from mesh.core.membership import Liveness
from mesh.core.steward_policy import Candidate, next_change
from mesh.core.validate import MAX_TTL, check_ttl
from mesh.errors import ClaimDenied, ConfigError, InvalidInput, MeshError, NoQuorum
from mesh.paths import mesh_dir

if TYPE_CHECKING:
    from mesh._runtime.runtime import NodeRuntime

log = logging.getLogger("mesh.claims")

EVICT_AFTER = 15.0  # a steward dead this long is replaced (DESIGN: eviction proposed after 15 s dead)
MANAGE_EVERY = 1.0
IDLE_WAKE = 5.0
ANNOUNCE_EVERY = 5.0
WAIT_RETRY = (0.02, 0.1)  # a --wait claim retries this often (random) while another holds the item
REGRAB_WINDOW = 0.5  # re-claiming an item within this long after releasing it...
REGRAB_PAUSE = (0.1, 0.2)  # ...first yields this long (if a peer said it waits), so a waiter's retry can land
WANTED_FOR = 2.0  # a peer's "I wait for it" counts this long


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The answer to a claim: granted (token) or not (holder and when it ends)."""

    granted: bool
    resource: str
    holder: str
    holder_node: str
    token: int
    expires_at: float  # wall clock; 0 when unknown
    valid_until: float = 0.0  # granted: certainly held until then on the node's clock (see mesh.lease)
    node_now: float = 0.0  # the node's clock when it answered


@dataclass(slots=True)
class _Held:
    token: int
    claim_ends: float  # local monotonic
    valid_until: float  # local monotonic: the holder's conservative belief (see valid_until())


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    """What happened to a held lease: held, renewed (with its validity on the node clock), lost, released."""

    kind: str
    resource: str
    token: int
    valid_until: float = 0.0


class ClaimsService:
    """A node's claims: proposer for its own, acceptor when it is a steward, config gossip, steward upkeep."""

    def __init__(self, rt: NodeRuntime, lease: LeaseConfig, bootstrap: bool = False) -> None:
        self.rt = rt
        self.me = f"{rt.node_id}/{rt.incarnation}"
        self.lease = lease
        self.core = ClaimsCore(self.me, rt.config.name, lease, random.Random())
        self.bootstrap = bootstrap
        self.held: dict[str, _Held] = {}
        self._waiters: dict[str, list[asyncio.Future[Effect]]] = {}
        self._lease_watchers: dict[str, list[asyncio.Queue[LeaseEvent | None]]] = {}
        self._wake = asyncio.Event()
        self._genesis_fd: int | None = None
        self._dead_since: dict[str, float] = {}
        self._ready_at = 0.0
        self._last_manage = 0.0
        self._next_announce = 0.0
        self._released_at: dict[str, float] = {}
        self._wanted: dict[str, float] = {}
        # Test/soak aid: MESH_CLAIM_HISTORY=DIR appends every acquire/renew/release/loss, stamped with the
        # node's CLOCK_BOOTTIME (shared by all processes of a host), for an interval-overlap checker.
        hist_dir = os.environ.get("MESH_CLAIM_HISTORY")
        self._history: Any = None
        if hist_dir:
            path = os.path.join(hist_dir, f"{rt.config.name}-{rt.incarnation}.jsonl")
            self._history = open(path, "a", buffering=1)  # noqa: SIM115 - closed in close()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._ready_at = self.rt.clock.now()
        self.rt._spawn(self._timer(), "claims-timer")

    async def release_all(self) -> None:
        """On leave: release every held claim (peers stop waiting at once); hand off stewardship if needed."""
        now = self.rt.clock.now()
        for resource in list(self.held):
            self.apply(self.core.release(resource, now))
        self._wake.set()
        await self._hand_off()

    async def _hand_off(self, patience: float = 3.0) -> None:
        """A leaving steward whose absence would leave no live majority asks to be removed first.

        ({a, b} without b has no quorum: every claim would stall until recovery.) Bounded: if the change
        cannot be made in time (e.g. the gap after the last change has not passed), we leave anyway.
        """
        cfg = self.core.config
        m = self.rt.membership
        if cfg is None or m is None or self.me not in cfg.stewards or len(cfg.stewards) < 2:
            return
        alive = {
            f"{x.info.node_id}/{x.info.incarnation}" for x in m.members.values() if x.state is Liveness.ALIVE
        }
        others = [s for s in cfg.stewards if s != self.me and s in alive]
        if len(others) > len(cfg.stewards) // 2:
            return
        try:
            self.apply(
                self.core.propose_config(tuple(s for s in cfg.stewards if s != self.me), self.rt.clock.now())
            )
        except ConfigError:
            return
        deadline = self.rt.clock.now() + patience
        while self.rt.clock.now() < deadline:
            now_cfg = self.core.config
            if now_cfg is not None and now_cfg.epoch > cfg.epoch:
                log.info("handed stewardship over before leaving (epoch %d)", now_cfg.epoch)
                return
            await asyncio.sleep(0.02)
        log.warning("left as a steward without handing over: the remaining stewards may lack a quorum")

    def _record(self, ev: str, resource: str, token: int, until: float | None = None) -> None:
        if self._history is not None:
            rec = {"ev": ev, "node": self.rt.config.name, "id": self.me, "resource": resource, "token": token,
                   "t": self.rt.clock.now(), "until": until}  # fmt: skip
            self._history.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None
        for qs in self._lease_watchers.values():
            for q in qs:
                q.put_nowait(None)
        if self._genesis_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._genesis_fd)
            self._genesis_fd = None

    # ------------------------------------------------------------------ effects

    def apply(self, effects: list[Effect]) -> None:
        """Carry out the core's effects; sends to one peer ride in one frame."""
        outbox: dict[str, list[pb.ClaimMsg]] = {}
        status_changed = False
        for e in effects:
            if isinstance(e, Send):
                outbox.setdefault(e.to, []).append(codec.claim_to_pb(e.msg))
            elif isinstance(e, Granted):
                slot = self.core.held(self.rt.clock.now()).get(e.resource)
                ends = slot.claim_ends if slot else e.until
                valid = self.valid_until(e.until)
                self.held[e.resource] = _Held(e.token, ends, valid)
                log.info("acquired %s token=%d", e.resource, e.token)
                self._record("acquired", e.resource, e.token, e.until)
                self._resolve(e.resource, e)
                self._lease_event(LeaseEvent("held", e.resource, e.token, valid))
                status_changed = True
            elif isinstance(e, Renewed):
                valid = self.valid_until(e.until)
                h = self.held.get(e.resource)
                if h is not None:
                    h.valid_until = max(h.valid_until, valid)
                self._record("renewed", e.resource, e.token, e.until)
                self._lease_event(LeaseEvent("renewed", e.resource, e.token, valid))
            elif isinstance(e, Lost):
                self.held.pop(e.resource, None)
                log.warning("lost %s token=%d (could not renew in time)", e.resource, e.token)
                self._record("lost", e.resource, e.token)
                self._lease_event(LeaseEvent("lost", e.resource, e.token), final=True)
                status_changed = True
            elif isinstance(e, Released):
                self.held.pop(e.resource, None)
                log.info("released %s token=%d", e.resource, e.token)
                self._record("released", e.resource, e.token)
                self._lease_event(LeaseEvent("released", e.resource, e.token), final=True)
                status_changed = True
            elif isinstance(e, Denied | Unavailable):
                self._resolve(e.resource, e)
                if isinstance(e, Unavailable) and e.resource.startswith("@"):
                    log.info("steward change not made: %s", e.reason)
            elif isinstance(e, ConfigChanged):
                self._config_changed(e.config)
        for to, msgs in outbox.items():
            self._route(to, msgs)
        if status_changed:
            self.rt.publish_claims()
        self._wake.set()

    def valid_until(self, until: float) -> float:
        """The holder's conservative validity for a core deadline ``until`` = t_prepare_sent + D_P.

        valid_until = t_prepare_sent + D_P * (1 - rho): the core's own belief, shortened by the clock-rate
        bound, so that an API holder acting on it stops a little before the node itself would.
        """
        return until - self.lease.rho * self.lease.lease

    def _route(self, to: str, msgs: list[pb.ClaimMsg]) -> None:
        node_id, _, incarnation = to.partition("/")
        link = self.rt.links.get(node_id)
        if link is not None and link.peer.incarnation == incarnation:
            link.send(frame(claims=msgs))
        # Otherwise the message is lost, which the protocol tolerates (the attempt times out and retries).

    def _resolve(self, resource: str, e: Effect) -> None:
        for fut in self._waiters.pop(resource, []):
            if not fut.done():
                fut.set_result(e)

    def _lease_event(self, ev: LeaseEvent, final: bool = False) -> None:
        for q in self._lease_watchers.get(ev.resource, []):
            q.put_nowait(ev)
            if final:
                q.put_nowait(None)
        if final:
            self._lease_watchers.pop(ev.resource, None)

    def _config_changed(self, cfg: StewardConfig) -> None:
        names = [self.name_of(s) for s in cfg.stewards]
        log.info("steward config epoch %d: %s", cfg.epoch, ", ".join(names))
        self._remember_epoch(cfg.epoch)
        announce = frame(claims=[codec.claim_to_pb(ConfigAnnounce(cfg.epoch, cfg.stewards))])
        for link in self.rt.links.values():
            link.send(announce)
        self.rt.publish_config()

    # ------------------------------------------------------------------ peer side

    def on_link_up(self, link: Link) -> None:
        cfg = self.core.config
        if cfg is not None:
            link.send(frame(claims=[codec.claim_to_pb(ConfigAnnounce(cfg.epoch, cfg.stewards))]))

    def on_frames(self, link: Link, msgs: Any) -> None:
        """Claims messages from a peer; the sender identity is the link's, never what a message says."""
        sender = f"{link.peer.node_id}/{link.peer.incarnation}"
        now = self.rt.clock.now()
        effects: list[Effect] = []
        for m in msgs[:256]:
            effects += self.core.receive(sender, codec.claim_from_pb(m), now)
        self.apply(effects)

    # ------------------------------------------------------------------ timers

    async def _timer(self) -> None:
        while True:
            now = self.rt.clock.now()
            self.apply(self.core.tick(now))
            # Upkeep matters only before the first config and on stewards; an idle non-steward sleeps longer.
            cfg = self.core.config
            every = MANAGE_EVERY if cfg is None or self.me in cfg.stewards else IDLE_WAKE
            if now - self._last_manage >= every:
                self._last_manage = now
                self._manage(now)
            deadline = self.core.next_deadline()
            now = self.rt.clock.now()
            timeout = every if deadline is None else min(every, max(0.0, deadline - now))
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that races the
            # timeout, which left this loop running after stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _manage(self, now: float) -> None:
        """Genesis if we are the arbiter and nobody told us a config; else steward upkeep if we lead."""
        cfg = self.core.config
        if cfg is not None and now >= self._next_announce:
            # Re-announce now and then: an announce sent on a link that was being replaced is lost, and a
            # node that never hears one could not claim at all.
            self._next_announce = now + ANNOUNCE_EVERY
            announce = frame(claims=[codec.claim_to_pb(ConfigAnnounce(cfg.epoch, cfg.stewards))])
            for link in self.rt.links.values():
                link.send(announce, droppable=True)
        if cfg is None:
            if now - self._ready_at >= 0.3 and self._may_genesis():
                epoch = self._highest_epoch() + 1
                log.info("creating the steward config (epoch %d) with this node as first steward", epoch)
                self.apply(self.core.genesis((self.me,), now, epoch=epoch))
            return
        if self.me not in cfg.stewards or self.core.reconfiguring:
            return
        m = self.rt.membership
        assert m is not None
        live: list[Candidate] = []
        ident_state: dict[str, tuple[Liveness, float]] = {}
        for mem in m.members.values():
            ident = f"{mem.info.node_id}/{mem.info.incarnation}"
            ident_state[ident] = (mem.state, mem.state_since)
            if mem.state is Liveness.ALIVE:
                host = mem.info.address.rpartition(":")[0]
                live.append(Candidate(ident, mem.info.started_at, host))
        # The oldest live steward leads upkeep; the others stay quiet (one change at a time anyway).
        live_stewards = [c for c in live if c.identity in cfg.stewards]
        leader = min(live_stewards, key=lambda c: (c.started_at, c.identity)) if live_stewards else None
        if leader is None or leader.identity != self.me:
            return
        dead: list[str] = []
        for s in cfg.stewards:
            state = ident_state.get(s)
            if state is None or state[0] is Liveness.LEFT:
                dead.append(s)  # gone for good (left, forgotten, or restarted as a new incarnation)
            elif state[0] is Liveness.DEAD and now - state[1] >= EVICT_AFTER:
                dead.append(s)
        change = next_change(cfg.stewards, live, dead)
        if change is not None:
            try:
                self.apply(self.core.propose_config(change, now))
            except ConfigError as e:
                log.debug("no steward change now: %s", e)

    def _may_genesis(self) -> bool:
        if self.bootstrap:
            return True
        if self._genesis_fd is None:
            path = mesh_dir(self.rt.home, self.rt.config.mesh) / "genesis.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._genesis_fd = fd
        return True

    def _epoch_file(self) -> Any:
        return mesh_dir(self.rt.home, self.rt.config.mesh) / "epoch"

    def _highest_epoch(self) -> int:
        try:
            return int(self._epoch_file().read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _remember_epoch(self, epoch: int) -> None:
        if epoch <= self._highest_epoch():
            return
        path = self._epoch_file()
        tmp = path.with_name(f"epoch.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(str(epoch))
            os.replace(tmp, path)

    # ------------------------------------------------------------------ API

    def name_of(self, identity: str) -> str:
        """Session name of an identity, if it is a member we know."""
        m = self.rt.membership
        node_id = identity.partition("/")[0]
        if m is not None:
            mem = m.members.get(node_id)
            if mem is not None:
                return mem.info.name
        return "?" + node_id[:8]

    async def claim(self, resource: str, ttl: float, wait: float) -> ClaimResult:
        """Claim `resource` for at most `ttl` s; with `wait`, keep trying while someone else holds it."""
        check_ttl(ttl)
        if not 0 <= wait <= MAX_TTL:
            raise InvalidInput(f"wait must be 0 to 7 days, not {wait!r} s")
        loop = asyncio.get_running_loop()
        released = self._released_at.pop(resource, None)
        now = self.rt.clock.now()
        wanted = now - self._wanted.get(resource, -1e9) < WANTED_FOR
        if released is not None and now - released < REGRAB_WINDOW and wanted:
            # Re-claiming what we just released: give sessions waiting for it a turn first (fairness), else a
            # release-then-claim loop would win every time against waiters that poll.
            await asyncio.sleep(random.uniform(*REGRAB_PAUSE))
        deadline = self.rt.clock.now() + wait
        patience = self.lease.claim_patience + 2 * self.lease.attempt_timeout + 1.0
        while True:
            fut: asyncio.Future[Effect] = loop.create_future()
            self._waiters.setdefault(resource, []).append(fut)
            self.apply(self.core.claim(resource, ttl, self.rt.clock.now()))
            try:
                async with asyncio.timeout(patience):
                    e = await asyncio.shield(fut)
            except TimeoutError:
                e = Unavailable(resource, "no answer from the stewards")
            now = self.rt.clock.now()
            if isinstance(e, Granted):
                h = self.held.get(resource)
                ends = h.claim_ends if h else now + ttl
                valid = h.valid_until if h else self.valid_until(e.until)
                return ClaimResult(True, resource, self.rt.config.name, self.rt.node_id, e.token,
                                   wall() + (ends - now), valid, now)  # fmt: skip
            if now >= deadline:
                if isinstance(e, Denied):
                    exp = wall() + e.remaining if e.remaining else 0.0
                    node = e.holder.partition("/")[0]
                    raise ClaimDenied(
                        f"{resource} is held by {e.holder_name or node}"
                        + (f" until {_clock(exp)}" if exp else ""),
                        holder=e.holder_name or node,
                        expires_at=exp or None,
                    )
                reason = e.reason if isinstance(e, Unavailable) else "no answer"
                raise NoQuorum(f"cannot decide {resource} now: {reason}")
            # Someone holds it (or the stewards are busy): tell the holder's node we wait, try again soon.
            if isinstance(e, Denied):
                self._tell_holder(e.holder, resource)
            await asyncio.sleep(min(max(0.0, deadline - now), random.uniform(*WAIT_RETRY)))

    def _tell_holder(self, holder: str, resource: str) -> None:
        link = self.rt.links.get(holder.partition("/")[0])
        if link is not None:
            link.send(frame(wants=[resource]), droppable=True)

    def on_wants(self, resources: Any) -> None:
        """Peers wait for these items (they were denied because this node holds them)."""
        now = self.rt.clock.now()
        for r in resources[:64]:
            if r in self.held or r in self._released_at:
                self._wanted[r] = now

    def release(self, resource: str) -> int | None:
        """Release a held claim; returns its token (None if this node did not hold it)."""
        h = self.held.get(resource)
        self.apply(self.core.release(resource, self.rt.clock.now()))
        if h is not None:
            now = self.rt.clock.now()
            self._released_at[resource] = now
            if len(self._released_at) > 256:  # forget stale entries; they only matter for REGRAB_WINDOW
                self._released_at = {r: t for r, t in self._released_at.items() if now - t < REGRAB_WINDOW}
                self._wanted = {r: t for r, t in self._wanted.items() if now - t < WANTED_FOR}
        return h.token if h else None

    def held_view(self) -> list[tuple[str, int, float]]:
        """(resource, token, ends at wall) for every claim held."""
        now, w = self.rt.clock.now(), wall()
        return [(r, h.token, w + (h.claim_ends - now)) for r, h in sorted(self.held.items())]

    async def watch_lease(self, resource: str) -> AsyncIterator[LeaseEvent]:
        """Events of a held lease until it is lost or released."""
        h = self.held.get(resource)
        if h is None:
            raise MeshError(f"this node does not hold {resource}")
        q: asyncio.Queue[LeaseEvent | None] = asyncio.Queue()
        self._lease_watchers.setdefault(resource, []).append(q)
        yield LeaseEvent("held", resource, h.token, h.valid_until)
        while True:
            ev = await q.get()
            if ev is None:
                return
            yield ev

    async def recover(self) -> StewardConfig:
        """Make this node the only steward of a new epoch, after waiting out any lease the old set granted."""
        cfg = self.core.config
        epoch = max(cfg.epoch if cfg else 0, self._highest_epoch()) + 1
        wait = self.lease.acceptor_lease
        log.warning("steward recovery: waiting %.1f s for leases of the old stewards to expire", wait)
        await asyncio.sleep(wait)
        new = StewardConfig(epoch, (self.me,))
        self.apply(self.core.adopt(new, self.rt.clock.now()))
        return new


def _clock(t: float) -> str:
    import time

    return time.strftime("%H:%M:%S", time.localtime(t))
