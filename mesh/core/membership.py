"""Membership and failure detection, sans-IO.

Every input carries `now` (monotonic seconds); outputs are events. The runtime feeds it what the peer links
see (hello, any frame, status, leave, a reconnect refused, a link lost, a verdict) and calls `tick(now)` at
least every `Timing.tick_interval`; it never decides a claim.

Liveness per member (the table is TRANSITIONS below):

    (hello) ──▶ ALIVE ──silent ≥ suspect_after──▶ SUSPECT ──silent ≥ dead_after──▶ DEAD
                  ▲  ◀──────────── any frame ─────────┘                            │
                  └──────────────── any frame (it was only paused) ◀────────────────┘
    leave ──▶ LEFT (final for that incarnation)        reconnect refused ──▶ DEAD at once
    a hello with a new incarnation replaces the member (a restarted process is a new node).

Silence is timed only where it means something (`mesh/core/watch.py` has the rules): on the members this
node *watches* (its ring predecessors, who beat to it because it asked: `WatchingChanged`), and on members
it has no link to (counted from when the link went). Everyone else learns of a suspect or a death from the
watchers' verdicts (`Spread`), mapped onto the same table (a suspect verdict is QUIET, a dead one SILENT, the
member's refutation HEARD), and from the instant evidence every node has of its own links (REFUSED). A
member told it is suspected refutes with a higher liveness sequence, so a live member is never held dead.

Hearsay (`learned`): a linked peer's member list (sent when we link to it) and its hints about newcomers
list every member it names ALIVE here at once, before (or without) a link of ours. Formation is then one
gossip exchange, not n-1 TLS handshakes: "every node lists every other" no longer waits for a full mesh of
links. A hearsay member we do not watch is not timed by this node (it never beat to us); its liveness is
carried the way an unwatched linked member's is: its watchers' verdicts, and our own evidence when we dial
it (a refused connect is REFUSED, so a member gossiped after it died is dead here as soon as we try it). It
is on our ring like any live member (every node must see the same ring, or a member could be watched by
nobody): one we watch is dialed for its beats and timed from then. Gossip never revives a member held dead:
the teller may simply not have heard the verdict. A verdict reminder to a member we have no link to dials
it, so a live member suspected by its watchers is heard, not left to a suspicion timeout.

The dial grace (`Timing.link_grace`, dead_after - suspect_after): a watched member we never linked is timed
from the watch request *plus* the grace, so its first suspicion comes ~dead_after after we started
watching it, not suspect_after. Its silence until our dial links it is the dial's, not its own: when a
whole mesh forms at once a TLS handshake can take seconds, and without the grace every watcher whose dial
was slower than suspect_after suspected a live member, and "everyone lists everyone alive" waited for the
refutations (26.8 s to form 48 nodes, against 15.0 s without hearsay on the ring). What the grace costs:
  - a crashed member we never linked: our dial is refused, which is REFUSED (dead at once): no grace;
  - a crashed member we did link: its link breaks and the redial is refused (dead at once): no grace;
  - a paused (SIGSTOPped) member we never linked: dead after dead_after + grace (17 s at the defaults)
    instead of dead_after; one we had linked (the grace ends at the hello) keeps dead_after. Its linked
    watchers' verdicts reach us first anyway (a verdict applies to hearsay members as to any other).

Verdicts travel by epidemic as well as from their source: a verdict that changes our view (or a refutation
that raises the member's sequence) is relayed to a few linked peers (`Spread.relay`), so news reaches a
node that has no link to the member's watchers (a mesh that is not a full mesh of links).

Lifeguard's lesson: a node whose own event loop stalled must not blame its peers for the silence it failed to
hear. When ticks arrive further apart than `max_tick_gap`, the excess is credited to every member's silence,
and the node tells everyone it is back (a refutation of whatever its watchers concluded meanwhile).
"""

from __future__ import annotations

import enum

from mesh.core.identity import Identity
from mesh.core.status import StatusRecord
from mesh.core.values import field, replace, value
from mesh.core.watch import DEFAULT_WATCHERS, News, refutation, verdict_applies, watched_by


