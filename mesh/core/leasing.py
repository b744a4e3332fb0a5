"""The lease side of a node's claims: PaxosLease per resource, as proposer of this node's own claims and as
the acceptor gate of a steward.

Proposer (per resource, ``ProposerSlot``): a claim starts an attempt (``Attempt``) with a ballot above
anything this node has seen for the resource; its deadline is fixed when the Prepare is SENT (correction 1);
a majority of DISTINCT stewards' promises (correction 2) that report no live lease of another owner, or
only this holding's own lease on a renewal (correction 4), leads to the Propose (a foreign report from a
minority does not block: the argument is in ``mesh.core.lease``'s docstring); a majority of accepts to
``Granted`` (or ``Renewed``), valid until that deadline, checked as data in every handler (correction 5).
Renewals start ``renew_every`` after the last successful attempt started; a holder that cannot renew before
its deadline has ``Lost`` it. A release clears only its exact ballots (correction 3).

Acceptor gate: a steward answers lease ballots only while it serves (``Reconfig.serve_wait``: restart
quarantine, hand-off, fencing), with the epoch of its config; the promised number is reserved ahead in its
durable floor before the reply leaves, so a restarted steward never promises below it. The acceptor's rules
themselves (promise only a greater number; report a live lease; accept the promised or a greater ballot)
are ``mesh.core.lease.AcceptorState``.
"""

from __future__ import annotations

import math
import random

from mesh.core.claim_types import (
    FLOOR_CHUNK,
    ClaimMsg,
    Denied,
    Effect,
    Granted,
    HeldLease,
    LeaseConfig,
    Lost,
    Probed,
    Released,
    Renewed,
    Send,
    Unavailable,
    Wake,
)
from mesh.core.errors import ConfigError
from mesh.core.lease import (
    MAX_ROUND,
    AcceptReject,
    Attempt,
    BallotNo,
    Free,
    LeaseMsg,
    Prepare,
    PrepareReject,
    Promise,
    Propose,
    ProposerSlot,
    Release,
    report_is_open,
    token_of,
)
from mesh.core.mutants import Mutants
from mesh.core.quorum import VoteResult, majority, tally, tally_messages
from mesh.core.reconfig import Reconfig
from mesh.core.stewards import ConfigAnnounce, node_of
from mesh.core.values import replace

RTT_WEIGHT = 0.3
"""Weight of the newest sample in a steward's smoothed answer time (which stewards a thrifty claim asks)."""
HEDGE = 3.0
"""A thrifty claim asks the rest once its majority takes this many times the slowest usual answer of those
it asked (a hedged request: a straggler costs a few round trips, not ``thrifty_wait``)."""
PROBE_TRIES = 3
"""Rounds a probe may take within its one attempt timeout (each above the numbers that refused the last, or
asked again when the last did not decide within ``LeaseConfig.probe_window`` of its send)."""
PROBE_ROUNDS = 8
"""Rounds of one resource's checks under way at once. A question beyond them waits for the next of them to
end, which sends a fresh round at once for it (a round sent after the question, as the rule needs): with
slow stewards, a stream of questions costs a few rounds a round trip, not one each."""


