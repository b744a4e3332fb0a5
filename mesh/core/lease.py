"""PaxosLease per resource: ballots, messages, the acceptor, and the proposer's per-resource state.

Ballots are ``(epoch, round)`` numbers owned by one proposer: an acceptor promises a ballot only if its
number is STRICTLY greater than the one it promised before, so two proposers can never both gather a
majority for the same number, and the winning number alone is a fencing token:

    token = epoch << ROUND_BITS | round        (ROUND_BITS = 40)

Tokens strictly increase across successive holders of one resource: a new holder's promise majority
intersects the previous holder's accept majority, and the intersecting acceptor promised only a greater
number (acceptors keep their promised number for as long as they live, see ``AcceptorState``, and a
durable floor across their restarts); across epochs the epoch is the most significant part; a restarted
proposer is a new identity that learns the current numbers from promises and rejections.

Deadlines are data: every handler takes ``now`` and compares against stored deadlines (correction 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.core.mutants import Mutants
from mesh.core.stewards import SnapLease

ROUND_BITS = 40
MAX_ROUND = (1 << ROUND_BITS) - 1

BallotNo = tuple[int, int]
"""A ballot number ``(epoch, round)``; the proposer that owns it travels beside it."""


def token_of(epoch: int, round_: int) -> int:
    """The fencing token of a winning ballot number."""
    if not 0 <= round_ <= MAX_ROUND or epoch < 0:
        raise ValueError("ballot out of range")
    return epoch << ROUND_BITS | round_


def ballot_of(token: int) -> BallotNo:
    """Inverse of ``token_of``."""
    return token >> ROUND_BITS, token & MAX_ROUND


# ---- messages (every field a plain int/float/str; durations are RELATIVE seconds) -------------------


@dataclass(frozen=True)
class Prepare:
    """Phase 1a: proposer asks stewards to promise ballot (epoch, round)."""

    resource: str
    epoch: int
    round: int
    proposer: str


@dataclass(frozen=True)
class Promise:
    """Phase 1b: the acceptor promised; reports its live accepted lease, if any (owner == "" if none)."""

    resource: str
    epoch: int
    round: int
    proposer: str
    owner: str = ""
    owner_name: str = ""
    owner_epoch: int = 0
    owner_round: int = 0
    lease_left: float = 0.0
    claim_left: float = 0.0


@dataclass(frozen=True)
class PrepareReject:
    """Phase 1b refusal: a greater-or-equal number was promised, or the epochs disagree.

    ``wait`` > 0: the acceptor does not serve yet (restart quarantine or a hand-off still under way) and
    will in about that many seconds; nothing about the ballot was wrong.
    """

    resource: str
    epoch: int
    round: int
    proposer: str
    promised_epoch: int
    promised_round: int
    config_epoch: int
    wait: float = 0.0


@dataclass(frozen=True)
class Propose:
    """Phase 2a: accept ``proposer`` as owner for ``lease`` s; ``claim_left`` = its remaining max life."""

    resource: str
    epoch: int
    round: int
    proposer: str
    owner_name: str
    lease: float
    claim_left: float


@dataclass(frozen=True)
class Accepted:
    """Phase 2b: the acceptor accepted the proposal."""

    resource: str
    epoch: int
    round: int
    proposer: str


@dataclass(frozen=True)
class AcceptReject:
    """Phase 2b refusal (``wait`` as in PrepareReject)."""

    resource: str
    epoch: int
    round: int
    proposer: str
    promised_epoch: int
    promised_round: int
    config_epoch: int
    wait: float = 0.0


@dataclass(frozen=True)
class Release:
    """The owner gives the lease up; clears an acceptor only for this exact (owner, ballot) (correction 3)."""

    resource: str
    epoch: int
    round: int
    owner: str


LeaseMsg = Prepare | Promise | PrepareReject | Propose | Accepted | AcceptReject | Release


# ---- acceptor ------------------------------------------------------------------------------------------


@dataclass
class AcceptedLease:
    """What an acceptor accepted for one resource; live while ``now < expires``."""

    owner: str
    owner_name: str
    ballot: BallotNo
    expires: float
    claim_ends: float


@dataclass
class AcceptorSlot:
    """Acceptor state of one resource."""

    promised: BallotNo
    promised_by: str
    accepted: AcceptedLease | None = None
    touched: float = 0.0


class AcceptorState:
    """The PaxosLease acceptor for every resource, soft state only.

    The promised number is kept after the lease expires (fencing tokens must keep increasing); idle
    slots are forgotten after ``forget_after`` seconds, folding their number into ``floor``, which then
    stands as the promised number of every forgotten resource, so memory stays bounded by live resources
    without ever letting a smaller number win.
    """

    def __init__(self, forget_after: float, mutants: Mutants, floor: BallotNo = (0, 0)) -> None:
        self._slots: dict[str, AcceptorSlot] = {}
        self._floor: BallotNo = floor
        self._forget_after = forget_after
        self._mutants = mutants

    def snapshot(self, now: float, limit: int) -> tuple[tuple[SnapLease, ...], bool]:
        """Live accepted leases for a hand-off (at most ``limit``; True if all of them fit)."""
        out: list[SnapLease] = []
        for r in sorted(self._slots):
            lease = self.live_lease(r, now)
            if lease is None:
                continue
            if len(out) >= limit:
                return tuple(out), False
            out.append(
                SnapLease(
                    resource=r,
                    owner=lease.owner,
                    owner_name=lease.owner_name,
                    epoch=lease.ballot[0],
                    round=lease.ballot[1],
                    lease_left=lease.expires - now,
                    claim_left=max(0.0, lease.claim_ends - now),
                )
            )
        return tuple(out), True

    def install(self, snapshot: tuple[SnapLease, ...], now: float) -> None:
        """Take a hand-off's leases in as accepted here (keeping a longer or higher one already here)."""
        for s in snapshot:
            n = (s.epoch, s.round)
            slot = self._slots.get(s.resource)
            if slot is None:
                slot = self._slots[s.resource] = AcceptorSlot(
                    promised=max(self._floor, n), promised_by=s.owner
                )
            slot.touched = now
            mine = self.live_lease(s.resource, now)
            expires = now + max(0.0, s.lease_left)
            if mine is not None and mine.ballot > n:
                mine.expires = max(mine.expires, expires)
                continue
            if mine is not None:
                expires = max(expires, mine.expires)
            if n > slot.promised:
                slot.promised, slot.promised_by = n, s.owner
            slot.accepted = AcceptedLease(s.owner, s.owner_name, n, expires, now + max(0.0, s.claim_left))

    def _slot(self, resource: str) -> AcceptorSlot | None:
        return self._slots.get(resource)

    def promised(self, resource: str) -> BallotNo:
        """The number this acceptor promised for ``resource`` (``floor`` if forgotten)."""
        s = self._slots.get(resource)
        return s.promised if s else self._floor

    def live_lease(self, resource: str, now: float) -> AcceptedLease | None:
        """The accepted lease of ``resource`` if still live at ``now``."""
        s = self._slots.get(resource)
        if s is None or s.accepted is None or now >= s.accepted.expires:
            return None
        return s.accepted

    def on_prepare(self, m: Prepare, now: float, config_epoch: int) -> Promise | PrepareReject:
        """Promise ``m``'s number if strictly greater than any promised before.

        While another owner's lease is live here, a Prepare only gets that lease REPORTED, without raising
        the promised number: the reporting reply always blocks its proposer (a foreign live lease is never
        open), so it can never help that attempt win, and the holder's renewals are not starved by
        claimants that will be denied anyway.
        """
        s = self._slots.get(m.resource)
        promised = s.promised if s else self._floor
        held = self.live_lease(m.resource, now)
        if held is not None and held.owner != m.proposer:
            return self._report(m, held, now)
        if not (m.epoch, m.round) > promised:
            return PrepareReject(m.resource, m.epoch, m.round, m.proposer, *promised, config_epoch)
        if s is None:
            s = self._slots[m.resource] = AcceptorSlot(promised=(m.epoch, m.round), promised_by=m.proposer)
        s.promised, s.promised_by, s.touched = (m.epoch, m.round), m.proposer, now
        lease = self.live_lease(m.resource, now)
        if lease is None:
            return Promise(m.resource, m.epoch, m.round, m.proposer)
        return self._report(m, lease, now)

    @staticmethod
    def _report(m: Prepare, lease: AcceptedLease, now: float) -> Promise:
        return Promise(
            m.resource,
            m.epoch,
            m.round,
            m.proposer,
            owner=lease.owner,
            owner_name=lease.owner_name,
            owner_epoch=lease.ballot[0],
            owner_round=lease.ballot[1],
            lease_left=lease.expires - now,
            claim_left=max(0.0, lease.claim_ends - now),
        )

    def on_propose(self, m: Propose, now: float, config_epoch: int) -> Accepted | AcceptReject:
        """Accept if ``m`` is exactly the promised ballot or a strictly greater number."""
        s = self._slots.get(m.resource)
        promised = s.promised if s else self._floor
        n = (m.epoch, m.round)
        exact = s is not None and n == s.promised and m.proposer == s.promised_by
        if not (exact or n > promised):
            return AcceptReject(m.resource, m.epoch, m.round, m.proposer, *promised, config_epoch)
        if s is None:
            s = self._slots[m.resource] = AcceptorSlot(promised=n, promised_by=m.proposer)
        s.promised, s.promised_by, s.touched = n, m.proposer, now
        s.accepted = AcceptedLease(m.proposer, m.owner_name, n, now + m.lease, now + max(0.0, m.claim_left))
        return Accepted(m.resource, m.epoch, m.round, m.proposer)

    def on_release(self, m: Release, now: float) -> None:
        """Clear the lease only if it is exactly (owner, ballot) — unless the mutant says otherwise."""
        s = self._slots.get(m.resource)
        if s is None or s.accepted is None or s.accepted.owner != m.owner:
            return
        if s.accepted.ballot == (m.epoch, m.round) or self._mutants.release_unmatched:
            s.accepted = None
            s.touched = now

    def collect(self, now: float) -> None:
        """Forget idle slots whose lease expired long ago (their number is kept in ``floor``)."""
        for r in [r for r, s in self._slots.items() if self._idle(s, now)]:
            self._floor = max(self._floor, self._slots.pop(r).promised)

    def _idle(self, s: AcceptorSlot, now: float) -> bool:
        last = max(s.touched, s.accepted.expires if s.accepted else s.touched)
        return now - last >= self._forget_after

    def __len__(self) -> int:
        return len(self._slots)