class Liveness(enum.Enum):
    """How a member is doing, as this node sees it."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


@value
class PeerInfo:
    """Who a node is: stable id, per-process incarnation, name, role, where its peer API listens."""

    node_id: str
    incarnation: str
    name: str
    role: str = ""
    address: str = ""
    started_at: float = 0.0  # wall clock, display only

    @property
    def identity(self) -> Identity:
        """This life of the node (a restart is a new incarnation, so a new identity)."""
        return Identity(self.node_id, self.incarnation)


@value
class Timing:
    """Failure-detector timing (seconds)."""

    heartbeat_interval: float = 1.0
    suspect_after: float = 3.0
    dead_after: float = 10.0
    forget_after: float = 900.0
    tick_interval: float = 0.25
    watchers: int = DEFAULT_WATCHERS  # each node is watched (heartbeats, silence timers) by this many

    @property
    def link_grace(self) -> float:
        """Silence forgiven a watched member we never linked, while our dial for its beats is under way:
        its first suspicion comes ~dead_after after the watch request (see the module docstring)."""
        return max(0.0, self.dead_after - self.suspect_after)

    @property
    def max_tick_gap(self) -> float:
        """Ticks further apart than this mean our own loop stalled."""
        return max(4 * self.tick_interval, 2 * self.heartbeat_interval)


class Sign(enum.Enum):
    """What the failure detector learns about a member."""

    HEARD = "heard"  # a frame arrived on a live link
    FRESH = "fresh"  # silent less than suspect_after (its silence was our own stall, credited back)
    QUIET = "quiet"  # silent at least suspect_after
    SILENT = "silent"  # silent at least dead_after
    REFUSED = "refused"  # its link broke and a reconnect to its port was refused: the process is gone
    LEAVE = "leave"  # it announced a graceful leave


A, S, D, L = Liveness.ALIVE, Liveness.SUSPECT, Liveness.DEAD, Liveness.LEFT

# The whole liveness state machine. A (state, sign) pair not listed changes nothing: LEFT is final for an
# incarnation, a DEAD member only comes back by being heard, and a hello with a new incarnation replaces
# the member altogether (see Membership.hello).
TRANSITIONS: dict[tuple[Liveness, Sign], Liveness] = {
    (A, Sign.QUIET): S, (A, Sign.SILENT): D, (A, Sign.REFUSED): D, (A, Sign.LEAVE): L,
    (S, Sign.HEARD): A, (S, Sign.FRESH): A, (S, Sign.SILENT): D, (S, Sign.REFUSED): D, (S, Sign.LEAVE): L,
    (D, Sign.HEARD): A, (D, Sign.LEAVE): L,
}  # fmt: skip

SILENCE_SIGN = {Liveness.ALIVE: Sign.FRESH, Liveness.SUSPECT: Sign.QUIET, Liveness.DEAD: Sign.SILENT}

# A verdict is a watcher's silence (or the member's own word) seen second-hand: same signs, same table.
NEWS_SIGN = {News.ALIVE: Sign.HEARD, News.SUSPECT: Sign.QUIET, News.DEAD: Sign.SILENT}
STATE_NEWS = {Liveness.SUSPECT: News.SUSPECT, Liveness.DEAD: News.DEAD}


def liveness_for(silence: float, timing: Timing) -> Liveness:
    """The state a member deserves after `silence` seconds without a frame."""
    if silence >= timing.dead_after:
        return Liveness.DEAD
    if silence >= timing.suspect_after:
        return Liveness.SUSPECT
    return Liveness.ALIVE


@value(frozen=False, slots=True)
class Member:
    """One node as this node sees it."""

    info: PeerInfo
    state: Liveness
    last_heard: float  # monotonic
    state_since: float  # monotonic
    status: StatusRecord | None = None
    is_self: bool = False
    dead_reason: str = ""
    seq: int = 0  # the highest liveness sequence heard for this incarnation (its refutations raise it)
    watched: bool = False  # this node watches it: it beats to us, we time its silence
    linked: bool = True  # a link to it is open (an open link vouches for it until it closes)
    reminded: float = float("-inf")  # when we last told it the verdict we hold (so that it can refute)
    hearsay: bool = False  # known only from a peer's gossip: this life of it never had a link of ours
    grace: float = 0.0  # silence forgiven while our first link to it is being made (Timing.link_grace)

    def silence(self, now: float) -> float:
        """Seconds of silence that count against it."""
        return now - self.last_heard - self.grace

    @property
    def timed(self) -> bool:
        """Is its silence this node's to time? (watched, or a link went that would have carried news of it;
        a member known by hearsay only was never ours to hear: its watchers' verdicts carry it)."""
        return self.watched or not (self.linked or self.hearsay)


