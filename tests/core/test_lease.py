"""Tests of the PaxosLease acceptor, ballots/tokens and the renewal qualifier, driven by hand from now=0."""

from __future__ import annotations

import pytest

from mesh.core.lease import (
    MAX_ROUND,
    Accepted,
    AcceptorState,
    AcceptReject,
    Attempt,
    Prepare,
    PrepareReject,
    Promise,
    Propose,
    ProposerSlot,
    Release,
    ballot_of,
    report_is_open,
    token_of,
)
from mesh.core.mutants import Mutants

R = "task/x"


def acc(mutants: Mutants = Mutants()) -> AcceptorState:  # noqa: B008
    return AcceptorState(forget_after=100.0, mutants=mutants)


def propose(a: AcceptorState, epoch: int, rnd: int, who: str, now: float, lease: float = 4.0) -> object:
    return a.on_propose(Propose(R, epoch, rnd, who, who.upper(), lease, 60.0), now, epoch)


@pytest.mark.parametrize(
    ("earlier", "later"),
    [((1, 1), (1, 2)), ((1, 5), (2, 1)), ((1, MAX_ROUND), (2, 0)), ((3, 7), (3, 8))],
)
def test_token_order_follows_ballot_order(earlier: tuple[int, int], later: tuple[int, int]) -> None:
    assert token_of(*earlier) < token_of(*later)
    assert ballot_of(token_of(*later)) == later


def test_token_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        token_of(1, MAX_ROUND + 1)


def test_promise_needs_strictly_greater_number_even_from_another_proposer() -> None:
    a = acc()
    assert isinstance(a.on_prepare(Prepare(R, 1, 1, "p"), 0.0, 1), Promise)
    r = a.on_prepare(Prepare(R, 1, 1, "q"), 0.0, 1)
    assert isinstance(r, PrepareReject) and (r.promised_epoch, r.promised_round) == (1, 1)
    assert isinstance(a.on_prepare(Prepare(R, 1, 0, "q"), 0.0, 1), PrepareReject)
    assert isinstance(a.on_prepare(Prepare(R, 2, 0, "q"), 0.0, 2), Promise)


def test_accept_exact_promised_ballot_only_from_its_proposer() -> None:
    a = acc()
    a.on_prepare(Prepare(R, 1, 3, "p"), 0.0, 1)
    assert isinstance(propose(a, 1, 3, "q", 0.0), AcceptReject)
    assert isinstance(propose(a, 1, 2, "p", 0.0), AcceptReject)
    assert isinstance(propose(a, 1, 3, "p", 0.0), Accepted)


def test_promise_reports_live_lease_with_relative_times_and_expires_as_data() -> None:
    a = acc()
    a.on_prepare(Prepare(R, 1, 1, "p"), 0.0, 1)
    propose(a, 1, 1, "p", 1.0, lease=4.0)
    r = a.on_prepare(Prepare(R, 1, 2, "q"), 2.0, 1)
    assert isinstance(r, Promise)
    assert (r.owner, r.owner_name, r.owner_epoch, r.owner_round) == ("p", "P", 1, 1)
    assert r.lease_left == pytest.approx(3.0) and r.claim_left == pytest.approx(59.0)
    r2 = a.on_prepare(Prepare(R, 1, 3, "q"), 5.0, 1)  # 1.0 + 4.0: expired exactly now
    assert isinstance(r2, Promise) and r2.owner == ""


@pytest.mark.parametrize(
    ("owner", "ballot", "mutant", "cleared"),
    [
        ("p", (1, 2), False, True),
        ("p", (1, 1), False, False),  # stale release of an older lease of the same owner
        ("q", (1, 2), False, False),
        ("p", (1, 1), True, True),  # the mutant clears on owner alone
        ("q", (1, 2), True, False),
    ],
)
def test_release_matches_exact_owner_and_ballot(
    owner: str, ballot: tuple[int, int], mutant: bool, cleared: bool
) -> None:
    a = acc(Mutants(release_unmatched=mutant))
    propose(a, 1, 2, "p", 0.0)
    a.on_release(Release(R, *ballot, owner), 0.5)
    assert (a.live_lease(R, 0.5) is None) is cleared


