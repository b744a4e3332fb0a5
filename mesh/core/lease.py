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

Path claims (``mesh.core.resources``): two different resources can exclude each other (overlapping
patterns, one exclusive). An acceptor refuses a ballot for a path claim while it has an unexpired accepted
lease of ANOTHER owner on a conflicting pattern: at Prepare it reports that lease (the proposer is denied),
at Propose it rejects. Why two conflicting grants cannot both be believed at once: their accept majorities
share an acceptor s; whichever lease s accepted first was live at s when the other's Propose arrived unless
it had expired at s, and it expires at s only after its holder stopped believing it (containment), while the
other holder believes only from a grant after s accepted. The same holds for every renewal (each is a new
accept by a majority), and across epochs the hand-off carries path leases like any other.

One-round claims (``Propose.fast``, the PaxosLease "master" shortcut without a master): a FRESH claim first
sends its Propose without a Prepare; an acceptor takes it only if its number is strictly above every number
promised in the slot AND no lease is live in the slot, whoever's (``take_fast``), and no conflicting path
claim is live — exactly what a Prepare that found the slot open, followed at once by that Propose, would
do at that acceptor, so the accept majority is also a promise majority that saw no live lease. Why it keeps
one holder: (1) against a lease L believed by H (accepted by majority M): the fast accept majority F meets
M in s; if s accepted L first, L was live at s (containment: s's timer started after H's deadline clock,
D_P(1+rho) <= D_A(1-rho)) and s refused; if s took the fast Propose first, H's later Propose at s was
refused (its number is below the fast one, which s promised) or, being fast too, found a live lease; (2)
against a two-round claim: its Prepare majority meets F in s, which either reported the fast lease (live)
or promised a higher number first, so the fast Propose was refused there. The deadline is fixed when the
Propose is sent (correction 1) and acceptor timers start at the accept, after it. A restarted acceptor
still sits out its quarantine and keeps its durable floor (``Leasing.on_ballot`` gates both rounds the
same), epochs must match, and a refused one-round attempt releases its ballot and falls back to two rounds.
A failed one-round claim can leave a HIGHER-ballot accept at a minority beside the believed lease (no
Prepare taught it the numbers): a hand-off that sees two owners keeps an exclusion nobody owns
(``stewards.CONTESTED``), so the failed claimant's Release cannot open the slot under the real holder
(mutant ``handoff_highest_owner``; mutant ``fast_no_lease_check`` drops the live-lease check).

Foreign reports from a minority (``Leasing.on_reply``): such a stale accept would also be REPORTED to the
holder's renewals and to fresh claims until it runs out (the holder then lost the item: a liveness fault,
never two holders). A Prepare therefore goes on once a MAJORITY of the voters promised and reported
nothing live against it (its own holding's lease counts as open for a renewal), whatever a minority
reports; it is blocked once no such majority can form. Why two grants cannot be believed at once: take two
with numbers n < l. l's open majority (for a one-round grant: its accept majority, each of which took it
only over no live lease and above every promise) meets n's accept majority in some s. If s accepted n
before answering l, n's lease was live there for as long as n's holder believes it (containment), so s
reported it or refused: not open. If s answered l first, it promised (or accepted) l and then refused
n < l. Either way a contradiction, whatever any other steward answered: this is the classic PaxosLease
rule ("a majority of empty promises"), of which the old rule (no foreign report in ANY answer heard) was a
stricter, less live variant. Mutant ``open_any_promise`` (go on once any one promise of the majority is
open) is caught by the simulator.

Probes (``Leasing.probe``, the pre-edit check) follow the same rule: a conflict is reported only when a
majority of the voters report the same owner, "nobody" when a majority report nothing against the prober;
reports that disagree wait for the other answers, or (everybody answered) ask again a moment later within
the attempt. A stale accept lives at a minority only, so it never names a session that holds nothing.
Unlike a claim, a probe has no Propose whose ballot orders it against the holder's renewals: its "nobody"
rests on timing alone, so a round's answers count only within the containment slack of its send
(``LeaseConfig.probe_window``, where the argument is; mutant ``probe_late_answers``). For the same reason a
probe's question (``Prepare.probe``) promises nothing: the acceptor only reports (``AcceptorState.look``).
A round answers the questions asked by its send, no later one (``Probed.sent``; mutants
``probe_joins_old_round``, ``probe_sent_at_answer``).

