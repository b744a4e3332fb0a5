"""A node's side of the steward configuration: the config it adopted, when it serves lease ballots, its vote
in the config Paxos (with the lease hand-off it reports), and the reconfigurations it runs.

Why a change of steward set keeps leases exclusive (the hand-off, blackouts, the D_A cap) is argued in
``mesh.core.stewards``; this module carries that out for one node:

- adopting a config (genesis, gossip, a forced recovery, an install) is durable before anything follows;
- a steward serves lease ballots only when it is a steward of its config, is not fenced (it accepted a
  value for the next epoch), sat out its restart quarantine, and installed its epoch's hand-off (or waited
  one D_A after adopting the epoch without one) and its blackout ran out (``serve_wait``);
- as a config acceptor it answers with ``cfg_acceptor_step`` (durable before the reply) and, on an accept,
  reports its live leases with ``blackout`` (what it forgot) and ``partial`` (what it never learned);
- as a config proposer it runs single-decree Paxos for epoch e+1 among the stewards of e, picks the accepting
  majority with the least blackout, merges its hand-off and installs it on every new steward until each says
  so (``CfgInstalled``); a value this node accepted but nobody announced is finished by the node itself.

``adopt`` is the facade's (``ClaimsCore._adopt``): adopting a newer config also restarts the lease attempts
under way, which is the lease side's business.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from mesh.core.claim_types import (
    CONFIG_RESOURCE,
    SNAPSHOT_MAX,
    ClaimMsg,
    ConfigChanged,
    Effect,
    LeaseConfig,
    Persist,
    Send,
    Unavailable,
)
from mesh.core.errors import ConfigError
from mesh.core.lease import AcceptorState
from mesh.core.mutants import Mutants
from mesh.core.quorum import VoteResult, tally
from mesh.core.stewards import (
    CfgAccept,
    CfgAccepted,
    CfgInstall,
    CfgInstalled,
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
from mesh.core.values import replace

Adopt = Callable[[StewardConfig, float, tuple[SnapLease, ...] | None, float], list[Effect]]
"""(config, now, hand-off snapshot or None, blackout) -> effects: the facade's adopt."""


