"""Path claims in the claims core: names, the acceptor's overlap rule, shared claims, probes, hand-offs."""

from __future__ import annotations

import pytest

from mesh.core.claims import Denied, Effect, Granted, LeaseConfig, Probed, Released, Send
from mesh.core.errors import PatternError
from mesh.core.lease import Accepted, AcceptorState, Prepare, Promise, Propose, Release
from mesh.core.mutants import Mutants
from mesh.core.resources import conflict, literal, path_claim, path_resource, slot_key
from mesh.core.stewards import SnapLease, merge_snapshots
from mesh.testing.sim import SafetyViolation, SimParams, Simulation
from tests.core.test_claims import FAST, Cluster, cluster, only

# ---- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "shared", "resource"),
    [
        (["src/app/**/*.py"], False, "path/src/app/**/*.py"),
        (["./src/./app/**/**"], False, "path/src/app/**"),
        (["src/**", "docs/*.md"], False, "path/{docs/*.md,src/**}"),  # several: one claim on the union
        (["b/**", "a/**", "b/**"], True, "path-shared/{a/**,b/**}"),
        (["src/{x,y}.py", "a,b.txt"], False, "path/{a[,]b.txt,src/x.py,src/y.py}"),  # a literal comma
    ],
)
def test_path_resources_are_normal_forms(patterns: list[str], shared: bool, resource: str) -> None:
    assert path_resource(patterns, shared) == resource


@pytest.mark.parametrize("patterns", [[], ["/etc/x"], ["src/["], ["!src/**"], ["a/../../x"], ["x" * 201]])
def test_bad_path_claims_are_refused_naming_the_problem(patterns: list[str]) -> None:
    with pytest.raises(PatternError):
        path_resource(patterns)


def test_a_literal_pattern_matches_exactly_its_file() -> None:
    from mesh.core import globs

    for path in ("src/a*b?.py", "x/[y]/{z},w", "plain/file.txt", "!bang"):
        pat = literal(path)
        assert globs.matches(pat, path)
    assert not globs.matches(literal("src/a*b.py"), "src/axxb.py")


@pytest.mark.parametrize(
    ("a", "b", "conflicts"),
    [
        ("path/src/**", "path/src/app/x.py", True),
        ("path/src/a*.py", "path/src/*b.py", True),  # src/ab.py
        ("path/src/**/*.py", "path/src/app/**", True),
        ("path/lib/*/x", "path/lib/y/z/x", False),  # a prefix rule gets this wrong
        ("path/src/**", "path-shared/src/app/**", True),  # one exclusive is enough
        ("path-shared/src/**", "path-shared/src/app/**", False),  # shared with shared: never
        ("path/{a/**,b/**}", "path/b/c", True),  # a union conflicts through any alternative
        ("path/docs/**", "task/docs", False),  # items never conflict with paths
    ],
)
def test_conflict_rule(a: str, b: str, conflicts: bool) -> None:
    assert conflict(a, b) is conflicts and conflict(b, a) is conflicts


def test_shared_claims_get_a_slot_per_owner() -> None:
    assert slot_key("path-shared/src/**", "n1/i") != slot_key("path-shared/src/**", "n2/i")
    assert slot_key("path/src/**", "n1/i") == slot_key("path/src/**", "n2/i") == "path/src/**"
    assert path_claim("task/x") is None


# ---- the acceptor's rule -----------------------------------------------------------------------------


def accept(acc: AcceptorState, resource: str, owner: str, rnd: int, now: float = 0.0) -> None:
    p = acc.on_prepare(Prepare(resource, 1, rnd, owner), now, 1)
    assert isinstance(p, Promise) and not p.owner, p
    acc.on_propose(Propose(resource, 1, rnd, owner, owner, 4.0, 60.0), now, 1)


