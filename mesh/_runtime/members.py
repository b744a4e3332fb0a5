"""Membership in the runtime: drives the sans-IO Membership core and publishes what it decides.

link frames ──(hello, heard, status, left, refused, unlinked, verdicts)──▶ Membership core ──events──▶ apply()
apply() ──▶ log lines, listeners (gossip, the mail directory, stats), watchers (watch pub/sub; services
            publish their own events there too: board changes)
        ──▶ the core's outgoing: verdicts spread on the links, watch requests to the members we watch
timer: heartbeats to the peers that asked us (our k watchers) + core.tick(now), waking at its next deadline
own status: set_status() now, or schedule_status() (a field fed by a service, debounced)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._runtime.lifecycle import Lifecycle
from mesh._transport import codec
from mesh._transport.peer import frame
from mesh.clock import Clock, wall
from mesh.core.errors import LimitExceeded
from mesh.core.membership import (
    Liveness,
    LivenessChanged,
    Member,
    MemberForgotten,
    MemberJoined,
    Membership,
    MembershipEvent,
    Spread,
    StatusChanged,
    WatchingChanged,
)
from mesh.core.ratelimit import LogLimiter
from mesh.core.status import StatusRecord
from mesh.core.values import value
from mesh.views import MemberEvent, MemberView, WatchEvent

log = logging.getLogger("mesh")

Broadcast = Callable[[pb.PeerFrame, bool], None]  # (frame, droppable) to every live link
SendTo = Callable[[str, pb.PeerFrame, bool], bool]  # (node id, frame, droppable) on its link, if any
Listener = Callable[[MembershipEvent, Member | None], None]


@value(frozen=False)
class _Watcher:
    queue: asyncio.Queue[WatchEvent | None]
    overflowed: bool = False


class MemberHub:
    """The member table as the node's faces see it, and the node's own status."""

    def __init__(self, core: Membership, clock: Clock, life: Lifecycle, broadcast: Broadcast) -> None:
        self.core = core
        self.clock = clock
        self.life = life
        self.broadcast = broadcast
        self.listeners: list[Listener] = []
        # What views show beyond the core: the steward set (node ids), and this node's exact unread count.
        self.stewards: Callable[[], Collection[str]] = tuple
        self.own_unread: Callable[[], int | None] = lambda: None
        self._watchers: list[_Watcher] = []
        self._pending: dict[str, list[float]] = {}  # field -> [first, last] change of a pending burst
        self._hb_seq = 0
        # node id -> (monotonic state_since, its wall time): mapped once, so every view of a state shows the
        # same instant (mapped afresh, wall and monotonic read a few µs apart made it jitter by a millisecond)
        self._state_wall: dict[str, tuple[float, float]] = {}
        self._faults = LogLimiter(burst=2, every=60.0)
        self.send_to: SendTo = lambda node_id, f, droppable: False  # the link table's, once it exists
        self.ensure: Callable[[str], bool] = lambda node_id: False  # ...and its on-demand dial
        self.relay: Callable[[pb.PeerFrame], None] = lambda f: None  # ...and news to a few links at random
        self.hint: Callable[[str], None] = lambda node_id: None  # ...and a dial hint (gossip's path)
        self.beat_to: set[str] = set()  # peers that asked for our heartbeats (our watchers), by node id

    # ------------------------------------------------------------------ the core's events

    def apply(self, events: list[MembershipEvent]) -> None:
        for ev in events:
            m = self.core.members.get(ev.node_id)
            if isinstance(ev, MemberJoined):
                assert m is not None
                log.info("%s %s (%s) at %s", "rejoined" if ev.restarted else "joined", m.info.name,
                         m.info.node_id, m.info.address)  # fmt: skip
                self._tell(ev, m)
                self._publish("joined", m)
            elif isinstance(ev, LivenessChanged):
                if m is None:
                    continue
                log.info("%s is %s (%s)", m.info.name, ev.current.value, ev.reason)
                self._publish("state", m, previous=ev.previous.value)
                self._tell(ev, m)
            elif isinstance(ev, StatusChanged):
                if m is not None:
                    self._publish("status", m)
                    self._tell(ev, m)
            elif isinstance(ev, MemberForgotten):
                log.info("forgot %s (%s)", ev.name, ev.node_id)
                self._state_wall.pop(ev.node_id, None)
        self._carry_out()

    def _carry_out(self) -> None:
        """Send what the core decided to send: verdicts (one frame for a burst), watch requests."""
        spread: list[pb.Verdict] = []
        relay: list[pb.Verdict] = []
        for out in self.core.outgoing():
            if isinstance(out, Spread):
                v = codec.verdict_to_pb(out.verdict)
                if out.relay:
                    relay.append(v)
                elif out.to:
                    if not self.send_to(out.to, frame(verdicts=[v]), False):
                        # No link (a member known by hearsay): dial it. A live one is then heard, and
                        # answers the verdict it is reminded of, instead of dying here of a suspicion
                        # whose refutation went only to its own links (SWIM's indirect probe, by a link).
                        self.ensure(out.to)
                else:
                    spread.append(v)
            elif isinstance(out, WatchingChanged):
                for nid in out.start:
                    if not self.send_to(nid, WATCH_ON, False):
                        # A member known by hearsay: link it (the new link asks for beats). As a gossip hint,
                        # not an on-demand dial: it waits its turn among the dials of a forming mesh and its
                        # tie-break (the dial grace covers the wait), rather than adding handshakes to them.
                        self.hint(nid)
                for nid in out.stop:
                    self.send_to(nid, WATCH_OFF, False)
        if spread:
            self.broadcast(frame(verdicts=spread), False)
        if relay:
            self.relay(frame(verdicts=relay))

    def watch_asked(self, node_id: str, on: bool) -> None:
        """A peer asked for our heartbeats (it watches us), or no longer wants them."""
        if not on:
            self.beat_to.discard(node_id)
        elif node_id not in self.beat_to:
            self.beat_to.add(node_id)
            self.send_to(node_id, frame(heartbeat=pb.Heartbeat(seq=self._hb_seq)), True)  # time us from now

    def _tell(self, ev: MembershipEvent, m: Member | None) -> None:
        for listener in self.listeners:
            try:
                listener(ev, m)
            except Exception as e:
                # A listener's fault (a service's store) must not take the timer or a link down with it:
                # membership, heartbeats and redials go on. Said a few times, then once a minute.
                key = getattr(listener, "__qualname__", repr(listener))
                if self._faults.allow(key, self.clock.now()):
                    log.error("a membership listener (%s) failed: %s: %s", key, type(e).__name__, e)

    async def run_timer(self) -> None:
        """Heartbeats to our watchers, and the failure detector's tick, until the node stops."""
        timing = self.core.timing
        next_beat = self.clock.now()
        while True:
            now = self.clock.now()
            if now >= next_beat:
                self._hb_seq += 1
                beat = frame(heartbeat=pb.Heartbeat(seq=self._hb_seq))
                for nid in list(self.beat_to):
                    m = self.core.members.get(nid)
                    if m is None or m.state not in (Liveness.ALIVE, Liveness.SUSPECT):
                        continue  # none to a watcher held dead (its request stands: resumed once back)
                    if not self.send_to(nid, beat, True):
                        self.beat_to.discard(nid)
                next_beat = now + timing.heartbeat_interval
            self.apply(self.core.tick(now))
            wake = min(next_beat, now + timing.tick_interval)
            md = self.core.next_deadline()
            if md is not None:
                wake = min(wake, max(md, now + 0.001))
            await asyncio.sleep(max(0.0, wake - self.clock.now()))

    # ------------------------------------------------------------------ views

    def view(self, m: Member) -> MemberView:
        """A member as the public API shows it (monotonic times mapped to wall clock)."""
        now, w = self.clock.now(), wall()
        st = m.status
        heard = m.last_heard
        unread = self.own_unread() if m.is_self else None
        return MemberView(
            name=m.info.name,
            node_id=m.info.node_id,
            role=(st.role if st and st.role else m.info.role),
            state=m.state.value,
            action=st.action if st else "",
            target=st.target if st else "",
            phase=st.phase if st else "",
            progress=st.progress if st else 0,
            note=st.note if st else "",
            # A member we do not watch sends us nothing while idle: while alive, its watchers vouch for it.
            last_seen=w if m.is_self or (m.state is Liveness.ALIVE and not m.timed) else w - (now - heard),
            is_self=m.is_self,
            address=m.info.address,
            incarnation=m.info.incarnation,
            state_since=self._state_since_wall(m, now, w),
            status_version=st.version if st else 0,
            status_updated_at=st.updated_at if st else 0.0,
            steward=m.info.node_id in self.stewards(),
            claims=st.claims if st else (),
            unread=unread if unread is not None else (st.unread if st else 0),
        )

    def _state_since_wall(self, m: Member, now: float, w: float) -> float:
        nid = m.info.node_id
        got = self._state_wall.get(nid)
        if got is None or got[0] != m.state_since:
            got = self._state_wall[nid] = (m.state_since, w - (now - m.state_since))
        return got[1]

    def members(self) -> list[MemberView]:
        """Every member this node knows, self first."""
        return [self.view(m) for m in self.core.snapshot()]

    def refresh(self) -> None:
        """Something every view shows changed (the steward set): watchers see every member afresh."""
        for m in self.core.members.values():
            self._publish("status", m)

    # ------------------------------------------------------------------ watch pub/sub

    def _publish(self, kind: str, m: Member, previous: str | None = None) -> None:
        if self._watchers:
            self.publish_event(MemberEvent(kind=kind, member=self.view(m), at=wall(), previous=previous))

    def publish_event(self, ev: WatchEvent) -> None:
        """Hand an event to every watcher (a service's, such as a board change, or a member's)."""
        for w in self._watchers:
            if w.queue.qsize() < limits.WATCH_QUEUE_MAX:
                w.queue.put_nowait(ev)
            elif not w.overflowed:  # a watcher that stopped reading: end it rather than grow without bound
                w.overflowed = True
                w.queue.put_nowait(None)

    def watch(self, snapshot: bool = True) -> AsyncIterator[WatchEvent]:
        """Events as they happen (after a snapshot of every member, if asked), until the node stops.

        Subscribed when called, not at the first `anext`: nothing that happens in between is missed.
        """
        if len(self._watchers) >= limits.MAX_WATCHERS:
            log.warning("refused a watch: %d watchers already", len(self._watchers))
            raise LimitExceeded(f"too many watchers (at most {limits.MAX_WATCHERS})")
        w = _Watcher(asyncio.Queue())
        if snapshot:
            for m in self.core.snapshot():
                w.queue.put_nowait(MemberEvent(kind="snapshot", member=self.view(m), at=wall()))
        self._watchers.append(w)
        return self._drain(w)

    async def _drain(self, w: _Watcher) -> AsyncIterator[WatchEvent]:
        try:
            while True:
                ev = await w.queue.get()
                if ev is None:
                    if w.overflowed:
                        log.warning("ended a watch that fell %d events behind", limits.WATCH_QUEUE_MAX)
                        raise LimitExceeded(f"watch fell {limits.WATCH_QUEUE_MAX} events behind; watch again")
                    return
                yield ev
        finally:
            if w in self._watchers:
                self._watchers.remove(w)

    def close(self) -> None:
        """End every watch (the node stops)."""
        for w in self._watchers:
            w.queue.put_nowait(None)

    # ------------------------------------------------------------------ this node's status

    def set_status(self, **changes: Any) -> StatusRecord:
        """Publish a new version of this node's status (validated) to every peer."""
        current = self.core.status
        assert current is not None
        record = current.update(wall=wall(), **changes)
        self.apply(self.core.set_own_status(record))
        self.broadcast(frame(status=codec.status_to_pb(record)), False)
        return record

    def schedule_status(
        self, field: str, value: Callable[[], Any], delay: float, most: float | None = None
    ) -> None:
        """Publish status field `field` as `value()` once it has been quiet for `delay` s, but no later than
        `most` s after the first change of a burst (None: `delay`, a burst is one update `delay` s after it
        began).

        Deferred so that the fan-out to every peer does not delay the answer that caused it; debounced
        (`most`) because under a steady stream of changes (a claim loop) each fan-out is a write per link on
        this node's loop that the next answer waits behind: one per `most` s instead of one per `delay`.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        burst = self._pending.get(field)
        if burst is not None:
            burst[1] = now
            return
        burst = self._pending[field] = [now, now]  # first and last change of this burst
        ceiling = now + (delay if most is None else max(delay, most))

        def publish() -> None:
            due = min(burst[1] + delay, ceiling)
            t = loop.time()
            if t < due:
                loop.call_at(due, publish)  # changed meanwhile: wait for quiet (or the ceiling)
                return
            self._pending.pop(field, None)
            if self.life.stopping or self.core.status is None:
                return
            new = value()
            if getattr(self.core.status, field) != new:
                self.set_status(**{field: new})

        loop.call_later(delay, publish)


WATCH_ON = frame(watch=pb.Watch(on=True))
WATCH_OFF = frame(watch=pb.Watch(on=False))


def is_gone(m: Member | None, incarnation: str) -> bool:
    """True when `m` is no longer the live incarnation a link or a dial was for."""
    return m is None or m.state is Liveness.LEFT or m.info.incarnation != incarnation