class Reconfig:
    """This node's steward configuration, its config vote and hand-off, and the reconfigurations it runs."""

    def __init__(
        self,
        me: str,
        lc: LeaseConfig,
        rng: random.Random,
        mutants: Mutants,
        state: StewardState | None,
        now: float,
    ) -> None:
        """``state``: this node's durable steward state from its previous life (None: it never had one)."""
        self.me = me
        self.node = node_of(me)
        self._lc = lc
        self._rng = rng
        self._mut = mutants
        self.adopt: Adopt = lambda cfg, now, snapshot, blackout: []  # set by the facade
        self.durable = replace(state, clean=False) if state is not None else StewardState()
        self.config: StewardConfig | None = self.durable.config
        self._adopted_at = now
        # PaxosLease's restart rule: whatever this acceptor accepted in an earlier life (and any hand-off it
        # installed) has run out one D_A from now; until then it serves no lease ballot. (What it promised
        # is covered by the durable floor.) A clean stop with nothing live needs no wait.
        clean = state is not None and state.clean
        self._quarantine_until = now + lc.acceptor_lease if state is not None and not clean else now
        self._installed = self.config is not None and (self.config.epoch == 1 or clean)
        self._stopping = False
        self._blackout_until = now
        floor = (0, 0) if mutants.no_ballot_floor else self.durable.floor
        self.acceptor = AcceptorState(lc.forget_after, mutants, floor=floor)
        self._vote_at = now
        self._prop: CfgProposal | None = None
        self._hint = 0
        self._installs: dict[str, tuple[CfgInstall, float]] = {}  # new steward -> (hand-off, resend until)
        self._next_install = 0.0

    # ---- state ---------------------------------------------------------------------------------------

    @property
    def reconfiguring(self) -> bool:
        """True while this node runs a reconfiguration."""
        return self._prop is not None

    def persist(self, state: StewardState) -> list[Effect]:
        """``state`` becomes what this node must not forget: a Persist effect (none if unchanged)."""
        if state == self.durable:
            return []
        self.durable = state
        return [Persist(state)]

    def clean_stop(self, now: float) -> StewardState | None:
        """The state to persist at a graceful stop if this acceptor holds nothing live (else None)."""
        if self.acceptor.snapshot(now, 1)[0] or self.forgot(now) > 0 or self.partial(now) > 0:
            return None
        if self.config is not None and self.node in self.config.stewards and self.serve_wait(now) > 0:
            return None
        self._stopping = True  # it votes on nothing more in this life, so nothing can make the mark untrue
        return replace(self.durable, clean=True)

    def serve_wait(self, now: float) -> float:
        """Seconds until this node votes on lease ballots (0: now; inf: it is not a steward)."""
        cur = self.config
        if cur is None or self.node not in cur.stewards or self.fenced() or self._stopping:
            return math.inf
        until = self._quarantine_until
        if not self._mut.no_lease_handoff:
            until = max(until, self._blackout_until)
            if not self._installed:
                until = max(until, self._adopted_at + self._lc.acceptor_lease)
        return max(0.0, until - now)

    def fenced(self) -> bool:
        """True once this steward accepted a value for the next epoch: it refuses current-epoch ballots."""
        v, c = self.durable.vote, self.config
        return c is not None and v.epoch > c.epoch and v.accepted_round >= 0

    def forgot(self, now: float) -> float:
        """How long leases this acceptor accepted and then forgot (an earlier life) may still run."""
        return max(0.0, self._quarantine_until - now)

    def partial(self, now: float) -> float:
        """How long older epochs' leases this acceptor never learned (no or partial hand-off) may run."""
        until = self._blackout_until
        if not self._installed:
            until = max(until, self._adopted_at + self._lc.acceptor_lease)
        return max(0.0, until - now)

    def adopt_config(
        self, cfg: StewardConfig, now: float, snapshot: tuple[SnapLease, ...] | None, blackout: float
    ) -> tuple[list[Effect], bool]:
        """Adopt ``cfg`` if newer; with ``snapshot`` (a hand-off for cfg's epoch), install it.

        Returns the effects and whether ``cfg`` was newer (then the lease attempts under way restart).
        """
        out: list[Effect] = []
        cur = self.config
        newer = cur is None or cfg.epoch > cur.epoch
        if newer:
            self.config = cfg
            self._adopted_at = now
            self._installed = cfg.epoch == 1  # nothing came before the first epoch: nothing to hand over
            vote = self.durable.vote
            if vote.epoch <= cfg.epoch:
                vote = replace(vote, epoch=0, promised_round=-1, promised_by="", accepted_round=-1,
                               accepted_stewards=())  # fmt: skip
            out += self.persist(replace(self.durable, config=cfg, vote=vote))
            if self._prop is not None and self._prop.epoch <= cfg.epoch:
                self._prop = None
            out.append(ConfigChanged(cfg))
        elif cur is not None and (cfg.epoch < cur.epoch or cfg != cur):
            return out, False
        if snapshot is not None and self.node in cfg.stewards and not self._installed:
            self.acceptor.install(snapshot, now)
            self._blackout_until = max(self._blackout_until, now + min(blackout, self._lc.acceptor_lease))
            self._installed = True
        return out, newer

    # ---- the config acceptor -------------------------------------------------------------------------

    def on_ballot(self, sender: str, m: CfgPrepare | CfgAccept, now: float) -> list[Effect]:
        """A config Prepare/Accept: this node's vote, with its hand-off on an accept (durable first)."""
        cur = self.config
        out: list[Effect] = []
        if cur is not None and m.epoch <= cur.epoch:
            out.append(Send(sender, ConfigAnnounce(cur.epoch, cur.stewards)))
        state, reply = cfg_acceptor_step(self.durable, self.node, m)
        if isinstance(reply, CfgAccepted):
            self._vote_at = now
            snap, complete = self.acceptor.snapshot(now, SNAPSHOT_MAX)
            blackout = self.forgot(now) if complete else self._lc.acceptor_lease  # what did not fit: excluded
            partial = self.partial(now)
            if self._mut.no_lease_handoff:
                snap, blackout, partial = (), 0.0, 0.0
            reply = replace(reply, snapshot=snap, blackout=blackout, partial=partial)
        out += self.persist(state)  # durable BEFORE the reply leaves
        out.append(Send(sender, reply))
        return out

    def on_install(self, sender: str, m: CfgInstall, now: float) -> list[Effect]:
        """A chosen config with its hand-off, for this node as one of its stewards."""
        try:
            cfg = StewardConfig(m.epoch, tuple(m.stewards))
        except ValueError:
            return []
        lc = self._lc
        snap = tuple(
            replace(s, lease_left=min(max(0.0, s.lease_left), lc.acceptor_lease)) for s in m.snapshot
        )
        blackout = min(max(0.0, m.blackout), lc.acceptor_lease)
        out = self.adopt(cfg, now, snap, blackout)
        return [*out, Send(sender, CfgInstalled(m.epoch))]

    def on_installed(self, sender: str, m: CfgInstalled) -> None:
        """A new steward has its hand-off: stop resending it."""
        got = self._installs.get(node_of(sender))
        if got is not None and got[0].epoch <= m.epoch:
            del self._installs[node_of(sender)]

    # ---- the config proposer -------------------------------------------------------------------------

    def propose(self, stewards: tuple[str, ...], now: float) -> list[Effect]:
        """Ask the stewards to choose ``stewards`` (any non-empty set of node ids) as the next epoch."""
        cur = self.config
        if cur is None:
            raise ConfigError("no steward config yet")
        try:
            StewardConfig(cur.epoch + 1, tuple(stewards))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if tuple(stewards) == cur.stewards:
            raise ConfigError("the proposed steward set is the current one")
        p = self._prop
        if p is not None:
            if p.target == tuple(stewards):
                return []
            raise ConfigError("a reconfiguration is already in progress")
        self._prop = CfgProposal(
            epoch=cur.epoch + 1,
            target=tuple(stewards),
            voters=frozenset(cur.stewards),
            give_up_at=now + self._lc.config_patience,
        )
        return self._round(now)

    def on_reply(self, sender: str, m: CfgPromise | CfgAccepted | CfgReject, now: float) -> list[Effect]:
        """A steward's answer to this node's reconfiguration."""
        p = self._prop
        if p is None or m.epoch != p.epoch or m.round != p.round or m.proposer != self.me:
            return []
        voter = node_of(sender)
        out: list[Effect] = []
        if isinstance(m, CfgReject):
            self._hint = max(self._hint, m.promised_round)
            if self.config is not None and m.current_epoch < self.config.epoch:
                out.append(Send(sender, ConfigAnnounce(self.config.epoch, self.config.stewards)))
            assert p.refused is not None
            p.refused.add(voter)
            yes = p.promised if p.phase == "prepare" else set(p.accepted or {})
            if tally(p.voters, yes or set(), p.refused) is VoteResult.LOST:
                self._backoff(now)
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
        return self._chosen(now)

    def _chosen(self, now: float) -> list[Effect]:
        """The proposal's value is chosen: adopt it, hand the leases over, tell everyone."""
        p = self._prop
        assert p is not None and p.accepted is not None and self.config is not None
        got = [a for v, a in sorted(p.accepted.items()) if v in p.voters]
        q = best_quorum(got, len(p.voters) // 2 + 1)
        assert q is not None
        old = self.config.stewards
        snapshot, blackout = merge_snapshots(
            [a.snapshot for a in q],
            [a.blackout for a in q],
            [a.partial for a in q],
            self._lc.stretch,
            self._lc.acceptor_lease,
            contest=not self._mut.handoff_highest_owner,
        )
        chosen = StewardConfig(p.epoch, p.value)
        install = CfgInstall(chosen.epoch, chosen.stewards, snapshot, blackout)
        out = self.adopt(chosen, now, snapshot, blackout)
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

    def _round(self, now: float) -> list[Effect]:
        p = self._prop
        assert p is not None and self.config is not None
        self._hint = max(self._hint, p.round) + 1
        p.round = self._hint
        p.phase, p.retry_at, p.timeout_at = "prepare", None, now + self._lc.attempt_timeout
        p.promised, p.refused, p.accepted, p.best = set(), set(), None, (-1, ())
        p.finalize_at = None
        return self._to_stewards(CfgPrepare(p.epoch, p.round, self.me))

    def _backoff(self, now: float, at_least: float = 0.0) -> None:
        p = self._prop
        assert p is not None
        p.phase = "idle"
        p.retry_at = now + at_least + self._rng.uniform(0.0, self._lc.backoff_max)

    def _recover_at(self) -> float | None:
        v = self.durable.vote
        if v.accepted_round < 0 or self._prop is not None or not self.fenced():
            return None
        return self._vote_at + 3 * self._lc.attempt_timeout + self._lc.backoff_max

    def _to_stewards(self, msg: ClaimMsg) -> list[Effect]:
        assert self.config is not None
        return [Send(s, msg) for s in self.config.stewards]

    # ---- time ----------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        """Finish, retry or give up the reconfiguration; resend hand-offs; recover an orphaned value."""
        out: list[Effect] = []
        p = self._prop
        if p is not None and p.finalize_at is not None and now >= p.finalize_at:
            out += self._chosen(now)
            p = self._prop
        if p is not None:
            if now >= p.give_up_at:
                self._prop = None
                out.append(Unavailable(CONFIG_RESOURCE, f"reconfiguration to {p.target} not chosen in time"))
            elif p.retry_at is not None:
                if now >= p.retry_at:
                    out += self._round(now)
            elif now >= p.timeout_at and p.finalize_at is None:
                self._backoff(now)
        if self._installs and now >= self._next_install:
            # A new steward that missed its hand-off would sit out a whole D_A: resend until it says so.
            cur = self.config
            for node, (msg, until) in sorted(self._installs.items()):
                if now >= until or cur is None or cur.epoch != msg.epoch:
                    del self._installs[node]
                else:
                    out.append(Send(node, msg))
            self._next_install = now + self._lc.attempt_timeout
        r_at = self._recover_at()
        if r_at is not None and now >= r_at and self.config is not None:
            # A value we accepted was never announced (its proposer may be gone): finish the decree ourselves.
            cur = self.config
            self._prop = CfgProposal(
                epoch=cur.epoch + 1,
                target=self.durable.vote.accepted_stewards,
                voters=frozenset(cur.stewards),
                give_up_at=now + self._lc.config_patience,
            )
            out += self._round(now)
        return out

    def deadlines(self) -> list[float]:
        """When ``tick`` has work to do."""
        ts: list[float] = []
        p = self._prop
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
        return ts
