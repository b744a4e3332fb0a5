"""The page's picture of the mesh, kept current from ONE upstream watch that every open page shares.

A `Feed` connects to a node through a `Connector` that opens a `MeshAPI` (a client of a running node for
`meshctl web`, the node itself for `up --web`), takes the watch stream with a snapshot first, follows the
inbox, reads the steward epoch when a steward flag changes, and polls the little that has no event at all
(outbox delivery states, read flags, forgotten members) once a second — only while a page is open. Each
change bumps `version`; the JSON of the picture is built once per version and handed to every page as is,
so three pages cost one serialisation, not three.

When the node goes away (restart, `meshctl down`), the feed says so in the picture and reconnects by itself;
the first events after a reconnect are a fresh snapshot, so nothing stale survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from mesh.api import MeshAPI
from mesh.core.mailbox import InboxMessage, OutboxEntry
from mesh.errors import MeshError
from mesh.views import BoardEvent, ClaimView, MemberEvent, MemberView, iso

log = logging.getLogger("mesh.web")

ACTIVITY_MAX = 40  # recent events shown (and announced) on the page
MESSAGES_MAX = 25  # recent messages shown
BODY_MAX = 2_000  # characters of a message body sent to the page (bodies go up to 64 KiB)
POLL_INTERVAL = 1.0  # outbox states and the steward epoch have no event: polled while a page is open
RECONCILE_EVERY = 10.0  # members the node has forgotten (no event either) are dropped this often
COALESCE = 0.01  # a burst of events (a snapshot, a steward change: one loop turn) becomes one update
RECONNECT_MAX = 1.0  # seconds between attempts to reach a node that went away
OUTBOX_MAX = 100  # outbox entries polled (one per recipient): the newest, enough for MESSAGES_MAX rows
BOARD_COALESCE = 0.1  # a burst of board changes (a catch-up, a script filing tasks) is one read


Connector = Callable[[], AbstractAsyncContextManager[MeshAPI]]
"""Opens the node's API for one connected period (`async with connector() as source:`)."""


@dataclass
class _Upstream:
    connected: bool = False
    since: float = 0.0
    error: str = "connecting"