def test_an_acceptor_reports_an_overlapping_lease_of_another_owner_without_promising() -> None:
    acc = AcceptorState(40.0, Mutants())
    accept(acc, "path/src/**", "a/1", 1)
    p = acc.on_prepare(Prepare("path/src/app/*.py", 1, 5, "b/1"), 1.0, 1)
    assert isinstance(p, Promise) and p.owner == "a/1" and p.blocking == "path/src/**"
    assert acc.promised("path/src/app/*.py", "b/1") == (0, 0)  # nothing promised
    # The owner itself may claim inside its own claim; after expiry anyone may.
    assert not acc.on_prepare(Prepare("path/src/app/*.py", 1, 6, "a/1"), 1.0, 1).owner  # type: ignore[union-attr]
    later = acc.on_prepare(Prepare("path/src/app/*.py", 1, 7, "b/1"), 5.0, 1)
    assert isinstance(later, Promise) and not later.owner


def test_an_acceptor_rejects_a_propose_that_now_conflicts() -> None:
    """b's Prepare was promised before a's conflicting lease arrived here: b's Propose must be refused."""
    acc = AcceptorState(40.0, Mutants())
    assert not acc.on_prepare(Prepare("path/src/a*.py", 1, 1, "b/1"), 0.0, 1).owner  # type: ignore[union-attr]
    accept(acc, "path/src/*b.py", "a/1", 1)
    r = acc.on_propose(Propose("path/src/a*.py", 1, 1, "b/1", "b", 4.0, 60.0), 0.1, 1)
    assert type(r).__name__ == "AcceptReject"


def test_shared_claims_coexist_and_exclude_exclusive_ones() -> None:
    acc = AcceptorState(40.0, Mutants())
    accept(acc, "path-shared/src/**", "a/1", 1)
    accept(acc, "path-shared/src/**", "b/1", 1)  # a slot of its own: same ballot number, no contention
    p = acc.on_prepare(Prepare("path/src/x.py", 1, 1, "c/1"), 0.5, 1)
    assert isinstance(p, Promise) and p.owner in ("a/1", "b/1") and p.blocking == "path-shared/src/**"
    snap, complete = acc.snapshot(0.5, 10)
    assert complete and {(s.resource, s.owner) for s in snap} == {
        ("path-shared/src/**", "a/1"),
        ("path-shared/src/**", "b/1"),
    }


def test_the_mutant_checks_only_exact_names() -> None:
    acc = AcceptorState(40.0, Mutants(path_exact_only=True))
    accept(acc, "path/src/**", "a/1", 1)
    p = acc.on_prepare(Prepare("path/src/app/*.py", 1, 5, "b/1"), 1.0, 1)
    assert isinstance(p, Promise) and not p.owner  # the blind spot: it would be granted


def test_a_hand_off_keeps_every_owners_shared_lease() -> None:
    a = SnapLease("path-shared/src/**", "a/1", "a", 1, 1, 3.0, 50.0)
    b = SnapLease("path-shared/src/**", "b/1", "b", 1, 1, 2.0, 40.0)
    merged, _ = merge_snapshots([[a], [b]], [0.0, 0.0], [0.0, 0.0], 1.0, 10.0)
    assert {s.owner for s in merged} == {"a/1", "b/1"}
    acc = AcceptorState(40.0, Mutants())
    acc.install(merged, 0.0)
    p = acc.on_prepare(Prepare("path/src/x.py", 1, 1, "c/1"), 0.5, 1)
    assert isinstance(p, Promise) and p.blocking == "path-shared/src/**"


# ---- whole cores -------------------------------------------------------------------------------------


def test_overlapping_exclusive_claims_one_granted_the_other_denied_naming_the_holder() -> None:
    c = cluster()
    assert only(c.settle("p/1", "claim", "path/src/**", 60.0, now=0.0), Granted)
    denied = only(c.settle("q/1", "claim", "path/src/app/*.py", 60.0, now=2.0), Denied)
    assert denied and denied[0].holder == "p/1" and denied[0].conflict == "path/src/**"  # type: ignore[attr-defined]
    assert denied[0].token > 0  # type: ignore[attr-defined]
    # Disjoint in truth, though a prefix rule would say otherwise.
    assert only(c.settle("q/1", "claim", "path/lib/*/x", 60.0, now=3.0), Granted)
    c.settle("p/1", "release", "path/src/**", now=4.0)
    assert only(c.settle("q/1", "claim", "path/src/app/*.py", 60.0, now=4.5), Granted)


