"""The API's values that `meshctl`'s hot verbs never hand out: events, counts, the stats and role tables.

They live apart from `mesh.views` (which re-exports every one of them on first use, PEP 562, and is where
to import them from) so that a `meshctl status` process does not build them: each frozen dataclass costs
the compilation of its generated methods at import (~0.6 ms apiece), and building every value type was
~40 % of the interpreter's own start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from mesh._values import MemberView
from mesh.core.times import iso
from mesh.core.values import value


@value
class MemberEvent:
    """Something changed about a member: `joined`, `state` (liveness), `status`, or `snapshot`."""

    kind: str
    member: MemberView
    at: float
    previous: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented `watch --json` line."""
        return {
            "event": self.kind,
            "at": iso(self.at),
            "previous": self.previous,
            "member": self.member.to_json(),
        }


@value
class LeaseEvent:
    """What happened to a lease this node holds: `held`, `renewed`, `lost`, `released`.

    `held` and `renewed` carry the lease's new validity on the node's monotonic clock (CLOCK_BOOTTIME);
    `node_now` is that clock when the node reported it (see mesh.claim for how a holder uses both).
    """

    kind: str  # held | renewed | lost | released
    resource: str
    token: int
    valid_until: float = 0.0  # held/renewed: certainly held until then (0 for lost/released)
    node_now: float = 0.0


class MailCounts(NamedTuple):
    """Unread messages in this node's inbox; messages it sent that no recipient node has acked yet."""

    unread: int
    queued: int


@value
class BoardEvent:
    """The task board changed (a `watch` event): operation `change` ("task.add", "task.edit", "task.state",
    "milestone.add", "milestone.edit", "step.add", ...) on task or milestone `id`; or `change` "sync": `count`
    operations arrived at once (a catch-up), with no single id."""

    change: str
    entity: str  # task | milestone | "" (sync)
    id: str
    short_id: str
    title: str
    state: str  # the task's or milestone's stored state after the change (open, done, dropped)
    local: bool  # made on this node
    at: float  # unix seconds
    count: int = 1

    @property
    def kind(self) -> str:
        """The event's kind, as `MemberEvent.kind` says its own: always "board"."""
        return "board"

    def to_json(self) -> dict[str, Any]:
        """The documented `watch --json` line of a board change."""
        return {
            "event": "board",
            "at": iso(self.at),
            "change": self.change,
            "entity": self.entity or None,
            "id": self.id or None,
            "short_id": self.short_id or None,
            "title": self.title or None,
            "state": self.state or None,
            "local": self.local,
            "count": self.count,
        }


WatchEvent = MemberEvent | BoardEvent
"""What `watch` yields: member events (joined, state, status, snapshot) and board changes."""


# ---------------------------------------------------------------- stats (meshctl stats)


@value
class SessionUptime:
    """Heartbeat uptime of one session in the window: seconds alive of seconds it was expected."""

    name: str
    alive: float
    expected: float

    @property
    def ratio(self) -> float | None:
        return self.alive / self.expected if self.expected > 0 else None


@value
class ClaimOverlap:
    """Two sessions shown holding one item (or overlapping paths) at the same time: a safety failure."""

    resource: str
    first: str
    second: str
    start: float
    end: float


@value
class MilestoneDone:
    """Tasks done in the window under one milestone ("" = tasks without a milestone)."""

    milestone: str
    title: str
    done: int


@value
class MeshStats:
    """The old plan's success metrics over [since, until], as the answering node saw them."""

    since: float
    until: float
    refused: int
    refused_by_item: tuple[tuple[str, int], ...]
    overlaps: tuple[ClaimOverlap, ...]
    replies: int
    reply_p50: float | None
    reply_p90: float | None
    by_reply: int
    by_read: int
    unanswered: int
    within_target: float | None
    uptime: tuple[SessionUptime, ...]
    tasks_done: tuple[MilestoneDone, ...]

    def to_json(self) -> dict[str, Any]:
        """The documented `stats --json` shape."""
        return {
            "since": iso(self.since),
            "until": iso(self.until),
            "claims": {
                "refused": self.refused,
                "refused_by_item": dict(self.refused_by_item),
                "overlaps": [
                    {
                        "item": o.resource,
                        "holders": [o.first, o.second],
                        "start": iso(o.start),
                        "end": iso(o.end),
                        "seconds": round(o.end - o.start, 3),
                    }
                    for o in self.overlaps
                ],
            },
            "replies": {
                "count": self.replies,
                "p50_s": _round(self.reply_p50),
                "p90_s": _round(self.reply_p90),
                "by_reply": self.by_reply,
                "by_read": self.by_read,
                "unanswered": self.unanswered,
                "within_5m": _round(self.within_target),
            },
            "uptime": [
                {
                    "session": u.name,
                    "alive_s": round(u.alive, 1),
                    "expected_s": round(u.expected, 1),
                    "ratio": _round(u.ratio),
                }
                for u in self.uptime
            ],
            "tasks_done": [
                {"milestone": d.milestone or None, "title": d.title or None, "done": d.done}
                for d in self.tasks_done
            ],
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# ---------------------------------------------------------------- roles (meshctl status --by-role)


@value
class RoleRow:
    """One role: the sessions that have it (live ones first) and the open tasks filed under it."""

    role: str
    live: tuple[str, ...]
    away: tuple[str, ...]  # sessions with the role that are suspect, dead or gone
    open_tasks: int
    claimed_tasks: int

    def to_json(self) -> dict[str, Any]:
        """The documented `status --by-role --json` entry."""
        return {
            "role": self.role,
            "live": list(self.live),
            "away": list(self.away),
            "covered": bool(self.live),
            "open_tasks": self.open_tasks,
            "claimed_tasks": self.claimed_tasks,
        }


def role_table(members: Iterable[MemberView], tasks: Iterable[Any] = ()) -> list[RoleRow]:
    """Every role a session has (or a task is filed under), with its live sessions: a role with none is
    uncovered. `tasks` are board rows (with `role` and `state`)."""
    live: dict[str, list[str]] = {}
    away: dict[str, list[str]] = {}
    for m in members:
        if m.role:
            (live if m.state == "alive" else away).setdefault(m.role, []).append(m.name)
    open_: dict[str, int] = {}
    claimed: dict[str, int] = {}
    for t in tasks:
        role, state = t.role, str(getattr(t.state, "value", t.state))
        if not role or state not in ("open", "claimed"):
            continue
        open_[role] = open_.get(role, 0) + 1
        if state == "claimed":
            claimed[role] = claimed.get(role, 0) + 1
    roles = sorted({*live, *away, *open_})
    return [
        RoleRow(
            r,
            tuple(sorted(live.get(r, ()))),
            tuple(sorted(n for n in away.get(r, ()) if n not in live.get(r, ()))),
            open_.get(r, 0),
            claimed.get(r, 0),
        )
        for r in roles
    ]
