"""The membership core, driven by hand: no event loop, no sleeps; time is an argument."""

from __future__ import annotations

import pytest

from mesh.core.membership import (
    Liveness,
    LivenessChanged,
    MemberForgotten,
    MemberJoined,
    Membership,
    PeerInfo,
    Spread,
    StatusChanged,
    Timing,
    Verdict,
    WatchingChanged,
    liveness_for,
)
from mesh.core.status import StatusRecord
from mesh.core.values import replace
from mesh.core.watch import News

T = Timing(heartbeat_interval=1.0, suspect_after=3.0, dead_after=10.0, forget_after=60.0, tick_interval=0.25)
ME = PeerInfo(node_id="me", incarnation="i0", name="me", address="127.0.0.1:1")
B = PeerInfo(node_id="b", incarnation="i1", name="bee", address="127.0.0.1:2")


def fresh(now: float = 0.0) -> Membership:
    return Membership(me=ME, timing=T, now=now)


def ticking(m: Membership, start: float, end: float, step: float = 0.25) -> list[object]:
    """Tick at the runtime's cadence (a steady loop, no stall)."""
    events: list[object] = []
    t = start
    while t <= end + 1e-9:
        events += m.tick(t)
        t += step
    return events


@pytest.mark.parametrize(
    ("silence", "state"),
    [(0.0, Liveness.ALIVE), (2.99, Liveness.ALIVE), (3.0, Liveness.SUSPECT), (9.99, Liveness.SUSPECT),
     (10.0, Liveness.DEAD), (1e6, Liveness.DEAD)],
)  # fmt: skip
def test_liveness_table(silence: float, state: Liveness) -> None:
    assert liveness_for(silence, T) is state


def test_hello_joins_and_self_is_always_alive() -> None:
    m = fresh()
    assert m.hello(B, None, 0.1) == [MemberJoined("b")]
    assert m.members["b"].state is Liveness.ALIVE
    ticking(m, 0.25, 100.0)
    assert m.members["me"].state is Liveness.ALIVE


def test_silence_goes_suspect_then_dead_and_a_frame_revives() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    ev = ticking(m, 0.25, 3.0)
    assert ev == [LivenessChanged("b", Liveness.ALIVE, Liveness.SUSPECT, "silent 3.0s")]
    assert m.heard("b", 3.1) == [LivenessChanged("b", Liveness.SUSPECT, Liveness.ALIVE, "heard again")]
    ev = ticking(m, 3.25, 13.5)
    assert [(e.previous, e.current) for e in ev if isinstance(e, LivenessChanged)] == [
        (Liveness.ALIVE, Liveness.SUSPECT),
        (Liveness.SUSPECT, Liveness.DEAD),
    ]
    assert m.members["b"].dead_reason == "silent"
    # A paused process that comes back is alive again (honest), with its dead reason cleared.
    assert m.heard("b", 13.6)[0].current is Liveness.ALIVE
    assert m.members["b"].dead_reason == ""


def test_refused_reconnect_is_dead_at_once() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    assert m.refused("b", 0.5) == [LivenessChanged("b", Liveness.ALIVE, Liveness.DEAD, "connection refused")]
    assert m.refused("b", 0.6) == []


def test_leave_is_final_for_the_incarnation() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    assert m.left("b", 1.0)[0].current is Liveness.LEFT
    assert m.heard("b", 1.1) == []
    assert ticking(m, 1.25, 30.0) == []
    assert m.members["b"].state is Liveness.LEFT
    # ...but the same node restarted (new incarnation) joins again.
    ev = m.hello(PeerInfo("b", "i2", "bee"), None, 31.0)
    assert MemberJoined("b", restarted=True) in ev
    assert m.members["b"].state is Liveness.ALIVE


def test_dead_and_left_are_forgotten_after_forget_after() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    m.left("b", 1.0)
    assert ticking(m, 1.25, 60.75) == []
    assert ticking(m, 61.0, 61.25) == [MemberForgotten("b", "bee")]
    assert "b" not in m.members


