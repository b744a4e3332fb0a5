"""ClaimsCore driven by hand from now=0.0: a tiny router delivers sends at the time the test says."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from mesh.core.claims import (
    Accepted,
    ClaimMsg,
    ClaimsCore,
    ConfigChanged,
    Denied,
    Effect,
    Granted,
    LeaseConfig,
    Lost,
    Persist,
    Prepare,
    PrepareReject,
    Promise,
    Propose,
    Release,
    Released,
    Renewed,
    Send,
    StewardConfig,
    Unavailable,
)
from mesh.core.lease import ballot_of, token_of
from mesh.core.leasing import HEDGE
from mesh.core.mutants import Mutants
from mesh.core.stewards import (
    CfgAccept,
    CfgAccepted,
    CfgInstall,
    CfgPrepare,
    CfgPromise,
    ConfigAnnounce,
    SnapLease,
    StewardState,
    merge_snapshots,
    proxy_step,
)
from mesh.core.values import replace
from mesh.errors import ConfigError

FAST = LeaseConfig.fast()
TWO_ROUNDS = replace(FAST, single_round=False)  # scripted walks through Prepare, then Propose
STEWARDS = ("a", "b", "c")
IDS = ("a/1", "b/1", "c/1")


class Cluster:
    """Cores by identity; ``pump`` delivers queued sends (optionally filtered) until quiet."""

    def __init__(
        self,
        idents: tuple[str, ...],
        mutants: Mutants = Mutants(),  # noqa: B008
        lc: LeaseConfig = FAST,
    ) -> None:
        self.cores = {
            i: ClaimsCore(i, "name-" + i.split("/")[0], lc, random.Random(n), mutants)
            for n, i in enumerate(idents)
        }
        self.queue: list[tuple[str, Send]] = []
        self.events: dict[str, list[Effect]] = {i: [] for i in idents}
        self.down: set[str] = set()

    def take(self, ident: str, effects: list[Effect]) -> list[Effect]:
        for e in effects:
            if isinstance(e, Send):
                self.queue.append((ident, e))
            else:
                self.events[ident].append(e)
        return [e for e in effects if not isinstance(e, Send)]

    def resolve(self, to: str) -> str | None:
        """A send to a bare node id reaches whatever incarnation of it runs here."""
        if to in self.cores:
            return to
        hits = [i for i in self.cores if i.split("/")[0] == to]
        return hits[0] if hits else None

    def pump(self, now: float, keep: Callable[[str, Send], bool] = lambda s, e: True) -> None:
        while self.queue:
            src, e = self.queue.pop(0)
            to = self.resolve(e.to)
            if to is None or to in self.down or src in self.down or not keep(src, e):
                continue
            self.take(to, self.cores[to].receive(src, e.msg, now))

    def call(self, ident: str, fn: str, *args: object, now: float) -> list[Effect]:
        out = self.take(ident, getattr(self.cores[ident], fn)(*args, now))
        self.pump(now)
        return out + self.drain(ident)

    def drain(self, ident: str) -> list[Effect]:
        out, self.events[ident] = self.events[ident], []
        return out

    def tick_all(self, now: float) -> None:
        for i, c in self.cores.items():
            if i not in self.down:
                self.take(i, c.tick(now))
        self.pump(now)

    def settle(self, ident: str, fn: str, *args: object, now: float, window: float = 1.5) -> list[Effect]:
        """Call, then keep ticking everyone for ``window`` s (retries after backoff); ident's effects."""
        out = self.call(ident, fn, *args, now=now)
        self.run_until(now + window, start=now + 0.05)
        return out + self.drain(ident)

    def run_until(self, t_end: float, step: float = 0.05, start: float = 0.0) -> None:
        t = start
        while t <= t_end + 1e-9:
            self.tick_all(t)
            t += step


def cluster(
    extra: tuple[str, ...] = ("p/1", "q/1"),
    mutants: Mutants = Mutants(),  # noqa: B008
    lc: LeaseConfig = FAST,
) -> Cluster:
    c = Cluster(IDS + extra, mutants, lc)
    c.take("a/1", c.cores["a/1"].genesis(STEWARDS, 0.0))
    for i in c.cores:
        if i != "a/1":
            c.take(i, c.cores[i].adopt(StewardConfig(1, STEWARDS), 0.0))
    for i in c.cores:
        c.drain(i)
    return c


def only(effects: list[Effect], kind: type) -> list[Effect]:
    return [e for e in effects if isinstance(e, kind)]


# ---- config (LeaseConfig) -----------------------------------------------------------------------------


def test_lease_config_defaults_follow_design() -> None:
    c = LeaseConfig()
    assert c.lease == 10.0 and c.rho == 0.01
    assert c.renew_every == pytest.approx(10 / 3)
    assert c.acceptor_lease == pytest.approx(11 * 1.01 / 0.99)  # 11.22 s: containment and a 1 s margin
    assert c.attempt_timeout == 2.0
    assert c.validate() is c
    f = LeaseConfig.fast()
    assert (f.lease, f.attempt_timeout) == (2.0, 0.5) and f.acceptor_lease == pytest.approx(3 * 1.01 / 0.99)