@value
class MemberJoined:
    """A node was heard from for the first time (or came back as a new incarnation)."""

    node_id: str
    restarted: bool = False


@value
class LivenessChanged:
    """A member moved between alive / suspect / dead / left."""

    node_id: str
    previous: Liveness
    current: Liveness
    reason: str = ""


@value
class StatusChanged:
    """A member published a newer status record."""

    node_id: str


@value
class MemberForgotten:
    """A dead or departed member has been out of the picture for `forget_after` and is dropped."""

    node_id: str
    name: str


@value
class Verdict:
    """Liveness news about one life of a member, stamped with its liveness sequence."""

    node_id: str
    incarnation: str
    news: News
    seq: int


@value
class Spread:
    """Send `verdict` to every peer (`to` empty), or only to the member `to` (so it can refute); a `relay`
    goes to a few linked peers picked at random (RELAY_FANOUT): news passed on, see Membership.verdict."""

    verdict: Verdict
    to: str = ""
    relay: bool = False


@value
class WatchingChanged:
    """This node now watches `start` and no longer `stop`: ask them to beat to us, or to stop."""

    start: tuple[str, ...]
    stop: tuple[str, ...]


MembershipEvent = MemberJoined | LivenessChanged | StatusChanged | MemberForgotten
Outgoing = Spread | WatchingChanged  # what the runtime must send: taken with `outgoing()`