def test_shared_path_claims_are_held_together_and_block_an_exclusive_one() -> None:
    c = cluster()
    assert only(c.settle("p/1", "claim", "path-shared/docs/**", 60.0, now=0.0), Granted)
    assert only(c.settle("q/1", "claim", "path-shared/docs/*.md", 60.0, now=1.0), Granted)
    denied = only(c.settle("a/1", "claim", "path/docs/a.md", 60.0, now=2.0), Denied)
    assert denied and denied[0].holder in ("p/1", "q/1")  # type: ignore[attr-defined]
    assert only(c.settle("q/1", "release", "path-shared/docs/*.md", now=3.0), Released)


def test_a_probe_asks_the_stewards_who_holds_a_conflicting_claim() -> None:
    c = cluster()
    free = only(c.settle("q/1", "probe", "path-shared/src/app/x.py", now=0.0), Probed)
    assert free == [Probed("path-shared/src/app/x.py", 0.0)]  # the round sent at 0.0 answers
    assert only(c.settle("p/1", "claim", "path/src/app/**", 60.0, now=1.0), Granted)
    (p,) = only(c.settle("q/1", "probe", "path-shared/src/app/x.py", now=2.0), Probed)
    assert p.denied is not None and p.denied.holder == "p/1" and p.denied.conflict == "path/src/app/**"  # type: ignore[attr-defined]
    (own,) = only(c.settle("p/1", "probe", "path-shared/src/app/x.py", now=3.0), Probed)
    assert own.denied is None  # its own claim is no conflict
    assert not only(c.settle("q/1", "claim", "path/src/app/y.py", 60.0, now=3.5), Granted)  # still held


# ---- the simulator -----------------------------------------------------------------------------------


def _paths_only(seed: int, mutants: Mutants) -> Simulation:
    """Claims on overlapping path patterns only, on a quiet network: the overlap rule alone is tested."""
    p = SimParams(
        nodes=5, stewards=3, resources=1, duration=20.0, drop=0.0, dup=0.0, long_delay=0.0, crash_rate=0.0,
        pause_rate=0.0, partition_rate=0.0, reconfig_rate=0.0, double_reconfig=0.0, claim_rate=10.0,
        persistence=0.5, path_claims=1.0,
    )  # fmt: skip
    return Simulation(seed, mutants, params=p)


def test_the_simulators_pre_edit_checks_catch_an_acceptor_that_checks_only_exact_names() -> None:
    """A probe that answers "nobody" while another session held an exclusive claim on a pattern matching the
    file all the time the question was out is a violation; the blind acceptor makes such answers."""
    caught = []
    for seed in range(10):
        try:
            _paths_only(seed, Mutants(path_exact_only=True)).run()
        except SafetyViolation as v:
            caught.append(v.detail)
    assert any("found nobody" in d for d in caught), caught


def test_the_simulator_catches_an_acceptor_that_checks_only_exact_names() -> None:
    with pytest.raises(SafetyViolation, match="overlapping holders"):
        for seed in range(10):
            _paths_only(seed, Mutants(path_exact_only=True)).run()
    for seed in range(10):
        st = _paths_only(seed, Mutants()).run()
        assert st.grants > 10 and st.denied > 0