def test_the_probe_window_is_the_containment_slack_on_the_probers_clock() -> None:
    """D_A(1-rho)/(1+rho) - D_P: 1 s by default whatever D_P, none at the containment bound."""
    assert LeaseConfig().probe_window == pytest.approx(1.0)
    assert LeaseConfig.fast().probe_window == pytest.approx(1.0)
    assert LeaseConfig(lease=2.0, rho=0.1).probe_window == pytest.approx(1.0)
    assert LeaseConfig(acceptor_lease=13.0).probe_window == pytest.approx(13 * 0.99 / 1.01 - 10)
    assert LeaseConfig(lease=2.0, rho=0.1, acceptor_lease=2 * 1.1 / 0.9).probe_window == pytest.approx(0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lease": 0.0001, "acceptor_lease": 0.00001},
        {"lease": 10.0, "acceptor_lease": 10.0},  # containment: 10*1.01 > 10*0.99
        {"rho": 1.5},
        {"lease": 3.0, "renew_every": 2.9, "attempt_timeout": 0.5},
    ],
)
def test_lease_config_validate_rejects(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        LeaseConfig(**kwargs).validate()


# ---- claims ---------------------------------------------------------------------------------------------


def test_claim_free_resource_is_granted_with_deadline_from_prepare_time() -> None:
    c = cluster()
    out = c.call("p/1", "claim", "task/1", 60.0, now=0.0)
    (g,) = only(out, Granted)
    assert isinstance(g, Granted)
    assert g.token == token_of(1, 1) and g.until == pytest.approx(FAST.lease)
    assert set(c.cores["p/1"].held(1.0)) == {"task/1"}
    assert c.cores["p/1"].held(FAST.lease) == {}  # deadline is exclusive


SLOW = 1.9
"""s: a round's answers come this long after its send: past the 1 s slack of D_A, within the 2 s timeout."""


@pytest.mark.parametrize("resource", ["task/1", "path/src/**"])
@pytest.mark.parametrize("single_round", [True, False])
def test_a_claims_deadline_counts_from_its_send_however_long_its_round_takes(
    resource: str, single_round: bool
) -> None:
    """Production timings (D_P 10 s, D_A 11.22 s, attempt timeout 2 s), every answer 1.9 s late: longer than
    the 1 s slack in D_A. A grant and a renewal are each believed until D_P after THEIR send, the stewards'
    exclusions run D_A from their accepts, later: the holder's belief ends before any steward's exclusion
    by the whole slack plus the round's length. A claim's safety does not depend on how long its round
    takes (only ``Leasing.probe``'s "nobody" does: ``LeaseConfig.probe_window``)."""
    lc = replace(LeaseConfig(), single_round=single_round)
    c = cluster(lc=lc)
    p = c.cores["p/1"]
    c.take("p/1", p.claim(resource, 600.0, 0.0))  # a one-round Propose, or a Prepare, sent at 0
    c.pump(SLOW)  # ...answered at 1.9 (and a Prepare's Propose at once, answered at once)
    (g,) = only(c.drain("p/1"), Granted)
    assert isinstance(g, Granted) and g.until == pytest.approx(lc.lease)  # from the send, not the quorum
    t = lc.renew_every  # the renewal's Prepare goes out D_P/3 after the grant's attempt started
    c.take("p/1", p.tick(t))
    c.pump(t + SLOW)
    (r,) = only(c.drain("p/1"), Renewed)
    assert isinstance(r, Renewed) and r.until == pytest.approx(t + lc.lease)
    leases = [c.cores[s]._leases._steward.acceptor.live_lease(resource, t + SLOW) for s in IDS]  # type: ignore[attr-defined]
    for x in leases:  # the renewal's Propose went to every steward
        assert x is not None and x.expires - r.until == pytest.approx(lc.acceptor_lease - lc.lease + SLOW)


def test_a_one_round_claim_refused_counts_its_two_rounds_from_their_own_send() -> None:
    """The fast Propose is refused (the stewards promised higher numbers): the classic two rounds start when
    the refusals come, 1.9 s later, and the grant is believed D_P from THAT send."""
    lc = LeaseConfig()
    c = cluster(lc=lc)
    for s in IDS:
        c.cores[s]._leases._steward.acceptor._floor = (1, 50)  # type: ignore[attr-defined]
    c.take("p/1", c.cores["p/1"].claim("task/1", 600.0, 0.0))
    c.pump(SLOW)
    (g,) = only(c.drain("p/1"), Granted)
    assert isinstance(g, Granted) and g.until == pytest.approx(SLOW + lc.lease) and g.token > token_of(1, 50)


def test_second_claimant_is_denied_with_holder_identity_name_and_remaining_life() -> None:
    c = cluster()
    c.call("p/1", "claim", "task/1", 60.0, now=0.0)
    out = c.settle("q/1", "claim", "task/1", 5.0, now=1.0, window=0.6)
    (d,) = only(out, Denied)
    assert isinstance(d, Denied)
    assert (d.holder, d.holder_name) == ("p/1", "name-p")
    assert d.remaining is not None and 58.0 < d.remaining < 59.5


def test_holder_renews_keeping_its_token_until_max_life_then_releases() -> None:
    c = cluster()
    (g,) = only(c.call("p/1", "claim", "task/1", 3.0, now=0.0), Granted)
    renewed: list[Effect] = []
    t = 0.0
    while t < 3.5:
        t += 0.05
        c.tick_all(t)
        renewed += c.drain("p/1")
    assert isinstance(g, Granted)
    rs = only(renewed, Renewed)
    assert len(rs) >= 3 and all(isinstance(r, Renewed) and r.token == g.token for r in rs)
    assert only(renewed, Released) == [Released("task/1", g.token)]
    assert not only(renewed, Lost)
    # Released for real: another node gets it at once, with a larger token.
    (g2,) = only(c.settle("q/1", "claim", "task/1", 5.0, now=t), Granted)
    assert isinstance(g2, Granted) and g2.token > g.token


def test_release_frees_the_resource_at_once_and_tokens_increase() -> None:
    c = cluster()
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    assert only(c.call("p/1", "release", "task/1", now=0.5), Released)
    (g2,) = only(c.settle("q/1", "claim", "task/1", 60.0, now=0.6), Granted)
    assert isinstance(g, Granted) and isinstance(g2, Granted)
    assert g2.token > g.token


def test_cut_off_holder_loses_at_its_deadline_and_others_wait_for_acceptor_expiry() -> None:
    c = cluster()
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    assert isinstance(g, Granted)
    c.down.add("p/1")  # its messages vanish; its clock still runs
    t, lost_at = 0.0, None
    while t < 2.5 and lost_at is None:
        t += 0.05
        if only(c.take("p/1", c.cores["p/1"].tick(t)), Lost):
            lost_at = t
    assert lost_at is not None and lost_at <= g.until + 0.05 + 1e-9
    # The stewards still exclude others until D_A after their last accept (~renewal at 0.67 s).
    assert only(c.settle("q/1", "claim", "task/1", 5.0, now=3.0, window=0.5), Denied)
    c.run_until(6.0, start=3.5)
    assert only(c.settle("q/1", "claim", "task/1", 5.0, now=6.0), Granted)


def test_no_quorum_yields_unavailable_after_attempt_timeout() -> None:
    c = cluster()
    c.down |= {"b/1", "c/1"}
    assert c.call("p/1", "claim", "task/1", 60.0, now=0.0) == []
    # A thrifty one-round claim asked a bare majority; nobody answered: it asks the rest, then gives up.
    assert c.cores["p/1"].next_deadline() == pytest.approx(FAST.thrifty_wait)
    assert c.take("p/1", c.cores["p/1"].tick(FAST.thrifty_wait)) == []
    assert c.cores["p/1"].next_deadline() == pytest.approx(FAST.attempt_timeout)
    out = c.take("p/1", c.cores["p/1"].tick(FAST.attempt_timeout))
    assert only(out, Unavailable) and not c.cores["p/1"].held(0.6)


def _proposes(c: Cluster) -> list[str]:
    """Whom the queued one-round Proposes go to (the queue is left as it was)."""
    return sorted(e.to for _, e in c.queue if isinstance(e.msg, Propose))


def test_thrifty_one_round_claim_asks_a_bare_majority_and_is_granted_by_it() -> None:
    c = cluster()
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    assert _proposes(c) == ["a", "b"]  # 2 of 3: never measured, by id
    c.pump(0.01)
    assert len(only(c.drain("p/1"), Granted)) == 1
    assert c.cores["p/1"].next_deadline() != pytest.approx(FAST.thrifty_wait)  # the rest is never asked
    c.tick_all(FAST.thrifty_wait)
    assert not _proposes(c)


def test_a_steward_of_the_thrifty_majority_that_refuses_brings_the_rest_in_at_once() -> None:
    c = cluster()
    c.call("q/1", "claim", "task/1", 60.0, now=0.0)  # q holds it (at a and b)
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.1))
    assert _proposes(c) == ["a", "b"]
    asked: list[str] = []

    def keep(src: str, e: Send) -> bool:
        if src == "p/1" and isinstance(e.msg, Propose):
            asked.append(e.to)
        return not (src == "b/1" and e.to == "p/1")  # b's answer is lost

    # a refuses (q's lease is live there): c is asked at once, in the same delivery run, not after the wait.
    c.pump(0.1, keep=keep)
    assert sorted(asked) == ["a", "b", "c"]
    assert not only(c.drain("p/1"), Granted)  # c alone accepted (q asked a and b only): no majority


