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

import math
import random
from collections import deque
from dataclasses import dataclass, replace

from mesh.core.errors import ConfigError
from mesh.core.lease import Accepted as Accepted
from mesh.core.lease import (
    AcceptorState,
    Attempt,
    BallotNo,
    LeaseMsg,
    ProposerSlot,
    Release,
    report_is_open,
    token_of,
)
from mesh.core.lease import AcceptReject as AcceptReject
from mesh.core.lease import Prepare as Prepare
from mesh.core.lease import PrepareReject as PrepareReject
from mesh.core.lease import Promise as Promise
from mesh.core.lease import Propose as Propose
from mesh.core.mutants import Mutants
from mesh.core.quorum import VoteResult, tally, tally_messages
from mesh.core.stewards import (
    CfgAccept,
    CfgAccepted,
    CfgInstall,
    CfgInstalled,
    CfgMsg,
    CfgPrepare,
    CfgPromise,
    CfgProposal,
    CfgReject,
    ConfigAnnounce,
    SnapLease,
    StewardConfig,
    StewardState,
    best_quorum,
    cfg_acceptor_step,
    merge_snapshots,
    node_of,
)

__all__ = [
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
    "Granted",
    "HeldLease",
    "LeaseConfig",
    "Lost",
    "Persist",
    "Prepare",
    "PrepareReject",
    "Promise",
    "Propose",
    "Release",
    "Released",
    "Renewed",
    "Send",
    "StewardConfig",
    "StewardState",
    "Unavailable",
]

ClaimMsg = LeaseMsg | CfgMsg
NO_MUTANTS = Mutants()
CONFIG_RESOURCE = "@config"
"""``Unavailable.resource`` used when a reconfiguration gives up."""
FLOOR_CHUNK = 1 << 16
"""Lease rounds reserved per write of the durable ballot floor (one fsync per this many promises)."""
SNAPSHOT_MAX = 2000
"""Leases one steward reports in a hand-off; beyond it the hand-off carries a blackout instead."""