Claims need no such bound: a grant's or renewal's deadline runs D_P from ITS send (one-round Propose,
Prepare, or a renewal's Prepare), the acceptors' D_A from their accepts, later, whatever the round's length
in between; a late quorum past the deadline is no grant (correction 5).
"""

from __future__ import annotations

from mesh.core.mutants import Mutants
from mesh.core.resources import PathClaim, path_claim, slot_key
from mesh.core.stewards import CONTESTED, SnapLease, contested
from mesh.core.values import field, value

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


@value
class Prepare:
    """Phase 1a: proposer asks stewards to promise ballot (epoch, round)."""

    resource: str
    epoch: int
    round: int
    proposer: str
    wait: bool = False
    """The claimant waits for the item (``--wait``): a report of a live lease queues it (FIFO)."""
    waited: float = 0.0
    """How long the waiting claimant has been asking (s): every steward orders its queue by when that was."""
    probe: bool = False
    """A pre-edit check's question (``Leasing.probe``), not a claim: the acceptor reports the live lease
    that conflicts with it and promises nothing (``AcceptorState.look``), so the question never outbids a
    claim of the same slot, e.g. the prober's own shared claim on the file it checks."""


@value
class Promise:
    """Phase 1b: the acceptor promised; reports its live accepted lease, if any (owner == "" if none).

    ``blocking`` names another resource when the reported lease is that one's (a conflicting path claim);
    such a report is made without promising (it always blocks the attempt).
    """

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
    blocking: str = ""


@value
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


@value
class Propose:
    """Phase 2a: accept ``proposer`` as owner for ``lease`` s; ``claim_left`` = its remaining max life."""

    resource: str
    epoch: int
    round: int
    proposer: str
    owner_name: str
    lease: float
    claim_left: float
    fast: bool = False
    """A fresh claim's single round (no Prepare before it): taken only under ``AcceptorState.take_fast``."""
    wait: bool = False
    """The claimant waits for the item (``--wait``): a refusal for a live lease queues it (FIFO)."""
    waited: float = 0.0
    """As ``Prepare.waited``."""


@value
class Accepted:
    """Phase 2b: the acceptor accepted the proposal."""

    resource: str
    epoch: int
    round: int
    proposer: str


@value
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


@value
class Release:
    """The owner gives the lease up; clears an acceptor only for this exact (owner, ballot) (correction 3)."""

    resource: str
    epoch: int
    round: int
    owner: str
    done: bool = False
    """The owner is done with the item (not just dropping a failed attempt's ballot): it waits no more."""


@value
class Free:
    """A steward to the head of an item's waiters: the item is free here and reserved for you a moment;
    ``epoch``/``round``: the number promised here, to go above at once."""

    resource: str
    proposer: str
    epoch: int = 0
    round: int = 0


LeaseMsg = Prepare | Promise | PrepareReject | Propose | Accepted | AcceptReject | Release | Free

WAITER_TTL = 2.0
"""s: a waiter stays queued at an acceptor this long after its last refused attempt (a waiting claim tries
again well within it; one that gave up drops out)."""
HEAD_WINDOW = 0.25
"""s: when an item with waiters becomes free at an acceptor, it refuses everyone but the head waiter this
long (told at once with ``Free``); a head that does not come loses its turn (a dead one blocks no longer)."""


# ---- acceptor ------------------------------------------------------------------------------------------


@value(frozen=False)
class AcceptedLease:
    """What an acceptor accepted for one resource; live while ``now < expires``."""

    owner: str
    owner_name: str
    ballot: BallotNo
    expires: float
    claim_ends: float


@value(frozen=False)
class AcceptorSlot:
    """Acceptor state of one resource (of one owner's shared path claim: ``resources.slot_key``)."""

    resource: str
    promised: BallotNo
    promised_by: str
    accepted: AcceptedLease | None = None
    touched: float = 0.0
    waiters: dict[str, tuple[float, float]] = field(default_factory=dict)  # proposer -> (asked at, until)
    head: str = ""  # the waiter the free item is reserved for...
    head_until: float = 0.0  # ...until then


class AcceptorState:
    """The PaxosLease acceptor for every resource, soft state only.

    The promised number is kept after the lease expires (fencing tokens must keep increasing); idle
    slots are forgotten after ``forget_after`` seconds, folding their number into ``floor``, which then
    stands as the promised number of every forgotten resource, so memory stays bounded by live resources
    without ever letting a smaller number win.
    """

    def __init__(self, forget_after: float, mutants: Mutants, floor: BallotNo = (0, 0)) -> None:
        self._slots: dict[str, AcceptorSlot] = {}
        self._waiting: set[str] = set()  # slot keys with waiters
        self._paths: dict[str, PathClaim] = {}  # slot key -> its path claim, for every path slot
        self._floor: BallotNo = floor
        self._forget_after = forget_after
        self._mutants = mutants

    def _new_slot(self, key: str, resource: str, promised: BallotNo, by: str) -> AcceptorSlot:
        s = self._slots[key] = AcceptorSlot(resource=resource, promised=promised, promised_by=by)
        pc = path_claim(resource)
        if pc is not None:
            self._paths[key] = pc
        return s

    def snapshot(self, now: float, limit: int) -> tuple[tuple[SnapLease, ...], bool]:
        """Live accepted leases for a hand-off (at most ``limit``; True if all of them fit)."""
        out: list[SnapLease] = []
        for k in sorted(self._slots):
            lease = self._live(k, now)
            if lease is None:
                continue
            if len(out) >= limit:
                return tuple(out), False
            out.append(
                SnapLease(
                    resource=self._slots[k].resource,
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
            key = slot_key(s.resource, s.owner)
            slot = self._slots.get(key)
            if slot is None:
                slot = self._new_slot(key, s.resource, max(self._floor, n), s.owner)
            slot.touched = now
            mine = self._live(key, now)
            expires = now + max(0.0, s.lease_left)
            if mine is not None and mine.owner != s.owner and not self._mutants.handoff_highest_owner:
                # Two owners' leases on one slot: keep an exclusion nobody owns (stewards.merge_snapshots).
                s = contested(s)
            if mine is not None and mine.ballot > n:
                mine.expires = max(mine.expires, expires)
                if s.owner == CONTESTED:
                    mine.owner, mine.owner_name = s.owner, s.owner_name
                continue
            if mine is not None:
                expires = max(expires, mine.expires)
            if n > slot.promised:
                slot.promised, slot.promised_by = n, s.owner
            slot.accepted = AcceptedLease(s.owner, s.owner_name, n, expires, now + max(0.0, s.claim_left))

    def promised(self, resource: str, owner: str = "") -> BallotNo:
        """The number this acceptor promised for ``owner``'s slot of ``resource`` (``floor`` if forgotten;
        ``owner`` matters only for a shared path claim, a slot per owner)."""
        s = self._slots.get(slot_key(resource, owner))
        return s.promised if s else self._floor

    def live_lease(self, resource: str, now: float, owner: str = "") -> AcceptedLease | None:
        """The accepted lease of ``owner``'s slot of ``resource`` if still live at ``now`` (``owner``: as
        for ``promised``)."""
        return self._live(slot_key(resource, owner), now)

    def _live(self, key: str, now: float) -> AcceptedLease | None:
        s = self._slots.get(key)
        if s is None or s.accepted is None or now >= s.accepted.expires:
            return None
        return s.accepted

    def conflicting(self, resource: str, owner: str, now: float) -> tuple[str, AcceptedLease] | None:
        """A live lease of another owner on a path claim that conflicts with ``owner`` claiming ``resource``
        (its resource and lease), or None. Leases of the same slot are the ballot rules' business.

        Of several, the one of the least slot key: every steward that has it reports the same one, so the
        holders' own accept majorities are never split between them (the least key's holder is reported by
        all of its majority, and a claim or probe is refused naming it, ``Leasing._majority_owner``)."""
        pc = path_claim(resource) if self._paths else None
        if pc is None or self._mutants.path_exact_only:
            return None
        # Here, not at the top: a path claim's pattern was parsed with globs already (mesh.core.resources),
        # and a node that never sees one need not keep the glob machinery in memory (issue 15).
        from mesh.core.globs import overlaps

        mine = slot_key(resource, owner)
        found: tuple[str, AcceptedLease] | None = None
        for key, other in self._paths.items():
            if key == mine or not (pc.exclusive or other.exclusive) or (found and key >= found[0]):
                continue
            lease = self._live(key, now)
            if lease is not None and lease.owner != owner and overlaps(pc.glob, other.glob):
                found = key, lease
        return (self._slots[found[0]].resource, found[1]) if found else None

    def on_prepare(self, m: Prepare, now: float, config_epoch: int) -> Promise | PrepareReject:
        """Promise ``m``'s number if strictly greater than any promised before.

        While another owner's lease is live here (on this resource, or a conflicting path claim), a Prepare
        only gets that lease REPORTED, without raising the promised number: the reporting reply always
        blocks its proposer (a foreign live lease is never open), so it can never help that attempt win,
        and the holder's renewals are not starved by claimants that will be denied anyway.
        """
        key = slot_key(m.resource, m.proposer)
        if m.probe:
            return self.look(m, now)
        s = self._slots.get(key)
        promised = s.promised if s else self._floor
        held = self._live(key, now)
        if held is not None and held.owner != m.proposer:
            if m.wait:
                self._enqueue(key, m.proposer, now - m.waited, now)
            return self._report(m, held, now)
        other = self.conflicting(m.resource, m.proposer, now)
        if other is not None:
            return self._report(m, other[1], now, blocking=other[0])
        head = self._head(key, now)
        if head and head != m.proposer:
            # Reserved for the head waiter: reported as if it held the item (refusing more is always safe).
            assert s is not None
            if m.wait:
                self._enqueue(key, m.proposer, now - m.waited, now)
            turn = AcceptedLease(head, "", promised, s.head_until, s.head_until)
            return self._report(m, turn, now)
        if not (m.epoch, m.round) > promised:
            if m.wait and s is not None:
                self._enqueue(key, m.proposer, now - m.waited, now)  # contended: the queue decides
            return PrepareReject(m.resource, m.epoch, m.round, m.proposer, *promised, config_epoch)
        if s is None:
            s = self._new_slot(key, m.resource, (m.epoch, m.round), m.proposer)
        s.promised, s.promised_by, s.touched = (m.epoch, m.round), m.proposer, now
        lease = self._live(key, now)
        if lease is None:
            return Promise(m.resource, m.epoch, m.round, m.proposer)
        return self._report(m, lease, now)

    def look(self, m: Prepare, now: float) -> Promise:
        """A probe's answer: another owner's live lease in ``m``'s slot or on a conflicting path claim,
        reported as ``on_prepare`` would, or an empty Promise; nothing here changes (no number promised, no
        place in a queue, no refusal for numbers).

        A probe needs no promise: its "nobody" rests on when the answers come (``LeaseConfig.probe_window``),
        never on a ballot ordering it against a holder's renewals (it has no Propose). Promising its number
        raised the slot's numbers under any claim of that slot: the prober's own shared claim on the file
        it checks (``path-shared/FILE`` both) saw its renewal's or grant's Propose refused after every check
        sent between its Prepare and its Propose."""
        key = slot_key(m.resource, m.proposer)
        held = self._live(key, now)
        if held is not None and held.owner != m.proposer:
            return self._report(m, held, now)
        other = self.conflicting(m.resource, m.proposer, now)
        if other is not None:
            return self._report(m, other[1], now, blocking=other[0])
        return Promise(m.resource, m.epoch, m.round, m.proposer)

    @staticmethod
    def _report(m: Prepare, lease: AcceptedLease, now: float, blocking: str = "") -> Promise:
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
            blocking=blocking,
        )

    def on_propose(self, m: Propose, now: float, config_epoch: int) -> Accepted | AcceptReject:
        """Accept if ``m`` is exactly the promised ballot or a strictly greater number, and no conflicting
        path claim of another owner is live here; a fast (single-round) Propose only as ``take_fast`` says."""
        key = slot_key(m.resource, m.proposer)
        s = self._slots.get(key)
        promised = s.promised if s else self._floor
        n = (m.epoch, m.round)
        if m.fast:
            ok = self.take_fast(key, n, promised, now)
        else:
            exact = s is not None and n == s.promised and m.proposer == s.promised_by
            ok = exact or n > promised
        head = self._head(key, now)
        if head and head != m.proposer:
            ok = False  # reserved for the head waiter
        if not ok or self.conflicting(m.resource, m.proposer, now) is not None:
            if m.wait and s is not None:  # held, reserved, or contended: the queue decides
                self._enqueue(key, m.proposer, now - m.waited, now)
            return AcceptReject(m.resource, m.epoch, m.round, m.proposer, *promised, config_epoch)
        if s is None:
            s = self._new_slot(key, m.resource, n, m.proposer)
        s.promised, s.promised_by, s.touched = n, m.proposer, now
        s.accepted = AcceptedLease(m.proposer, m.owner_name, n, now + m.lease, now + max(0.0, m.claim_left))
        if s.waiters.pop(m.proposer, None) is not None or s.head:
            s.head, s.head_until = "", 0.0  # whoever got it, the turn is over
            if not s.waiters:
                self._waiting.discard(key)
        return Accepted(m.resource, m.epoch, m.round, m.proposer)

    def take_fast(self, key: str, n: BallotNo, promised: BallotNo, now: float) -> bool:
        """May a fast Propose of ballot ``n`` be accepted in slot ``key``? Only as a Prepare that found the
        slot open followed at once by its Propose would be: ``n`` strictly above every number promised here
        and NO live lease in the slot, whoever's (a fresh claim never treats a lease as open, not even
        its own owner's earlier one). The path-conflict check follows in ``on_propose``."""
        if not n > promised:
            return False
        return self._mutants.fast_no_lease_check or self._live(key, now) is None

    def on_release(self, m: Release, now: float) -> list[Free]:
        """Clear the lease only if it is exactly (owner, ballot) — unless the mutant says otherwise; the head
        waiter, if any, is told at once (and the item reserved for it a moment)."""
        key = slot_key(m.resource, m.owner)
        s = self._slots.get(key)
        if s is None:
            return []
        if m.done and s.waiters.pop(m.owner, None) is not None and not s.waiters:
            self._waiting.discard(key)  # it was queued here before a grant this acceptor did not see
        if s.accepted is None or s.accepted.owner != m.owner:
            return []
        if s.accepted.ballot == (m.epoch, m.round) or self._mutants.release_unmatched:
            s.accepted = None
            s.touched = now
            return self._next_turn(key, now)
        return []

    # ---- FIFO waiters (liveness only: a reservation only ever REFUSES attempts) -----------------------

    def _enqueue(self, key: str, who: str, since: float, now: float) -> None:
        # Ordered by when the claimant first asked, as it says (``waited``): every steward then names the
        # same head even when it missed some of the claimant's attempts (arrival order alone differs
        # between stewards). Fairness only: a claimant that lies gains a place in line, never the item.
        s = self._slots[key]
        s.waiters[who] = (since, now + WAITER_TTL)
        s.touched = now
        self._waiting.add(key)

    def _head(self, key: str, now: float) -> str:
        """The waiter this free slot is reserved for now ("" if none)."""
        s = self._slots.get(key)
        if s is None or not s.head:
            return ""
        if now < s.head_until or self._mutants.fifo_head_window_forever:
            return s.head
        return ""

    def _next_turn(self, key: str, now: float) -> list[Free]:
        """The slot is free here: reserve it for the first waiter still queued and tell it."""
        s = self._slots[key]
        s.head, s.head_until = "", 0.0
        for w in [w for w, (_, until) in s.waiters.items() if now >= until]:
            del s.waiters[w]
        if not s.waiters:
            self._waiting.discard(key)
            return []
        s.head = min(s.waiters, key=lambda w: (s.waiters[w][0], w))
        s.head_until = now + HEAD_WINDOW
        return [Free(s.resource, s.head, *s.promised)]

    def due(self, now: float) -> list[Free]:
        """Turns that are due: a lease with waiters ran out, or a head's window passed (next waiter)."""
        out: list[Free] = []
        for key in sorted(self._waiting):
            s = self._slots.get(key)
            if s is None:
                self._waiting.discard(key)
                continue
            if self._live(key, now) is not None:
                continue
            if s.head and self._mutants.fifo_head_window_forever:
                continue
            if s.head and now < s.head_until:
                continue
            if s.head and now >= s.head_until:
                s.waiters.pop(s.head, None)  # it had its turn
                out += self._next_turn(key, now)
            elif not s.head:
                out += self._next_turn(key, now)
        return out

    def next_due(self) -> float | None:
        """When ``due`` next has work: a lease with waiters runs out, a head's window passes (None: no
        waiters anywhere; a time already past: at once)."""
        ts: list[float] = []
        for key in self._waiting:
            s = self._slots.get(key)
            if s is None:
                ts.append(0.0)  # forgotten: ``due`` drops it
                continue
            expires = s.accepted.expires if s.accepted is not None else 0.0
            if not s.head:
                ts.append(expires)
            elif not self._mutants.fifo_head_window_forever:
                ts.append(max(expires, s.head_until))
        return min(ts) if ts else None

    def collect(self, now: float) -> None:
        """Forget idle slots whose lease expired long ago (their number is kept in ``floor``)."""
        for k in [k for k, s in self._slots.items() if self._idle(s, now)]:
            self._floor = max(self._floor, self._slots.pop(k).promised)
            self._paths.pop(k, None)
            self._waiting.discard(k)

    def _idle(self, s: AcceptorSlot, now: float) -> bool:
        last = max(s.touched, s.accepted.expires if s.accepted else s.touched)
        return now - last >= self._forget_after

    def __len__(self) -> int:
        return len(self._slots)


# ---- proposer --------------------------------------------------------------------------------------------


@value(frozen=False)
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
    tries: int = 1  # a probe's rounds so far (it asks again above the numbers that refused it)
    joined: float | None = None  # mutant ``probe_joins_old_round``: the last question that joined the round
    again_at: float | None = None  # a probe whose stewards' reports disagreed asks again then
    fast: bool = False  # a fresh claim's single round: Propose without Prepare
    # A thrifty one-round attempt: the stewards not asked yet, when they will be, and what they will get.
    spare: tuple[str, ...] = ()
    spare_at: float = 0.0
    spare_msg: Propose | None = None
    asked_late: tuple[str, ...] = ()  # ...and once asked: who, when (their answer times count from then)
    late_at: float = 0.0
    # Foreign reports that disagree on the owner, no owner reported by a majority yet: the attempt waits for
    # the other stewards' answers; refused with these if it times out first.
    undecided: tuple[Promise, ...] = ()


@value(frozen=False)
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
    fast: bool = True  # the next fresh attempt may be a single round (off once one was refused)
    wait: bool = False  # the claimant waits for the item: refusals queue it at the stewards
    since: float = 0.0  # when it first asked (local time): its place in the stewards' queues
    woken: bool = False  # a steward said "your turn" while an attempt was under way: retry at once
    unasked: tuple[str, ...] | None = None  # stewards this slot never sent anything (None: no attempt yet):
    # a thrifty one-round first attempt's spare, while unsent; () once a second attempt starts

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