def test_a_thrifty_claim_that_hears_no_majority_asks_the_rest_and_then_prefers_who_answered() -> None:
    c = cluster()
    c.down.add("b/1")
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    assert _proposes(c) == ["a", "b"]
    c.pump(0.001)
    assert not only(c.drain("p/1"), Granted)  # a alone is no majority
    c.take("p/1", c.cores["p/1"].tick(FAST.thrifty_wait))
    assert _proposes(c) == ["c"]
    c.pump(FAST.thrifty_wait + 0.002)
    assert only(c.drain("p/1"), Granted)
    # b did not answer: the next claim asks a and c first.
    c.take("p/1", c.cores["p/1"].claim("task/2", 60.0, 0.2))
    assert _proposes(c) == ["a", "c"]


def test_a_thrifty_claim_asks_the_rest_after_a_few_usual_answer_times_of_its_majority() -> None:
    c = cluster()
    for t, item, asked in ((0.0, "task/1", ["a", "b"]), (0.01, "task/2", ["a", "c"])):
        c.take("p/1", c.cores["p/1"].claim(item, 60.0, t))
        assert _proposes(c) == asked  # c, never measured, gets tried second
        c.pump(t + 0.002)  # every steward answers in 2 ms
        assert only(c.drain("p/1"), Granted)
    t = 0.02
    c.take("p/1", c.cores["p/1"].claim("task/3", 60.0, t))
    assert _proposes(c) == ["a", "b"]
    c.queue = [(s, e) for s, e in c.queue if e.to != "b"]  # b straggles (its Propose is lost)
    c.pump(t + 0.001)
    assert not only(c.drain("p/1"), Granted)
    hedge = HEDGE * 0.002  # hedged after a few usual answer times, not after thrifty_wait
    assert hedge < FAST.thrifty_wait
    assert c.cores["p/1"].next_deadline() == pytest.approx(t + hedge)
    c.take("p/1", c.cores["p/1"].tick(t + hedge))
    assert _proposes(c) == ["c"]
    c.pump(t + hedge + 0.002)
    assert only(c.drain("p/1"), Granted)


def _releases(c: Cluster) -> list[str]:
    """Whom the queued Releases go to (the queue is left as it was)."""
    return sorted(e.to for _, e in c.queue if isinstance(e.msg, Release))