def test_a_probe_gets_past_stewards_whose_ballot_floor_is_above_a_new_files_first_ballot() -> None:
    """Stewards forget idle slots and keep their numbers in a floor (and a restarted one reserves a chunk
    above it): a never-probed file's first ballot is below it. A probe promises nothing (``Prepare.probe``),
    so no steward refuses it for its number: the pre-edit check hears the stewards, not only the published
    views (a steward of an older version refuses it, and the probe asks again above the refusals)."""
    c = cluster()
    assert only(c.settle("p/1", "claim", "path/src/app/**", 60.0, now=0.0), Granted)
    for s in ("a/1", "b/1", "c/1"):
        c.cores[s]._leases._steward.acceptor._floor = (1, 500)  # type: ignore[attr-defined]
    (p,) = only(c.settle("q/1", "probe", "path-shared/src/app/new.py", now=1.0), Probed)
    assert p.denied is not None and p.denied.holder == "p/1", p  # type: ignore[attr-defined]
    free = only(c.settle("q/1", "probe", "path-shared/docs/new.md", now=2.0), Probed)
    assert free == [Probed("path-shared/docs/new.md", 2.0)]  # nobody: said by the stewards, not "unavailable"


# ---- a probe's verdict: the owner a majority reports, or a majority that reports nobody ------------------

PROBE = "path-shared/src/app/x.py"


def _stale_accept(c: Cluster, steward: str, resource: str, owner: str, rnd: int) -> None:
    """``owner``'s one-round claim of ``resource`` was taken by ``steward`` alone (its Release lost): a
    stale accept there, live for D_A, that never became a lease anybody believes."""
    accept(c.cores[steward]._leases._steward.acceptor, resource, owner, rnd)  # type: ignore[attr-defined]


def _answers(c: Cluster, prober: str, resource: str, now: float) -> dict[str, Send]:
    """Send ``prober``'s probe to every steward; each steward's (undelivered) answer, by steward."""
    sends = [e for e in c.cores[prober].probe(resource, now) if isinstance(e, Send)]
    assert sorted(s.to for s in sends) == ["a", "b", "c"]
    out = {}
    for s in sends:
        # (a Persist of the ballot floor may come before the answer)
        (out[s.to],) = [e for e in c.cores[f"{s.to}/1"].receive(prober, s.msg, now) if isinstance(e, Send)]
    return out


def _deliver(c: Cluster, prober: str, answers: dict[str, Send], steward: str, now: float) -> list[Effect]:
    assert answers[steward].to == prober
    return c.cores[prober].receive(f"{steward}/1", answers[steward].msg, now)


def test_a_probe_is_not_denied_by_a_minoritys_stale_accept() -> None:
    """A failed one-round claim's accept at one steward names a session that holds nothing: the old rule
    named any foreign report of the first majority to answer (here c's, first, and a's)."""
    c = cluster()
    _stale_accept(c, "c/1", "path/src/**", "p/1", 7)
    ans = _answers(c, "q/1", PROBE, now=0.1)
    for s in ("c", "a"):  # the stale report first: no owner has a majority, nor has "nobody": wait
        assert not only(_deliver(c, "q/1", ans, s, 0.1), Probed)
    assert _deliver(c, "q/1", ans, "b", 0.1) == [Probed(PROBE, 0.1)]  # a and b report nobody: a majority


def test_a_probe_names_the_owner_a_majority_reports_not_a_higher_stale_accept() -> None:
    c = cluster()
    for s in ("a/1", "b/1"):
        accept(c.cores[s]._leases._steward.acceptor, "path/src/app/**", "p/1", 3)  # type: ignore[attr-defined]
    _stale_accept(c, "c/1", "path/src/**", "a/1", 9)  # higher: the old rule named this one
    ans = _answers(c, "q/1", PROBE, now=0.1)
    for s in ("c", "a"):  # one report each: wait for b
        assert not only(_deliver(c, "q/1", ans, s, 0.1), Probed)
    (p,) = only(_deliver(c, "q/1", ans, "b", 0.1), Probed)
    assert p.denied is not None and p.denied.holder == "p/1", p  # type: ignore[attr-defined]
    assert p.denied.conflict == "path/src/app/**"  # type: ignore[attr-defined]


