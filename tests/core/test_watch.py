"""Who watches whom, which liveness news wins, and the membership core driven through them by hand."""

from __future__ import annotations

import pytest

from mesh.core.membership import (
    Liveness,
    LivenessChanged,
    Membership,
    PeerInfo,
    Spread,
    Timing,
    Verdict,
    WatchingChanged,
)
from mesh.core.watch import News, refutation, verdict_applies, watched_by, watchers_of

T = Timing(heartbeat_interval=1.0, suspect_after=3.0, dead_after=10.0, forget_after=60.0, tick_interval=0.25)
IDS = ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize(
    ("target", "live", "k", "watchers"),
    [
        ("c", IDS, 3, ("d", "e", "f")),
        ("e", IDS, 3, ("f", "a", "b")),  # the ring wraps
        ("f", IDS, 1, ("a",)),
        ("a", ["a", "b"], 3, ("b",)),  # fewer than k+1 live: everyone else
        ("a", ["a"], 3, ()),
        ("x", IDS, 2, ("a", "b")),  # a target not in the list is placed on the ring
    ],
)  # fmt: skip
def test_watchers_are_the_ring_successors(target: str, live: list[str], k: int, watchers: tuple[str]) -> None:
    assert watchers_of(target, live, k) == watchers


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_watched_by_is_the_inverse_of_watchers_of(k: int) -> None:
    for me in IDS:
        assert watched_by(me, IDS, k) == {t for t in IDS if me in watchers_of(t, IDS, k)}
    # ...and every node has min(k, n-1) watchers: nobody goes unwatched.
    assert all(len(watchers_of(t, IDS, k)) == min(k, len(IDS) - 1) for t in IDS)


@pytest.mark.parametrize(
    ("known", "news", "seq", "applies"),
    [
        (0, News.SUSPECT, 0, True),  # news about this life at the sequence we know wins over "alive"
        (0, News.DEAD, 0, True),
        (0, News.ALIVE, 0, False),  # only a higher sequence (the member's own) clears a suspicion
        (0, News.ALIVE, 1, True),
        (2, News.SUSPECT, 1, False),  # stale: the member refuted that already
        (2, News.DEAD, 1, False),
        (2, News.DEAD, 3, True),
    ],
)  # fmt: skip
def test_verdict_ordering(known: int, news: News, seq: int, applies: bool) -> None:
    assert verdict_applies(known, news, seq) is applies


@pytest.mark.parametrize(
    ("own", "news", "seq", "answer"),
    [(0, News.SUSPECT, 0, 1), (0, News.DEAD, 4, 5), (3, News.SUSPECT, 1, 3), (3, News.ALIVE, 9, None)],
)  # fmt: skip
def test_refutation(own: int, news: News, seq: int, answer: int | None) -> None:
    assert refutation(own, news, seq) == answer


# ---------------------------------------------------------------------- the core with k watchers

ME = PeerInfo("c", "ic", "cee", address="127.0.0.1:3")


def info(nid: str) -> PeerInfo:
    return PeerInfo(nid, "i" + nid, "n" + nid, address=f"127.0.0.1:{ord(nid)}")


def six(now: float = 0.0) -> Membership:
    """c in a mesh of a..f with k=2: c watches a and b (its predecessors), d and e watch c."""
    m = Membership(me=ME, timing=T, now=now)
    for nid in "abdef":
        m.hello(info(nid), None, now)
    return m


def ticking(m: Membership, start: float, end: float, step: float = 0.25) -> list[object]:
    events: list[object] = []
    t = start
    while t <= end + 1e-9:
        events += m.tick(t)
        t += step
    return events


def test_a_node_watches_its_predecessors_and_asks_them_for_beats() -> None:
    m = six()
    assert m.watching == {"a", "b", "f"}  # k=3 by default: the three before c on the ring a..f
    asked: set[str] = set()
    for o in m.outgoing():  # the ring grew one hello at a time: the requests follow it
        if isinstance(o, WatchingChanged):
            asked = (asked | set(o.start)) - set(o.stop)
    assert asked == {"a", "b", "f"}
    assert m.outgoing() == []  # taken once


def test_only_watched_members_are_timed() -> None:
    m = six()
    m.outgoing()
    ev = ticking(m, 0.25, 12.0)
    # a, b, f (watched) go suspect then dead; d and e (not ours to time, links open) stay alive.
    moved = {(e.node_id, e.current) for e in ev if isinstance(e, LivenessChanged)}
    assert moved >= {("a", Liveness.DEAD), ("b", Liveness.DEAD), ("f", Liveness.DEAD)}
    assert m.members["d"].state is Liveness.ALIVE and m.members["e"].state is Liveness.ALIVE
    # Each watcher verdict is spread to everyone, stamped with the member's life and sequence.
    spread = [o.verdict for o in m.outgoing() if isinstance(o, Spread) and not o.to]
    assert Verdict("a", "ia", News.SUSPECT, 0) in spread and Verdict("a", "ia", News.DEAD, 0) in spread
    # With a, b and f dead, the ring of the living is c, d, e: c now watches d and e.
    assert m.watching == {"d", "e"}