def test_a_thrifty_grant_is_released_at_the_stewards_it_asked_only() -> None:
    c = cluster()
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    assert _proposes(c) == ["a", "b"]
    c.pump(0.01)
    assert only(c.drain("p/1"), Granted)
    c.take("p/1", c.cores["p/1"].release("task/1", 0.02))
    assert _releases(c) == ["a", "b"]  # c never saw the ballot: nothing to clear there
    c.pump(0.02)
    c.take("q/1", c.cores["q/1"].claim("task/1", 60.0, 0.03))  # freed at once where it was held
    c.pump(0.03)
    assert only(c.drain("q/1"), Granted)


def test_a_release_goes_to_every_steward_once_the_rest_was_asked_or_renewed_or_the_epoch_moved() -> None:
    c = cluster()
    # The spare was asked (b straggles): c may hold the ballot.
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    c.queue = [(s, e) for s, e in c.queue if e.to != "b"]
    c.pump(0.001)
    c.take("p/1", c.cores["p/1"].tick(FAST.thrifty_wait))
    c.pump(FAST.thrifty_wait + 0.001)
    assert only(c.drain("p/1"), Granted)
    c.take("p/1", c.cores["p/1"].release("task/1", 0.1))
    assert _releases(c) == ["a", "b", "c"]
    c.pump(0.1)
    # An attempt under way whose spare is not asked yet: released where it was asked.
    c.take("p/1", c.cores["p/1"].claim("task/2", 60.0, 0.2))
    asked = _proposes(c)
    c.queue.clear()  # not answered yet
    c.take("p/1", c.cores["p/1"].release("task/2", 0.2))
    assert _releases(c) == asked and len(asked) == 2
    c.queue.clear()
    # A renewal asks every steward: then every steward is told.
    c.take("p/1", c.cores["p/1"].claim("task/3", 60.0, 0.3))
    c.pump(0.3)
    assert only(c.drain("p/1"), Granted)
    c.run_until(0.3 + FAST.lease, start=0.35)  # renewals
    assert only(c.drain("p/1"), Renewed)
    c.take("p/1", c.cores["p/1"].release("task/3", 0.3 + FAST.lease))
    assert sorted(set(_releases(c))) == ["a", "b", "c"]  # (each of the holding's ballots)
    c.queue.clear()
    # A claim granted in an older epoch: a hand-off may have given its lease to any steward of the new one.
    c.take("p/1", c.cores["p/1"].claim("task/4", 60.0, 1.0))
    c.pump(1.0)
    assert only(c.drain("p/1"), Granted)
    c.cores["p/1"].receive("a/1", ConfigAnnounce(2, STEWARDS), 1.1)
    c.take("p/1", c.cores["p/1"].release("task/4", 1.1))
    assert _releases(c) == ["a", "b", "c"]


def test_without_thrifty_a_one_round_claim_asks_every_steward() -> None:
    c = cluster(lc=replace(FAST, thrifty=False))
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    assert _proposes(c) == ["a", "b", "c"]


def test_claim_without_config_is_unavailable() -> None:
    core = ClaimsCore("x/1", "x", FAST, random.Random(0))
    assert only(core.claim("r", 1.0, 0.0), Unavailable)


def _duplicate_promise_run(mutants: Mutants) -> list[Effect]:
    """p's Prepare reaches only b; b's Promise is delivered twice."""
    c = cluster(mutants=mutants, lc=TWO_ROUNDS)
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    sends = [e for _, e in c.queue if e.to == "b"]
    c.queue.clear()
    promise = [e for e in c.cores["b/1"].receive("p/1", sends[0].msg, 0.0) if isinstance(e, Send)]
    assert isinstance(promise[0], Send) and isinstance(promise[0].msg, Promise)
    out = c.cores["p/1"].receive("b/1", promise[0].msg, 0.0)
    out += c.cores["p/1"].receive("b/1", promise[0].msg, 0.0)
    return out


def test_duplicate_promises_do_not_make_a_quorum() -> None:
    assert _duplicate_promise_run(Mutants()) == []
    assert _duplicate_promise_run(Mutants(quorum_by_messages=True))  # the mutant proposes on one voter


def test_late_accept_quorum_after_deadline_is_not_a_grant() -> None:
    c = cluster()
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    c.pump(0.0, keep=lambda s, e: not isinstance(e.msg, Accepted))
    # The Accepted replies were held up; they arrive after the deadline (a paused loop): no grant.
    p = c.cores["p/1"]
    late = 0.1 + FAST.lease
    assert not only(p.receive("a/1", Accepted("task/1", 1, 1, "p/1"), late), Granted)  # by node id: a
    assert not only(p.receive("b/1", Accepted("task/1", 1, 1, "p/1"), late), Granted)


def test_deadline_at_quorum_mutant_grants_a_late_quorum() -> None:
    c = cluster(mutants=Mutants(deadline_at_quorum=True))
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    c.pump(0.0, keep=lambda s, e: not isinstance(e.msg, Accepted))
    p = c.cores["p/1"]
    p.receive("a/1", Accepted("task/1", 1, 1, "p/1"), 0.3)
    (g,) = only(p.receive("b/1", Accepted("task/1", 1, 1, "p/1"), 0.3), Granted)
    assert isinstance(g, Granted) and g.until == pytest.approx(0.3 + FAST.lease)


def test_competing_claimants_both_make_progress_eventually() -> None:
    c = cluster(extra=("p/1", "q/1", "r/1"))
    for who in ("p/1", "q/1", "r/1"):
        c.take(who, c.cores[who].claim("task/1", 1.0, 0.0))
    c.pump(0.0)
    c.run_until(8.0)
    granted = {i for i in ("p/1", "q/1", "r/1") if only(c.drain(i), Granted)}
    assert len(granted) >= 1


