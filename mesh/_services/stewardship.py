"""Stewardship: who the stewards are, kept by the nodes themselves (the claims service's upkeep side).

Genesis (the first steward config) happens exactly once per mesh: only in the home that created the mesh's
credentials (``meshctl init`` / the first ``up``; an imported join token never gives that right) or on a
node started with ``--bootstrap``; within that home the node holding ``genesis.lock``; and only if this home
has never seen a config (no epoch file). It waits a moment to see the others (up to FORMATION_WINDOW, or
until it sees three nodes) and makes up to three of them, oldest first, the first stewards. Every other
node waits for the config to reach it (or finds it in the steward files of its home).

Upkeep: the oldest live steward moves the set straight to its target (``steward_policy.next_config``).
When no live steward majority is left and every missing steward ran under this home with its node lock
free (its process is gone: proven dead), the oldest live node of this home answers for the dead stewards
as their config acceptor (``proxy_step`` under their lock) and reconfigures; the new stewards serve after
the hand-off's blackout. Where death cannot be proven (another home or host, a partition) nothing
automatic happens: ``meshctl stewards --recover`` stays the operator's act, and the node says so
(``note``). A leaving steward asks to be replaced first (``hand_off``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mesh import _steward_store as store
from mesh._services.context import ServiceContext, some_peers
from mesh.core.claims import CfgAccept, CfgPrepare, ClaimsCore, ConfigAnnounce, Effect, LeaseConfig, Send
from mesh.core.errors import ConfigError, StorageError
from mesh.core.membership import Liveness
from mesh.core.steward_policy import Candidate, can_decide, formation, next_config, upkeep_leader
from mesh.core.stewards import StewardConfig, StewardState, proxy_step

log = logging.getLogger("mesh.claims")

EVICT_AFTER = 15.0  # a steward dead this long is replaced (DESIGN: eviction proposed after 15 s dead)
PROVEN_GRACE = 1.0  # a steward proven dead (its lock is free) is replaced after this; a quick restart rejoins
ANNOUNCE_EVERY = 5.0
ANNOUNCE_FANOUT = 3
FORMATION_WINDOW = 1.0  # the genesis node waits up to this long to see three nodes
# How long a look at this home's steward files (who is proven dead) is reused. Upkeep asks on every member
# event and every claims tick while a mesh forms, when the stewards are not yet seen alive: at 48 nodes a
# look each time was a sixth of a forming node's CPU. A stale "proven" only delays or brings forward a
# reconfiguration by this much; answering for a dead steward takes its lock again first (`proxied`).
PROOF_EVERY = 0.25


class Stewardship:
    """Genesis, steward upkeep, proven-death recovery, the hand-off at leave, and the steward note."""

    def __init__(
        self,
        ctx: ServiceContext,
        core: ClaimsCore,
        lease: LeaseConfig,
        bootstrap: bool,
        apply: Callable[[list[Effect]], None],
        name_of: Callable[[str], str],
    ) -> None:
        self.ctx = ctx
        self.core = core
        self.lease = lease
        self.bootstrap = bootstrap
        self.apply = apply
        self.name_of = name_of
        self.node_id = ctx.identity.node_id
        self.home, self.mesh = ctx.home, ctx.mesh
        self._started = ctx.clock.now()
        self._ready_at = self._started
        self._genesis = store.GenesisLock(self.home, self.mesh)
        self._files = store.HomeStewardFiles(self.home, self.mesh)
        self._next_announce = 0.0
        self._proxy_for: frozenset[str] = frozenset()
        self._proof: tuple[float, dict[str, bool]] = (-math.inf, {})  # (when looked, steward -> proven dead)
        self._note = ""

    def ready(self) -> None:
        """The node is ready: the formation window starts now."""
        self._ready_at = self.ctx.clock.now()

    def close(self) -> None:
        self._genesis.release()

    async def hand_off(self, patience: float = 3.0) -> None:
        """A leaving steward asks to be replaced first (bounded: it leaves anyway if that takes too long).

        Stewards leaving at the same time race; a change another one made may keep this node in the set,
        so it tries again from whatever config is current until one without it is chosen.
        """
        me = self.node_id
        deadline = self.ctx.clock.now() + patience
        while self.ctx.clock.now() < deadline:
            cfg = self.core.config
            if cfg is None or me not in cfg.stewards:
                if cfg is not None:
                    log.info("handed stewardship over before leaving (epoch %d)", cfg.epoch)
                return
            if not self.core.reconfiguring:
                live = [c for c in self._live() if c.node != me]
                target = next_config(cfg.stewards, live, {me}, self.lease.max_stewards)
                if target is None or not can_decide(cfg.stewards, {c.node for c in live} | {me}):
                    return
                with contextlib.suppress(ConfigError):
                    self.apply(self.core.propose_config(target, self.ctx.clock.now()))
            await asyncio.sleep(0.02)
        log.warning("left as a steward without handing over: the remaining stewards may lack a quorum")

    def proxied(self, e: Send) -> bool:
        """A config message to a dead steward of this home, during a recovery: answer for it here."""
        if e.to not in self._proxy_for or not isinstance(e.msg, CfgPrepare | CfgAccept):
            return False
        cfg = self.core.config
        state_dir = self._files.dirs().get(e.to)
        if cfg is None or state_dir is None:
            return True  # nobody can answer for it: as good as lost
        msg = e.msg
        with store.dead_node_lock(state_dir) as held:
            if not held:
                return True  # it is running again: it answers for itself (the message goes nowhere)
            try:
                st = store.load_steward_state(state_dir, e.to)
            except StorageError as err:
                log.warning("cannot answer for dead steward %s: %s", self.name_of(e.to), err)
                return True
            st, reply = proxy_step(st or StewardState(), e.to, msg, cfg, self.lease.acceptor_lease)
            store.save_steward_state(state_dir, e.to, st)  # under its lock, before the reply is used
        log.info("answered for dead steward %s: %s", self.name_of(e.to), type(reply).__name__)
        asyncio.get_running_loop().call_soon(self._proxy_reply, f"{e.to}/proxy", reply)
        return True

    def _proxy_reply(self, sender: str, reply: Any) -> None:
        self.apply(self.core.receive(sender, reply, self.ctx.clock.now()))

    def concerned(self, cfg: StewardConfig) -> bool:
        """Stewards watch upkeep closely; so does everyone while the stewards lack a quorum."""
        if self.node_id in cfg.stewards:
            return True
        live = {c.node for c in self._live()}
        return not can_decide(cfg.stewards, live)

    def _live(self) -> list[Candidate]:
        m = self.ctx.members
        out = []
        for mem in m.members.values():
            if mem.state is Liveness.ALIVE:
                host = mem.info.address.rpartition(":")[0]
                out.append(Candidate(mem.info.node_id, mem.info.started_at, host))
        return out

    def _gone(self, cfg: StewardConfig, now: float) -> tuple[set[str], set[str]]:
        """(stewards to replace, of which proven dead): left, dead for EVICT_AFTER, or provably dead."""
        m = self.ctx.members
        dirs: dict[str, Path] | None = None
        gone: set[str] = set()
        proven: set[str] = set()
        looked, known = self._proof
        fresh = now - looked < PROOF_EVERY
        if not fresh:
            known = {}
        for s in cfg.stewards:
            mem = m.members.get(s)
            if mem is not None and mem.state in (Liveness.ALIVE, Liveness.SUSPECT):
                continue
            away = now - (mem.state_since if mem is not None else self._started)
            if mem is not None and (mem.state is Liveness.LEFT or away >= EVICT_AFTER):
                gone.add(s)
            dead = known.get(s)
            if dead is None:
                if dirs is None:
                    dirs = self._files.dirs()
                d = dirs.get(s)
                dead = known[s] = d is not None and store.proven_dead(d)
            if dead:
                proven.add(s)
                if away >= PROVEN_GRACE:
                    gone.add(s)
        self._proof = (looked if fresh else now, known)
        return gone, proven

    def manage(self, now: float) -> None:
        """Genesis if this node may and nobody told it a config; else steward upkeep if it leads."""
        cfg = self.core.config
        if cfg is not None and now >= self._next_announce:
            # Re-announce now and then: an announce sent on a link that was being replaced is lost, and a
            # node that never hears one could not claim at all. A few random peers per round, not all:
            # every node repeats it, so each still hears it ~3 times a round, at a cost that does not grow
            # with the mesh.
            self._next_announce = now + ANNOUNCE_EVERY
            for nid in some_peers(self.ctx, ANNOUNCE_FANOUT):
                self.ctx.send(nid, ConfigAnnounce(cfg.epoch, cfg.stewards), droppable=True)
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
            if upkeep_leader(cfg.stewards, live) != self.node_id:
                return
        else:
            # No live steward majority: only where death is proven (stewards of this home, locks free) does
            # a node of this home answer for them; the oldest of this home's live nodes acts.
            if not can_decide(cfg.stewards, live_stewards | proven) or not self._oldest_here(live):
                return
        target = next_config(cfg.stewards, live, gone, self.lease.max_stewards)
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
        mine = [c for c in live if c.node in here or c.node == self.node_id]
        return upkeep_leader((), mine) == self.node_id

    def _health(self, cfg: StewardConfig, live_stewards: set[str], proven: set[str], now: float) -> str:
        """Why claims cannot be decided right now, and what to do ("" when they can)."""
        missing = [s for s in cfg.stewards if s not in live_stewards]
        if can_decide(cfg.stewards, live_stewards):
            wait = self.core.serve_wait(now)
            if self.node_id in cfg.stewards and 0 < wait < math.inf:
                return f"stewards taking over: this steward serves claims again in {math.ceil(wait)} s"
            return ""
        names = ", ".join(self.name_of(s) for s in missing)
        if set(missing) <= proven:
            return (
                f"recovering: stewards {names} are dead (their process is gone); reconfiguring without them, "
                f"claims resume within {math.ceil(self.lease.acceptor_lease)} s"
            )
        unproven = ", ".join(self.name_of(s) for s in missing if s not in proven)
        return (
            f"no steward quorum: stewards {names} unreachable, and {unproven} cannot be proven dead from "
            f"here (another home or host, or a partition); if they are gone for good, run "
            f"'meshctl stewards --recover --yes' on one surviving node"
        )

    def note(self) -> str:
        """The steward situation in one line for status/stewards/claim errors ("" when all is well)."""
        cfg = self.core.config
        if cfg is None:
            return self._note or self._waiting_note()
        now = self.ctx.clock.now()
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
        for _, st in self._files.states():
            cfg = st.config if isinstance(st, StewardState) else None
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
        except StorageError as e:
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
        stewards = formation(live, self.node_id)
        # The epoch file first: should this node die right now, this home still never makes a second one.
        store.remember_home_epoch(self.home, self.mesh, 1)
        log.info(
            "creating the steward config (epoch 1) with %s as first steward%s",
            ", ".join(self.name_of(s) for s in stewards),
            "s" if len(stewards) > 1 else "",
        )
        self._note = ""
        self.apply(self.core.genesis(stewards, now))

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
        new = StewardConfig(epoch, (self.node_id,))
        self.apply(self.core.force_config(new, self.ctx.clock.now()))
        return new