class Feed:
    """The live picture of the mesh as one node sees it, for every page this process serves."""

    def __init__(self, connect: Connector, *, node_name: str, mesh: str, version: str = "") -> None:
        self._connect = connect
        self.node_name = node_name
        self.mesh = mesh
        self.software = version
        self.version = 0
        self._members: dict[str, MemberView] = {}
        self._inbox: dict[str, dict[str, Any]] = {}
        self._outbox: list[dict[str, Any]] = []
        self._epoch: int | None = None
        self._steward_names: list[str] = []
        self._board: list[dict[str, Any]] | None = None
        self._activity: deque[dict[str, Any]] = deque(maxlen=ACTIVITY_MAX)
        self._seq = 0
        self._up = _Upstream()
        self._changed = asyncio.Event()
        self._dirty = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self._cache: tuple[int, bytes] = (-1, b"")
        self._pages = 0
        self._page_opened = asyncio.Event()
        self._info_wanted = asyncio.Event()
        self._board_wanted = asyncio.Event()
        self._last_unread = -1

    # ------------------------------------------------------------------ what pages see

    def state_json(self) -> bytes:
        """The picture as JSON (built once per version)."""
        if self._cache[0] != self.version:
            self._cache = (
                self.version,
                json.dumps(self.snapshot(), ensure_ascii=False, separators=(",", ":")).encode(),
            )
        return self._cache[1]

    def snapshot(self) -> dict[str, Any]:
        """The picture as a JSON-ready dict: {version, node, upstream, members (as `status --json`),
        stewards {epoch, members [{name, state}]}, claims (as `claims --json`), messages, board, activity}."""
        members = sorted(self._members.values(), key=_member_order)
        claims = [
            ClaimView(r, m.name, m.node_id, t, x).to_json()
            for m in members
            if m.state in ("alive", "suspect")
            for r, t, x in m.claims
        ]
        claims.sort(key=lambda c: (c["expires_at"] or "", c["type"], c["name"]))
        # Members flagged as stewards are the exact live incarnations; a name the config still lists beyond
        # them is an earlier run of that session (or one this node never met), shown as gone.
        stewards = [{"name": m.name, "state": m.state} for m in members if m.steward]
        extra = Counter(self._steward_names) - Counter(s["name"] for s in stewards)
        stewards += [{"name": n, "state": "gone"} for n in sorted(extra.elements())]
        return {
            "version": self.version,
            "node": {"name": self.node_name, "mesh": self.mesh, "software": self.software},
            "upstream": {
                "connected": self._up.connected,
                "since": iso(self._up.since),
                "error": self._up.error,
            },
            "members": [m.to_json() for m in members],
            "stewards": {"epoch": self._epoch, "members": stewards},
            "claims": claims,
            "messages": self._messages(),
            "board": self._board,
            "activity": list(self._activity),
        }

    async def wait_changed(self, seen: int, timeout: float) -> int:
        """The version once it differs from `seen` (or `seen` after `timeout`)."""
        if self.version == seen:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
        return self.version

    def page_opened(self) -> None:
        """A page started listening: polling runs while at least one does."""
        self._pages += 1
        self._page_opened.set()

    def page_closed(self) -> None:
        self._pages = max(0, self._pages - 1)
        if not self._pages:
            self._page_opened.clear()

    # ------------------------------------------------------------------ change bookkeeping

    def _touch(self) -> None:
        """Something visible changed: publish a new version after a short coalescing delay."""
        self._dirty = True
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(COALESCE, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if not self._dirty:
            return
        self._dirty = False
        self.version += 1
        # Wake every waiting page, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    def _note(self, m: MemberView, kind: str, text: str, at: float) -> None:
        self._seq += 1
        self._activity.appendleft(
            {"seq": self._seq, "at": iso(at or time.time()), "name": m.name, "kind": kind,
             "state": m.state, "text": text}
        )  # fmt: skip

    # ------------------------------------------------------------------ upstream

    async def run(self) -> None:
        """Follow the node until cancelled, reconnecting whenever it goes away."""
        delay = 0.05
        while True:
            started = time.monotonic()
            try:
                async with self._connect() as source:
                    await self._follow(source)
                reason = f"node {self.node_name} closed the stream"
            except MeshError as e:
                reason = str(e)
            except OSError as e:  # a socket that vanished under us
                reason = f"{type(e).__name__}: {e}"
            except Exception as e:  # a bug must not leave the page frozen: say it, then try again
                log.exception("web: following node %s failed", self.node_name)
                reason = f"{type(e).__name__}: {e}"
            if time.monotonic() - started > 2.0:
                delay = 0.05
            if self._up.connected or self._up.error != reason:
                log.info("web: lost node %s (%s); reconnecting", self.node_name, reason)
            self._up = _Upstream(False, time.time(), reason)
            self._touch()
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX, delay * 2)

    async def _follow(self, source: MeshAPI) -> None:
        events = source.watch(snapshot=True)
        fresh = True
        helpers: list[asyncio.Task[None]] = []
        try:
            async for ev in events:
                if fresh:
                    # The first event of a connection starts a new picture: members the node no longer
                    # knows (it restarted, or forgot them) must not linger from the previous connection.
                    fresh = False
                    self._members.clear()
                    self._inbox.clear()
                    self._info_wanted.set()
                    self._board_wanted.set()
                    self._up = _Upstream(True, time.time(), "")
                    helpers = [
                        asyncio.create_task(_keep(self._follow_inbox, source), name="web-inbox"),
                        asyncio.create_task(_keep(self._poll, source), name="web-poll"),
                        asyncio.create_task(_keep(self._follow_info, source), name="web-info"),
                        asyncio.create_task(_keep(self._follow_board, source), name="web-board"),
                    ]
                if isinstance(ev, BoardEvent):
                    self._on_board_event(ev)
                else:
                    self._on_event(ev)
        finally:
            for t in helpers:
                t.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _on_event(self, ev: MemberEvent) -> None:
        m = ev.member
        prev = self._members.get(m.node_id)
        self._members[m.node_id] = m
        if prev is not None and prev.steward != m.steward:
            self._info_wanted.set()
        # The board shows who claimed each task: a task claim taken, dropped or gone with its holder.
        before = {r for r, _, _ in prev.claims} if prev is not None else set()
        after = {r for r, _, _ in m.claims}
        changed = before ^ after if ev.kind != "state" else before | after
        if any(r.startswith("task/") for r in changed):
            self._board_wanted.set()
        if m.is_self and m.unread != self._last_unread:
            self._last_unread = m.unread
        if ev.kind == "joined":
            again = prev is not None and prev.incarnation and prev.incarnation != m.incarnation
            joined = f"joined as {m.role}" if m.role else "joined"
            self._note(m, "joined", "restarted" if again else joined, ev.at)
        elif ev.kind == "state":
            self._note(m, "state", f"is {m.state}" + (f" (was {ev.previous})" if ev.previous else ""), ev.at)
        elif ev.kind == "status" and prev is not None:
            self._status_notes(prev, m, ev.at)
        self._touch()

    def _on_board_event(self, ev: BoardEvent) -> None:
        """A board change: the board is read again (coalesced), and the change noted in the activity."""
        self._board_wanted.set()
        if ev.change == "sync":
            text = f"caught up {ev.count} board changes"
        else:
            what = {"task.add": "added", "task.edit": "edited", "step.add": "step added"}.get(ev.change)
            text = f"{ev.entity} {ev.short_id} {what or ev.state or 'changed'}: {ev.title}"
        self._seq += 1
        self._activity.appendleft(
            {"seq": self._seq, "at": iso(ev.at or time.time()), "name": "board", "kind": "board",
             "state": ev.state, "text": text}
        )  # fmt: skip
        self._touch()

    def _status_notes(self, prev: MemberView, m: MemberView, at: float) -> None:
        doing = ("action", "target", "phase", "progress", "note", "role")
        if any(getattr(prev, f) != getattr(m, f) for f in doing):
            self._note(m, "status", _doing_text(m), at)
        before = {r for r, _, _ in prev.claims}
        after = {r for r, _, _ in m.claims}
        for r in sorted(after - before):
            self._note(m, "claim", f"claimed {r}", at)
        for r in sorted(before - after):
            self._note(m, "claim", f"released {r}", at)
        if prev.steward != m.steward:
            self._note(m, "steward", "became a steward" if m.steward else "is no longer a steward", at)

    async def _follow_inbox(self, source: MeshAPI) -> None:
        """This node's inbox: what is there now, then each new message as it arrives."""
        async for item in source.messages(follow=True, limit=MESSAGES_MAX * 4):
            self._inbox[item.id] = _inbox_entry(item)
            if len(self._inbox) > MESSAGES_MAX * 4:  # keep it bounded: only the newest are shown
                for old in sorted(self._inbox.values(), key=lambda e: e["sent_at"])[:MESSAGES_MAX]:
                    del self._inbox[old["id"]]
            self._touch()

    async def _poll(self, source: MeshAPI) -> None:
        """What has no event, while a page is open: outbox delivery states, read flags, forgotten members."""
        last_reconcile = time.monotonic()
        unread_seen = self._last_unread
        while True:
            await self._page_opened.wait()
            changed = False
            out = _outbox_rows(await source.outbox(limit=OUTBOX_MAX))
            if out != self._outbox:
                self._outbox, changed = out, True
            if self._last_unread != unread_seen:
                # Someone read messages (or new ones came): the read flags of shown ones may have changed.
                unread_seen = self._last_unread
                unread = {m.id async for m in source.messages(unread=True)}
                for e in self._inbox.values():
                    if e["read"] == (e["id"] in unread):
                        e["read"], changed = e["id"] not in unread, True
            if time.monotonic() - last_reconcile >= RECONCILE_EVERY:
                last_reconcile = time.monotonic()
                known = {m.node_id for m in await source.members()}
                for gone in [k for k in self._members if k not in known]:
                    del self._members[gone]
                    changed = True
            if changed:
                self._touch()
            await asyncio.sleep(POLL_INTERVAL)

    async def _follow_board(self, source: MeshAPI) -> None:
        """The board: read on connect and after each change (a burst of changes is one read)."""
        while True:
            await self._board_wanted.wait()
            await asyncio.sleep(BOARD_COALESCE)
            self._board_wanted.clear()
            try:
                board = await _board(source)
            except BaseException:
                self._board_wanted.set()
                raise
            if board != self._board:
                self._board = board
                self._touch()

    async def _follow_info(self, source: MeshAPI) -> None:
        """The steward epoch: read on connect and whenever a member's steward flag changes."""
        while True:
            await self._info_wanted.wait()
            self._info_wanted.clear()
            try:
                i = await source.info()
            except BaseException:
                self._info_wanted.set()  # not read: read it again when this follower restarts
                raise
            epoch, names = int(i.epoch) or None, list(i.stewards)
            if (epoch, names) != (self._epoch, self._steward_names):
                self._epoch, self._steward_names = epoch, names
                self._touch()

    def _messages(self) -> list[dict[str, Any]]:
        rows = [*self._inbox.values(), *self._outbox]
        rows.sort(key=lambda e: e["sent_at"], reverse=True)
        return [_public_message(e, self.node_name) for e in rows[:MESSAGES_MAX]]


