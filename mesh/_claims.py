"""Claims in the runtime: carries the sans-IO ClaimsCore out over the peer links.

    meshctl claim / node.claim() ──▶ ClaimsService.claim ──▶ core.claim ──Send──▶ peer links (batched)
    peer frames (claims) ──▶ core.receive ──effects──▶ waiters, lease events, status (held claims), gossip
    one timer task ticks the core at its next deadline; steward upkeep runs on every membership change

Durable state (``mesh._steward_store``): this node's steward state (config, config-Paxos votes, the
reserved lease-ballot floor) is written before the replies it backs; the home's epoch file records that
this home has seen a config. Either one unreadable: the node refuses to start (StateError).

Genesis (the first steward config) happens exactly once per mesh: only in the home that created the mesh's
credentials (``meshctl init`` / the first ``up``; an imported join token never gives that right) or on a
node started with ``--bootstrap``; within that home the node holding ``genesis.lock``; and only if this home
has never seen a config (no epoch file). It waits a moment to see the others (up to FORMATION_WINDOW, or
until it sees three nodes) and makes up to three of them, oldest first, the first stewards. Every other
node waits for the config to reach it.

Upkeep: the oldest live steward moves the set straight to its target (``steward_policy.next_config``).
When no live steward majority is left and every missing steward ran under this home with its node lock
free (its process is gone: proven dead), the oldest live node of this home answers for the dead stewards
as their config acceptor (``proxy_step`` under their lock) and reconfigures; the new stewards serve after
the hand-off's blackout. Where death cannot be proven (another home or host, a partition) nothing
automatic happens: ``meshctl stewards --recover`` stays the operator's act, and the node says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh import _steward_store as store
from mesh._proto import mesh_pb2 as pb
from mesh._transport import codec
from mesh._transport.peer import Link, frame
from mesh.clock import wall
from mesh.core.claims import (
    CfgAccept,
    CfgPrepare,
    ClaimsCore,
    ConfigAnnounce,
    ConfigChanged,
    Denied,
    Effect,
    Granted,
    LeaseConfig,
    Lost,
    Persist,
    Released,
    Renewed,
    Send,
    StewardConfig,
    Unavailable,
)
from mesh.core.membership import Liveness
from mesh.core.steward_policy import Candidate, can_decide, formation, next_config, upkeep_leader
from mesh.core.stewards import StewardState, proxy_step
from mesh.core.validate import MAX_TTL, check_ttl
from mesh.errors import ClaimDenied, ConfigError, InvalidInput, MeshError, NoQuorum, StateError

if TYPE_CHECKING:
    from mesh._runtime.runtime import NodeRuntime

log = logging.getLogger("mesh.claims")

EVICT_AFTER = 15.0  # a steward dead this long is replaced (DESIGN: eviction proposed after 15 s dead)
PROVEN_GRACE = 1.0  # a steward proven dead (its lock is free) is replaced after this; a quick restart rejoins
MANAGE_EVERY = 1.0
IDLE_WAKE = 5.0
ANNOUNCE_EVERY = 5.0
FORMATION_WINDOW = 1.0  # the genesis node waits up to this long to see three nodes
FORMING_WAIT = 5.0  # a claim without --wait waits this long for a config / a hand-off
WAIT_RETRY = (0.02, 0.1)  # a --wait claim retries this often (random) while another holds it
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
    valid_until: float = 0.0  # granted: certainly held until then on the node's clock (see mesh.claim)
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


def check_state(home: Path, mesh: str, state_dir: Path, node_id: str) -> Any:
    """Read this node's durable claims state; StateError (one clear line) if any of it is unreadable."""
    store.read_home_epoch(home, mesh)
    return store.load_steward_state(state_dir, node_id)


