"""ClaimsCore driven by hand from now=0.0: a tiny router delivers sends at the time the test says."""

from __future__ import annotations

import math
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
    Promise,
    Released,
    Renewed,
    Send,
    StewardConfig,
    Unavailable,
)
from mesh.core.lease import ballot_of, token_of
from mesh.core.mutants import Mutants
from mesh.core.stewards import CfgAccept, ConfigAnnounce, one_change, pick_next_change, target_size
from mesh.errors import ConfigError

FAST = LeaseConfig.fast()
STEWARDS = ("a/1", "b/1", "c/1")


class Cluster:
    """Cores by identity; ``pump`` delivers queued sends (optionally filtered) until quiet."""

    def __init__(self, idents: tuple[str, ...], mutants: Mutants = Mutants()) -> None:  # noqa: B008
        self.cores = {
            i: ClaimsCore(i, "name-" + i.split("/")[0], FAST, random.Random(n), mutants)
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

    def pump(self, now: float, keep: Callable[[str, Send], bool] = lambda s, e: True) -> None:
        while self.queue:
            src, e = self.queue.pop(0)
            if e.to in self.down or src in self.down or not keep(src, e) or e.to not in self.cores:
                continue
            self.take(e.to, self.cores[e.to].receive(src, e.msg, now))

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


def cluster(extra: tuple[str, ...] = ("p/1", "q/1"), mutants: Mutants = Mutants()) -> Cluster:  # noqa: B008
    c = Cluster(STEWARDS + extra, mutants)
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
    assert c.acceptor_lease == math.ceil(11 * 1.01 / 0.99) == 12
    assert c.attempt_timeout == 2.0
    assert c.validate() is c
    f = LeaseConfig.fast()
    assert (f.lease, f.acceptor_lease, f.attempt_timeout) == (2.0, 4.0, 0.5)


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
    assert c.cores["p/1"].next_deadline() == pytest.approx(FAST.attempt_timeout)
    out = c.take("p/1", c.cores["p/1"].tick(FAST.attempt_timeout))
    assert only(out, Unavailable) and not c.cores["p/1"].held(0.6)


def test_claim_without_config_is_unavailable() -> None:
    core = ClaimsCore("x/1", "x", FAST, random.Random(0))
    assert only(core.claim("r", 1.0, 0.0), Unavailable)


def _duplicate_promise_run(mutants: Mutants) -> list[Effect]:
    """p's Prepare reaches only b; b's Promise is delivered twice."""
    c = cluster(mutants=mutants)
    c.take("p/1", c.cores["p/1"].claim("task/1", 60.0, 0.0))
    sends = [e for _, e in c.queue if e.to == "b/1"]
    c.queue.clear()
    promise = c.cores["b/1"].receive("p/1", sends[0].msg, 0.0)
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
    assert not only(p.receive("a/1", Accepted("task/1", 1, 1, "p/1"), late), Granted)
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


# ---- stewards / reconfiguration -----------------------------------------------------------------------


def test_reconfiguration_must_be_one_change() -> None:
    c = cluster()
    with pytest.raises(ConfigError):
        c.call("p/1", "propose_config", ("a/1", "b/1", "p/1", "q/1", "c/1"), now=0.0)
    with pytest.raises(ConfigError):
        c.call("p/1", "propose_config", ("a/1", "b/1", "p/1"), now=0.0)


def test_add_steward_then_gap_before_the_next_change() -> None:
    c = cluster()
    out = c.call("p/1", "propose_config", (*STEWARDS, "p/1"), now=0.0)
    (cc,) = only(out, ConfigChanged)
    assert isinstance(cc, ConfigChanged) and cc.config == StewardConfig(2, (*STEWARDS, "p/1"))
    for i in STEWARDS:
        assert c.cores[i].config == cc.config  # announced to old and new stewards
    # Epoch 2 stewards refuse epoch 3 until D_A has passed since they adopted epoch 2.
    c.call("q/1", "adopt", cc.config, now=0.1)
    assert c.call("q/1", "propose_config", ("a/1", "b/1", "p/1"), now=0.1) == []
    c.run_until(FAST.acceptor_lease - 0.2, start=0.15)
    assert c.cores["q/1"].config == cc.config
    c.run_until(FAST.acceptor_lease + 1.5, start=FAST.acceptor_lease - 0.15)
    cfg = c.cores["q/1"].config
    assert cfg is not None and cfg.epoch == 3 and cfg.stewards == ("a/1", "b/1", "p/1")


def test_no_config_gap_mutant_chooses_back_to_back() -> None:
    c = cluster(mutants=Mutants(no_config_gap=True))
    c.call("p/1", "propose_config", (*STEWARDS, "p/1"), now=0.0)
    c.call("p/1", "propose_config", ("a/1", "b/1", "p/1"), now=0.1)
    cfg = c.cores["p/1"].config
    assert cfg is not None and cfg.epoch == 3


def test_steward_that_accepted_next_config_refuses_current_epoch_ballots() -> None:
    c = cluster()
    a = c.cores["a/1"]
    a.receive("p/1", CfgAccept(2, 1, "p/1", (*STEWARDS, "p/1")), 0.0)
    (reply,) = a.receive("q/1", c.cores["q/1"].claim("r", 5.0, 0.0)[0].msg, 0.0)  # type: ignore[union-attr]
    assert isinstance(reply, Send) and type(reply.msg).__name__ == "PrepareReject"


def test_tokens_increase_across_epochs_and_stale_epoch_learns_the_config() -> None:
    c = cluster()
    (g,) = only(c.call("p/1", "claim", "task/1", 60.0, now=0.0), Granted)
    c.call("p/1", "release", "task/1", now=0.1)
    c.call("a/1", "propose_config", (*STEWARDS, "q/1"), now=0.2)
    # q/1 is told about epoch 2 in the announcement; p/1 (not a steward) has not heard yet.
    assert c.cores["p/1"].config is not None and c.cores["p/1"].config.epoch == 1
    c.run_until(2.0, start=0.25)
    out = c.call("p/1", "claim", "task/1", 60.0, now=2.0)
    c.run_until(3.0, start=2.05)
    grants = only(out + c.drain("p/1"), Granted)
    assert grants and isinstance(grants[0], Granted) and isinstance(g, Granted)
    assert ballot_of(grants[0].token)[0] == 2 and grants[0].token > g.token
    assert c.cores["p/1"].config is not None and c.cores["p/1"].config.epoch == 2


def test_announce_with_bad_config_is_ignored() -> None:
    c = cluster()
    assert c.cores["p/1"].receive("q/1", ConfigAnnounce(5, ()), 0.0) == []
    assert c.cores["p/1"].config == StewardConfig(1, STEWARDS)


@pytest.mark.parametrize(("nodes", "want"), [(1, 1), (2, 2), (3, 3), (6, 3), (7, 5), (12, 5)])
def test_target_size(nodes: int, want: int) -> None:
    assert target_size(nodes) == want


def test_pick_next_change_evicts_dead_then_grows_with_oldest_on_new_host() -> None:
    live = [("a", 1.0, "h1"), ("b", 2.0, "h1"), ("c", 3.0, "h2"), ("d", 0.5, "h1"), ("e", 4.0, "h3")]
    assert pick_next_change(("a", "b", "x"), live, dead=("x",)) == ("a", "b")
    # grow: prefer a host not yet represented, then the oldest
    assert pick_next_change(("a", "b"), live) == ("a", "b", "c")
    assert pick_next_change(("a", "b", "c"), live) is None
    many = [*live, ("f", 5.0, "h4"), ("g", 6.0, "h5")]
    assert pick_next_change(("a", "b", "c"), many) == ("a", "b", "c", "e")
    assert pick_next_change(("a", "b", "c", "e", "f", "g"), many) == ("a", "b", "c", "e", "f")
    for cur in (("a", "b"), ("a", "b", "x")):
        nxt = pick_next_change(cur, live, dead=("x",))
        assert nxt is not None and one_change(cur, nxt)


def test_messages_are_plain_values() -> None:
    from dataclasses import fields

    from mesh.core import claims

    for m in claims.ClaimMsg.__args__:  # type: ignore[attr-defined]
        for f in fields(m):
            assert f.type in ("str", "int", "float", "tuple[str, ...]"), (m, f)
    msg: ClaimMsg = Promise("r", 1, 1, "p")
    assert msg == Promise("r", 1, 1, "p")