# ---------------------------------------------------------------------- helpers


async def _keep(follow: Callable[[MeshAPI], Awaitable[None]], source: MeshAPI) -> None:
    """Run one of the feed's followers for as long as the connection lasts, restarting it if it fails.

    A transient error (a call that timed out, a stream the node ended) must not leave part of the page
    stale until the next reconnect; the watch stream alone decides when the connection is over.
    """
    while True:
        try:
            await follow(source)
        except (MeshError, OSError) as e:
            log.debug("web: %s ended (%s); again shortly", getattr(follow, "__name__", follow), e)
        except Exception:
            log.exception("web: %s failed; again shortly", getattr(follow, "__name__", follow))
        await asyncio.sleep(POLL_INTERVAL)


async def _board(source: MeshAPI) -> list[dict[str, Any]] | None:
    """The task board's rows in board order (`board --json` task shapes); None shows "no board yet".

    The source's `board()` gives a `mesh.core.board.BoardView` (or a list of rows or dicts, for a test's
    source); app.js `renderBoard` draws the rows grouped by priority.
    """
    fn = getattr(source, "board", None)
    if fn is None:
        return None
    got = await fn()
    rows = got.tasks() if hasattr(got, "tasks") else got
    tasks = [_as_dict(t) for t in rows]
    return sorted(tasks, key=lambda t: str(t.get("priority", "P9")))  # stable: board order within each


