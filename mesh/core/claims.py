"""The claims facade the node runtime drives: PaxosLease per resource over an epoch-versioned steward set.

Sans-IO: every call takes ``now`` (seconds on the node's CLOCK_BOOTTIME-like monotonic clock) and returns
effects, to be carried out IN ORDER. ``Persist`` must be written durably (atomically, fsynced) before any
later effect of the same list is carried out: it backs the replies that follow it. ``Send`` effects to
other identities must be delivered (best effort: loss, delay, duplication and reordering are all
tolerated). ``to`` is either an identity ``node_id/incarnation`` (that incarnation only) or a steward's
bare node id (whatever incarnation of it runs); messages a core sends to itself are delivered inside.
Call ``tick(now)`` no later than ``next_deadline()``. Gossip each ``ConfigChanged.config`` to every peer
and feed configs learned from peers to ``adopt``.

Identities: this node proposes (and owns leases) as ``me`` = ``node_id/incarnation``; it votes as a
steward under its node id (see ``mesh.core.stewards`` for why stewards are node ids and how config
changes hand the live leases over).
"""

from __future__ import annotations

import random
from collections import deque

from mesh.core.claim_types import (
    CONFIG_RESOURCE,
    FLOOR_CHUNK,
    NO_MUTANTS,
    SNAPSHOT_MAX,
    ClaimMsg,
    ConfigChanged,
    Denied,
    Effect,
    Granted,
    HeldLease,
    LeaseConfig,
    Lost,
    Persist,
    Probed,
    Released,
    Renewed,
    Send,
    Unavailable,
    Wake,
)
from mesh.core.errors import ConfigError
from mesh.core.lease import Accepted as Accepted
from mesh.core.lease import AcceptReject as AcceptReject
from mesh.core.lease import Free as Free
from mesh.core.lease import Prepare as Prepare
from mesh.core.lease import PrepareReject as PrepareReject
from mesh.core.lease import Promise as Promise
from mesh.core.lease import Propose as Propose
from mesh.core.lease import Release
from mesh.core.leasing import Leasing
from mesh.core.mutants import Mutants
from mesh.core.reconfig import Reconfig
from mesh.core.stewards import (
    CfgAccept,
    CfgAccepted,
    CfgInstall,
    CfgInstalled,
    CfgPrepare,
    CfgPromise,
    CfgReject,
    ConfigAnnounce,
    SnapLease,
    StewardConfig,
    StewardState,
    node_of,
)

__all__ = [
    "CONFIG_RESOURCE",
    "FLOOR_CHUNK",
    "NO_MUTANTS",
    "SNAPSHOT_MAX",
    "AcceptReject",
    "Accepted",
    "CfgAccept",
    "CfgAccepted",
    "CfgInstall",
    "CfgInstalled",
    "CfgPrepare",
    "CfgPromise",
    "CfgReject",
    "ClaimMsg",
    "ClaimsCore",
    "ConfigAnnounce",
    "ConfigChanged",
    "Denied",
    "Effect",
    "Free",
    "Granted",
    "HeldLease",
    "LeaseConfig",
    "Lost",
    "Persist",
    "Prepare",
    "PrepareReject",
    "Probed",
    "Promise",
    "Propose",
    "Release",
    "Released",
    "Renewed",
    "Send",
    "StewardConfig",
    "StewardState",
    "Unavailable",
    "Wake",
]