# ---- stewards / reconfiguration with hand-off -----------------------------------------------------------

MORE = ("p/1", "q/1", "d/1", "e/1", "f/1")


def test_a_change_may_replace_every_steward_at_once_and_hands_the_leases_over() -> None:
    c = cluster(extra=MORE)
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    out = c.call("a/1", "propose_config", ("d", "e", "f"), now=0.1)
    (cc,) = only(out, ConfigChanged)
    assert isinstance(cc, ConfigChanged) and cc.config == StewardConfig(2, ("d", "e", "f"))
    for n in ("d/1", "e/1", "f/1"):
        assert c.cores[n].config == cc.config and c.cores[n].serves(0.1)  # installed: serving at once
    # The old stewards now refuse epoch-1 ballots; the new ones know p holds task/1.
    (d,) = only(c.settle("q/1", "claim", "task/1", 5.0, now=0.2, window=0.6), Denied)
    assert isinstance(d, Denied) and d.holder == "p/1"
    # The holder renews through the new stewards, keeping its token.
    renewed: list[Effect] = []
    t = 0.2
    while t < 3.0:
        t += 0.05
        c.tick_all(t)
        renewed += c.drain("p/1")
    assert isinstance(g, Granted)
    assert only(renewed, Renewed) and not only(renewed, Lost)
    assert all(r.token == g.token for r in only(renewed, Renewed))  # type: ignore[attr-defined]


def test_changes_follow_each_other_without_a_gap() -> None:
    c = cluster(extra=MORE)
    c.call("a/1", "propose_config", ("a", "b", "c", "d", "e"), now=0.0)
    c.call("d/1", "propose_config", ("d", "e", "f"), now=0.05)
    cfg = c.cores["f/1"].config
    assert cfg is not None and (cfg.epoch, cfg.stewards) == (3, ("d", "e", "f"))
    (g,) = only(c.settle("q/1", "claim", "task/9", 5.0, now=0.1), Granted)
    assert isinstance(g, Granted) and ballot_of(g.token)[0] == 3


def test_a_steward_that_learned_its_epoch_only_by_gossip_waits_one_acceptor_lease() -> None:
    c = cluster(extra=MORE)
    c.down.add("d/1")  # d misses the install
    c.call("a/1", "propose_config", ("a", "b", "d"), now=0.0)
    c.down.clear()
    c.call("d/1", "adopt", StewardConfig(2, ("a", "b", "d")), now=0.1)
    d = c.cores["d/1"]
    assert not d.serves(0.1) and d.serve_wait(0.1) == pytest.approx(FAST.acceptor_lease)
    (reply,) = d.receive("q/1", Prepare("r", 2, 1, "q/1"), 0.2)
    assert isinstance(reply, Send) and isinstance(reply.msg, PrepareReject)
    assert reply.msg.wait == pytest.approx(FAST.acceptor_lease - 0.1)
    assert d.serves(0.1 + FAST.acceptor_lease)


def test_stewards_taking_over_make_a_claim_wait_not_fail_as_outvoted() -> None:
    c = cluster(extra=MORE)
    c.down |= {"d/1", "e/1", "f/1"}
    c.call("a/1", "propose_config", ("d", "e", "f"), now=0.0)
    c.down.clear()
    for n in ("d/1", "e/1", "f/1"):
        c.call(n, "adopt", StewardConfig(2, ("d", "e", "f")), now=0.0)
    c.call("q/1", "adopt", StewardConfig(2, ("d", "e", "f")), now=0.0)
    (u,) = only(c.call("q/1", "claim", "task/1", 60.0, now=0.1), Unavailable)
    # Not "outvoted": the stewards said when they serve, so the caller knows how long to wait.
    assert isinstance(u, Unavailable) and "taking over" in u.reason
    assert u.wait == pytest.approx(FAST.acceptor_lease - 0.1)
    assert only(c.settle("q/1", "claim", "task/1", 60.0, now=0.1 + u.wait), Granted)


def test_no_lease_handoff_mutant_lets_new_stewards_grant_a_held_resource() -> None:
    c = cluster(extra=MORE, mutants=Mutants(no_lease_handoff=True))
    only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    c.call("a/1", "propose_config", ("d", "e", "f"), now=0.1)
    assert only(c.settle("q/1", "claim", "task/1", 5.0, now=0.2, window=0.6), Granted)
    assert c.cores["p/1"].held(0.3)  # two believed holders: the simulator must catch this mutant


def test_steward_that_accepted_next_config_refuses_current_epoch_ballots() -> None:
    c = cluster(lc=TWO_ROUNDS)
    a = c.cores["a/1"]
    a.receive("p/1", CfgPrepare(2, 1, "p/1"), 0.0)
    out = a.receive("p/1", CfgAccept(2, 1, "p/1", ("a", "b", "c", "p", "q")), 0.0)
    assert [type(e) for e in out] == [Persist, Send]  # durable before the reply
    (reply,) = a.receive("q/1", c.cores["q/1"].claim("r", 5.0, 0.0)[0].msg, 0.0)  # type: ignore[union-attr]
    assert isinstance(reply, Send) and type(reply.msg).__name__ == "PrepareReject"
    (reply,) = a.receive("q/1", Propose("r", 1, 9, "q/1", "q", 5.0, 5.0, fast=True), 0.0)
    assert isinstance(reply, Send) and type(reply.msg).__name__ == "AcceptReject"  # a one-round claim too