def _as_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    if hasattr(row, "to_json"):
        return dict(row.to_json())
    return dict(row._asdict())  # a NamedTuple row


_STATE_RANK = {"alive": 0, "suspect": 0, "dead": 1, "left": 2}


def _member_order(m: MemberView) -> tuple[int, str]:
    # Alive and suspect share a rank so that a session wavering between them does not jump around.
    return (_STATE_RANK.get(m.state, 3), m.name)


def _doing_text(m: MemberView) -> str:
    bits = " ".join(x for x in (m.action, m.target) if x)
    if m.phase:
        bits += f" · {m.phase}" if bits else m.phase
    text = f"{bits or 'status'} {m.progress}%"
    return text + (f" — {m.note}" if m.note else "")


def _inbox_entry(m: InboxMessage) -> dict[str, Any]:
    """An inbox message as the feed keeps it."""
    return {
        "id": m.id,
        "dir": "in",
        "from": m.from_name,
        "to": m.to_name,
        "subject": m.subject,
        "body": m.body[:BODY_MAX],
        "truncated": len(m.body) > BODY_MAX,
        "sent_at": m.sent_at,
        "read": m.read,
        "broadcast": m.broadcast,
    }


def _outbox_rows(entries: Sequence[OutboxEntry]) -> list[dict[str, Any]]:
    """Outbox entries (one per recipient) grouped per message: a broadcast is one row with its states."""
    by_id: dict[str, dict[str, Any]] = {}
    for e in entries:
        state = e.state.value
        row = by_id.get(e.id)
        if row is None:
            row = by_id[e.id] = {
                "id": e.id, "dir": "out", "to": [], "subject": e.subject, "sent_at": float(e.sent_at),
                "broadcast": bool(e.broadcast), "states": {},
            }  # fmt: skip
        row["to"].append(e.to_name)
        row["states"][state] = row["states"].get(state, 0) + 1
    return list(by_id.values())


def _public_message(e: dict[str, Any], me: str) -> dict[str, Any]:
    """A message as the page shows it: sender → recipient and subject; a body only for this session's own."""
    if e["dir"] == "in":
        return {
            "id": e["id"], "dir": "in", "from": e["from"], "to": "all" if e["broadcast"] else e["to"],
            "subject": e["subject"], "body": e["body"], "truncated": e["truncated"],
            "sent_at": iso(e["sent_at"]), "state": "read" if e["read"] else "unread",
        }  # fmt: skip
    to = sorted(e["to"])
    states = e["states"]
    return {
        "id": e["id"], "dir": "out", "from": me,
        "to": f"all ({len(to)})" if e["broadcast"] else ", ".join(to),
        "subject": e["subject"], "sent_at": iso(e["sent_at"]),
        "state": next(iter(states)) if len(states) == 1 else
        ", ".join(f"{n} {s}" for s, n in sorted(states.items())),
    }  # fmt: skip