@dataclass(frozen=True)
class LeaseConfig:
    """Claims timing; a 0.0 field means "derive from the others" as DESIGN.md prescribes."""

    lease: float = 10.0
    """D_P: how long a holder believes a grant/renewal lasts, counted from when its Prepare was SENT."""
    rho: float = 0.01
    """Largest clock-rate error between any node and true time (clock rates lie in [1-rho, 1+rho])."""
    renew_every: float = 0.0
    """Start a renewal this long after the last successful attempt started (default D_P/3)."""
    acceptor_lease: float = 0.0
    """D_A: how long an acceptor excludes others after accepting (default ceil((D_P+1)(1+rho)/(1-rho)))."""
    attempt_timeout: float = 0.0
    """One ballot's time to reach quorum before it is abandoned (default min(2, D_P/4))."""
    backoff_max: float = 0.0
    """Upper bound of the random backoff after a ballot is outvoted (default attempt_timeout)."""
    claim_patience: float = 0.0
    """How long a claim keeps retrying against contention before Unavailable (default 4 attempt timeouts)."""
    config_patience: float = 30.0
    """How long a reconfiguration keeps retrying before Unavailable(resource="@config")."""
    forget_after: float = 0.0
    """Acceptors forget an idle resource this long after its lease expired (default 10 D_A)."""

    def __post_init__(self) -> None:
        def put(name: str, value: float) -> None:
            if getattr(self, name) == 0.0:
                object.__setattr__(self, name, value)

        put("renew_every", self.lease / 3)
        if 0 <= self.rho < 1:
            put("acceptor_lease", float(math.ceil((self.lease + 1) * (1 + self.rho) / (1 - self.rho))))
        put("attempt_timeout", min(2.0, self.lease / 4))
        put("backoff_max", self.attempt_timeout)
        put("claim_patience", 4 * self.attempt_timeout)
        put("forget_after", 10 * self.acceptor_lease)

    @property
    def stretch(self) -> float:
        """(1+rho)/(1-rho): a duration measured on one clock, made safe to run on any other."""
        return (1 + self.rho) / (1 - self.rho)

    def validate(self) -> LeaseConfig:
        """Raise ConfigError unless the values are consistent (containment included); return self."""
        if not self.lease > 0:
            raise ConfigError("lease (D_P) must be > 0")
        if not 0 <= self.rho < 1:
            raise ConfigError("rho must be in [0, 1)")
        if self.lease * (1 + self.rho) > self.acceptor_lease * (1 - self.rho):
            raise ConfigError("containment violated: need D_P*(1+rho) <= D_A*(1-rho)")
        if not 0 < self.renew_every < self.lease:
            raise ConfigError("renew_every must be in (0, D_P)")
        if not 0 < self.attempt_timeout < self.lease:
            raise ConfigError("attempt_timeout must be in (0, D_P)")
        if self.renew_every + self.attempt_timeout >= self.lease:
            raise ConfigError("renew_every + attempt_timeout must be < D_P (a renewal must fit)")
        for name in ("backoff_max", "claim_patience", "config_patience", "forget_after"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0")
        return self

    @classmethod
    def fast(cls) -> LeaseConfig:
        """Short timings for tests and the simulator (D_P = 2 s, D_A = 4 s)."""
        return cls(lease=2.0, config_patience=10.0)


# ---- effects ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Deliver ``msg`` to ``to`` (an identity, or a steward's node id)."""

    to: str
    msg: ClaimMsg


@dataclass(frozen=True)
class Persist:
    """Write this node's steward state durably BEFORE carrying out the effects that follow."""

    state: StewardState


@dataclass(frozen=True)
class Granted:
    """The claim is held; act on it with ``token`` until local time ``until`` (renewals extend it)."""

    resource: str
    token: int
    until: float


@dataclass(frozen=True)
class Renewed:
    """The held lease was renewed; the token is unchanged; believe it until local time ``until``."""

    resource: str
    token: int
    until: float


@dataclass(frozen=True)
class Denied:
    """Another identity holds it; ``remaining`` is its claim's remaining max life in seconds, if known."""

    resource: str
    holder: str
    holder_name: str
    remaining: float | None


@dataclass(frozen=True)
class Lost:
    """The lease could not be renewed before its deadline: stop acting on the resource now."""

    resource: str
    token: int


@dataclass(frozen=True)
class Released:
    """The lease was given up (by ``release`` or because the claim's max life ended)."""

    resource: str
    token: int


@dataclass(frozen=True)
class Unavailable:
    """No steward quorum answered in time (or contention did not settle); the caller may retry.

    ``wait`` > 0: the stewards answered that they do not serve yet (a hand-off or restart) and will in
    about that many seconds.
    """

    resource: str
    reason: str
    wait: float = 0.0


@dataclass(frozen=True)
class ConfigChanged:
    """This node adopted a newer steward config: gossip it to every peer."""

    config: StewardConfig


Effect = Send | Persist | Granted | Renewed | Denied | Lost | Released | Unavailable | ConfigChanged


@dataclass(frozen=True)
class HeldLease:
    """A lease this node believes it holds (local times)."""

    token: int
    until: float
    claim_ends: float


class ClaimsCore:
    """Proposer + (if a steward) acceptor of every resource's PaxosLease, and of the steward config Paxos."""

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
        self._lc = config.validate()
        self._rng = rng
        self._mut = mutants
        self._durable = replace(state, clean=False) if state is not None else StewardState()
        self._config: StewardConfig | None = self._durable.config
        self._adopted_at = now
        # PaxosLease's restart rule: whatever this acceptor accepted in an earlier life (and any hand-off it
        # installed) has run out one D_A from now; until then it serves no lease ballot. (What it promised
        # is covered by the durable floor.) A clean stop with nothing live needs no wait.
        clean = state is not None and state.clean
        self._quarantine_until = now + self._lc.acceptor_lease if state is not None and not clean else now
        self._installed = self._config is not None and (self._config.epoch == 1 or clean)
        self._stopping = False
        self._blackout_until = now
        floor = (0, 0) if mutants.no_ballot_floor else self._durable.floor
        self._acceptor = AcceptorState(config.forget_after, mutants, floor=floor)
        self._vote_at = now
        self._next_gc = 0.0
        self._slots: dict[str, ProposerSlot] = {}
        self._hint: dict[str, BallotNo] = {}
        self._cfg_prop: CfgProposal | None = None
        self._cfg_hint = 0
        self._installs: dict[str, tuple[CfgInstall, float]] = {}  # new steward -> (hand-off, resend until)
        self._next_install = 0.0
        self._seen: dict[str, float] = {}

    # ---- public API ----------------------------------------------------------------------------------

    @property
    def config(self) -> StewardConfig | None:
        """The steward config this node has adopted (None before genesis/adopt)."""
        return self._config

    @property
    def durable(self) -> StewardState:
        """The state this node must not forget (what the last ``Persist`` carried)."""
        return self._durable

    @property
    def reconfiguring(self) -> bool:
        """True while this node runs a reconfiguration."""
        return self._cfg_prop is not None

    def clean_stop(self, now: float) -> StewardState | None:
        """The state to persist at a graceful stop if this acceptor holds nothing live (else None)."""
        if self._acceptor.snapshot(now, 1)[0] or self._forgot(now) > 0 or self._partial(now) > 0:
            return None
        if self._config is not None and self.node in self._config.stewards and not self.serves(now):
            return None
        self._stopping = True  # it votes on nothing more in this life, so nothing can make the mark untrue
        return replace(self._durable, clean=True)

    def serves(self, now: float) -> bool:
        """Whether this node votes on lease ballots right now."""
        return self.serve_wait(now) == 0.0

    def serve_wait(self, now: float) -> float:
        """Seconds until this node votes on lease ballots (0: now; inf: it is not a steward)."""
        cur = self._config
        if cur is None or self.node not in cur.stewards or self._fenced() or self._stopping:
            return math.inf
        until = self._quarantine_until
        if not self._mut.no_lease_handoff:
            until = max(until, self._blackout_until)
            if not self._installed:
                until = max(until, self._adopted_at + self._lc.acceptor_lease)
        return max(0.0, until - now)

    def genesis(self, stewards: tuple[str, ...], now: float, epoch: int = 1) -> list[Effect]:
        """Create the first config (the arbiter that lets exactly one node do this is outside the core)."""
        if self._config is not None:
            raise ConfigError("genesis on a node that already has a steward config")
        cfg = StewardConfig(epoch, tuple(stewards))
        return self._run(self._adopt(cfg, now, snapshot=(), blackout=0.0), now)

    def force_config(self, config: StewardConfig, now: float) -> list[Effect]:
        """The operator's last resort: adopt ``config`` as if chosen and handed over empty.

        Only safe once every lease the old stewards may have granted has run out (the caller waits D_A)
        and if the old stewards are really gone.
        """
        if self._config is not None and config.epoch <= self._config.epoch:
            raise ConfigError("a forced config must be newer than the current one")
        return self._run(self._adopt(config, now, snapshot=(), blackout=0.0), now)

    def adopt(self, config: StewardConfig, now: float) -> list[Effect]:
        """Adopt a config learned from a peer (ignored unless newer than ours)."""
        return self._run(self._adopt(config, now), now)

    def propose_config(self, stewards: tuple[str, ...], now: float) -> list[Effect]:
        """Ask the stewards to choose ``stewards`` (any non-empty set of node ids) as the next epoch."""
        cur = self._config
        if cur is None:
            raise ConfigError("no steward config yet")
        try:
            StewardConfig(cur.epoch + 1, tuple(stewards))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if tuple(stewards) == cur.stewards:
            raise ConfigError("the proposed steward set is the current one")
        p = self._cfg_prop
        if p is not None:
            if p.target == tuple(stewards):
                return []
            raise ConfigError("a reconfiguration is already in progress")
        self._cfg_prop = CfgProposal(
            epoch=cur.epoch + 1,
            target=tuple(stewards),
            voters=frozenset(cur.stewards),
            give_up_at=now + self._lc.config_patience,
        )
        return self._run(self._cfg_round(now), now)

    def claim(self, resource: str, max_life: float, now: float) -> list[Effect]:
        """Claim ``resource`` for at most ``max_life`` seconds; renewed automatically until then."""
        if not max_life > 0:
            raise ConfigError("max_life must be > 0")
        slot = self._slots.get(resource)
        if slot is not None:
            slot.claim_ends = now + max_life
            if slot.holding and now < slot.until:
                assert slot.token is not None
                return [Granted(resource, slot.token, slot.until)]
            return []
        if self._config is None:
            return [Unavailable(resource, "no steward config yet")]
        slot = self._slots[resource] = ProposerSlot(claim_ends=now + max_life, first_try=now)
        return self._run(self._start(resource, slot, now), now)

    def release(self, resource: str, now: float) -> list[Effect]:
        """Give ``resource`` up (or abandon the claim attempt)."""
        return self._run(self._release(resource, now), now)

    def receive(self, sender: str, msg: ClaimMsg, now: float) -> list[Effect]:
        """Handle a message from identity ``sender`` (``node_id/incarnation``)."""
        return self._run(self._receive(sender, msg, now), now)

    def tick(self, now: float) -> list[Effect]:
        """Run renewals, attempt timeouts, retries and lease expiry due at ``now``."""
        return self._run(self._tick(now), now)

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called (local time), or None."""
        ts: list[float] = []
        for s in self._slots.values():
            if s.holding:
                ts += [s.until, s.claim_ends]
                if s.attempt is None and s.retry_at is None:
                    ts.append(s.next_renew)
            if s.attempt is not None:
                ts.append(s.attempt.timeout_at)
            if s.retry_at is not None:
                ts.append(s.retry_at)
        p = self._cfg_prop
        if p is not None:
            ts.append(p.give_up_at)
            if p.finalize_at is not None:
                ts.append(p.finalize_at)
            else:
                ts.append(p.retry_at if p.retry_at is not None else p.timeout_at)
        if self._installs:
            ts.append(self._next_install)
        r = self._recover_at()
        if r is not None:
            ts.append(r)
        if len(self._acceptor):
            ts.append(self._next_gc)
        return min(ts) if ts else None

    def held(self, now: float) -> dict[str, HeldLease]:
        """Resources this node believes it holds at ``now``."""
        return {
            r: HeldLease(s.token, s.until, s.claim_ends)
            for r, s in self._slots.items()
            if s.token is not None and now < s.until
        }

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

    def _to_stewards(self, msg: ClaimMsg) -> list[Effect]:
        assert self._config is not None
        return [Send(s, msg) for s in self._config.stewards]

    def _persist(self, state: StewardState) -> list[Effect]:
        if state == self._durable:
            return []
        self._durable = state
        return [Persist(state)]

    # ---- configuration -------------------------------------------------------------------------------

    def _adopt(
        self,
        cfg: StewardConfig,
        now: float,
        snapshot: tuple[SnapLease, ...] | None = None,
        blackout: float = 0.0,
    ) -> list[Effect]:
        """Adopt ``cfg`` if newer; with ``snapshot`` (a hand-off for cfg's epoch), install it."""
        out: list[Effect] = []
        cur = self._config
        if cur is None or cfg.epoch > cur.epoch:
            self._config = cfg
            self._adopted_at = now
            self._installed = cfg.epoch == 1  # nothing came before the first epoch: nothing to hand over
            vote = self._durable.vote
            if vote.epoch <= cfg.epoch:
                vote = replace(vote, epoch=0, promised_round=-1, promised_by="", accepted_round=-1,
                               accepted_stewards=())  # fmt: skip
            out += self._persist(replace(self._durable, config=cfg, vote=vote))
            if self._cfg_prop is not None and self._cfg_prop.epoch <= cfg.epoch:
                self._cfg_prop = None
            out.append(ConfigChanged(cfg))
            # Promises gathered under the old voter set mean nothing now: restart every attempt anew.
            for r in sorted(self._slots):
                s = self._slots[r]
                if s.attempt is not None:
                    out += self._drop_attempt_ballot(r, s)
                    s.attempt = None
                    out += self._start(r, s, now)
        elif cfg.epoch < cur.epoch or cfg != cur:
            return out
        if snapshot is not None and self.node in cfg.stewards and not self._installed:
            self._acceptor.install(snapshot, now)
            self._blackout_until = max(self._blackout_until, now + min(blackout, self._lc.acceptor_lease))
            self._installed = True
        return out

    def _fenced(self) -> bool:
        """True once this steward accepted a value for the next epoch: it refuses current-epoch ballots."""
        v, c = self._durable.vote, self._config
        return c is not None and v.epoch > c.epoch and v.accepted_round >= 0

    def _forgot(self, now: float) -> float:
        """How long leases this acceptor accepted and then forgot (an earlier life) may still run."""
        return max(0.0, self._quarantine_until - now)

    def _partial(self, now: float) -> float:
        """How long older epochs' leases this acceptor never learned (no or partial hand-off) may run."""
        until = self._blackout_until
        if not self._installed:
            until = max(until, self._adopted_at + self._lc.acceptor_lease)
        return max(0.0, until - now)

    def _cfg_round(self, now: float) -> list[Effect]:
        p = self._cfg_prop
        assert p is not None and self._config is not None
        self._cfg_hint = max(self._cfg_hint, p.round) + 1
        p.round = self._cfg_hint
        p.phase, p.retry_at, p.timeout_at = "prepare", None, now + self._lc.attempt_timeout
        p.promised, p.refused, p.accepted, p.best = set(), set(), None, (-1, ())
        p.finalize_at = None
        return self._to_stewards(CfgPrepare(p.epoch, p.round, self.me))

    def _cfg_backoff(self, now: float, at_least: float = 0.0) -> None:
        p = self._cfg_prop
        assert p is not None
        p.phase = "idle"
        p.retry_at = now + at_least + self._rng.uniform(0.0, self._lc.backoff_max)

    def _recover_at(self) -> float | None:
        v = self._durable.vote
        if v.accepted_round < 0 or self._cfg_prop is not None or not self._fenced():
            return None
        return self._vote_at + 3 * self._lc.attempt_timeout + self._lc.backoff_max

    def _on_cfg_acceptor(self, sender: str, m: CfgPrepare | CfgAccept, now: float) -> list[Effect]:
        cur = self._config
        out: list[Effect] = []
        if cur is not None and m.epoch <= cur.epoch:
            out.append(Send(sender, ConfigAnnounce(cur.epoch, cur.stewards)))
        state, reply = cfg_acceptor_step(self._durable, self.node, m)
        if isinstance(reply, CfgAccepted):
            self._vote_at = now
            snap, complete = self._acceptor.snapshot(now, SNAPSHOT_MAX)
            blackout = (
                self._forgot(now) if complete else self._lc.acceptor_lease
            )  # what did not fit: excluded
            partial = self._partial(now)
            if self._mut.no_lease_handoff:
                snap, blackout, partial = (), 0.0, 0.0
            reply = replace(reply, snapshot=snap, blackout=blackout, partial=partial)
        out += self._persist(state)  # durable BEFORE the reply leaves
        out.append(Send(sender, reply))
        return out

    def _on_cfg_proposer(
        self, sender: str, m: CfgPromise | CfgAccepted | CfgReject, now: float
    ) -> list[Effect]:
        p = self._cfg_prop
        if p is None or m.epoch != p.epoch or m.round != p.round or m.proposer != self.me:
            return []
        voter = node_of(sender)
        out: list[Effect] = []
        if isinstance(m, CfgReject):
            self._cfg_hint = max(self._cfg_hint, m.promised_round)
            if self._config is not None and m.current_epoch < self._config.epoch:
                out.append(Send(sender, ConfigAnnounce(self._config.epoch, self._config.stewards)))
            assert p.refused is not None
            p.refused.add(voter)
            yes = p.promised if p.phase == "prepare" else set(p.accepted or {})
            if tally(p.voters, yes or set(), p.refused) is VoteResult.LOST:
                self._cfg_backoff(now)
            return out
        if isinstance(m, CfgPromise):
            if p.phase != "prepare" or p.promised is None:
                return []
            p.promised.add(voter)
            if m.accepted_round > p.best[0]:
                p.best = (m.accepted_round, m.accepted_stewards)
            if tally(p.voters, p.promised, p.refused or set()) is not VoteResult.WON:
                return []
            # Paxos: a value possibly chosen already must be carried forward.
            p.value = p.best[1] if p.best[0] >= 0 else p.target
            p.phase, p.accepted, p.refused = "accept", {}, set()
            p.timeout_at = now + self._lc.attempt_timeout
            return self._to_stewards(CfgAccept(p.epoch, p.round, self.me, p.value))
        if p.phase != "accept" or p.accepted is None:
            return []
        p.accepted[voter] = m
        if tally(p.voters, set(p.accepted), p.refused or set()) is not VoteResult.WON:
            return []
        got = [a for v, a in sorted(p.accepted.items()) if v in p.voters]
        q = best_quorum(got, len(p.voters) // 2 + 1)
        assert q is not None
        clean = max(max(a.blackout for a in q), min(a.partial for a in q)) == 0
        if not clean and len(got) < len(p.voters):
            # A majority accepted, but its hand-off would stall the new epoch: give the other stewards a
            # moment, in case their (complete) answers make a cleaner majority.
            if p.finalize_at is None:
                p.finalize_at = now + self._lc.attempt_timeout / 4
            return []
        return self._cfg_chosen(now)

    def _cfg_chosen(self, now: float) -> list[Effect]:
        """The proposal's value is chosen: adopt it, hand the leases over, tell everyone."""
        p = self._cfg_prop
        assert p is not None and p.accepted is not None and self._config is not None
        got = [a for v, a in sorted(p.accepted.items()) if v in p.voters]
        q = best_quorum(got, len(p.voters) // 2 + 1)
        assert q is not None
        old = self._config.stewards
        snapshot, blackout = merge_snapshots(
            [a.snapshot for a in q],
            [a.blackout for a in q],
            [a.partial for a in q],
            self._lc.stretch,
            self._lc.acceptor_lease,
        )
        chosen = StewardConfig(p.epoch, p.value)
        install = CfgInstall(chosen.epoch, chosen.stewards, snapshot, blackout)
        out = self._adopt(chosen, now, snapshot=snapshot, blackout=blackout)
        self._installs = {
            s: (install, now + self._lc.acceptor_lease) for s in chosen.stewards if s != self.node
        }
        self._next_install = now + self._lc.attempt_timeout
        for s in chosen.stewards:
            if s != self.node:
                out.append(Send(s, install))
        for s in old:
            if s != self.node and s not in chosen.stewards:
                out.append(Send(s, ConfigAnnounce(chosen.epoch, chosen.stewards)))
        return out

    def _on_install(self, sender: str, m: CfgInstall, now: float) -> list[Effect]:
        try:
            cfg = StewardConfig(m.epoch, tuple(m.stewards))
        except ValueError:
            return []
        lc = self._lc
        snap = tuple(
            replace(s, lease_left=min(max(0.0, s.lease_left), lc.acceptor_lease)) for s in m.snapshot
        )
        blackout = min(max(0.0, m.blackout), lc.acceptor_lease)
        out = self._adopt(cfg, now, snapshot=snap, blackout=blackout)
        return [*out, Send(sender, CfgInstalled(m.epoch))]

    # ---- lease proposer ------------------------------------------------------------------------------

    def _next_ballot(self, resource: str) -> BallotNo:
        assert self._config is not None
        e = self._config.epoch
        h = self._hint.get(resource, (0, 0))
        b = (e, h[1] + 1 if h[0] >= e else 1)
        self._hint[resource] = max(h, b)
        return b

    def _start(self, resource: str, slot: ProposerSlot, now: float) -> list[Effect]:
        assert self._config is not None
        slot.retry_at = None
        b = self._next_ballot(resource)
        slot.attempt = Attempt(
            ballot=b,
            renewal=slot.holding,
            started=now,
            deadline=now + self._lc.lease,  # correction 1: fixed when Prepare is sent
            timeout_at=now + self._lc.attempt_timeout,
        )
        return self._to_stewards(Prepare(resource, b[0], b[1], self.me))

    def _voters(self, a: Attempt, now: float) -> frozenset[str]:
        assert self._config is not None
        if not self._mut.majority_of_seen:
            return frozenset(self._config.stewards)
        horizon = now - self._lc.lease
        seen = {s for s in self._config.stewards if s == self.node or self._seen.get(s, -math.inf) >= horizon}
        return frozenset(seen | (a.responders & set(self._config.stewards)))

    def _vote(self, a: Attempt, yes: set[str], yes_msgs: int, now: float) -> VoteResult:
        voters = self._voters(a, now)
        if self._mut.quorum_by_messages:
            return tally_messages(len(voters), yes_msgs, a.refuse_msgs)
        return tally(voters, yes, a.refused)

    def _drop_attempt_ballot(self, resource: str, slot: ProposerSlot) -> list[Effect]:
        """Release a FRESH attempt's ballot that may have been accepted somewhere (never a renewal's)."""
        a = slot.attempt
        if a is None or a.renewal or a.phase != "accept":
            return []
        return self._to_stewards(Release(resource, a.ballot[0], a.ballot[1], self.me))

    def _fail(
        self, resource: str, slot: ProposerSlot, now: float, reason: str, wait: float = 0.0
    ) -> list[Effect]:
        out = self._drop_attempt_ballot(resource, slot)
        slot.attempt = None
        if slot.holding:
            slot.retry_at = now + (wait or self._rng.uniform(0.0, self._lc.backoff_max / 4))
            return out
        if wait > 0:
            # The stewards said when they serve again: retrying earlier is pointless, later is slow.
            if now + wait - slot.first_try > self._lc.claim_patience:
                del self._slots[resource]
                return [*out, Unavailable(resource, reason, wait)]
            slot.retry_at = now + wait
            return out
        if now - slot.first_try >= self._lc.claim_patience:
            del self._slots[resource]
            return [*out, Unavailable(resource, reason)]
        # A first refusal usually only means our ballot number was stale (the rejection taught us a higher
        # one): retry at once. Later refusals mean a live competitor: randomised backoff.
        slot.outvoted += 1
        slot.retry_at = now if slot.outvoted == 1 else now + self._rng.uniform(0.0, self._lc.backoff_max)
        return out

    def _on_lease_proposer(self, sender: str, m: LeaseMsg, now: float) -> list[Effect]:
        assert not isinstance(m, Prepare | Propose | Release)
        slot = self._slots.get(m.resource)
        if isinstance(m, PrepareReject | AcceptReject):
            h = self._hint.get(m.resource, (0, 0))
            self._hint[m.resource] = max(h, (m.promised_epoch, m.promised_round))
        if isinstance(m, Promise) and m.owner:
            h = self._hint.get(m.resource, (0, 0))
            self._hint[m.resource] = max(h, (m.owner_epoch, m.owner_round))
        if slot is None or slot.attempt is None or m.proposer != self.me:
            return []
        a = slot.attempt
        if a.ballot != (m.epoch, m.round):
            return []
        out: list[Effect] = []
        if slot.holding and now >= slot.until:
            return self._lose(m.resource, slot)
        voter = node_of(sender)
        a.responders.add(voter)
        if isinstance(m, PrepareReject | AcceptReject):
            if isinstance(m, AcceptReject) != (a.phase == "accept"):
                return []
            a.refused.add(voter)
            a.refuse_msgs += 1
            if m.wait > 0:
                a.waits[voter] = m.wait
            if self._config is not None and m.config_epoch < self._config.epoch:
                out.append(Send(sender, ConfigAnnounce(self._config.epoch, self._config.stewards)))
            yes = a.promised if a.phase == "prepare" else a.accepted
            n = a.promise_msgs if a.phase == "prepare" else a.accept_msgs
            if self._vote(a, yes, n, now) is VoteResult.LOST:
                if a.waits:
                    w = min(a.waits.values())
                    out += self._fail(m.resource, slot, now, f"the stewards are taking over (they serve "
                                      f"again in {math.ceil(w)} s)", wait=w)  # fmt: skip
                else:
                    out += self._fail(m.resource, slot, now, "outvoted by a competing claim")
            return out
        if isinstance(m, Promise):
            if a.phase != "prepare":
                return []
            a.promised.add(voter)
            a.promise_msgs += 1
            a.reports[voter] = m
            if self._vote(a, a.promised, a.promise_msgs, now) is not VoteResult.WON:
                return []
            if now >= a.deadline:
                return self._fail(m.resource, slot, now, "attempt outlived its deadline")
            voters = self._voters(a, now)
            blocking = [
                p
                for s, p in sorted(a.reports.items())
                if (s in voters or self._mut.quorum_by_messages)
                and not report_is_open(p, self.me, a, slot, self._mut)
            ]
            if blocking:
                return self._blocked(m.resource, slot, blocking, now)
            a.phase, a.refused, a.refuse_msgs = "accept", set(), 0
            a.waits.clear()
            if a.renewal:
                slot.holding_ballots.add(a.ballot)
            prop = Propose(
                m.resource,
                a.ballot[0],
                a.ballot[1],
                self.me,
                self.name,
                self._lc.acceptor_lease,
                max(0.0, slot.claim_ends - now),
            )
            return self._to_stewards(prop)
        # Accepted
        if a.phase != "accept":
            return []
        a.accepted.add(voter)
        a.accept_msgs += 1
        if self._vote(a, a.accepted, a.accept_msgs, now) is not VoteResult.WON:
            return []
        if self._mut.deadline_at_quorum:
            # The 2012 rule: the lease clock starts only now, so a late quorum still yields a full lease.
            a.deadline = now + self._lc.lease
        if now >= a.deadline:  # correction 5: the deadline is data checked here, not a timer
            return self._fail(m.resource, slot, now, "attempt outlived its deadline")
        until = a.deadline
        slot.attempt = None
        slot.next_renew = a.started + self._lc.renew_every
        if a.renewal:
            assert slot.token is not None
            slot.until = max(slot.until, until)
            return [Renewed(m.resource, slot.token, slot.until)]
        slot.token = token_of(*a.ballot)
        slot.until = until
        slot.holding_ballots = {a.ballot}
        return [Granted(m.resource, slot.token, until)]

    def _blocked(
        self, resource: str, slot: ProposerSlot, blocking: list[Promise], now: float
    ) -> list[Effect]:
        if slot.holding:
            return self._fail(resource, slot, now, "renewal blocked")
        foreign = [p for p in blocking if p.owner != self.me]
        if foreign:
            p = max(foreign, key=lambda q: (q.owner_epoch, q.owner_round))
            del self._slots[resource]
            return [Denied(resource, p.owner, p.owner_name, p.claim_left)]
        # Our own stale lease from an earlier holding (e.g. a lost Release): wait it out, then retry.
        slot.attempt = None
        wait = min(max(p.lease_left for p in blocking), self._lc.acceptor_lease)
        slot.retry_at = now + wait + self._rng.uniform(0.0, self._lc.backoff_max)
        return []

    def _lose(self, resource: str, slot: ProposerSlot) -> list[Effect]:
        assert slot.token is not None
        del self._slots[resource]
        return [Lost(resource, slot.token)]

    def _release(self, resource: str, now: float) -> list[Effect]:
        slot = self._slots.pop(resource, None)
        if slot is None or self._config is None:
            return []
        out: list[Effect] = []
        ballots = set(slot.holding_ballots)
        if slot.holding:
            assert slot.token is not None
            if now < slot.until:
                out.append(Released(resource, slot.token))
            else:
                out.append(Lost(resource, slot.token))
        if slot.attempt is not None and slot.attempt.phase == "accept":
            ballots.add(slot.attempt.ballot)
        # Safe to clear every ballot of ours: we no longer believe in any of them.
        for b in sorted(ballots):
            out += self._to_stewards(Release(resource, b[0], b[1], self.me))
        return out

    # ---- dispatch --------------------------------------------------------------------------------------

    def _receive(self, sender: str, m: ClaimMsg, now: float) -> list[Effect]:
        if sender != self.me:
            self._seen[node_of(sender)] = now
        if isinstance(m, ConfigAnnounce):
            try:
                cfg = StewardConfig(m.epoch, tuple(m.stewards))
            except ValueError:
                return []
            return self._adopt(cfg, now)
        if isinstance(m, CfgInstall):
            return self._on_install(sender, m, now)
        if isinstance(m, CfgInstalled):
            got = self._installs.get(node_of(sender))
            if got is not None and got[0].epoch <= m.epoch:
                del self._installs[node_of(sender)]
            return []
        if isinstance(m, CfgPrepare | CfgAccept):
            return self._on_cfg_acceptor(sender, m, now)
        if isinstance(m, CfgPromise | CfgAccepted | CfgReject):
            return self._on_cfg_proposer(sender, m, now)
        if isinstance(m, Release):
            if sender == m.owner:
                self._acceptor.on_release(m, now)
            return []
        if isinstance(m, Prepare | Propose):
            return self._on_lease_acceptor(sender, m, now)
        return self._on_lease_proposer(sender, m, now)

    def _on_lease_acceptor(self, sender: str, m: Prepare | Propose, now: float) -> list[Effect]:
        cur = self._config
        wait = self.serve_wait(now)
        if cur is None or m.epoch != cur.epoch or wait > 0:
            out: list[Effect] = []
            if cur is not None and m.epoch < cur.epoch:
                out.append(Send(sender, ConfigAnnounce(cur.epoch, cur.stewards)))
            pe, pr = self._acceptor.promised(m.resource)
            ce = cur.epoch if cur else 0
            # A steward of this epoch that does not serve YET says when it will (not a ballot conflict).
            w = wait if cur is not None and m.epoch == cur.epoch and math.isfinite(wait) else 0.0
            if isinstance(m, Prepare):
                out.append(
                    Send(sender, PrepareReject(m.resource, m.epoch, m.round, m.proposer, pe, pr, ce, w))
                )
            else:
                out.append(
                    Send(sender, AcceptReject(m.resource, m.epoch, m.round, m.proposer, pe, pr, ce, w))
                )
            return out
        if now >= self._next_gc:
            self._acceptor.collect(now)
            self._next_gc = now + self._lc.forget_after / 2
        if isinstance(m, Prepare):
            reply: ClaimMsg = self._acceptor.on_prepare(m, now, cur.epoch)
        else:
            # Never exclude for less than our own D_A (a longer exclusion is always safe).
            lease = m.lease if m.lease >= self._lc.acceptor_lease else self._lc.acceptor_lease
            claim_left = m.claim_left if m.claim_left >= 0 else 0.0
            reply = self._acceptor.on_propose(replace(m, lease=lease, claim_left=claim_left), now, cur.epoch)
        out = []
        n = self._acceptor.promised(m.resource)
        if n > self._durable.floor:
            # Reserve ahead, durably, before the reply: a restarted acceptor never goes below this.
            out += self._persist(replace(self._durable, floor=(n[0], n[1] + FLOOR_CHUNK)))
        out.append(Send(sender, reply))
        return out

    def _tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for r in sorted(self._slots):
            s = self._slots[r]
            if s.holding:
                if now >= s.until:
                    out += self._lose(r, s)
                    continue
                if now >= s.claim_ends:
                    out += self._release(r, now)
                    continue
            a = s.attempt
            if a is not None:
                if now >= a.timeout_at:
                    if s.holding:
                        s.attempt = None
                        out += self._start(r, s, now)
                    else:
                        out += self._drop_attempt_ballot(r, s)
                        del self._slots[r]
                        out.append(Unavailable(r, f"no steward quorum within {self._lc.attempt_timeout:g}s"))
                continue
            if s.retry_at is not None:
                if now >= s.retry_at:
                    out += self._start(r, s, now)
            elif s.holding and now >= s.next_renew:
                out += self._start(r, s, now)
        p = self._cfg_prop
        if p is not None and p.finalize_at is not None and now >= p.finalize_at:
            out += self._cfg_chosen(now)
            p = self._cfg_prop
        if p is not None:
            if now >= p.give_up_at:
                self._cfg_prop = None
                out.append(Unavailable(CONFIG_RESOURCE, f"reconfiguration to {p.target} not chosen in time"))
            elif p.retry_at is not None:
                if now >= p.retry_at:
                    out += self._cfg_round(now)
            elif now >= p.timeout_at and p.finalize_at is None:
                self._cfg_backoff(now)
        if self._installs and now >= self._next_install:
            # A new steward that missed its hand-off would sit out a whole D_A: resend until it says so.
            cur = self._config
            for node, (msg, until) in sorted(self._installs.items()):
                if now >= until or cur is None or cur.epoch != msg.epoch:
                    del self._installs[node]
                else:
                    out.append(Send(node, msg))
            self._next_install = now + self._lc.attempt_timeout
        r_at = self._recover_at()
        if r_at is not None and now >= r_at and self._config is not None:
            # A value we accepted was never announced (its proposer may be gone): finish the decree ourselves.
            cur = self._config
            self._cfg_prop = CfgProposal(
                epoch=cur.epoch + 1,
                target=self._durable.vote.accepted_stewards,
                voters=frozenset(cur.stewards),
                give_up_at=now + self._lc.config_patience,
            )
            out += self._cfg_round(now)
        if len(self._acceptor) and now >= self._next_gc:
            self._acceptor.collect(now)
            self._next_gc = now + self._lc.forget_after / 2
        return out