# ---- proposer --------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One ballot's run through phases 1 and 2, with its deadline fixed when Prepare was sent."""

    ballot: BallotNo
    renewal: bool
    started: float
    deadline: float
    timeout_at: float
    phase: str = "prepare"  # "prepare" | "accept"
    promised: set[str] = field(default_factory=set)
    promise_msgs: int = 0
    refused: set[str] = field(default_factory=set)
    refuse_msgs: int = 0
    reports: dict[str, Promise] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    accept_msgs: int = 0
    responders: set[str] = field(default_factory=set)
    waits: dict[str, float] = field(default_factory=dict)  # refusals "not serving yet, for this long"


@dataclass
class ProposerSlot:
    """What this node wants and holds for one resource."""

    claim_ends: float
    first_try: float
    token: int | None = None
    until: float = 0.0
    next_renew: float = 0.0
    holding_ballots: set[BallotNo] = field(default_factory=set)
    attempt: Attempt | None = None
    retry_at: float | None = None
    outvoted: int = 0

    @property
    def holding(self) -> bool:
        """True once granted (until released/lost)."""
        return self.token is not None


def report_is_open(p: Promise, me: str, attempt: Attempt, slot: ProposerSlot, mutants: Mutants) -> bool:
    """May this promise's reported lease be ignored? (renewal qualifier, correction 4)

    A reported live lease blocks the attempt unless it is this proposer's own lease AND the attempt is a
    renewal of the holding that lease belongs to (its ballot is one this holding proposed).
    """
    if not p.owner:
        return True
    if p.owner != me:
        return False
    if mutants.no_renewal_qualifier:
        return True
    return attempt.renewal and (p.owner_epoch, p.owner_round) in slot.holding_ballots
