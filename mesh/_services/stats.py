"""The stats service: keeps what `meshctl stats` needs as the node sees it, and computes the old plan's
success metrics from it with `mesh.core.stats`.

    membership events ──▶ liveness transitions per session (for heartbeat uptime)
                      ──▶ claim holds per session, from the claims each member's status shows
    claims refused here (Node.claim_once) ──▶ refusals
    stats(window) ──▶ uptime per session, collisions refused and overlaps, reply times (this node's
                      inbox and outbox), tasks done per milestone (the board)

Overlaps come from published status, which lags a claim's real start and end by the status publish delay
on both sides; two holds that overlap by less than `OVERLAP_SLACK` are a handover seen out of order, not
two holders. A member that falls silent ends its holds at the moment it was last heard (a dead process
holds nothing), so a claim that expires and is granted to another while its holder is silent is no overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from mesh._services.board import BoardService
from mesh._services.context import ServiceContext
from mesh._services.mail import MailService
from mesh.clock import wall
from mesh.core import mailbox as mb
from mesh.core.errors import StorageError
from mesh.core.membership import (
    Liveness,
    LivenessChanged,
    Member,
    MemberJoined,
    MembershipEvent,
    StatusChanged,
)
from mesh.core.ratelimit import LogLimiter
from mesh.statslog import KEEP, StatsLog

if TYPE_CHECKING:
    from mesh.core.stats import MessageRecord
    from mesh.views import MeshStats

log = logging.getLogger("mesh.stats")

OVERLAP_SLACK = 0.25
"""Seconds by which published holds may seem to overlap in a clean handover (status publish lag)."""
MARK_EVERY = 15.0  # how often the node notes it is still up (a SIGKILL leaves no "left" behind)
PRUNE_EVERY = 3600.0


class StatsService:
    """Records liveness, holds and refusals; answers `stats`."""

    def __init__(self, ctx: ServiceContext, mail: MailService, board: BoardService) -> None:
        self.ctx = ctx
        self.mail = mail
        self.board = board
        self.log = StatsLog(ctx.state_dir / "stats.db")
        self._faults = LogLimiter(burst=1, every=60.0)
        self._last_at = 0.0
        me = ctx.name
        last = self.log.last_state(me)
        seen = self.log.meta("self_seen")
        if last is not None and last[1] == Liveness.ALIVE.value and seen is not None:
            # The previous run ended without leaving (killed): it was down from its last sign of life.
            self._transition(max(last[0], float(seen)), me, Liveness.DEAD.value)
        self._transition(wall(), me, Liveness.ALIVE.value)
        ctx.on_member(self._on_member)

    def start(self) -> None:
        self.ctx.spawn(self._timer(), "stats-timer")

    def close(self, left: bool = True) -> None:
        if left:
            self._transition(wall(), self.ctx.name, Liveness.LEFT.value)
        self.log.close()

    # ------------------------------------------------------------------ recording

    def _transition(self, at: float, name: str, state: str) -> None:
        at = max(at, self._last_at)  # uptime needs time order: a wall clock stepping back must not break it
        self._last_at = at
        self._keep(self.log.transition, at, name, state)

    def _keep(self, write: Callable[..., object], *args: object) -> None:
        """Statistics are the one record a node may go without: a storage fault is logged (once a minute
        per kind while it lasts) and the figure is missing, never the membership or claim it describes."""
        try:
            write(*args)
        except StorageError as e:
            self._fault(e)

    def _fault(self, e: StorageError) -> None:
        if self._faults.allow(type(e).__name__, self.ctx.clock.now()):
            log.warning("stats: cannot record: %s (said again once a minute while it lasts)", e)

    def _on_member(self, ev: MembershipEvent, m: Member | None) -> None:
        try:
            self._record(ev, m)
        except StorageError as e:
            self._fault(e)

    def _record(self, ev: MembershipEvent, m: Member | None) -> None:
        if m is None:
            return
        name = m.info.name
        if isinstance(ev, MemberJoined):
            if not m.is_self:
                self._transition(wall(), name, m.state.value)
            self._sync_holds(m)
        elif isinstance(ev, LivenessChanged):
            if not m.is_self:
                self._transition(wall(), name, ev.current.value)
            if ev.current is Liveness.ALIVE:
                self._sync_holds(m)
            else:
                heard = wall() - max(0.0, self.ctx.clock.now() - m.last_heard)
                self.log.end_holds(list(self.log.open_holds(name).values()), heard)
        elif isinstance(ev, StatusChanged) and m.state is Liveness.ALIVE:
            self._sync_holds(m)

    def _sync_holds(self, m: Member) -> None:
        """The claims `m`'s status shows now, against the holds recorded as running for it."""
        name = m.info.name
        shown = {(r, t) for r, t, _ in (m.status.claims if m.status else ())}
        running = self.log.open_holds(name)
        now = wall()
        ended = [i for key, i in running.items() if key not in shown]
        if ended:
            self.log.end_holds(ended, now)
        for r, t in shown - running.keys():
            self.log.start_hold(r, name, t, now)

    def refused(self, resource: str) -> None:
        """A claim made through this node was refused: another session held it."""
        self._keep(self.log.refusal, wall(), resource, self.ctx.name)

    async def _timer(self) -> None:
        next_prune = 0.0
        while True:
            self._keep(self.log.set_meta, "self_seen", repr(wall()))
            if self.ctx.clock.now() >= next_prune:
                next_prune = self.ctx.clock.now() + PRUNE_EVERY
                self._keep(self.log.prune, wall() - KEEP)
            await asyncio.sleep(MARK_EVERY)

    # ------------------------------------------------------------------ the figures

    def stats(self, window: float) -> MeshStats:
        """The metrics over the last `window` seconds."""
        # Here, not at the top: the figures' code (mesh.core.stats, the views) is asked for now and then by
        # a person (`meshctl stats`), never by an idle node, which only records (issue 15: its memory).
        from mesh.core.stats import (
            Hold,
            claim_collisions,
            heartbeat_uptime,
            intervals_from_transitions,
            reply_times,
        )
        from mesh.views import ClaimOverlap, MeshStats, MilestoneDone, SessionUptime

        until = wall()
        since = until - window
        uptime = []
        for name, trans in sorted(self.log.transitions(since).items()):
            u = heartbeat_uptime(intervals_from_transitions(trans, until), since, until)
            if u.expected > 0 or u.alive > 0:
                uptime.append(SessionUptime(name, u.alive, u.expected))
        holds = [
            Hold(h.resource, h.holder, h.start, max(h.start, h.end - OVERLAP_SLACK), h.exclusive, h.token)
            for h in self.log.holds_between(since, until)
        ]
        col = claim_collisions(holds, self.log.refusals(since, until), since, until)
        replies = reply_times(self._messages(), since)
        done: Counter[str] = Counter(
            mid for _, mid, at_ms in self.board.done_tasks() if since <= at_ms / 1000 <= until
        )
        tasks_done = []
        for mid, n in sorted(done.items(), key=lambda kv: (kv[0] == "", -kv[1], kv[0])):
            info = self.board.board.summary(mid) if mid else None
            tasks_done.append(MilestoneDone(mid, info[1] if info else "", n))
        return MeshStats(
            since=since,
            until=until,
            refused=col.refused,
            refused_by_item=tuple(sorted(col.refused_by_resource.items())),
            overlaps=tuple(
                ClaimOverlap(o.first.resource, o.first.holder, o.second.holder, o.start, o.end)
                for o in col.overlaps
            ),
            replies=replies.summary.count,
            reply_p50=replies.summary.p50,
            reply_p90=replies.summary.p90,
            by_reply=replies.by_reply,
            by_read=replies.by_read,
            unanswered=len(replies.unanswered),
            within_target=replies.within_target,
            uptime=tuple(uptime),
            tasks_done=tuple(tasks_done),
        )

    def _messages(self) -> list[MessageRecord]:
        """This session's deliveries, both ways: its inbox (read or replied to by it), its outbox (read or
        replied to by the recipients)."""
        from mesh.core.stats import MessageRecord

        me = self.ctx.name
        store = self.mail.store
        out = [
            MessageRecord(m.id, m.from_name, me, m.sent_at, m.in_reply_to or None, m.read_at)
            for m in store.inbox(limit=mb.INBOX_PAGE_MAX)
        ]
        out += [
            MessageRecord(
                e.id, me, e.to_name, e.sent_at, e.in_reply_to or None,
                e.changed_at if e.state is mb.OutState.READ else None,
            )
            for e in store.outbox(limit=mb.INBOX_PAGE_MAX)
        ]  # fmt: skip
        return out