class ClaimsService:
    """A node's claims: proposer for its own, acceptor when it is a steward, config gossip, steward upkeep."""

    def __init__(self, rt: NodeRuntime, lease: LeaseConfig, bootstrap: bool = False) -> None:
        self.rt = rt
        self.me = f"{rt.node_id}/{rt.incarnation}"
        self.lease = lease
        self.home, self.mesh = rt.home, rt.config.mesh
        durable = check_state(self.home, self.mesh, rt.state_dir, rt.node_id)
        self._started = rt.clock.now()
        self.core = ClaimsCore(
            self.me, rt.config.name, lease, random.Random(), state=durable, now=self._started
        )
        if durable is not None and durable.clean:
            # A clean stop is good for ONE start: cleared durably before this node serves anything.
            store.save_steward_state(rt.state_dir, rt.node_id, self.core.durable)
        if durable is not None and durable.config is not None:
            log.info("steward config epoch %d from this node's state", durable.config.epoch)
        self.bootstrap = bootstrap
        self.held: dict[str, _Held] = {}
        self._waiters: dict[str, list[asyncio.Future[Effect]]] = {}
        self._config_waiters: list[asyncio.Future[None]] = []
        self._lease_watchers: dict[str, list[asyncio.Queue[LeaseEvent | None]]] = {}
        self._wake = asyncio.Event()
        self._manage_soon = False
        self._genesis = store.GenesisLock(self.home, self.mesh)
        self._ready_at = 0.0
        self._last_manage = 0.0
        self._next_announce = 0.0
        self._released_at: dict[str, float] = {}
        self._wanted: dict[str, float] = {}
        self._proxy_for: frozenset[str] = frozenset()
        self._note = ""
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
        cfg = self.core.config
        if cfg is not None:
            self._config_changed(cfg)
        self.rt._spawn(self._timer(), "claims-timer")

    async def release_all(self) -> None:
        """On leave: release every held claim (peers stop waiting at once); hand off stewardship if needed."""
        now = self.rt.clock.now()
        for resource in list(self.held):
            self.apply(self.core.release(resource, now))
        self._wake.set()
        await self._hand_off()
        state = self.core.clean_stop(self.rt.clock.now())
        if state is not None:
            with contextlib.suppress(OSError):
                store.save_steward_state(self.rt.state_dir, self.rt.node_id, state)

    async def _hand_off(self, patience: float = 3.0) -> None:
        """A leaving steward asks to be replaced first (bounded: it leaves anyway if that takes too long).

        Stewards leaving at the same time race; a change another one made may keep this node in the set,
        so it tries again from whatever config is current until one without it is chosen.
        """
        me = self.rt.node_id
        deadline = self.rt.clock.now() + patience
        while self.rt.clock.now() < deadline:
            cfg = self.core.config
            if cfg is None or me not in cfg.stewards:
                if cfg is not None:
                    log.info("handed stewardship over before leaving (epoch %d)", cfg.epoch)
                return
            if not self.core.reconfiguring:
                live = [c for c in self._live() if c.node != me]
                target = next_config(cfg.stewards, live, {me})
                if target is None or not can_decide(cfg.stewards, {c.node for c in live} | {me}):
                    return
                with contextlib.suppress(ConfigError):
                    self.apply(self.core.propose_config(target, self.rt.clock.now()))
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
        self._genesis.release()

    # ------------------------------------------------------------------ effects

    def apply(self, effects: list[Effect]) -> None:
        """Carry out the core's effects in order; sends to one peer ride in one frame."""
        outbox: dict[str, list[pb.ClaimMsg]] = {}
        status_changed = False
        for e in effects:
            if isinstance(e, Send):
                if not self._proxied(e):
                    outbox.setdefault(e.to, []).append(codec.claim_to_pb(e.msg))
            elif isinstance(e, Persist):
                # Durable BEFORE anything that follows leaves (the frames below are sent after the loop).
                store.save_steward_state(self.rt.state_dir, self.rt.node_id, e.state)
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
        # A bare node id (a steward) reaches whatever incarnation of it runs; an identity only that one.
        if link is not None and (not incarnation or link.peer.incarnation == incarnation):
            link.send(frame(claims=msgs))
        # Otherwise the message is lost, which the protocol tolerates (the attempt times out and retries).

    def _proxied(self, e: Send) -> bool:
        """A config message to a dead steward of this home, during a recovery: answer for it here."""
        if e.to not in self._proxy_for or not isinstance(e.msg, CfgPrepare | CfgAccept):
            return False
        cfg = self.core.config
        state_dir = store.steward_dirs(self.home, self.mesh).get(e.to)
        if cfg is None or state_dir is None:
            return True  # nobody can answer for it: as good as lost
        msg = e.msg
        with store.dead_node_lock(state_dir) as held:
            if not held:
                return True  # it is running again: it answers for itself (the message goes nowhere)
            try:
                st = store.load_steward_state(state_dir, e.to)
            except StateError as err:
                log.warning("cannot answer for dead steward %s: %s", self.name_of(e.to), err)
                return True
            st, reply = proxy_step(st or StewardState(), e.to, msg, cfg, self.lease.acceptor_lease)
            store.save_steward_state(state_dir, e.to, st)  # under its lock, before the reply is used
        log.info("answered for dead steward %s: %s", self.name_of(e.to), type(reply).__name__)
        asyncio.get_running_loop().call_soon(self._proxy_reply, f"{e.to}/proxy", reply)
        return True

    def _proxy_reply(self, sender: str, reply: Any) -> None:
        self.apply(self.core.receive(sender, reply, self.rt.clock.now()))

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
        try:
            store.remember_home_epoch(self.home, self.mesh, cfg.epoch)
        except (OSError, StateError) as e:
            log.warning("could not record epoch %d in this home: %s", cfg.epoch, e)
        announce = frame(claims=[codec.claim_to_pb(ConfigAnnounce(cfg.epoch, cfg.stewards))])
        for link in self.rt.links.values():
            link.send(announce)
        for fut in self._config_waiters:
            if not fut.done():
                fut.set_result(None)
        self._config_waiters.clear()
        self._manage_soon = True
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

    def on_members_changed(self) -> None:
        """A node joined, died, left or came back: run upkeep now, not at the next periodic pass."""
        self._manage_soon = True
        self._wake.set()

    # ------------------------------------------------------------------ timers

    async def _timer(self) -> None:
        while True:
            now = self.rt.clock.now()
            self.apply(self.core.tick(now))
            # Upkeep matters before the first config and on stewards; an idle non-steward sleeps longer.
            cfg = self.core.config
            every = MANAGE_EVERY if cfg is None or self._concerned(cfg) else IDLE_WAKE
            if self._manage_soon or now - self._last_manage >= every:
                self._manage_soon = False
                self._last_manage = now
                self._manage(now)
            deadline = self.core.next_deadline()
            now = self.rt.clock.now()
            timeout = every if deadline is None else min(every, max(0.0, deadline - now))
            if cfg is None:
                timeout = min(timeout, 0.1)  # forming: look again soon
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that races the
            # timeout, which left this loop running after stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _concerned(self, cfg: StewardConfig) -> bool:
        """Stewards watch upkeep closely; so does everyone while the stewards lack a quorum."""
        if self.rt.node_id in cfg.stewards:
            return True
        live = {c.node for c in self._live()}
        return not can_decide(cfg.stewards, live)

    def _live(self) -> list[Candidate]:
        m = self.rt.membership
        if m is None:
            return []
        out = []
        for mem in m.members.values():
            if mem.state is Liveness.ALIVE:
                host = mem.info.address.rpartition(":")[0]
                out.append(Candidate(mem.info.node_id, mem.info.started_at, host))
        return out

    def _gone(self, cfg: StewardConfig, now: float) -> tuple[set[str], set[str]]:
        """(stewards to replace, of which proven dead): left, dead for EVICT_AFTER, or provably dead."""
        m = self.rt.membership
        assert m is not None
        dirs: dict[str, Path] | None = None
        gone: set[str] = set()
        proven: set[str] = set()
        for s in cfg.stewards:
            mem = m.members.get(s)
            if mem is not None and mem.state in (Liveness.ALIVE, Liveness.SUSPECT):
                continue
            away = now - (mem.state_since if mem is not None else self._started)
            if mem is not None and (mem.state is Liveness.LEFT or away >= EVICT_AFTER):
                gone.add(s)
            if dirs is None:
                dirs = store.steward_dirs(self.home, self.mesh)
            d = dirs.get(s)
            if d is not None and store.proven_dead(d):
                proven.add(s)
                if away >= PROVEN_GRACE:
                    gone.add(s)
        return gone, proven

    def _manage(self, now: float) -> None:
        """Genesis if this node may and nobody told it a config; else steward upkeep if it leads."""
        cfg = self.core.config
        if cfg is not None and now >= self._next_announce:
            # Re-announce now and then: an announce sent on a link that was being replaced is lost, and a
            # node that never hears one could not claim at all.
            self._next_announce = now + ANNOUNCE_EVERY
            announce = frame(claims=[codec.claim_to_pb(ConfigAnnounce(cfg.epoch, cfg.stewards))])
            for link in self.rt.links.values():
                link.send(announce, droppable=True)
        if cfg is None:
            self._maybe_genesis(now)
            return
        live = self._live()
        ids = {c.node for c in live}
        live_stewards = set(cfg.stewards) & ids
        gone, proven = self._gone(cfg, now) if set(cfg.stewards) - ids else (set(), set())
        quorum = can_decide(cfg.stewards, live_stewards)
        self._note = self._health(cfg, live_stewards, proven, now)
        if self.core.reconfiguring:
            return
        self._proxy_for = frozenset()
        if quorum:
            if upkeep_leader(cfg.stewards, live) != self.rt.node_id:
                return
        else:
            # No live steward majority: only where death is proven (stewards of this home, locks free) does
            # a node of this home answer for them; the oldest of this home's live nodes acts.
            if not can_decide(cfg.stewards, live_stewards | proven) or not self._oldest_here(live):
                return
        target = next_config(cfg.stewards, live, gone)
        if target is None:
            return
        if not quorum:
            self._proxy_for = frozenset(proven)
            log.warning(
                "steward majority lost; %s proven dead (process gone): reconfiguring to %s",
                ", ".join(self.name_of(s) for s in sorted(proven)),
                ", ".join(self.name_of(s) for s in target),
            )
        try:
            self.apply(self.core.propose_config(target, now))
        except ConfigError as e:
            log.debug("no steward change now: %s", e)

    def _oldest_here(self, live: list[Candidate]) -> bool:
        """Whether this node is the oldest live node of its own home (the one that recovers for it)."""
        here = set()
        nodes = self.home / "meshes" / self.mesh / "nodes"
        for f in nodes.glob("*/node.json"):
            with contextlib.suppress(OSError, ValueError):
                here.add(json.loads(f.read_text())["node_id"])
        mine = [c for c in live if c.node in here or c.node == self.rt.node_id]
        return upkeep_leader((), mine) == self.rt.node_id

    def _health(self, cfg: StewardConfig, live_stewards: set[str], proven: set[str], now: float) -> str:
        """Why claims cannot be decided right now, and what to do ("" when they can)."""
        missing = [s for s in cfg.stewards if s not in live_stewards]
        if can_decide(cfg.stewards, live_stewards):
            wait = self.core.serve_wait(now)
            if self.rt.node_id in cfg.stewards and 0 < wait < math.inf:
                return f"stewards taking over: this steward serves claims again in {math.ceil(wait)} s"
            return ""
        names = ", ".join(self.name_of(s) for s in missing)
        if set(missing) <= proven:
            return (
                f"recovering: stewards {names} are dead (their process is gone); reconfiguring without them, "
                f"claims resume within {self.lease.acceptor_lease:g} s"
            )
        unproven = ", ".join(self.name_of(s) for s in missing if s not in proven)
        return (
            f"no steward quorum: stewards {names} unreachable, and {unproven} cannot be proven dead from "
            f"here (another home or host, or a partition); if they are gone for good, run "
            f"'meshctl stewards --recover --yes' on one surviving node"
        )

    def steward_note(self) -> str:
        """The steward situation in one line for status/stewards/claim errors ("" when all is well)."""
        cfg = self.core.config
        if cfg is None:
            return self._note or self._waiting_note()
        now = self.rt.clock.now()
        ids = {c.node for c in self._live()}
        proven = self._gone(cfg, now)[1] if set(cfg.stewards) - ids else set()
        return self._health(cfg, set(cfg.stewards) & ids, proven, now)

    def _waiting_note(self) -> str:
        if self.bootstrap or store.is_genesis_home(self.home, self.mesh):
            return "waiting for the steward config: forming (this home creates the first one)"
        return (
            "waiting for the steward config: no peer has told this node one yet; the first config comes "
            "from the home that created this mesh (or a node started with --bootstrap)"
        )

    def _config_from_home(self) -> StewardConfig | None:
        """The newest config any node of this home adopted (its steward file): as good as gossip.

        A node new to a home whose stewards are all gone (a whole mesh restarted under new names) learns
        the config here, finds its stewards proven dead, and recovers instead of waiting forever.
        """
        best: StewardConfig | None = None
        for node_id, d in store.steward_dirs(self.home, self.mesh).items():
            with contextlib.suppress(StateError):
                st = store.load_steward_state(d, node_id)
                cfg = st.config if st is not None else None
                if cfg is not None and (best is None or cfg.epoch > best.epoch):
                    best = cfg
        return best

    def _maybe_genesis(self, now: float) -> None:
        """Genesis, if this node has the right (see the module docstring)."""
        found = self._config_from_home()
        if found is not None:
            log.info("steward config epoch %d learned from this home's files", found.epoch)
            self.apply(self.core.adopt(found, now))
            return
        if not (self.bootstrap or store.is_genesis_home(self.home, self.mesh)):
            self._note = self._waiting_note()
            return
        try:
            seen = store.read_home_epoch(self.home, self.mesh)
        except StateError as e:
            self._note = f"waiting for the steward config: {e}"
            return
        if seen is not None:
            self._note = (
                f"waiting for the steward config: this home has used epoch {seen} before, so it never "
                f"creates a new first one; it comes from a peer"
            )
            return
        if not self._genesis.take():
            self._note = "waiting for the steward config: another node of this home creates it"
            return
        live = self._live()
        if now - self._ready_at < FORMATION_WINDOW and len(live) < 3:
            self._note = "waiting for the steward config: forming (this node creates it in a moment)"
            return  # the timer looks again shortly
        stewards = formation(live, self.rt.node_id)
        # The epoch file first: should this node die right now, this home still never makes a second one.
        store.remember_home_epoch(self.home, self.mesh, 1)
        log.info(
            "creating the steward config (epoch 1) with %s as first steward%s",
            ", ".join(self.name_of(s) for s in stewards),
            "s" if len(stewards) > 1 else "",
        )
        self._note = ""
        self.apply(self.core.genesis(stewards, now))

    # ------------------------------------------------------------------ API

    def name_of(self, identity: str) -> str:
        """Session name of an identity or node id, if it is a member we know."""
        m = self.rt.membership
        node_id = identity.partition("/")[0]
        if node_id == self.rt.node_id:
            return self.rt.config.name
        if m is not None:
            mem = m.members.get(node_id)
            if mem is not None:
                return mem.info.name
        return "?" + node_id[:8]

    async def _await_config(self, budget: float) -> bool:
        if self.core.config is not None:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._config_waiters.append(fut)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await fut
        return self.core.config is not None

    async def claim(self, resource: str, ttl: float, wait: float) -> ClaimResult:
        """Claim `resource` for at most `ttl` s; with `wait`, keep trying while someone else holds it.

        While the mesh forms (no config yet) or new stewards take over, the claim waits for them, up to
        `wait` or FORMING_WAIT when no `wait` is given.
        """
        check_ttl(ttl)
        if not 0 <= wait <= MAX_TTL:
            raise InvalidInput(f"wait must be 0 to 7 days, not {wait!r} s")
        loop = asyncio.get_running_loop()
        start = self.rt.clock.now()
        patience_forming = wait if wait > 0 else FORMING_WAIT
        if not await self._await_config(patience_forming):
            raise NoQuorum(f"cannot decide {resource} now: {self.steward_note()}")
        released = self._released_at.pop(resource, None)
        now = self.rt.clock.now()
        wanted = now - self._wanted.get(resource, -1e9) < WANTED_FOR
        if released is not None and now - released < REGRAB_WINDOW and wanted:
            # Re-claiming what we just released: give sessions waiting for it a turn first (fairness), else a
            # release-then-claim loop would win every time against waiters that poll.
            await asyncio.sleep(random.uniform(*REGRAB_PAUSE))
        deadline = start + wait
        forming_deadline = start + patience_forming
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
            if isinstance(e, Unavailable) and now < forming_deadline and not e.resource.startswith("@"):
                # New stewards take over (restarted ones sit out their quarantine: they said for how long),
                # or a steward just died and is being replaced: a claim rides that out, within its budget.
                pause = min(e.wait, 0.5) if e.wait > 0 else random.uniform(0.05, 0.2)
                if now + pause < forming_deadline:
                    await asyncio.sleep(pause)
                    continue
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
                note = self.steward_note()
                raise NoQuorum(f"cannot decide {resource} now: {reason}" + (f"; {note}" if note else ""))
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
        seen = store.read_home_epoch(self.home, self.mesh) or 0
        epoch = max(cfg.epoch if cfg else 0, seen) + 1
        wait = self.lease.acceptor_lease
        log.warning("steward recovery: waiting %.1f s for leases of the old stewards to expire", wait)
        await asyncio.sleep(wait)
        cur = self.core.config
        if cur is not None and cur.epoch >= epoch:
            epoch = cur.epoch + 1
        new = StewardConfig(epoch, (self.rt.node_id,))
        self.apply(self.core.force_config(new, self.rt.clock.now()))
        return new


def _clock(t: float) -> str:
    import time

    return time.strftime("%H:%M:%S", time.localtime(t))