class Leasing:
    """This node's lease attempts and holdings, and (as a steward) its answers to lease ballots."""

    def __init__(
        self, me: str, name: str, lc: LeaseConfig, rng: random.Random, mutants: Mutants, steward: Reconfig
    ) -> None:
        self.me = me
        self.node = node_of(me)
        self.name = name
        self._lc = lc
        self._rng = rng
        self._mut = mutants
        self._steward = steward
        self._slots: dict[str, ProposerSlot] = {}
        self._hint: dict[str, BallotNo] = {}
        self._seen: dict[str, float] = {}
        # Pre-edit checks' rounds under way, per resource, by send (the newest last): an older round keeps
        # running when a newer question needs a fresh one, so a steady stream of questions cannot starve it.
        self._probes: dict[str, list[Attempt]] = {}
        self._probe_queue: set[str] = set()  # resources with a question waiting for a round (PROBE_ROUNDS)
        self._rtt: dict[str, float] = {}  # steward node id -> smoothed time to answer a one-round claim
        self._next_gc = 0.0

    # ---- the proposer's verbs ------------------------------------------------------------------------

    def claim(
        self, resource: str, max_life: float, now: float, wait: bool = False, since: float = 0.0
    ) -> list[Effect]:
        """Claim ``resource`` for at most ``max_life`` seconds; renewed automatically until then.

        ``wait``: the caller will try again while another holds it: the stewards that refuse queue this
        node, in the order of ``since`` (when the caller first asked, local time like ``now``; default
        ``now``), and tell it (``Wake``) when its turn comes."""
        if not max_life > 0:
            raise ConfigError("max_life must be > 0")
        slot = self._slots.get(resource)
        if slot is not None:
            slot.claim_ends = now + max_life
            slot.wait = slot.wait or wait
            if slot.holding and now < slot.until:
                assert slot.token is not None
                return [Granted(resource, slot.token, slot.until)]
            return []
        if self._steward.config is None:
            return [Unavailable(resource, "no steward config yet")]
        slot = self._slots[resource] = ProposerSlot(
            claim_ends=now + max_life, first_try=now, wait=wait, since=since or now
        )
        return self._start(resource, slot, now)

    def probe(self, resource: str, now: float) -> list[Effect]:
        """Ask the stewards whether another owner holds a claim that conflicts with ``resource``: a question
        (``Prepare.probe``) whose answers report such a lease (a steward majority knows every live one). It
        promises nothing at the stewards, so it never outbids a claim of ``resource`` (this node's own).

        Each answer is a ``Probed`` effect carrying its round's send time: it answers the questions asked
        at or before then (the caller settles them; ``Probed.sent``). A round's answers count only within
        ``LeaseConfig.probe_window`` of its send (the containment slack, 1 s by default, below the 2 s
        attempt timeout): "nobody" then means nobody held when the round was sent (the property's docstring
        argues it). A round that has not decided by then is asked again (at most ``PROBE_TRIES`` rounds in
        all), within the attempt timeout. A question asked while a round is under way (sent before it)
        starts a fresh round, and the older rounds keep running for the questions they answer: a round
        that decides ends every round sent no later (their questions are all answered).
        """
        if self._steward.config is None:
            return [Probed(resource, now, unavailable="no steward config yet")]
        rounds = self._probes.get(resource, [])
        if rounds and rounds[-1].started >= now:
            return []  # the round just sent answers this question too
        if rounds and self._mut.probe_joins_old_round:
            rounds[-1].joined = now
            return []
        if len(rounds) >= PROBE_ROUNDS:
            self._probe_queue.add(resource)
            return []
        return self._probe_round(resource, now)

    def _probe_round(self, resource: str, now: float) -> list[Effect]:
        b = self._next_ballot(resource)
        t = now + self._lc.attempt_timeout
        self._probes.setdefault(resource, []).append(
            Attempt(ballot=b, renewal=False, started=now, deadline=t, timeout_at=t)
        )
        return self._to_stewards(Prepare(resource, b[0], b[1], self.me, probe=True))

    def _probe_answer(
        self, resource: str, a: Attempt, now: float, denied: Denied | None = None, unavailable: str = ""
    ) -> list[Effect]:
        """Round ``a`` decided: its answer, for the questions asked at or before its send. Every round sent
        no later ends with it (their questions are answered); newer rounds go on for the later questions."""
        later = [r for r in self._probes.get(resource, ()) if r.started > a.started]
        if later:
            self._probes[resource] = later
        else:
            self._probes.pop(resource, None)
        sent = now if self._mut.probe_sent_at_answer else a.started
        if a.joined is not None:
            sent = max(sent, a.joined)  # mutant probe_joins_old_round
        out: list[Effect] = [Probed(resource, sent, denied, unavailable)]
        if resource in self._probe_queue:
            self._probe_queue.discard(resource)
            out += self._probe_round(resource, now)  # for the questions that waited for a round
        return out

    def _on_probe_reply(
        self, sender: str, m: Promise | PrepareReject, a: Attempt, now: float
    ) -> list[Effect]:
        """The probe's verdict, by the rule of claims (``_blocked``): a conflict is reported only when a
        MAJORITY of the voters report the same owner (it certainly holds: a stale accept lives at a minority
        only), "nobody" when a majority report nothing against it; while the answers still to come can
        decide, wait for them; a round that cannot decide is asked again (``_probe_again``)."""
        if now - a.started >= self._lc.probe_window and not self._mut.probe_late_answers:
            return []  # too late to count: the round is asked again (``tick``)
        voter = node_of(sender)
        voters = self._voters(a, now)
        if isinstance(m, PrepareReject):
            a.refused.add(voter)
        else:
            a.promised.add(voter)
            a.reports[voter] = m
        need = majority(len(voters))
        owners: dict[str, list[Promise]] = {}
        for s, p in sorted(a.reports.items()):
            if s in voters and p.owner and p.owner != self.me:
                owners.setdefault(p.owner, []).append(p)
        foreign = [p for ps in owners.values() for p in ps]
        nobody = len(a.promised & voters) - len(foreign)
        if voters and nobody >= need:
            return self._probe_answer(m.resource, a, now)
        holder = next((o for o, ps in owners.items() if len(ps) >= need), None)
        if holder is not None:
            return self._probe_answer(m.resource, a, now, self._denied(m.resource, owners[holder]))
        left = len(voters - a.promised - a.refused)
        if max([nobody, *map(len, owners.values())]) + left >= need:
            return []  # the others' answers can still decide
        if foreign:
            a.undecided = tuple(foreign)
        if tally(voters, a.promised, a.refused) is VoteResult.LOST and not foreign:
            if a.tries >= PROBE_TRIES:
                return self._probe_answer(
                    m.resource, a, now, unavailable="the stewards refused (a steward change?)"
                )
            # Refused for numbers: a file never probed starts below the stewards' floor (numbers of
            # forgotten slots, a restarted steward's reserve). The refusals raised the hint: ask above.
            return self._probe_again(m.resource, a, a.tries + 1, now)
        # Reports that disagree (failed one-round claims' stale accepts, their Releases under way; a steward
        # reports only one of the conflicting leases it knows): ask again in a moment, within the attempt.
        a.again_at = now + self._lc.thrifty_wait
        return []

    def _probe_again(self, resource: str, a: Attempt, tries: int, now: float) -> list[Effect]:
        """The probe's next round, above every number it has heard of (its answers count from ``now``, and
        it answers the questions asked until then: it is the newest round now)."""
        b = self._next_ballot(resource)
        again = replace(a, ballot=b, started=now, promised=set(), refused=set(), reports={}, tries=tries,
                        again_at=None)  # fmt: skip
        self._probes[resource] = [*(r for r in self._probes.get(resource, ()) if r is not a), again]
        return self._to_stewards(Prepare(resource, b[0], b[1], self.me, probe=True))

    def held(self, now: float) -> dict[str, HeldLease]:
        """Resources this node believes it holds at ``now``."""
        return {
            r: HeldLease(s.token, s.until, s.claim_ends)
            for r, s in self._slots.items()
            if s.token is not None and now < s.until
        }

    def restart(self, now: float) -> list[Effect]:
        """A newer config was adopted: promises gathered under the old voter set mean nothing now, so every
        attempt under way starts anew."""
        out: list[Effect] = []
        for r in sorted(self._slots):
            s = self._slots[r]
            if s.attempt is not None:
                out += self._drop_attempt_ballot(r, s)
                s.attempt = None
                out += self._start(r, s, now)
        return out

    def heard(self, sender: str, now: float) -> None:
        """A message from ``sender`` arrived (the ``majority_of_seen`` mutant counts who was heard lately)."""
        if sender != self.me:
            self._seen[node_of(sender)] = now

    def _to_stewards(self, msg: ClaimMsg) -> list[Effect]:
        cfg = self._steward.config
        assert cfg is not None
        return [Send(s, msg) for s in cfg.stewards]

    # ---- the proposer --------------------------------------------------------------------------------

    def _next_ballot(self, resource: str) -> BallotNo:
        cfg = self._steward.config
        assert cfg is not None
        e = cfg.epoch
        h = self._hint.get(resource, (0, 0))
        b = (e, h[1] + 1 if h[0] >= e else 1)
        self._hint[resource] = max(h, b)
        return b

    def _start(self, resource: str, slot: ProposerSlot, now: float) -> list[Effect]:
        assert self._steward.config is not None
        slot.retry_at = None
        first, slot.unasked = slot.unasked is None, ()
        b = self._next_ballot(resource)
        fast = slot.fast and not slot.holding and self._lc.single_round
        slot.attempt = Attempt(
            ballot=b,
            renewal=slot.holding,
            started=now,
            deadline=now + self._lc.lease,  # correction 1: fixed when the first message is sent
            timeout_at=now + self._lc.attempt_timeout,
            phase="accept" if fast else "prepare",
            fast=fast,
        )
        if fast:
            # One round: each acceptor promises and accepts at once, only if no lease is live in the slot
            # (``AcceptorState.take_fast``); the module docstring of mesh.core.lease argues why that is safe.
            msg = self._propose(resource, slot, b, now, fast=True)
            cfg = self._steward.config
            ask = self._first_asked(cfg.stewards)
            if len(ask) < len(cfg.stewards):
                a = slot.attempt
                a.spare = tuple(s for s in cfg.stewards if s not in ask)
                a.spare_at, a.spare_msg = now + self._hedge(ask), msg
                if first:
                    slot.unasked = a.spare
            return [Send(s, msg) for s in ask]
        waited = max(0.0, now - slot.since)
        return self._to_stewards(Prepare(resource, b[0], b[1], self.me, wait=slot.wait, waited=waited))

    def _first_asked(self, stewards: tuple[str, ...]) -> tuple[str, ...]:
        """Whom a one-round claim asks first: all, or (thrifty) a bare majority: this node if it is a
        steward (its answer costs no write), then the stewards that answered fastest lately (never
        measured: 0, so each gets tried), by id on ties."""
        k = len(stewards) // 2 + 1
        if not self._lc.thrifty or k >= len(stewards):
            return stewards
        order = sorted(stewards, key=lambda s: (s != self.node, self._rtt.get(s, 0.0), s))
        return tuple(order[:k])

    def _hedge(self, ask: tuple[str, ...]) -> float:
        """How long a thrifty attempt waits for the majority it asked before asking the rest."""
        usual = [self._rtt.get(s) for s in ask if s != self.node]
        if not usual or None in usual:
            return self._lc.thrifty_wait
        return min(self._lc.thrifty_wait, HEDGE * max(u for u in usual if u is not None))

    def _ask_spare(self, a: Attempt, now: float) -> list[Effect]:
        """A thrifty attempt asks the stewards it left out (once); the asked that have not answered yet
        count as slow as an attempt timeout (until they answer), so the next claims ask others first."""
        if not a.spare or a.spare_msg is None:
            return []
        for s in set(self._steward.config.stewards if self._steward.config else ()) - set(a.spare):
            if s not in a.responders:
                self._rtt[s] = max(self._rtt.get(s, 0.0), self._lc.attempt_timeout)
        spare, msg = a.spare, a.spare_msg
        a.spare, a.spare_msg, a.asked_late, a.late_at = (), None, spare, now
        return [Send(s, msg) for s in spare]

    def _propose(self, resource: str, slot: ProposerSlot, b: BallotNo, now: float, fast: bool) -> Propose:
        claim_left = max(0.0, slot.claim_ends - now)
        return Propose(resource, b[0], b[1], self.me, self.name, self._exclude_for(), claim_left,
                       fast=fast, wait=slot.wait, waited=max(0.0, now - slot.since))  # fmt: skip

    def _exclude_for(self) -> float:
        """D_A: how long an accept excludes others (mutant ``short_acceptor_lease``: only D_P)."""
        return self._lc.lease if self._mut.short_acceptor_lease else self._lc.acceptor_lease

    def _voters(self, a: Attempt, now: float) -> frozenset[str]:
        cfg = self._steward.config
        assert cfg is not None
        if not self._mut.majority_of_seen:
            return frozenset(cfg.stewards)
        horizon = now - self._lc.lease
        seen = {s for s in cfg.stewards if s == self.node or self._seen.get(s, -math.inf) >= horizon}
        return frozenset(seen | (a.responders & set(cfg.stewards)))

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
        # one): retry at once. Later refusals mean a live competitor: randomised backoff (unless a steward
        # said meanwhile that it is this waiting claim's turn).
        slot.outvoted += 1
        at_once = slot.outvoted == 1 or slot.woken
        slot.woken = False
        slot.retry_at = now if at_once else now + self._rng.uniform(0.0, self._lc.backoff_max)
        return out

    def on_reply(self, sender: str, m: LeaseMsg, now: float) -> list[Effect]:
        """A steward's answer (promise, accept or refusal) to one of this node's lease attempts."""
        assert not isinstance(m, Prepare | Propose | Release | Free)
        slot = self._slots.get(m.resource)
        if isinstance(m, PrepareReject | AcceptReject):
            h = self._hint.get(m.resource, (0, 0))
            self._hint[m.resource] = max(h, (m.promised_epoch, m.promised_round))
        if isinstance(m, Promise) and m.owner and not m.blocking:
            h = self._hint.get(m.resource, (0, 0))
            self._hint[m.resource] = max(h, (m.owner_epoch, m.owner_round))
        rounds = self._probes.get(m.resource)
        if rounds and m.proposer == self.me:
            probe = next((r for r in rounds if r.ballot == (m.epoch, m.round)), None)
            if probe is not None:
                if isinstance(m, Promise | PrepareReject):
                    return self._on_probe_reply(sender, m, probe, now)
                return []
        if slot is None or slot.attempt is None or m.proposer != self.me:
            return []
        a = slot.attempt
        if a.ballot != (m.epoch, m.round):
            return []
        out: list[Effect] = []
        if slot.holding and now >= slot.until:
            return self._lose(m.resource, slot)
        voter = node_of(sender)
        if a.fast and voter not in a.responders:
            old = self._rtt.get(voter)
            sample = now - (a.late_at if voter in a.asked_late else a.started)
            self._rtt[voter] = sample if old is None else old + RTT_WEIGHT * (sample - old)
        a.responders.add(voter)
        if isinstance(m, PrepareReject | AcceptReject):
            if isinstance(m, AcceptReject) != (a.phase == "accept"):
                return []
            # A refusal: the bare majority asked first cannot all accept; the others decide with them.
            out += self._ask_spare(a, now)
            a.refused.add(voter)
            a.refuse_msgs += 1
            if m.wait > 0:
                a.waits[voter] = m.wait
            cfg = self._steward.config
            if cfg is not None and m.config_epoch < cfg.epoch:
                out.append(Send(sender, ConfigAnnounce(cfg.epoch, cfg.stewards)))
            yes = a.promised if a.phase == "prepare" else a.accepted
            n = a.promise_msgs if a.phase == "prepare" else a.accept_msgs
            if self._vote(a, yes, n, now) is VoteResult.LOST:
                if a.fast and not a.waits:
                    # Refused in one round (a live lease, a reservation, or our number was stale: the
                    # refusals taught us the numbers): the classic two rounds tell which, at once.
                    out += self._drop_attempt_ballot(m.resource, slot)
                    slot.attempt, slot.fast = None, False
                    return out + self._start(m.resource, slot, now)
                if a.waits:
                    w = min(a.waits.values())
                    out += self._fail(m.resource, slot, now, f"the stewards are taking over (they serve "
                                      f"again in {math.ceil(w)} s)", wait=w)  # fmt: skip
                else:
                    out += self._fail(m.resource, slot, now, "outvoted by a competing claim")
            elif a.phase == "prepare" and self._vote(a, yes, n, now) is VoteResult.WON:
                # A majority had promised but waited for an open majority (foreign reports): decide again.
                out += self._promised(m.resource, slot, a, now)
            return out
        if isinstance(m, Promise):
            if a.phase != "prepare":
                return []
            a.promised.add(voter)
            a.promise_msgs += 1
            a.reports[voter] = m
            if self._vote(a, a.promised, a.promise_msgs, now) is not VoteResult.WON:
                return []
            return self._promised(m.resource, slot, a, now)
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
        slot.unasked = tuple(s for s in slot.unasked or () if s in a.spare)  # still never asked
        return [Granted(m.resource, slot.token, until)]

    def _promised(self, resource: str, slot: ProposerSlot, a: Attempt, now: float) -> list[Effect]:
        """A majority promised: Propose if a majority reported nothing live against this attempt, wait for
        more answers while that can still come, else blocked."""
        if now >= a.deadline:
            return self._fail(resource, slot, now, "attempt outlived its deadline")
        voters = self._voters(a, now)
        blocking = [
            p
            for s, p in sorted(a.reports.items())
            if (s in voters or self._mut.quorum_by_messages)
            and not report_is_open(p, self.me, a, slot, self._mut)
        ]
        if blocking and not self._mut.quorum_by_messages:
            # PaxosLease needs A majority of promises that report nothing live against us, not that
            # every promise so far does: a foreign report from a minority (a failed one-round claim's
            # stale accept) waits for the other stewards' answers instead of blocking at once.
            opened = {s for s, p in a.reports.items() if report_is_open(p, self.me, a, slot, self._mut)}
            verdict = tally(voters, opened, (a.promised - opened) | a.refused)
            if self._mut.open_any_promise and opened & voters:
                verdict = VoteResult.WON
            if verdict is VoteResult.PENDING:
                return []
            if verdict is VoteResult.WON:
                blocking = []
        if blocking:
            return self._blocked(resource, slot, blocking, now)
        a.phase, a.refused, a.refuse_msgs = "accept", set(), 0
        a.waits.clear()
        if a.renewal:
            slot.holding_ballots.add(a.ballot)
        return self._to_stewards(self._propose(resource, slot, a.ballot, now, fast=False))

    def _blocked(
        self, resource: str, slot: ProposerSlot, blocking: list[Promise], now: float
    ) -> list[Effect]:
        if slot.holding:
            return self._fail(resource, slot, now, "renewal blocked")
        foreign = [p for p in blocking if p.owner != self.me]
        if foreign and slot.woken:
            # A steward said it is our turn while this attempt ran: the report came from a steward that had
            # not yet seen the holder's Release. Go again at once rather than give up.
            slot.attempt, slot.woken = None, False
            return self._drop_attempt_ballot(resource, slot) + self._start(resource, slot, now)
        if foreign:
            a = slot.attempt
            assert a is not None
            voters = self._voters(a, now)
            holder = self._majority_owner(foreign, voters)
            if holder is None and voters - a.promised - a.refused:
                # Foreign reports that disagree (the holder's and a failed one-round claim's stale accept at
                # a minority, whose number may be higher) do not say who holds: wait for the others.
                a.undecided = tuple(foreign)
                return []
            if holder is None:
                # Every steward answered and no owner has a majority: nobody holds the item (the reports are
                # failed one-round claims' stale accepts, their Releases under way). Not a refusal: retry.
                # The same for a path claim's reports of conflicting leases (other slots): each steward
                # reports the least-keyed conflicting lease it has (``AcceptorState.conflicting``), so when
                # real holders are all there is to report, the least one's whole accept majority names it.
                return self._fail(resource, slot, now, "outvoted by a competing claim")
            del self._slots[resource]
            return [self._denied(resource, [p for p in foreign if holder in (None, p.owner)])]
        # Our own stale lease from an earlier holding (e.g. a lost Release): wait it out, then retry.
        slot.attempt = None
        wait = min(max(p.lease_left for p in blocking), self._lc.acceptor_lease)
        slot.retry_at = now + wait + self._rng.uniform(0.0, self._lc.backoff_max)
        return []

    @staticmethod
    def _majority_owner(foreign: list[Promise], voters: frozenset[str]) -> str | None:
        """The owner that a majority of the voters report (it certainly holds), if any."""
        counts: dict[str, int] = {}
        for p in foreign:
            counts[p.owner] = counts.get(p.owner, 0) + 1
        return next((o for o, n in counts.items() if n >= majority(len(voters))), None)

    @staticmethod
    def _denied(resource: str, foreign: list[Promise]) -> Denied:
        p = max(foreign, key=lambda q: (q.owner_epoch, q.owner_round))
        ok = p.owner_epoch >= 0 and 0 <= p.owner_round <= MAX_ROUND
        token = token_of(p.owner_epoch, p.owner_round) if ok else 0
        return Denied(resource, p.owner, p.owner_name, p.claim_left, p.blocking, token)

    def _lose(self, resource: str, slot: ProposerSlot) -> list[Effect]:
        assert slot.token is not None
        del self._slots[resource]
        return [Lost(resource, slot.token)]

    def release(self, resource: str, now: float, *, tell: bool = True) -> list[Effect]:
        """Give ``resource`` up (or abandon the claim attempt).

        ``tell=False``: stop renewing and forget the lease here, but send the stewards no Release. Safe as a
        crash is safe — the acceptors keep the lease until it runs out (D_A after the last accepted
        ballot), which is after any validity this node has told anyone. The node's API uses it when an
        API lease handle (another process) may still act on the lease within its reported validity.
        """
        slot = self._slots.pop(resource, None)
        if slot is None or self._steward.config is None:
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
        if not tell:
            return out
        # Safe to clear every ballot of ours: we no longer believe in any of them. A steward that was never
        # sent one of these ballots (a thrifty one-round claim's spare, this epoch) holds nothing to clear:
        # it is not sent a Release (a write and a wake-up fewer per release). Fewer Releases can only keep
        # an item taken longer (until D_A), never free it sooner.
        epoch = self._steward.config.epoch
        skip = set(slot.unasked or ())
        if slot.attempt is not None:
            skip &= set(slot.attempt.spare)  # the first attempt, under way: its spare may have been sent
        if any(b[0] != epoch for b in ballots):
            skip = set()  # a hand-off may have given an older epoch's lease to any steward of this one
        for b in sorted(ballots):
            rel = Release(resource, b[0], b[1], self.me, done=True)
            out += [Send(s, rel) for s in self._steward.config.stewards if s not in skip]
        return out

    # ---- the acceptor gate ---------------------------------------------------------------------------

    def on_ballot(self, sender: str, m: Prepare | Propose, now: float) -> list[Effect]:
        """A lease Prepare/Propose for this node as a steward (refused while it does not serve)."""
        cur = self._steward.config
        acceptor = self._steward.acceptor
        wait = self._steward.serve_wait(now)
        if cur is None or m.epoch != cur.epoch or wait > 0:
            out: list[Effect] = []
            if cur is not None and m.epoch < cur.epoch:
                out.append(Send(sender, ConfigAnnounce(cur.epoch, cur.stewards)))
            pe, pr = acceptor.promised(m.resource, m.proposer)
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
            acceptor.collect(now)
            self._next_gc = now + self._lc.forget_after / 2
        if isinstance(m, Prepare):
            reply: ClaimMsg = acceptor.on_prepare(m, now, cur.epoch)
        else:
            # Never exclude for less than our own D_A (a longer exclusion is always safe).
            lease = m.lease if m.lease >= self._exclude_for() else self._exclude_for()
            claim_left = m.claim_left if m.claim_left >= 0 else 0.0
            reply = acceptor.on_propose(replace(m, lease=lease, claim_left=claim_left), now, cur.epoch)
        out = []
        n = acceptor.promised(m.resource, m.proposer)
        if n > self._steward.durable.floor:
            # Reserve ahead, durably, before the reply: a restarted acceptor never goes below this.
            out += self._steward.persist(replace(self._steward.durable, floor=(n[0], n[1] + FLOOR_CHUNK)))
        out.append(Send(sender, reply))
        return out

    def on_release(self, sender: str, m: Release, now: float) -> list[Effect]:
        """The owner gives a lease up (only the owner itself may); the head waiter hears at once."""
        if sender != m.owner:
            return []
        return [Send(f.proposer, f) for f in self._steward.acceptor.on_release(m, now)]

    def on_free(self, m: Free, now: float) -> list[Effect]:
        """A steward reserved a free item for this node's waiting claim: go above its number, at once."""
        if m.proposer != self.me or self._steward.config is None:
            return []
        h = self._hint.get(m.resource, (0, 0))
        self._hint[m.resource] = max(h, (m.epoch, m.round))
        s = self._slots.get(m.resource)
        if s is None:
            return [Wake(m.resource)]  # the waiting claim is between attempts: the caller tries again
        if s.attempt is None and not s.holding and s.retry_at is not None:
            return self._start(m.resource, s, now)  # backing off after a refusal: no need now
        s.woken = s.attempt is not None and not s.holding
        return []

    # ---- time ----------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        """Renewals, attempt timeouts, retries, lease expiry and claims' ends of life due at ``now``."""
        out: list[Effect] = []
        for r in sorted(self._slots):
            s = self._slots[r]
            if s.holding:
                if now >= s.until:
                    out += self._lose(r, s)
                    continue
                if now >= s.claim_ends:
                    out += self.release(r, now)
                    continue
            a = s.attempt
            if a is not None:
                if a.spare and now >= a.spare_at and now < a.timeout_at:
                    out += self._ask_spare(a, now)
                if now >= a.timeout_at:
                    if s.holding:
                        s.attempt = None
                        out += self._start(r, s, now)
                    else:
                        out += self._drop_attempt_ballot(r, s)
                        del self._slots[r]
                        late = f"no steward quorum within {self._lc.attempt_timeout:g}s"
                        # Refused by a majority but which owner holds is still unknown: name the likeliest.
                        out.append(self._denied(r, [*a.undecided]) if a.undecided else Unavailable(r, late))
                continue
            if s.retry_at is not None:
                if now >= s.retry_at:
                    out += self._start(r, s, now)
            elif s.holding and now >= s.next_renew:
                out += self._start(r, s, now)
        if self._steward.config is not None:
            out += [Send(f.proposer, f) for f in self._steward.acceptor.due(now)]
        for r in sorted(self._probes):
            for p in list(self._probes[r]):
                if not any(q is p for q in self._probes.get(r, ())):
                    continue  # ended by a newer round's answer during this pass
                out += self._probe_tick(r, p, now)
        return out

    def _probe_tick(self, r: str, p: Attempt, now: float) -> list[Effect]:
        if now >= p.timeout_at:
            late = f"no steward quorum within {self._lc.attempt_timeout:g}s"
            if p.undecided:
                # Never a refusal in the name of a session that may hold nothing: the caller can tell
                # (the pre-edit check then reads the published claims).
                late = "the stewards' reports of a conflicting claim disagree (no owner has a majority)"
            return self._probe_answer(r, p, now, unavailable=late)
        if now >= p.started + self._lc.probe_window and not self._mut.probe_late_answers:
            # The round's later answers could miss a holder that renewed meanwhile: ask again.
            if p.tries >= PROBE_TRIES:
                late = f"no steward majority answered within {self._lc.probe_window:g}s of asking"
                return self._probe_answer(r, p, now, unavailable=late)
            return self._probe_again(r, p, p.tries + 1, now)
        if p.again_at is not None and now >= p.again_at:
            return self._probe_again(r, p, p.tries, now)
        return []

    def collect(self, now: float) -> None:
        """Let the acceptor forget idle resources, now and then."""
        if len(self._steward.acceptor) and now >= self._next_gc:
            self._steward.acceptor.collect(now)
            self._next_gc = now + self._lc.forget_after / 2

    def deadlines(self) -> list[float]:
        """When ``tick`` (or ``collect``) has work to do."""
        ts: list[float] = []
        for s in self._slots.values():
            if s.holding:
                ts += [s.until, s.claim_ends]
                if s.attempt is None and s.retry_at is None:
                    ts.append(s.next_renew)
            if s.attempt is not None:
                ts.append(s.attempt.timeout_at)
                if s.attempt.spare:
                    ts.append(s.attempt.spare_at)
            if s.retry_at is not None:
                ts.append(s.retry_at)
        window = math.inf if self._mut.probe_late_answers else self._lc.probe_window
        ts += [
            min(a.timeout_at, a.again_at or math.inf, a.started + window)
            for rounds in self._probes.values()
            for a in rounds
        ]
        turn = self._steward.acceptor.next_due()
        if turn is not None:
            ts.append(turn)
        if len(self._steward.acceptor):
            ts.append(self._next_gc)
        return ts