def test_accepting_the_next_config_reports_live_leases_and_blackout() -> None:
    c = cluster()
    only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    a = c.cores["a/1"]
    a.receive("q/1", CfgPrepare(2, 1, "q/1"), 0.5)
    out = a.receive("q/1", CfgAccept(2, 1, "q/1", ("a", "b", "q")), 0.5)
    (reply,) = [e for e in out if isinstance(e, Send)]
    assert isinstance(reply.msg, CfgAccepted)
    (snap,) = reply.msg.snapshot
    assert (snap.resource, snap.owner, snap.owner_name, snap.epoch, snap.round) == (
        "task/1",
        "p/1",
        "name-p",
        1,
        1,
    )
    assert snap.lease_left == pytest.approx(FAST.acceptor_lease - 0.5)
    assert reply.msg.blackout == 0.0


def test_tokens_increase_across_epochs_and_stale_epoch_learns_the_config() -> None:
    c = cluster()
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    c.call("p/1", "release", "task/1", now=0.1)
    c.call("a/1", "propose_config", (*STEWARDS, "q", "p"), now=0.2)
    c.cores["p/1"]._config = StewardConfig(1, STEWARDS)  # p missed the news
    out = c.call("p/1", "claim", "task/1", 60.0, now=2.0)
    c.run_until(3.0, start=2.05)
    grants = only(out + c.drain("p/1"), Granted)
    assert grants and isinstance(grants[0], Granted) and isinstance(g, Granted)
    assert ballot_of(grants[0].token)[0] == 2 and grants[0].token > g.token
    assert c.cores["p/1"].config is not None and c.cores["p/1"].config.epoch == 2


def test_reconfiguration_rejects_bad_sets() -> None:
    c = cluster()
    with pytest.raises(ConfigError):
        c.call("p/1", "propose_config", (), now=0.0)
    with pytest.raises(ConfigError):
        c.call("p/1", "propose_config", ("a", "a"), now=0.0)
    with pytest.raises(ConfigError):
        c.call("p/1", "propose_config", STEWARDS, now=0.0)
    with pytest.raises(ConfigError):
        c.call("p/1", "propose_config", ("a/1",), now=0.0)  # identities are not steward ids


def test_announce_with_bad_config_is_ignored() -> None:
    c = cluster()
    assert c.cores["p/1"].receive("q/1", ConfigAnnounce(5, ()), 0.0) == []
    assert c.cores["p/1"].config == StewardConfig(1, STEWARDS)


# ---- restarts under the same node id --------------------------------------------------------------------


def test_a_restarted_steward_keeps_its_votes_and_sits_out_one_acceptor_lease() -> None:
    c = cluster()
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    state = c.cores["b/1"].durable
    assert state.config == StewardConfig(1, STEWARDS) and state.floor > (1, 1)
    # b restarts (same node id "b", new incarnation): durable state back, lease state gone.
    del c.cores["b/1"]
    c.cores["b/2"] = ClaimsCore("b/2", "name-b", FAST, random.Random(9), state=state, now=1.0)
    c.events["b/2"] = []
    b = c.cores["b/2"]
    assert b.config == StewardConfig(1, STEWARDS)
    assert not b.serves(1.0) and b.serves(1.0 + FAST.acceptor_lease)
    (r,) = b.receive("q/1", Prepare("task/1", 1, 5, "q/1"), 1.0 + FAST.acceptor_lease)
    assert isinstance(r, Send) and isinstance(r.msg, PrepareReject)  # at or below its floor: refused
    assert (r.msg.promised_epoch, r.msg.promised_round) == state.floor
    assert isinstance(g, Granted)


def test_a_clean_stop_with_nothing_live_restarts_without_quarantine_once() -> None:
    c = cluster()
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    assert c.cores["b/1"].clean_stop(0.5) is None  # it still excludes others for p's lease
    c.call("p/1", "release", "task/1", now=0.6)
    st = c.cores["b/1"].clean_stop(0.7)
    assert st is not None and st.clean and not c.cores["b/1"].serves(0.7)  # it votes on nothing more
    b2 = ClaimsCore("b/2", "name-b", FAST, random.Random(9), state=st, now=1.0)
    assert b2.serves(1.0) and not b2.durable.clean  # the mark is good for one start only
    b3 = ClaimsCore("b/3", "name-b", FAST, random.Random(9), state=b2.durable, now=2.0)
    assert not b3.serves(2.0)
    assert isinstance(g, Granted)


def test_steward_state_round_trips_and_garbage_is_refused() -> None:
    st = StewardState(config=StewardConfig(3, ("a", "b", "c")), floor=(3, 70000))
    assert StewardState.from_json(st.to_json()) == st
    assert StewardState.from_json(StewardState().to_json()) == StewardState()
    for bad in ("", "{", "[]", '{"v": 2}', st.to_json().replace('"floor": [3, 70000]', '"floor": [3]'),
                st.to_json().replace("70000", '"x"'),
                st.to_json().replace('"epoch": 3', '"epoch": 0')):  # fmt: skip
        with pytest.raises(ValueError):
            StewardState.from_json(bad)


def test_proxy_answers_for_a_dead_steward_with_a_blackout() -> None:
    cur = StewardConfig(4, ("a", "b", "c"))
    st = StewardState(config=StewardConfig(3, ("a", "b")))  # died before learning epoch 4
    st, promise = proxy_step(st, "c", CfgPrepare(5, 1, "p/1"), cur, blackout=4.0)
    assert isinstance(promise, CfgPromise) and st.config == cur and st.vote.promised_round == 1
    st, acc = proxy_step(st, "c", CfgAccept(5, 1, "p/1", ("a", "d", "e")), cur, blackout=4.0)
    assert isinstance(acc, CfgAccepted) and acc.blackout == 4.0 and acc.snapshot == ()
    assert st.vote.accepted_stewards == ("a", "d", "e")
    # The same durable rules: a lower round is refused afterwards.
    _, rej = proxy_step(st, "c", CfgPrepare(5, 1, "q/1"), cur, blackout=4.0)
    assert type(rej).__name__ == "CfgReject"