def test_collect_forgets_idle_slots_but_keeps_promises_monotonic() -> None:
    a = AcceptorState(forget_after=10.0, mutants=Mutants())
    a.on_prepare(Prepare(R, 1, 9, "p"), 0.0, 1)
    propose(a, 1, 9, "p", 0.0, lease=4.0)
    a.collect(5.0)
    assert len(a) == 1
    a.collect(14.0)
    assert len(a) == 0
    # Forgotten, yet a smaller number still cannot win (fencing tokens keep increasing) — for any resource.
    assert isinstance(a.on_prepare(Prepare(R, 1, 5, "q"), 15.0, 1), PrepareReject)
    assert isinstance(a.on_prepare(Prepare("other", 1, 9, "q"), 15.0, 1), PrepareReject)
    assert isinstance(a.on_prepare(Prepare(R, 1, 10, "q"), 15.0, 1), Promise)


def _promise(owner: str, rnd: int) -> Promise:
    return Promise(R, 1, 9, "p", owner=owner, owner_epoch=1, owner_round=rnd, lease_left=1.0)


@pytest.mark.parametrize(
    ("report", "renewal", "mutant", "open_"),
    [
        (Promise(R, 1, 9, "p"), False, False, True),  # nothing accepted
        (_promise("q", 3), True, False, False),  # someone else's live lease always blocks
        (_promise("p", 3), True, False, True),  # exactly the holding being renewed
        (_promise("p", 2), True, False, False),  # our own lease, but not of this holding
        (_promise("p", 3), False, False, False),  # a fresh attempt never treats our old lease as open
        (_promise("p", 2), False, True, True),  # the mutant does
        (_promise("q", 3), False, True, False),
    ],
)
def test_renewal_qualifier(report: Promise, renewal: bool, mutant: bool, open_: bool) -> None:
    slot = ProposerSlot(claim_ends=100.0, first_try=0.0, token=token_of(1, 3), holding_ballots={(1, 3)})
    att = Attempt(ballot=(1, 9), renewal=renewal, started=0.0, deadline=2.0, timeout_at=0.5)
    assert report_is_open(report, "p", att, slot, Mutants(no_renewal_qualifier=mutant)) is open_


def test_prepare_from_non_owner_during_live_lease_only_reports_it() -> None:
    a = acc()
    a.on_prepare(Prepare(R, 1, 1, "p"), 0.0, 1)
    propose(a, 1, 1, "p", 0.0, lease=4.0)
    r = a.on_prepare(Prepare(R, 1, 50, "q"), 1.0, 1)
    assert isinstance(r, Promise) and r.owner == "p"
    assert a.promised(R) == (1, 1)  # not raised: q is blocked by the report anyway
    # so the holder's renewal is not starved by claimants that will be denied
    assert isinstance(a.on_prepare(Prepare(R, 1, 2, "p"), 1.0, 1), Promise)
    assert isinstance(propose(a, 1, 2, "p", 1.0), Accepted)
    # once the lease is gone, q's numbers count again
    assert isinstance(a.on_prepare(Prepare(R, 1, 50, "q"), 5.1, 1), Promise)
    assert a.promised(R) == (1, 50)


# ---- the one-round (fast) claim ---------------------------------------------------------------------------


def fast(a: AcceptorState, epoch: int, rnd: int, who: str, now: float) -> object:
    return a.on_propose(Propose(R, epoch, rnd, who, who.upper(), 4.0, 60.0, fast=True), now, epoch)


def test_fast_propose_is_taken_on_an_open_slot_above_every_promise() -> None:
    a = acc()
    assert isinstance(a.on_prepare(Prepare(R, 1, 3, "q"), 0.0, 1), Promise)
    assert isinstance(fast(a, 1, 3, "p", 0.1), AcceptReject)  # not strictly above the promise
    assert isinstance(fast(a, 1, 4, "p", 0.1), Accepted)
    lease = a.live_lease(R, 0.2)
    assert lease is not None and (lease.owner, lease.ballot) == ("p", (1, 4))
    assert a.promised(R) == (1, 4)  # it promised as it accepted: a lower Propose is refused now
    assert isinstance(propose(a, 1, 3, "q", 0.2), AcceptReject)


@pytest.mark.parametrize("holder", ["q", "p"])
def test_fast_propose_never_overwrites_a_live_lease_not_even_its_owners(holder: str) -> None:
    a = acc()
    assert isinstance(propose(a, 1, 1, holder, 0.0), Accepted)
    r = fast(a, 1, 9, "p", 1.0)
    assert isinstance(r, AcceptReject) and (r.promised_epoch, r.promised_round) == (1, 1)
    lease = a.live_lease(R, 1.0)
    assert lease is not None and lease.owner == holder
    assert isinstance(fast(a, 1, 9, "p", 4.0), Accepted)  # once it ran out


