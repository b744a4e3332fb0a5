"""Pre-edit checks (``ClaimsCore.probe``) beside claims of the same name, and under a steady stream of
questions: cores driven by hand, each message delivered when the test says."""

from __future__ import annotations

import pytest

from mesh.core.claims import Effect, Granted, LeaseConfig, Probed, Renewed, Send
from mesh.core.lease import Accepted, AcceptorState, AcceptReject, Prepare, Promise, Propose
from mesh.core.leasing import PROBE_ROUNDS
from mesh.core.mutants import Mutants
from mesh.core.resources import SHARED_PATH, literal
from tests.core.test_claims import FAST, TWO_ROUNDS, Cluster, cluster, only

FILE = "src/app/x.py"
SHARED = f"{SHARED_PATH}/{literal(FILE)}"
"""The node's own shared claim on the file, and the resource its pre-edit check of the file asks under."""


def _sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def _at_stewards(c: Cluster, src: str, sends: list[Send], now: float) -> list[tuple[str, Send]]:
    """Deliver ``src``'s sends to the stewards; their answers (not delivered yet), with who sent each."""
    out = []
    for s in sends:
        steward = f"{s.to}/1"
        out += [(steward, e) for e in _sends(c.cores[steward].receive(src, s.msg, now))]
    return out


def _back(c: Cluster, ident: str, answers: list[tuple[str, Send]], now: float) -> list[Effect]:
    """Deliver the stewards' answers to ``ident``; what it does."""
    out: list[Effect] = []
    for steward, a in answers:
        assert a.to == ident
        out += c.cores[ident].receive(steward, a.msg, now)
    return out


# ---- the check and the node's own shared claim on the same file: one acceptor slot --------------------


@pytest.mark.parametrize("lc", [TWO_ROUNDS, FAST], ids=["two-rounds", "one-round"])
def test_a_check_between_a_shared_claims_ask_and_its_propose_does_not_refuse_the_claim(
    lc: LeaseConfig,
) -> None:
    """p claims ``--shared src/app/x.py`` and its pre-edit hook checks the same file meanwhile: both are
    ``path-shared/src/app/x.py``, one acceptor slot (a shared claim's slot is its owner's). The check's
    question reaches the stewards between the claim's Prepare and its Propose (one-round: before its
    Propose). When the question was a Prepare that promised its number, above the claim's (one ballot
    counter per resource), every steward refused the claim's Propose: the claim was outvoted by its own
    node's check, and a steady check (a busy hook) kept it from ever being granted. A probe promises
    nothing: the claim is granted in its own rounds."""
    c = cluster(lc=lc)
    p = c.cores["p/1"]
    asks = _sends(p.claim(SHARED, 60.0, 1.0))
    # One round: the claim's first message is its Propose; two: its Prepare's promises bring the Propose.
    promises = [] if lc.single_round else _at_stewards(c, "p/1", asks, 1.0)
    proposes = asks if lc.single_round else _sends(_back(c, "p/1", promises, 1.0))
    assert proposes and all(isinstance(s.msg, Propose) for s in proposes)
    check = _at_stewards(c, "p/1", _sends(p.probe(SHARED, 1.01)), 1.01)  # reaches them first
    assert only(_back(c, "p/1", check, 1.01), Probed) == [Probed(SHARED, 1.01)]  # nobody else
    answers = _at_stewards(c, "p/1", proposes, 1.02)
    assert all(isinstance(a.msg, Accepted) for _, a in answers), answers
    (g,) = only(_back(c, "p/1", answers, 1.02), Granted)
    assert isinstance(g, Granted) and g.until == 1.0 + lc.lease


def test_a_check_between_a_shared_claims_renewal_ask_and_its_propose_does_not_fail_the_renewal() -> None:
    """The same for a renewal of the held shared claim (a renewal is always two rounds): refused, it was
    retried, and a steady stream of checks could keep every retry from its Propose until the holder lost
    the claim it holds."""
    c = cluster(lc=TWO_ROUNDS)
    p = c.cores["p/1"]
    (g,) = only(c.call("p/1", "claim", SHARED, 60.0, now=0.0), Granted)
    t = TWO_ROUNDS.renew_every
    asks = _sends(p.tick(t))
    assert asks and all(isinstance(s.msg, Prepare) and not s.msg.probe for s in asks)
    proposes = _sends(_back(c, "p/1", _at_stewards(c, "p/1", asks, t), t))
    assert proposes and all(isinstance(s.msg, Propose) for s in proposes)
    _at_stewards(c, "p/1", _sends(p.probe(SHARED, t + 0.01)), t + 0.01)
    answers = _at_stewards(c, "p/1", proposes, t + 0.02)
    assert not [a for _, a in answers if isinstance(a.msg, AcceptReject)]
    (r,) = only(_back(c, "p/1", answers, t + 0.02), Renewed)
    assert isinstance(r, Renewed) and isinstance(g, Granted) and r.token == g.token