def test_merge_keeps_highest_ballot_and_longest_time_stretched() -> None:
    from mesh.core.stewards import CONTESTED

    a = SnapLease("r", "p/1", "P", 1, 5, 2.0, 50.0)
    b = SnapLease("r", "q/1", "Q", 1, 7, 1.0, 10.0)
    x = SnapLease("s", "p/1", "P", 1, 2, 3.0, 5.0)
    merged, black = merge_snapshots([[a, x], [b]], [0.0, 1.5], [0.5, 3.0], 1.1, cap=2.1)
    assert [m.resource for m in merged] == ["r", "s"]
    assert (merged[0].owner, merged[0].round) == (CONTESTED, 7)  # two owners: an exclusion nobody owns
    assert merged[0].lease_left == pytest.approx(2.1) and merged[0].claim_left == 50.0  # capped at D_A
    assert black == pytest.approx(1.65)


def test_messages_are_plain_values() -> None:
    from mesh.core import claims
    from mesh.core.values import fields

    for m in claims.ClaimMsg.__args__:  # type: ignore[attr-defined]
        assert fields(m) == tuple(m.__annotations__)
        for name, kind in m.__annotations__.items():
            plain = ("str", "int", "float", "bool", "tuple[str, ...]", "tuple[SnapLease, ...]")
            assert kind in plain, (m, name)
    msg: ClaimMsg = Promise("r", 1, 1, "p")
    assert msg == Promise("r", 1, 1, "p")
    assert CfgInstall(2, ("a",)) == CfgInstall(2, ("a",))


def test_a_steward_whose_state_was_not_written_asks_for_it_again_before_answering() -> None:
    """A full disk: the runtime dropped the replies of a failed Persist and tells the core what is on disk.
    The next Prepare that needs a higher floor than that asks for a Persist again, before its reply."""
    from mesh.core.claims import Persist, Send
    from mesh.core.lease import Prepare as LeasePrepare

    c = cluster()
    a = c.cores["a/1"]
    on_disk = a.durable
    first = a.receive("p/1", LeasePrepare("task/x", 1, 1, "p/1"), 0.0)
    assert [type(e) for e in first] == [Persist, Send] and a.durable != on_disk
    a.persist_failed(on_disk)  # the write failed: its reply was not sent
    again = a.receive("p/1", LeasePrepare("task/x", 1, 2, "p/1"), 0.1)
    assert [type(e) for e in again] == [Persist, Send]  # durable before the reply, again


def test_merge_of_two_owners_keeps_an_exclusion_nobody_owns() -> None:
    from mesh.core.stewards import CONTESTED, SnapLease, merge_snapshots

    held = SnapLease("task/1", "h/1", "H", 3, 1, 2.0, 9.0)
    stale = SnapLease("task/1", "l/1", "L", 3, 4, 3.0, 5.0)  # higher ballot: a failed one-round claim
    (m,), _ = merge_snapshots([[held], [stale]], [0.0, 0.0], [0.0, 0.0], 1.0, 10.0)
    assert (m.owner, m.epoch, m.round, m.lease_left, m.claim_left) == (CONTESTED, 3, 4, 3.0, 9.0)
    (one,), _ = merge_snapshots([[held], [held]], [0.0, 0.0], [0.0, 0.0], 1.0, 10.0)
    assert one.owner == "h/1"
    (m,), _ = merge_snapshots([[held], [stale]], [0.0, 0.0], [0.0, 0.0], 1.0, 10.0, contest=False)
    assert m.owner == "l/1"  # the mutant's merge


def test_a_claim_takes_one_round_when_the_item_is_free() -> None:
    c = cluster(lc=replace(FAST, single_round=True))
    out = c.cores["p/1"].claim("task/1", 60.0, 0.0)
    assert {type(e.msg).__name__ for e in out if isinstance(e, Send)} == {"Propose"}
    (g,) = only(c.call("p/1", "claim", "task/2", 60.0, now=0.0), Granted)
    assert ballot_of(g.token) == (1, 1)
    # Held: q's one round is refused, its two rounds tell it who holds the item.
    (d,) = only(c.call("q/1", "claim", "task/2", 60.0, now=0.1), Denied)
    assert d.holder == "p/1"


def test_a_stale_accept_at_a_minority_does_not_block_the_holders_renewal() -> None:
    """A failed one-round claim can leave its accept at one steward beside the holder's lease elsewhere: the
    holder's renewal hears that foreign report first, yet a majority reports only its own lease, so it renews
    (the old rule blocked it until the stale accept ran out, and the holder lost the item meanwhile)."""
    c = cluster()
    c.down = {"c/1"}
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    c.down = set()
    stale = c.cores["c/1"].receive("q/1", Propose("task/1", 1, 9, "q/1", "q", 4.0, 4.0, fast=True), 0.1)
    assert [type(e.msg).__name__ for e in stale if isinstance(e, Send)] == ["Accepted"]  # q never hears it
    renew_at = FAST.renew_every + 0.01
    c.take("p/1", c.cores["p/1"].tick(renew_at))
    c.queue.sort(key=lambda q: q[1].to != "c")  # c's answer (the foreign report) reaches p first
    c.pump(renew_at)
    (r,) = only(c.drain("p/1"), Renewed)
    assert r.token == g.token