@value(frozen=False)
class Membership:
    """The member table and its failure detector."""

    me: PeerInfo
    timing: Timing
    now: float
    status: StatusRecord | None = None
    members: dict[str, Member] = field(default_factory=dict)
    _last_now: float = 0.0
    credited: float = 0.0  # total seconds of our own stalls credited to peers (observability)
    seq: int = 0  # this node's own liveness sequence (raised to refute a suspicion)
    watching: frozenset[str] = frozenset()  # the members this node watches
    _out: list[Outgoing] = field(default_factory=list)
    _reasserted: float = float("-inf")

    def __post_init__(self) -> None:
        self._last_now = self.now
        self.members[self.me.node_id] = Member(
            info=self.me, state=Liveness.ALIVE, last_heard=self.now, state_since=self.now,
            status=self.status, is_self=True,
        )  # fmt: skip

    # ------------------------------------------------------------------ inputs

    def hello(self, info: PeerInfo, status: StatusRecord | None, now: float) -> list[MembershipEvent]:
        """A link to `info` completed its handshake."""
        events = self._advance(now)
        old = self.members.get(info.node_id)
        if old is not None and old.is_self:
            return events
        if old is None or old.info.incarnation != info.incarnation:
            self.members[info.node_id] = Member(
                info=info, state=Liveness.ALIVE, last_heard=now, state_since=now
            )
            events.append(MemberJoined(info.node_id, restarted=old is not None))
            if old is not None and old.state is not Liveness.ALIVE:
                events.append(LivenessChanged(info.node_id, old.state, Liveness.ALIVE, "restarted"))
        else:
            old.info = info
            old.linked = True
            if old.hearsay:  # our first link to it: from now on it is timed like any linked member
                old.hearsay = False
                old.last_heard = now
                old.grace = 0.0
            events += self._revive(old, now, "reconnected")
        if status is not None:
            events += self.status_update(status, now)
        self._rewatch(now)
        return events

    def learned(self, info: PeerInfo, now: float) -> list[MembershipEvent]:
        """A linked peer told us of `info` (its member list when we link, or a hint about a newcomer).

        A member we did not know is listed ALIVE at once, by hearsay: no link of ours, so no timer of ours
        (see the module docstring). News of a member we know changes nothing, except that a new life of a
        member we hold dead or gone, to which no link is open, replaces it (its restart, told second-hand).
        A dead member is never revived by gossip: the peer that told us may not have heard its verdict yet.
        """
        events = self._advance(now)
        old = self.members.get(info.node_id)
        if info.node_id == self.me.node_id or (old is not None and old.is_self):
            return events
        if old is not None and (
            old.info.incarnation == info.incarnation
            or old.linked
            or old.state not in (Liveness.DEAD, Liveness.LEFT)
        ):
            return events
        self.members[info.node_id] = Member(
            info=info, state=Liveness.ALIVE, last_heard=now, state_since=now, linked=False, hearsay=True
        )
        events.append(MemberJoined(info.node_id, restarted=old is not None))
        if old is not None:
            events.append(LivenessChanged(info.node_id, old.state, Liveness.ALIVE, "restarted (gossip)"))
        self._rewatch(now)
        return events

    def heard(self, node_id: str, now: float) -> list[MembershipEvent]:
        """Any frame arrived from `node_id` on a live link."""
        events = self._advance(now)
        m = self.members.get(node_id)
        if m is None or m.is_self:
            return events
        if m.state is Liveness.ALIVE:
            m.last_heard = now
            return events  # the common case, once per frame: nothing to move
        events += self._revive(m, now, "heard again")
        self._rewatch(now)
        return events

    def status_update(self, record: StatusRecord, now: float) -> list[MembershipEvent]:
        """A member published a status record (older or foreign records are ignored)."""
        m = self.members.get(record.node_id)
        if m is None or m.is_self or m.info.incarnation != record.incarnation:
            return []
        if not record.newer_than(m.status):
            return []
        m.status = record
        return [StatusChanged(record.node_id)]

    def set_own_status(self, record: StatusRecord) -> list[MembershipEvent]:
        """This node's own status changed."""
        self.status = record
        self.members[self.me.node_id].status = record
        return [StatusChanged(self.me.node_id)]

    def left(self, node_id: str, now: float, reason: str = "left") -> list[MembershipEvent]:
        """The member announced a graceful leave."""
        events = self._advance(now)
        m = self.members.get(node_id)
        if m is not None and not m.is_self:
            events += self._sign(m, Sign.LEAVE, now, reason)
        self._rewatch(now)
        return events

    def refused(self, node_id: str, now: float) -> list[MembershipEvent]:
        """Its link broke and a reconnect to its port was refused: the process is gone."""
        events = self._advance(now)
        m = self.members.get(node_id)
        if m is not None and not m.is_self:
            moved = self._sign(m, Sign.REFUSED, now, "connection refused")
            if moved:
                # Proof, not a timeout: say it to every peer. Members that know it by hearsay (no link of
                # their own that could be refused) learn of its death only from verdicts.
                self._out.append(Spread(Verdict(m.info.node_id, m.info.incarnation, News.DEAD, m.seq)))
            events += moved
        self._rewatch(now)
        return events

    def unlinked(self, node_id: str, now: float) -> list[MembershipEvent]:
        """The link to `node_id` closed (a redial may follow): from now on its silence is ours to time."""
        events = self._advance(now)
        m = self.members.get(node_id)
        if m is not None and not m.is_self and m.linked:
            m.linked = False
            if not m.watched:
                m.last_heard = max(m.last_heard, now)  # the open link vouched for it until now
        return events

    def verdict(self, v: Verdict, now: float) -> list[MembershipEvent]:
        """Liveness news from a peer: a watcher's suspect/dead verdict, or a member's refutation."""
        events = self._advance(now)
        if v.node_id == self.me.node_id:
            if v.incarnation == self.me.incarnation:
                seq = refutation(self.seq, v.news, v.seq)
                # Saying the same sequence again is for peers that missed it: once per suspect_after will do.
                if seq is not None and (
                    seq > self.seq or now - self._reasserted >= self.timing.suspect_after
                ):
                    self._reasserted = now
                    self._refute(seq)
            return events
        m = self.members.get(v.node_id)
        if m is None or m.is_self or m.info.incarnation != v.incarnation:
            return events  # news of a life this node does not know (yet, or any more)
        if not verdict_applies(m.seq, v.news, v.seq):
            return events
        raised = v.seq > m.seq
        m.seq = max(m.seq, v.seq)
        if v.news is News.ALIVE:
            m.last_heard = max(m.last_heard, now)
        elif not m.timed and m.state is Liveness.ALIVE:
            m.last_heard = now - self.timing.suspect_after  # as silent as a suspicion says (for its timeout)
        moved = self._sign(m, NEWS_SIGN[v.news], now, f"{v.news.value}: its watchers")
        if moved or (raised and v.news is News.ALIVE):
            # News to us is passed on to a few peers (epidemic): a peer with no link to the member or to its
            # watchers hears it all the same. Once per (member, life, news, seq): a copy that comes back
            # neither moves our view nor raises the sequence, so it is not passed on again.
            self._out.append(Spread(v, relay=True))
        if moved:
            if v.news is not News.ALIVE and m.linked:
                m.reminded = now
                self._out.append(Spread(v, to=m.info.node_id))  # tell the member, so a live one refutes
            self._rewatch(now)
        return events + moved

    def tick(self, now: float) -> list[MembershipEvent]:
        """Advance timers: suspect, dead, forget."""
        events = self._advance(now)
        moved = False
        for m in list(self.members.values()):
            if m.is_self:
                continue
            if m.state in (Liveness.DEAD, Liveness.LEFT):
                if now - m.state_since >= self.timing.forget_after:
                    del self.members[m.info.node_id]
                    events.append(MemberForgotten(m.info.node_id, m.info.name))
                elif m.state is Liveness.DEAD and m.linked:
                    self._remind(m, now)
                continue
            if not m.timed:
                if m.state is not Liveness.SUSPECT:
                    continue  # its watchers time it; their verdicts (or our link's end) tell us
                # SWIM's suspicion timeout: a suspicion nobody refutes (nor confirms: a lost verdict)
                # ends in dead here too; meanwhile the member is reminded, so a live one refutes.
                self._remind(m, now)
                if now - m.last_heard < self.timing.dead_after:
                    continue
            silence = m.silence(now)
            sign = SILENCE_SIGN[liveness_for(silence, self.timing)]
            changed = self._sign(m, sign, now, f"silent {silence:.1f}s")
            if changed:
                moved = True
                events += changed
                if m.watched and m.state in STATE_NEWS:
                    v = Verdict(m.info.node_id, m.info.incarnation, STATE_NEWS[m.state], m.seq)
                    self._out.append(Spread(v))
                    if m.state is Liveness.SUSPECT:  # our request for its beats may have been lost: ask again
                        self._out.append(WatchingChanged((m.info.node_id,), ()))
        if moved:
            self._rewatch(now)
        return events

    # ------------------------------------------------------------------ queries

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do (the runtime ticks at least every tick_interval anyway)."""
        times: list[float] = []
        for m in self.members.values():
            if m.is_self:
                continue
            if m.state in (Liveness.DEAD, Liveness.LEFT):
                times.append(m.state_since + self.timing.forget_after)
                if m.state is Liveness.DEAD and m.linked:
                    times.append(m.reminded + self.timing.dead_after)
            elif not m.timed:
                if m.state is Liveness.SUSPECT:
                    times.append(min(m.reminded, m.last_heard) + self.timing.dead_after)
                continue
            elif m.state is Liveness.ALIVE:
                times.append(m.last_heard + m.grace + self.timing.suspect_after)
            else:
                times.append(m.last_heard + m.grace + self.timing.dead_after)
        return min(times) if times else None

    def live(self) -> list[Member]:
        """Members not known to be dead or gone (self included)."""
        return [m for m in self.members.values() if m.state in (Liveness.ALIVE, Liveness.SUSPECT)]

    def holder_of_name(self, name: str) -> Member | None:
        """The live member using `name`, if any."""
        for m in self.members.values():  # every send asks: no list of the live ones built for it
            if m.info.name == name and m.state in (Liveness.ALIVE, Liveness.SUSPECT):
                return m
        return None

    def snapshot(self) -> list[Member]:
        """Copies of every member, self first, then by name."""
        ms = [replace(m) for m in self.members.values()]
        return sorted(ms, key=lambda m: (not m.is_self, m.info.name, m.info.node_id))

    # ------------------------------------------------------------------ internals

    def outgoing(self) -> list[Outgoing]:
        """What to send since the last call (verdicts to spread, watch requests), for the runtime."""
        out, self._out = self._out, []
        return out

    def _advance(self, now: float) -> list[MembershipEvent]:
        gap = now - self._last_now
        if gap > self.timing.max_tick_gap:
            # We were not running (loop stall, SIGSTOP, suspend): peers are not to blame for that silence.
            stall = gap - self.timing.tick_interval
            self.credited += stall
            for m in self.members.values():
                if not m.is_self and m.state in (Liveness.ALIVE, Liveness.SUSPECT):
                    m.last_heard = min(now, m.last_heard + stall)
            # ...and our watchers may have blamed us for ours: say we are back before they are told otherwise.
            self._refute(self.seq + 1)
        self._last_now = max(self._last_now, now)
        return []

    def _refute(self, seq: int | None) -> None:
        if seq is not None:
            self.seq = seq
            self._out.append(Spread(Verdict(self.me.node_id, self.me.incarnation, News.ALIVE, seq)))

    def _rewatch(self, now: float) -> None:
        """Recompute whom this node watches (its ring predecessors among the live members).

        Hearsay members are on the ring too: every node must compute the same ring, or a member could end
        up watched by nobody. A watched member we have no link to is asked for beats all the same (the
        runtime dials it for the request), and its silence is timed from now plus the dial grace: a link
        that cannot be made ends in a suspicion (~dead_after from now), which a live member refutes.
        """
        live = [m.info.node_id for m in self.live()]
        want = watched_by(self.me.node_id, live, self.timing.watchers)
        if want == self.watching:
            return
        start, stop = want - self.watching, self.watching - want
        for nid in start:
            m = self.members[nid]
            m.watched = True
            if m.linked or m.hearsay:  # its beats to us start now: time it from here (a link that went:
                m.last_heard = max(m.last_heard, now)  # its timer already runs)
            if m.hearsay:  # ...or once our dial for them links it: the dial's time is not its silence
                m.grace = self.timing.link_grace
        for nid in stop:
            if (m2 := self.members.get(nid)) is not None:
                m2.watched = False
                m2.grace = 0.0
                if m2.linked:
                    m2.last_heard = max(m2.last_heard, now)
        self.watching = want
        self._out.append(WatchingChanged(tuple(sorted(start)), tuple(sorted(stop))))

    def _remind(self, m: Member, now: float) -> None:
        """Tell a member we hold suspect or dead (and hear nothing from) our verdict again, now and then.

        A verdict no refutation answered may be one the member never got (its link was cut meanwhile): a
        live member refutes it, which reaches everyone.
        """
        if now - m.reminded >= self.timing.dead_after and m.state in STATE_NEWS:
            m.reminded = now
            v = Verdict(m.info.node_id, m.info.incarnation, STATE_NEWS[m.state], m.seq)
            self._out.append(Spread(v, to=m.info.node_id))

    def _revive(self, m: Member, now: float, reason: str) -> list[MembershipEvent]:
        m.last_heard = now
        was = m.state
        moved = self._sign(m, Sign.HEARD, now, reason)
        if moved and was in STATE_NEWS:
            # Peers we told (or that told us) may still hold it suspect or dead: remind the member, whose
            # refutation reaches them all (after a partition heals, nobody else would say it).
            self._out.append(
                Spread(Verdict(m.info.node_id, m.info.incarnation, STATE_NEWS[was], m.seq), m.info.node_id)
            )
        return moved

    def _sign(self, m: Member, sign: Sign, now: float, reason: str) -> list[MembershipEvent]:
        """Move `m` as TRANSITIONS says for `sign` (nothing if the pair is not listed)."""
        to = TRANSITIONS.get((m.state, sign))
        if to is None:
            return []
        ev = LivenessChanged(m.info.node_id, m.state, to, reason)
        m.state = to
        m.state_since = now
        if to is Liveness.DEAD:
            m.dead_reason = "connection refused" if sign is Sign.REFUSED else "silent"
        elif to is Liveness.ALIVE:
            m.dead_reason = ""
        return [ev]