def test_a_verdict_moves_a_member_we_do_not_watch_and_tells_it() -> None:
    m = six()
    m.outgoing()
    ev = m.verdict(Verdict("d", "id", News.SUSPECT, 0), 1.0)
    assert ev == [LivenessChanged("d", Liveness.ALIVE, Liveness.SUSPECT, "suspect: its watchers")]
    assert Spread(Verdict("d", "id", News.SUSPECT, 0), to="d") in m.outgoing()  # so that d can refute
    assert m.verdict(Verdict("d", "id", News.DEAD, 0), 2.0)[0].current is Liveness.DEAD
    # d's refutation (a higher sequence) brings it back; a stale verdict after it changes nothing.
    assert m.verdict(Verdict("d", "id", News.ALIVE, 1), 3.0)[0].current is Liveness.ALIVE
    assert m.verdict(Verdict("d", "id", News.DEAD, 0), 3.1) == []
    assert m.members["d"].seq == 1


def test_verdicts_about_another_life_or_a_stranger_are_ignored() -> None:
    m = six()
    assert m.verdict(Verdict("d", "OLD", News.DEAD, 9), 1.0) == []
    assert m.verdict(Verdict("zz", "iz", News.DEAD, 9), 1.0) == []
    assert m.members["d"].state is Liveness.ALIVE


def test_a_suspected_member_refutes_with_a_higher_sequence() -> None:
    m = six()
    m.outgoing()
    assert m.verdict(Verdict("c", "ic", News.SUSPECT, 0), 1.0) == []
    assert m.outgoing() == [Spread(Verdict("c", "ic", News.ALIVE, 1))]
    assert m.seq == 1
    # A stale suspicion is said again (someone still holds it), but not more than once per suspect_after.
    m.verdict(Verdict("c", "ic", News.DEAD, 0), 2.0)
    assert m.outgoing() == []
    ticking(m, 2.25, 4.5)
    m.outgoing()  # (our own watched peers went suspect meanwhile: not what this test is about)
    m.verdict(Verdict("c", "ic", News.DEAD, 0), 4.5)
    assert m.outgoing() == [Spread(Verdict("c", "ic", News.ALIVE, 1))]
    # News about an older life of ours is not ours to answer.
    ticking(m, 4.75, 9.0)
    m.outgoing()
    m.verdict(Verdict("c", "i-old", News.DEAD, 7), 9.0)
    assert m.outgoing() == []


def test_after_its_own_stall_a_node_says_it_is_back() -> None:
    m = six()
    ticking(m, 0.25, 1.0)
    m.outgoing()
    m.tick(31.0)
    assert Spread(Verdict("c", "ic", News.ALIVE, 1)) in m.outgoing()


def test_a_member_heard_again_is_reminded_of_the_verdict_others_may_hold() -> None:
    m = six()
    ticking(m, 0.25, 10.0)  # a is dead by our own timers
    m.outgoing()
    assert m.heard("a", 11.0)[0].current is Liveness.ALIVE
    assert Spread(Verdict("a", "ia", News.DEAD, 0), to="a") in m.outgoing()


def test_a_member_without_a_link_is_timed_from_when_the_link_went() -> None:
    m = six()
    for t in range(1, 101):  # a, b, f (watched) beat; d is idle toward us: normal, its link is open
        for nid in "abf":
            m.heard(nid, float(t))
        m.tick(float(t))
    assert m.members["d"].state is Liveness.ALIVE
    m.unlinked("d", 100.0)
    assert m.members["d"].state is Liveness.ALIVE
    ev: list[object] = []
    for t in range(101, 111):
        for nid in "abf":
            m.heard(nid, float(t))
        ev += m.tick(float(t))
    assert [(e.node_id, e.current) for e in ev if isinstance(e, LivenessChanged) and e.node_id == "d"] == [
        ("d", Liveness.SUSPECT),
        ("d", Liveness.DEAD),
    ]
    # Not ours to spread: we do not watch d, our view is only our own.
    spread = [o for o in m.outgoing() if isinstance(o, Spread) and o.verdict.node_id == "d" and not o.to]
    assert spread == []


def test_newly_watched_member_is_timed_from_when_we_started_watching() -> None:
    m = six()
    ticking(m, 0.25, 30.0, step=5.0)
    m.outgoing()
    # f leaves: c now also watches e... no: c watches its 3 predecessors among a, b, d, e -> a, b, e.
    m.left("f", 30.0)
    out = [o for o in m.outgoing() if isinstance(o, WatchingChanged)]
    assert out == [WatchingChanged(start=("e",), stop=("f",))]
    assert m.members["e"].last_heard == 30.0
    assert m.tick(31.0) == []  # e's old silence toward us is not held against it