def test_a_foreign_report_at_a_minority_waits_for_the_other_answers() -> None:
    """A fresh claim that hears one foreign report and one open promise decides nothing until a third answer
    says which side has the majority (Denied at once would name a holder that nobody is)."""
    c = cluster(lc=TWO_ROUNDS)
    c.cores["c/1"].receive("q/1", Propose("task/1", 1, 9, "q/1", "q", 4.0, 4.0, fast=True), 0.0)
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.1))
    c.queue.sort(key=lambda q: q[1].to != "c")
    held_back = [q for q in c.queue if q[1].to == "b"]
    c.pump(0.1, keep=lambda s, e: e.to != "b")  # b's Prepare held back: c reports q, a promises
    assert c.drain("p/1") == []
    c.queue = held_back
    c.pump(0.1)
    assert only(c.drain("p/1"), Granted)


def test_a_refusal_after_a_minority_report_decides_at_once() -> None:
    """One foreign report, one open promise, then a refusal: no open majority can form any more, so the claim
    is decided then (not left to time out). q's stale accept at a minority holds nothing: not a refusal
    naming q (the old answer) but a retry at once above the refusal's number, granted."""
    c = cluster(lc=TWO_ROUNDS)
    c.cores["c/1"].receive("q/1", Propose("task/1", 1, 9, "q/1", "q", 4.0, 4.0, fast=True), 0.0)
    c.cores["b/1"].receive("q/1", Prepare("task/1", 1, 50, "q/1"), 0.0)  # b will refuse p's low number
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.1))
    c.queue.sort(key=lambda q: {"c": 0, "a": 1}.get(q[1].to, 2))  # c reports q, a promises, b refuses
    c.pump(0.1)
    assert c.drain("p/1") == []
    c.run_until(0.2, start=0.1)  # the retry is due at once (the next tick)
    out = c.drain("p/1")
    assert not only(out, Denied)
    (g,) = only(out, Granted)
    assert isinstance(g, Granted) and ballot_of(g.token) > (1, 50)


def test_stale_one_round_accepts_at_every_steward_are_no_refusal() -> None:
    """Three one-round claims that each left an accept at one steward (a three-way race: nobody has a
    majority): a fourth claimant hears three foreign reports, no owner reported by a majority, so nobody
    holds the item: it retries rather than refuse naming one of them (the old answer; the simulator's
    ``three_way_race`` showed such refusals)."""
    c = cluster(extra=("p/1", "q/1", "r/1", "s/1"), lc=TWO_ROUNDS)
    for st, owner in (("a/1", "p/1"), ("b/1", "q/1"), ("c/1", "r/1")):
        c.cores[st].receive(owner, Propose("task/1", 1, 1, owner, owner[0], 0.5, 0.5, fast=True), 0.0)
    out = c.call("s/1", "claim", "task/1", 60.0, now=0.1)
    assert not only(out, Denied)
    for st, owner in (("a/1", "p/1"), ("b/1", "q/1"), ("c/1", "r/1")):  # their Releases arrive
        c.cores[st].receive(owner, Release("task/1", 1, 1, owner), 0.15)
    c.run_until(1.0, start=0.15)
    out = c.drain("s/1")
    assert not only(out, Denied) and only(out, Granted)


def _split_reports(c: Cluster) -> None:
    """p holds task/1 at a and b (c was cut off); a failed one-round claim of q left an accept with a higher
    number at c. r then claims in two rounds and hears c (q) and b (p) first, a last."""
    c.down = {"c/1"}
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    assert ballot_of(g.token) < (1, 9)
    c.down = set()
    stale = c.cores["c/1"].receive("q/1", Propose("task/1", 1, 9, "q/1", "q", 4.0, 4.0, fast=True), 0.1)
    assert [type(e.msg).__name__ for e in stale if isinstance(e, Send)] == ["Accepted"]  # q never hears it
    c.take("r/1", c.cores["r/1"].claim("task/1", 60.0, 0.2))
    c.queue.sort(key=lambda q: {"c": 0, "b": 1}.get(q[1].to, 2))


def test_a_refusal_names_the_owner_a_majority_reports_not_a_minoritys_higher_ballot() -> None:
    """Two foreign reports that disagree (the holder's and a minority's stale accept with a higher number)
    do not say who holds: the claim waits for the third answer and names the owner a majority reports (the
    old rule named the higher number's owner, q, which holds nothing: the flake of
    tests/integration/test_claims.py::test_claims_issued_while_the_mesh_forms_wait_for_it)."""
    c = cluster(extra=("p/1", "q/1", "r/1"), lc=TWO_ROUNDS)
    _split_reports(c)
    held_back = [q for q in c.queue if q[1].to == "a"]
    c.pump(0.2, keep=lambda s, e: e.to != "a")  # c reports q, b reports p; a's Prepare held back
    assert c.drain("r/1") == []
    c.queue = held_back
    c.pump(0.2)
    (d,) = only(c.drain("r/1"), Denied)
    assert isinstance(d, Denied) and d.holder == "p/1"


def test_disagreeing_reports_with_a_steward_silent_deny_at_the_attempt_timeout() -> None:
    """The third steward never answers: the claim is still refused (not Unavailable) once its attempt times
    out, naming the higher number's owner as before (no majority says otherwise)."""
    c = cluster(extra=("p/1", "q/1", "r/1"), lc=TWO_ROUNDS)
    _split_reports(c)
    c.down = {"a/1"}
    c.pump(0.2)
    assert c.drain("r/1") == []
    c.take("r/1", c.cores["r/1"].tick(0.2 + TWO_ROUNDS.attempt_timeout))
    (d,) = only(c.drain("r/1"), Denied)
    assert isinstance(d, Denied) and d.holder == "q/1"