def test_a_probe_whose_stewards_disagree_asks_again_and_hears_the_releases() -> None:
    """Every steward answered, no owner and no "nobody" has a majority (two racers' stale accepts): the
    probe asks again a moment later, within its attempt; their Releases landed meanwhile: nobody."""
    c = cluster()
    _stale_accept(c, "a/1", "path/src/**", "p/1", 5)
    _stale_accept(c, "b/1", "path/src/app/**", "c/1", 6)
    ans = _answers(c, "q/1", PROBE, now=0.1)
    for s in ("a", "b", "c"):
        assert not only(_deliver(c, "q/1", ans, s, 0.1), Probed)
    for s, r, o, n in (("a/1", "path/src/**", "p/1", 5), ("b/1", "path/src/app/**", "c/1", 6)):
        c.cores[s].receive(o, Release(r, 1, n, o), 0.12)
    assert not c.cores["q/1"].tick(0.11)  # not yet
    again = c.cores["q/1"].tick(0.1 + FAST.thrifty_wait)
    assert sorted(e.to for e in again if isinstance(e, Send)) == ["a", "b", "c"]
    c.take("q/1", again)
    c.pump(0.16)
    assert c.drain("q/1") == [Probed(PROBE, 0.1 + FAST.thrifty_wait)]  # (asked again then)


def test_a_probe_whose_stewards_keep_disagreeing_says_it_cannot_tell() -> None:
    """The stale accepts outlive the attempt: "cannot tell" (the pre-edit check then reads the published
    claims), never a refusal in the name of a session that holds nothing."""
    c = cluster()
    _stale_accept(c, "a/1", "path/src/**", "p/1", 5)
    _stale_accept(c, "b/1", "path/src/app/**", "c/1", 6)
    out = c.call("q/1", "probe", PROBE, now=0.1)
    c.run_until(0.1 + FAST.attempt_timeout + 0.05, start=0.1)
    (p,) = only(out + c.drain("q/1"), Probed)
    assert p.denied is None and "disagree" in p.unavailable, p  # type: ignore[attr-defined]


def _lease_at(c: Cluster, steward: str, resource: str, owner: str, rnd: int, now: float) -> None:
    """``steward`` accepts ``owner``'s ballot (1, ``rnd``) of ``resource`` at ``now``, excluding for D_A."""
    acc = c.cores[steward]._leases._steward.acceptor  # type: ignore[attr-defined]
    assert isinstance(acc.on_prepare(Prepare(resource, 1, rnd, owner), now, 1), Promise)
    lease = LeaseConfig().acceptor_lease
    assert isinstance(acc.on_propose(Propose(resource, 1, rnd, owner, owner, lease, 600.0), now, 1), Accepted)


@pytest.mark.parametrize("late_answers_count", [False, True])
def test_a_probe_counts_only_answers_within_the_containment_slack_of_its_round(
    late_answers_count: bool,
) -> None:
    """Production timings (D_P 10 s, D_A 11.22 s, attempt timeout 2 s). p is granted src/** by a and b at 0
    (believed until 10), and renews through b and c at 9.9 (believed until 19.9): p holds throughout. q's
    check at 9.8: b names p, c (before it accepts p's renewal) has nothing, and a answers only at 11.3, after
    p's first lease ran out there: nothing. Counted, that late answer makes a majority of "nobody" while p
    held all along (mutant ``probe_late_answers``). It came 1.5 s after the round's send, past the 1 s
    slack (``LeaseConfig.probe_window``): not counted; the round asked again hears p from b and c."""
    c = cluster(lc=LeaseConfig(), mutants=Mutants(probe_late_answers=late_answers_count))
    q = c.cores["q/1"]
    for s in ("a/1", "b/1"):
        _lease_at(c, s, "path/src/**", "p/1", 1, 0.0)
    (ask,) = {e.msg for e in q.probe(PROBE, 9.8) if isinstance(e, Send)}

    def answer(steward: str, now: float) -> Promise:
        (a,) = [e for e in c.cores[steward].receive("q/1", ask, now) if isinstance(e, Send)]
        assert isinstance(a.msg, Promise)
        return a.msg

    for s, owner in (("b/1", "p/1"), ("c/1", "")):
        got = answer(s, 9.8)
        assert got.owner == owner
        assert not only(q.receive(s, got, 9.81), Probed)  # p, nobody: wait for a
    for s in ("b/1", "c/1"):
        _lease_at(c, s, "path/src/**", "p/1", 2, 9.9)  # p's renewal
    late = answer("a/1", 11.3)
    assert not late.owner  # p's first lease ran out at a at 11.22
    out = q.receive("a/1", late, 11.31)
    if late_answers_count:
        assert out == [Probed(PROBE, 9.8)]  # "nobody": wrong, p held from before 9.8 to after 11.31
        return
    assert not only(out, Probed)
    again = q.tick(11.31)  # the round's window passed at 10.8: ask again
    assert sorted(e.to for e in again if isinstance(e, Send)) == ["a", "b", "c"]
    c.take("q/1", again)
    c.pump(11.32)
    (p,) = only(c.drain("q/1"), Probed)
    assert p.denied is not None and p.denied.holder == "p/1", p  # type: ignore[attr-defined]