def test_an_acceptor_answers_a_probe_without_promising_or_refusing() -> None:
    """A probe's question changes nothing at the acceptor: no number promised (a claim's Propose of a lower
    number is still taken), no refusal for a number below the promised one, a foreign live lease reported."""
    acc = AcceptorState(40.0, Mutants())
    assert isinstance(acc.on_prepare(Prepare(SHARED, 1, 5, "p/1"), 0.0, 1), Promise)
    low = acc.on_prepare(Prepare(SHARED, 1, 2, "p/1", probe=True), 0.1, 1)
    high = acc.on_prepare(Prepare(SHARED, 1, 9, "p/1", probe=True), 0.2, 1)
    assert isinstance(low, Promise) and isinstance(high, Promise) and not low.owner and not high.owner
    assert acc.promised(SHARED, "p/1") == (1, 5)
    assert isinstance(acc.on_propose(Propose(SHARED, 1, 5, "p/1", "p", 11.0, 60.0), 0.3, 1), Accepted)
    assert isinstance(
        acc.on_propose(Propose("path/src/**", 1, 1, "h/1", "h", 11.0, 60.0), 0.4, 1), AcceptReject
    )
    assert isinstance(acc.on_propose(Propose("path/lib/**", 1, 1, "h/1", "h", 11.0, 60.0), 0.4, 1), Accepted)
    other = acc.on_prepare(Prepare(f"{SHARED_PATH}/lib/a.py", 1, 1, "q/1", probe=True), 0.5, 1)
    assert isinstance(other, Promise) and other.owner == "h/1" and other.blocking == "path/lib/**"
    assert len(acc) == 2  # the probes made no slot of their own


# ---- a steady stream of questions: older rounds keep running -------------------------------------------


def test_an_older_round_answers_its_questions_while_newer_questions_keep_coming() -> None:
    """q's check at 1.0 sends a round; a question every millisecond after it needs a fresh round each (one
    sent before it could miss a holder granted in between). When each fresh round superseded the one under
    way, a round decided only if its answers beat the next question: with questions faster than the
    stewards answer, the first caller waited for as long as they kept coming. The round of 1.0 keeps
    running: its answers say "nobody" for the questions asked by 1.0 (``Probed.sent``). At most
    ``PROBE_ROUNDS`` rounds are out at once: the later questions wait for one to end, which sends a fresh
    round for them at once; a round that decides ends every older one (their questions are answered)."""
    c = cluster()
    q = c.cores["q/1"]
    first = _at_stewards(c, "q/1", _sends(q.probe(SHARED, 1.0)), 1.0)
    rounds = [
        _at_stewards(c, "q/1", _sends(q.probe(SHARED, 1.0 + i / 1000)), 1.0 + i / 1000) for i in range(1, 51)
    ]
    assert [len(r) for r in rounds] == [3] * (PROBE_ROUNDS - 1) + [0] * (51 - PROBE_ROUNDS)  # the rest wait
    out = _back(c, "q/1", first[:2], 1.06)
    assert only(out, Probed) == [Probed(SHARED, 1.0)]
    fresh = _at_stewards(c, "q/1", _sends(out), 1.06)  # ...and a round for the questions that waited
    assert len(fresh) == 3
    assert only(_back(c, "q/1", fresh[:2], 1.07), Probed) == [Probed(SHARED, 1.06)]  # asked by 1.06: all
    assert not only(_back(c, "q/1", [a for r in rounds for a in r], 1.08), Probed)  # ended with it
    assert q.next_deadline() is None  # no round left


def test_a_newer_round_that_decides_first_answers_the_older_questions_and_ends_their_rounds() -> None:
    c = cluster()
    q = c.cores["q/1"]
    old = _at_stewards(c, "q/1", _sends(q.probe(SHARED, 1.0)), 1.0)
    new = _at_stewards(c, "q/1", _sends(q.probe(SHARED, 1.2)), 1.2)
    assert only(_back(c, "q/1", new, 1.25), Probed) == [Probed(SHARED, 1.2)]  # asked by 1.2: both
    assert not only(_back(c, "q/1", old, 1.26), Probed)
    assert q.next_deadline() is None


@pytest.mark.parametrize("name", ["probe_sent_at_answer", "probe_joins_old_round"])
def test_the_mutants_say_a_round_answers_questions_asked_after_its_send(name: str) -> None:
    c = cluster(mutants=Mutants.only(name))
    q = c.cores["q/1"]
    old = _at_stewards(c, "q/1", _sends(q.probe(SHARED, 1.0)), 1.0)
    asked = _sends(q.probe(SHARED, 1.2))
    assert bool(asked) == (name != "probe_joins_old_round")  # joined: no fresh round
    (p,) = only(_back(c, "q/1", old, 1.25), Probed)
    assert isinstance(p, Probed) and p.sent >= 1.2  # it settles the question of 1.2: wrong