def test_fast_no_lease_check_mutant_overwrites_the_holder() -> None:
    a = acc(Mutants(fast_no_lease_check=True))
    propose(a, 1, 1, "q", 0.0)
    assert isinstance(fast(a, 1, 2, "p", 1.0), Accepted)


def test_install_of_another_owners_lease_beside_a_live_one_is_contested() -> None:
    from mesh.core.stewards import CONTESTED, SnapLease

    a = acc()
    propose(a, 1, 5, "l", 0.0)  # a failed one-round claim's stale accept, higher than the holder's
    a.install((SnapLease(R, "h", "H", 1, 3, 3.5, 50.0),), 0.1)
    lease = a.live_lease(R, 0.2)
    assert lease is not None and lease.owner == CONTESTED and lease.ballot == (1, 5)
    assert lease.expires == pytest.approx(4.0)
    a.on_release(Release(R, 1, 5, "l"), 0.3)  # the failed claimant's Release no longer opens the slot
    assert a.live_lease(R, 0.3) is not None


# ---- FIFO waiters -----------------------------------------------------------------------------------------


def test_waiters_are_told_in_the_order_they_asked_and_others_wait_their_turn() -> None:
    from mesh.core.lease import HEAD_WINDOW, WAITER_TTL, Free

    a = acc()
    propose(a, 1, 1, "h", 0.0)
    for i, who in enumerate(("w1", "w2")):
        r = a.on_prepare(Prepare(R, 1, 2 + i, who, wait=True), 0.1 + i / 100, 1)
        assert isinstance(r, Promise) and r.owner == "h"  # refused: queued
    assert isinstance(a.on_prepare(Prepare(R, 1, 4, "x"), 0.2, 1), Promise)  # not waiting: not queued
    assert a.on_release(Release(R, 1, 1, "h"), 0.5) == [Free(R, "w1", 1, 1)]
    # Reserved for w1: the releaser (or anyone) is told w1 has it, and a one-round claim is refused.
    r = a.on_prepare(Prepare(R, 1, 9, "h", wait=True), 0.51, 1)
    assert isinstance(r, Promise) and r.owner == "w1"
    assert isinstance(fast(a, 1, 10, "w2", 0.51), AcceptReject)
    assert a.next_due() == pytest.approx(0.5 + HEAD_WINDOW)
    assert isinstance(fast(a, 1, 11, "w1", 0.52), Accepted)
    assert a.next_due() == pytest.approx(0.52 + 4.0)  # w2 (then h) wait for w1's lease now
    assert a.on_release(Release(R, 1, 11, "w1"), 1.0) == [Free(R, "w2", 1, 11)]
    # w2 never comes (dead): its window passes and the next in line (h, queued at 0.51) is told.
    assert a.due(1.0 + HEAD_WINDOW) == [Free(R, "h", 1, 11)]
    # Queued entries run out when not renewed by a refused attempt.
    assert a.on_release(Release(R, 1, 1, "nobody"), 2.0) == []
    assert a.due(0.51 + WAITER_TTL + 1) == []
    assert a.next_due() is None


def test_a_lease_that_runs_out_gives_the_head_its_turn() -> None:
    from mesh.core.lease import Free

    a = acc()
    propose(a, 1, 1, "h", 0.0)
    assert isinstance(fast(a, 1, 2, "w", 0.1), AcceptReject)  # refused, not waiting: not queued
    assert a.next_due() is None
    r = a.on_propose(Propose(R, 1, 3, "w", "W", 4.0, 60.0, fast=True, wait=True), 0.1, 1)
    assert isinstance(r, AcceptReject)
    assert a.next_due() == pytest.approx(4.0)
    assert a.due(3.9) == []
    a.on_prepare(Prepare(R, 1, 4, "w", wait=True), 3.5, 1)  # a waiting claim's retry keeps its place
    assert a.due(4.0) == [Free(R, "w", 1, 1)]


def test_the_queue_follows_when_claimants_asked_not_when_their_refusals_arrived() -> None:
    from mesh.core.lease import Free

    a = acc()
    propose(a, 1, 1, "h", 0.0)
    a.on_prepare(Prepare(R, 1, 2, "late", wait=True, waited=0.0), 0.1, 1)
    a.on_prepare(Prepare(R, 1, 3, "early", wait=True, waited=1.0), 0.2, 1)  # its refusal came second here
    assert a.on_release(Release(R, 1, 1, "h"), 0.3) == [Free(R, "early", 1, 1)]