def test_own_stall_is_not_blamed_on_peers() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    ticking(m, 0.25, 2.0)
    # Our loop stalls for 30 s (SIGSTOP, laptop sleep): the first tick after it must not call b dead.
    assert m.tick(32.0) == []
    assert m.members["b"].state is Liveness.ALIVE
    assert m.credited > 29
    # Real silence afterwards still counts.
    ev = ticking(m, 32.25, 45.0)
    assert [e.current for e in ev if isinstance(e, LivenessChanged)] == [Liveness.SUSPECT, Liveness.DEAD]


def test_status_versions_and_foreign_records() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    s1 = StatusRecord(node_id="b", incarnation="i1", name="bee", action="build", version=1)
    s0 = StatusRecord(node_id="b", incarnation="i1", name="bee", action="old", version=0)
    assert m.status_update(s1, 0.1) == [StatusChanged("b")]
    assert m.status_update(s0, 0.2) == []  # older: ignored
    assert m.members["b"].status == s1
    stale_incarnation = StatusRecord(node_id="b", incarnation="OLD", name="bee", version=99)
    assert m.status_update(stale_incarnation, 0.3) == []
    unknown = StatusRecord(node_id="zz", incarnation="i", name="zed", version=1)
    assert m.status_update(unknown, 0.3) == []


def test_name_holder_ignores_dead_members() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    assert m.holder_of_name("bee") is not None
    assert m.holder_of_name("me") is not None and m.holder_of_name("me").is_self  # type: ignore[union-attr]
    m.refused("b", 1.0)
    assert m.holder_of_name("bee") is None


def test_next_deadline_tracks_the_earliest_transition() -> None:
    m = fresh()
    assert m.next_deadline() is None
    m.hello(B, None, 5.0)
    assert m.next_deadline() == pytest.approx(8.0)
    ticking(m, 5.25, 8.0)
    assert m.next_deadline() == pytest.approx(15.0)


def test_status_record_validation() -> None:
    from mesh.errors import InvalidInput

    r = StatusRecord(node_id="b", incarnation="i1", name="bee")
    assert r.update(wall=1.0, progress=40, action="build").version == 1
    with pytest.raises(InvalidInput, match="0 to 100"):
        r.update(wall=1.0, progress=140)
    with pytest.raises(InvalidInput, match="limit is 128"):
        r.update(wall=1.0, target="x" * 129)


def test_the_liveness_table_is_the_whole_state_machine() -> None:
    from mesh.core.membership import TRANSITIONS, Sign

    # LEFT is final for an incarnation; only being heard brings a dead member back.
    assert not [k for k in TRANSITIONS if k[0] is Liveness.LEFT]
    assert {s for (st, s) in TRANSITIONS if st is Liveness.DEAD} == {Sign.HEARD, Sign.LEAVE}
    # Every sign a live member can get leads somewhere or is listed as no change on purpose.
    for st in (Liveness.ALIVE, Liveness.SUSPECT):
        assert TRANSITIONS[(st, Sign.LEAVE)] is Liveness.LEFT
        assert TRANSITIONS[(st, Sign.REFUSED)] is Liveness.DEAD
        assert TRANSITIONS[(st, Sign.SILENT)] is Liveness.DEAD


# ---------------------------------------------------------------------- hearsay (members learned from gossip)

C = PeerInfo(node_id="c", incarnation="i2", name="sea", address="127.0.0.1:3")
Z = PeerInfo(node_id="z", incarnation="i3", name="zed", address="127.0.0.1:4")
T1 = replace(T, watchers=1)  # ring b < me < z: me watches b alone, z is someone else's to watch