def test_a_probe_asked_while_one_is_under_way_is_answered_by_a_round_sent_after_it() -> None:
    """q's first check, at 1.0, is answered "nobody" by every steward, but the answers are slow; p is granted
    src/app/** at 1.2; q checks again at 1.3. Joined to the round of 1.0, the second check would hear
    "nobody" about a holder granted before it asked; a fresh round is sent. The round of 1.0 keeps running
    and says "nobody" for what was asked by its send (``Probed.sent`` 1.0: the first check, asked before the
    grant); the round of 1.3 names p for the second."""
    c = cluster()
    q = c.cores["q/1"]
    old = _answers(c, "q/1", PROBE, now=1.0)  # "nobody" from each, not delivered yet
    assert all(isinstance(a.msg, Promise) and not a.msg.owner for a in old.values())
    assert only(c.call("p/1", "claim", "path/src/app/**", 60.0, now=1.2), Granted)
    assert not q.probe(PROBE, 1.0)  # the same instant: the round just sent answers it
    again = q.probe(PROBE, 1.3)
    assert sorted(e.to for e in again if isinstance(e, Send)) == ["a", "b", "c"]
    first = [e for s in ("a", "b", "c") for e in _deliver(c, "q/1", old, s, 1.35)]
    assert only(first, Probed) == [Probed(PROBE, 1.0)]  # for the questions asked by 1.0 only
    c.take("q/1", again)
    c.pump(1.36)
    (p,) = only(c.drain("q/1"), Probed)
    assert p.denied is not None and p.denied.holder == "p/1", p  # type: ignore[attr-defined]
    assert p.sent == 1.3  # type: ignore[attr-defined]


def test_a_claim_over_several_holders_each_at_a_different_majority_is_refused_at_once() -> None:
    """Three sessions hold src/a/**, src/b/** and src/c/** (no overlap), each through two of the three
    stewards; a claim of src/** conflicts with all three, and each steward reports one of the two it has.
    They all report the one of the least name (src/a/**), so its holder is named by a majority and the claim
    is refused at once, rather than retried as a race (which reports that disagree would say)."""
    c = cluster()
    leases = {"a/1": ("h1/1", "h3/1"), "b/1": ("h2/1", "h1/1"), "c/1": ("h3/1", "h2/1")}  # in accept order
    pattern = {"h1/1": "path/src/a/**", "h2/1": "path/src/b/**", "h3/1": "path/src/c/**"}
    for steward, owners in leases.items():
        for n, o in enumerate(owners):
            accept(c.cores[steward]._leases._steward.acceptor, pattern[o], o, 3 + n)  # type: ignore[attr-defined]
    (d,) = only(c.settle("q/1", "claim", "path/src/**", 60.0, now=0.1), Denied)
    assert d.holder == "h1/1" and d.conflict == "path/src/a/**", d  # type: ignore[attr-defined]
    assert c.cores["q/1"].held(0.2) == {}