class ClaimsCore:
    """Proposer + (if a steward) acceptor of every resource's PaxosLease, and of the steward config Paxos.

    A facade over its two halves: ``Leasing`` (the lease proposer of this node's claims and the acceptor gate
    of a steward) and ``Reconfig`` (the steward config, the config Paxos and the hand-off). It routes what
    arrives, delivers what a core sends itself, and adopts configs (which concerns both halves).
    """

    def __init__(
        self,
        me: str,
        name: str,
        config: LeaseConfig,
        rng: random.Random,
        mutants: Mutants = NO_MUTANTS,
        state: StewardState | None = None,
        now: float = 0.0,
    ) -> None:
        """``state``: this node's durable steward state from its previous life (None: it never had one)."""
        self.me = me
        self.node = node_of(me)
        self.name = name
        lc = config.validate()
        self._steward = Reconfig(me, lc, rng, mutants, state, now)
        self._steward.adopt = self._adopt
        self._leases = Leasing(me, name, lc, rng, mutants, self._steward)

    # ---- public API ----------------------------------------------------------------------------------

    @property
    def config(self) -> StewardConfig | None:
        """The steward config this node has adopted (None before genesis/adopt)."""
        return self._steward.config

    @property
    def durable(self) -> StewardState:
        """The state this node must not forget (what the last ``Persist`` carried)."""
        return self._steward.durable

    def persist_failed(self, stored: StewardState) -> None:
        """The last ``Persist`` could not be written (a full disk): ``stored`` is what is durable. What
        follows is decided against it, so a reply that needs more on disk asks for a ``Persist`` again
        (the caller dropped the replies that waited on the failed one)."""
        self._steward.durable = stored

    @property
    def reconfiguring(self) -> bool:
        """True while this node runs a reconfiguration."""
        return self._steward.reconfiguring

    def clean_stop(self, now: float) -> StewardState | None:
        """The state to persist at a graceful stop if this acceptor holds nothing live (else None)."""
        return self._steward.clean_stop(now)

    def serves(self, now: float) -> bool:
        """Whether this node votes on lease ballots right now."""
        return self.serve_wait(now) == 0.0

    def serve_wait(self, now: float) -> float:
        """Seconds until this node votes on lease ballots (0: now; inf: it is not a steward)."""
        return self._steward.serve_wait(now)

    def genesis(self, stewards: tuple[str, ...], now: float, epoch: int = 1) -> list[Effect]:
        """Create the first config (the arbiter that lets exactly one node do this is outside the core)."""
        if self.config is not None:
            raise ConfigError("genesis on a node that already has a steward config")
        cfg = StewardConfig(epoch, tuple(stewards))
        return self._run(self._adopt(cfg, now, (), 0.0), now)

    def force_config(self, config: StewardConfig, now: float) -> list[Effect]:
        """The operator's last resort: adopt ``config`` as if chosen and handed over empty.

        Only safe once every lease the old stewards may have granted has run out (the caller waits D_A)
        and if the old stewards are really gone.
        """
        if self.config is not None and config.epoch <= self.config.epoch:
            raise ConfigError("a forced config must be newer than the current one")
        return self._run(self._adopt(config, now, (), 0.0), now)

    def adopt(self, config: StewardConfig, now: float) -> list[Effect]:
        """Adopt a config learned from a peer (ignored unless newer than ours)."""
        return self._run(self._adopt(config, now, None, 0.0), now)

    def propose_config(self, stewards: tuple[str, ...], now: float) -> list[Effect]:
        """Ask the stewards to choose ``stewards`` (any non-empty set of node ids) as the next epoch."""
        return self._run(self._steward.propose(stewards, now), now)

    def claim(
        self, resource: str, max_life: float, now: float, wait: bool = False, since: float = 0.0
    ) -> list[Effect]:
        """Claim ``resource`` for at most ``max_life`` seconds; renewed automatically until then (``wait``:
        the caller tries again while another holds it: queued at the stewards in the order of ``since``,
        when it first asked, local time like ``now``, and told ``Wake`` on its turn)."""
        return self._run(self._leases.claim(resource, max_life, now, wait, since), now)

    def release(self, resource: str, now: float, *, tell: bool = True) -> list[Effect]:
        """Give ``resource`` up (or abandon the claim attempt); ``tell=False`` stops renewing without telling
        the stewards, so the lease runs out at the acceptors as if this node had crashed."""
        return self._run(self._leases.release(resource, now, tell=tell), now)

    def probe(self, resource: str, now: float) -> list[Effect]:
        """Ask the stewards who else holds a claim conflicting with ``resource`` (a ``Probed`` answers)."""
        return self._run(self._leases.probe(resource, now), now)

    def receive(self, sender: str, msg: ClaimMsg, now: float) -> list[Effect]:
        """Handle a message from identity ``sender`` (``node_id/incarnation``)."""
        return self._run(self._receive(sender, msg, now), now)

    def tick(self, now: float) -> list[Effect]:
        """Run renewals, attempt timeouts, retries and lease expiry due at ``now``."""
        out = self._leases.tick(now) + self._steward.tick(now)
        self._leases.collect(now)
        return self._run(out, now)

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called (local time), or None."""
        ts = self._leases.deadlines() + self._steward.deadlines()
        return min(ts) if ts else None

    def held(self, now: float) -> dict[str, HeldLease]:
        """Resources this node believes it holds at ``now``."""
        return self._leases.held(now)

    # ---- plumbing ------------------------------------------------------------------------------------

    def _run(self, effects: list[Effect], now: float) -> list[Effect]:
        """Deliver self-addressed sends inside the core; return everything else, in order."""
        out: list[Effect] = []
        queue = deque(effects)
        while queue:
            e = queue.popleft()
            if isinstance(e, Send) and (e.to == self.me or e.to == self.node):
                # Effects the handler returns come before anything queued after this send.
                queue.extendleft(reversed(self._receive(self.me, e.msg, now)))
            else:
                out.append(e)
        return out

    def _adopt(
        self, cfg: StewardConfig, now: float, snapshot: tuple[SnapLease, ...] | None, blackout: float
    ) -> list[Effect]:
        """Adopt ``cfg`` if newer (attempts under way restart under it); install a hand-off it comes with."""
        out, newer = self._steward.adopt_config(cfg, now, snapshot, blackout)
        if newer:
            out += self._leases.restart(now)
        return out

    def _receive(self, sender: str, m: ClaimMsg, now: float) -> list[Effect]:
        self._leases.heard(sender, now)
        if isinstance(m, ConfigAnnounce):
            try:
                cfg = StewardConfig(m.epoch, tuple(m.stewards))
            except ValueError:
                return []
            return self._adopt(cfg, now, None, 0.0)
        if isinstance(m, CfgInstall):
            return self._steward.on_install(sender, m, now)
        if isinstance(m, CfgInstalled):
            self._steward.on_installed(sender, m)
            return []
        if isinstance(m, CfgPrepare | CfgAccept):
            return self._steward.on_ballot(sender, m, now)
        if isinstance(m, CfgPromise | CfgAccepted | CfgReject):
            return self._steward.on_reply(sender, m, now)
        if isinstance(m, Release):
            return self._leases.on_release(sender, m, now)
        if isinstance(m, Free):
            return self._leases.on_free(m, now)
        if isinstance(m, Prepare | Propose):
            return self._leases.on_ballot(sender, m, now)
        return self._leases.on_reply(sender, m, now)