def test_a_gossiped_member_is_listed_alive_at_once_and_not_timed_unless_we_watch_it() -> None:
    m = Membership(me=ME, timing=T1, now=0.0)
    m.hello(B, None, 0.0)
    assert m.learned(Z, 0.1) == [MemberJoined("z")]
    assert m.members["z"].state is Liveness.ALIVE and m.members["z"].hearsay
    assert m.watching == frozenset({"b"})
    # Z, known by hearsay and watched by others, stays alive in silence (its watchers' verdicts carry it)...
    for t in range(1, 31):
        m.heard("b", float(t))
        m.tick(float(t))
    assert m.members["z"].state is Liveness.ALIVE
    # ...until the ring makes it ours to watch (b dies): then its silence is timed from that moment, plus
    # the dial grace (we never linked it: our dial for its beats is under way).
    ticking(m, 30.25, 41.0)
    assert m.members["b"].state is Liveness.DEAD and m.watching == frozenset({"z"})
    since = m.members["b"].state_since
    assert m.members["z"].state is Liveness.ALIVE
    ticking(m, 41.25, since + T1.dead_after + 0.25)
    assert m.members["z"].state is Liveness.SUSPECT
    assert m.learned(Z, 30.1) == []  # told again: nothing new


def test_a_hearsay_member_on_our_ring_is_asked_for_beats_and_timed_from_then() -> None:
    m = fresh()
    m.learned(B, 0.0)
    assert m.watching == frozenset({"b"})  # on the ring like any live member (the runtime dials it)
    assert WatchingChanged(("b",), ()) in m.outgoing()
    # Timed from the watch request plus the dial grace: first suspected ~dead_after from now, not at
    # suspect_after (a dial slower than suspect_after under formation load is not the member's silence).
    assert T.link_grace == T.dead_after - T.suspect_after
    assert ticking(m, 0.25, 9.75) == []
    assert ticking(m, 10.0, 10.0) == [LivenessChanged("b", Liveness.ALIVE, Liveness.SUSPECT, "silent 3.0s")]
    assert ticking(m, 10.25, 16.75) == []
    assert ticking(m, 17.0, 17.0) == [LivenessChanged("b", Liveness.SUSPECT, Liveness.DEAD, "silent 10.0s")]


def test_the_dial_grace_ends_when_our_link_to_a_hearsay_member_is_made() -> None:
    m = fresh()
    m.learned(B, 0.0)
    assert m.next_deadline() == pytest.approx(T.dead_after)  # the grace is in the wake-up time too
    m.hello(B, None, 5.0)  # the dial linked it: heard, and timed like any linked member from now on
    assert not m.members["b"].hearsay and m.members["b"].linked
    assert m.members["b"].grace == 0.0 and m.next_deadline() == pytest.approx(5.0 + T.suspect_after)
    assert ticking(m, 5.25, 8.0) == [LivenessChanged("b", Liveness.ALIVE, Liveness.SUSPECT, "silent 3.0s")]


def test_a_never_linked_watched_member_whose_dial_is_refused_is_dead_at_once() -> None:
    m = fresh()
    m.learned(B, 0.0)
    assert m.refused("b", 0.5) == [LivenessChanged("b", Liveness.ALIVE, Liveness.DEAD, "connection refused")]


def test_gossip_does_not_revive_a_dead_member_but_a_new_life_replaces_it() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    m.refused("b", 1.0)
    m.unlinked("b", 1.0)
    assert m.learned(B, 2.0) == []  # the teller has not heard the verdict yet
    assert m.members["b"].state is Liveness.DEAD
    b2 = PeerInfo(node_id="b", incarnation="i9", name="bee", address="127.0.0.1:2")
    ev = m.learned(b2, 3.0)
    assert ev == [MemberJoined("b", restarted=True),
                  LivenessChanged("b", Liveness.DEAD, Liveness.ALIVE, "restarted (gossip)")]  # fmt: skip
    assert m.members["b"].info.incarnation == "i9" and m.members["b"].hearsay


def test_gossip_of_another_life_does_not_replace_a_live_or_linked_member() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    b2 = PeerInfo(node_id="b", incarnation="i9", name="bee", address="127.0.0.1:2")
    assert m.learned(b2, 1.0) == []
    assert m.members["b"].info.incarnation == "i1" and not m.members["b"].hearsay
    assert m.learned(ME, 1.0) == [] and m.members["me"].is_self


def test_a_hearsay_member_dies_by_its_watchers_verdict_or_our_refused_dial() -> None:
    m = Membership(me=ME, timing=T1, now=0.0)
    m.hello(B, None, 0.0)
    m.learned(C, 0.0)
    m.learned(Z, 0.0)
    m.outgoing()
    ev = m.verdict(Verdict("z", "i3", News.DEAD, 0), 1.0)
    assert [(e.previous, e.current) for e in ev if isinstance(e, LivenessChanged)] == [
        (Liveness.ALIVE, Liveness.DEAD)
    ]
    # No link to tell it by; the news is passed on to a few peers (others may have no link to its watchers).
    assert m.outgoing() == [Spread(Verdict("z", "i3", News.DEAD, 0), relay=True)]
    assert m.refused("c", 1.5)[0].current is Liveness.DEAD


def test_a_hearsay_member_suspected_by_its_watchers_is_reminded_and_ends_dead_unless_refuted() -> None:
    m = Membership(me=ME, timing=T1, now=0.0)
    m.hello(B, None, 0.0)
    m.learned(Z, 0.0)
    m.verdict(Verdict("z", "i3", News.SUSPECT, 0), 1.0)
    m.tick(1.25)
    # A reminder to a member we have no link to: the runtime dials it (LinkTable.ensure).
    assert Spread(Verdict("z", "i3", News.SUSPECT, 0), to="z") in m.outgoing()
    m.verdict(Verdict("z", "i3", News.ALIVE, 1), 2.0)  # z refutes
    for t in range(3, 21):
        m.heard("b", float(t))  # (b stays alive: z stays off our ring)
        m.tick(float(t))
    assert m.members["z"].state is Liveness.ALIVE
    m.verdict(Verdict("z", "i3", News.SUSPECT, 1), 21.0)
    for t in range(22, 41):
        m.heard("b", float(t))
        m.tick(float(t))
    assert m.members["z"].state is Liveness.DEAD


def test_a_refused_connect_is_told_to_every_peer_once() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    m.outgoing()
    m.refused("b", 1.0)
    spread = [o for o in m.outgoing() if isinstance(o, Spread)]
    assert spread == [Spread(Verdict("b", "i1", News.DEAD, 0))]
    m.refused("b", 1.5)
    assert m.outgoing() == []
    # ...and a node that knows b only by hearsay takes it as dead.
    other = Membership(me=C, timing=T, now=0.0)
    other.learned(B, 0.0)
    assert other.verdict(Verdict("b", "i1", News.DEAD, 0), 1.1)[0].current is Liveness.DEAD


def test_news_that_changes_our_view_is_relayed_once() -> None:
    m = fresh()
    m.hello(B, None, 0.0)
    m.learned(C, 0.0)
    m.outgoing()
    suspect = Verdict("c", "i2", News.SUSPECT, 0)
    m.verdict(suspect, 1.0)
    assert m.outgoing() == [Spread(suspect, relay=True)]
    m.verdict(suspect, 1.1)  # the same news again (another relay's copy): not passed on again
    assert m.outgoing() == []
    refuted = Verdict("c", "i2", News.ALIVE, 1)
    m.verdict(refuted, 1.2)
    assert Spread(refuted, relay=True) in m.outgoing()
    m.verdict(refuted, 1.3)
    assert m.outgoing() == []
    # A refutation that raises the sequence of a member we hold alive is news for others still.
    again = Verdict("c", "i2", News.ALIVE, 2)
    m.verdict(again, 1.4)
    assert m.outgoing() == [Spread(again, relay=True)]
