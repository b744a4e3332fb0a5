"""The replicated task board and milestones: an operation-based CRDT every node keeps in full.

Nothing is central. Every edit is an operation (`Op`) made on one node, stamped with that node's hybrid
logical clock (`mesh.core.hlc`), applied there at once and then sent to every peer; every node applies
every operation it receives, in whatever order and however often it arrives, and all nodes that have
seen the same operations show the same board.

Identity
    Each board store has a *replica id* (`new_replica_id`: 8 characters, 40 random bits), made when the
    store is created, never reused: a node that loses its store starts a new replica, so its new
    operations never collide with old ones its peers have seen (the mailbox's "stream" lesson). An
    operation's id is ``<replica>-<seq>`` with ``seq`` counted 1, 2, 3... per replica. A task, milestone or
    step created by an operation takes that operation's id (initial steps ``<milestone id>.<k>``), so ids
    are unique without coordination. People see them short: the shortest prefix of the replica (at least
    4 characters) that no other replica on the board shares, e.g. ``k7qd-12`` (`Board.short`), and may type
    any unambiguous prefix (`Board.resolve_task`).

Merge rules (per field; "later" = the higher (stamp, replica, seq), a total order)
    ========================  ======================================================================
    task title, priority,     last-writer-wins register each: the later write wins. An edit writes
    milestone, step, role,    only the fields it changes, so concurrent edits of different fields
    note                      both survive. Moving a task to another milestone clears its step.
    task state                last-writer-wins register over open / done / dropped (done, drop and
                              reopen are writes to it): a concurrent done and reopen ends as the
                              later of the two. Edits never change the state, so an edit concurrent
                              with a drop leaves the task dropped (with the edit applied).
    milestone title, note,    last-writer-wins registers; state is open / dropped.
    state
    milestone steps           an observed-remove set with last-writer-wins text: each step added gets
                              a fresh id, so a removal removes exactly the steps its author saw and a
                              concurrent add always survives (add wins); a removal is final, and an
                              edit concurrent with it does not bring the step back.
    existence                 a task or milestone exists once its creating operation has arrived;
                              operations that arrive before it wait in a "headless" record that views
                              skip, and take effect under the same rules when it comes.
    ========================  ======================================================================

    Claims are not board state: "claimed by whom until when" is a claim of type ``task`` in the claims
    protocol (one holder, a fencing token); `Board.view` takes the live claims as an argument.

Retention and what is kept
    Only operations that still decide something are kept: an operation is *retained* while it is the
    winning write of at least one register (a creating operation always is). A superseded operation is
    reported in `Applied.obsolete` and may be deleted from the store. Anti-entropy stays exact because
    the *context* (which operation ids a replica has incorporated: a per-replica contiguous prefix plus
    a few out-of-order "dots") is exchanged along with the operations: a replica that merges a peer's
    context after applying the peer's delta holds every winning write the peer holds, so every id in
    that context is applied or dominated. A dropped task (or milestone) is a tombstone: its fields stay
    so that late edits cannot resurrect it. `Board.compact(horizon_ms)` forgets tombstones whose drop is
    stamped before the horizon; the runtime calls it with ``now - RETENTION_MS`` (30 days, as long as a
    node may stay away and still catch up). Their ids stay in `Board.purged` so late operations for them
    are ignored. Limit: a replica that was cut off for longer than the retention period and reopens such
    a task loses that reopen on the replicas that have forgotten the task.

How a runtime drives it
    * Local verb: ``op = board.add_task(now_ms, ...)`` (or ``edit_task``, ``done``, ...) validates,
      applies and returns the op; persist ``op`` (and ``board.context()``) *before* answering the
      command, then send it to every connected peer. The command's durability is that commit.
    * Peer op: ``applied = board.apply(op)`` (idempotent); if ``applied.new``, persist it when
      ``applied.retained``, delete ``applied.obsolete`` from the store, emit a watch event for
      ``applied.entity``. A `ConflictingOp` or `InvalidField` is the peer's fault.
    * (Re)connect, both directions: send ``board.context()``; the peer answers with
      ``split_delta(board.delta_for(their_context), max_ops)`` in order on one stream; the receiver
      calls ``apply_delta`` on each batch (only the last carries the context to merge). Equal contexts
      mean nothing to send.
    * Start: ``Board.restore(replica, stored_ops, stored_context, purged)``.
    * Reads: ``board.view(claims, ...)``; `op_to_dict` / `op_from_dict` are a JSON-ready codec.

A clock pulled far ahead by a skewed peer keeps every rule above intact (stamps stay ordered); edits just
read as "later" than the wall. Local verbs refuse to create more than `MAX_TASKS` tasks; remote
operations are always applied (refusing some on some replicas would break convergence), so rate limits on
the peer link are what bound a runaway peer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, NamedTuple

from mesh.core.errors import AmbiguousId, ConflictingOp, InvalidField, UnknownId
from mesh.core.hlc import HybridClock, Stamp, check_stamp
from mesh.core.times import iso

__all__ = [
    "MAX_STEPS",
    "MAX_TASKS",
    "NOTE_MAX_BYTES",
    "RETENTION_MS",
    "TITLE_MAX",
    "AddMilestone",
    "AddStep",
    "AddTask",
    "Applied",
    "Board",
    "BoardView",
    "Body",
    "Context",
    "Delta",
    "EditMilestone",
    "EditStep",
    "EditTask",
    "MilestoneRow",
    "MilestoneState",
    "Op",
    "Priority",
    "RemoveStep",
    "RowState",
    "SetTaskState",
    "StepRow",
    "TaskRow",
    "TaskState",
    "check_note",
    "check_replica",
    "check_role",
    "check_title",
    "context_from_dict",
    "context_to_dict",
    "new_replica_id",
    "op_from_dict",
    "op_kind",
    "op_to_dict",
    "parse_priority",
    "split_delta",
    "validate_op",
]

TITLE_MAX = 200
"""Characters in a task title, milestone title or step text."""
NOTE_MAX_BYTES = 2048
"""UTF-8 bytes in a note."""
MAX_STEPS = 50
"""Steps a milestone may be created with, and may have live at once (local verbs)."""
MAX_TASKS = 100_000
"""Tasks (dropped ones included) a local verb may create; beyond it `add_task` refuses."""
RETENTION_MS = 30 * 24 * 3600 * 1000
"""How long a dropped task or milestone is kept as a tombstone before `compact` may forget it."""
MAX_SEQ = 2**53
"""Largest per-replica sequence number (exact in every JSON implementation)."""


class Priority(StrEnum):
    """P0 is the most urgent."""

    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


class TaskState(StrEnum):
    """A task's stored state (claims are not stored on the board)."""

    OPEN = "open"
    DONE = "done"
    DROPPED = "dropped"


class MilestoneState(StrEnum):
    """A milestone's stored state; its progress is computed from its tasks."""

    OPEN = "open"
    DROPPED = "dropped"


class RowState(StrEnum):
    """A task's state as a view shows it: `claimed` comes from the claims protocol."""

    OPEN = "open"
    CLAIMED = "claimed"
    DONE = "done"
    DROPPED = "dropped"


# ---------------------------------------------------------------- validation

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case: no i l o u
_REPLICA = re.compile(r"[0-9a-hjkmnp-tv-z]{8}")
_ENTITY = re.compile(r"([0-9a-hjkmnp-tv-z]{8})-([1-9][0-9]{0,15})")
_STEP = re.compile(r"([0-9a-hjkmnp-tv-z]{8})-([1-9][0-9]{0,15})(?:\.([1-9][0-9]?))?")
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROLE_RULE = "1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"
# Besides Cc: line/paragraph separators and bidirectional overrides, which reorder what a terminal shows.
_INVISIBLE = {
    "\u2028",
    "\u2029",
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
}


def new_replica_id(entropy: bytes) -> str:
    """A replica id from at least 5 random bytes (the runtime passes ``os.urandom(5)``)."""
    if len(entropy) < 5:
        raise InvalidField("entropy", "a replica id needs at least 5 random bytes")
    n = int.from_bytes(entropy[:5], "big")
    return "".join(_ALPHABET[(n >> (5 * k)) & 31] for k in range(7, -1, -1))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _bad_char(value: str, allow_newline: bool = False) -> str | None:
    if value.isprintable():  # the common case, fast: no Cc, no separators, no format characters
        return None
    for c in value:
        if c == "\n" and allow_newline:
            continue
        if c in _INVISIBLE or unicodedata.category(c) == "Cc":
            return c
    return None


def check_title(value: object, field: str = "title") -> str:
    """A title or step text: 1-200 characters, not blank, no control characters."""
    if not isinstance(value, str):
        raise InvalidField(field, f"{field} must be text, not {type(value).__name__}")
    if not value.strip():
        raise InvalidField(field, f"{field} must not be empty")
    if len(value) > TITLE_MAX:
        raise InvalidField(field, f"{field} is {len(value)} characters; the limit is {TITLE_MAX}")
    bad = _bad_char(value)
    if bad is not None:
        raise InvalidField(field, f"{field} contains the control character {bad!r}")
    return value


def check_note(value: object, field: str = "note") -> str:
    """A note: at most 2 KiB of UTF-8; line breaks allowed, other control characters not."""
    if not isinstance(value, str):
        raise InvalidField(field, f"{field} must be text, not {type(value).__name__}")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > NOTE_MAX_BYTES:
        raise InvalidField(field, f"{field} is {size} bytes; the limit is {NOTE_MAX_BYTES} (2 KiB)")
    bad = _bad_char(value, allow_newline=True)
    if bad is not None:
        raise InvalidField(field, f"{field} contains the control character {bad!r}")
    return value


def check_role(value: object) -> str:
    """A role name, or "" for none."""
    if value == "":
        return ""
    if not isinstance(value, str) or not _ROLE.fullmatch(value):
        raise InvalidField("role", f"invalid role {_shown(value)}: use {ROLE_RULE}")
    return value


def parse_priority(value: object) -> Priority:
    """P0-P3 (any case)."""
    if isinstance(value, str) and value.upper() in Priority.__members__:
        return Priority(value.upper())
    raise InvalidField(
        "priority", f"priority must be one of P0, P1, P2, P3 (P0 is the most urgent), not {_shown(value)}"
    )


def check_replica(value: object) -> str:
    """A replica id (8 characters of Crockford base32, lower case), e.g. from a peer's sync message."""
    return _check_id(value, "replica", _REPLICA)


def _check_id(value: object, field: str, pattern: re.Pattern[str] = _ENTITY, empty: bool = False) -> str:
    if empty and value == "":
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidField(field, f"invalid {field} id {_shown(value)}")
    return value


# ---------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True)
class AddTask:
    """Create a task (its id is the operation's)."""

    title: str
    priority: Priority = Priority.P2
    milestone: str = ""
    step: str = ""
    role: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class EditTask:
    """Change some fields of a task (None = unchanged; "" clears milestone, step, role or note)."""

    task: str
    title: str | None = None
    priority: Priority | None = None
    milestone: str | None = None
    step: str | None = None
    role: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class SetTaskState:
    """Done, drop or reopen a task."""

    task: str
    state: TaskState


@dataclass(frozen=True, slots=True)
class AddMilestone:
    """Create a milestone with initial steps (ids ``<milestone>.1``, ``.2``, ...)."""

    title: str
    note: str = ""
    steps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EditMilestone:
    """Change a milestone's title, note or state (None = unchanged)."""

    milestone: str
    title: str | None = None
    note: str | None = None
    state: MilestoneState | None = None


@dataclass(frozen=True, slots=True)
class AddStep:
    """Append a step to a milestone (its id is the operation's)."""

    milestone: str
    text: str


@dataclass(frozen=True, slots=True)
class EditStep:
    """Change a step's text."""

    milestone: str
    step: str
    text: str


@dataclass(frozen=True, slots=True)
class RemoveStep:
    """Remove a step (final)."""

    milestone: str
    step: str


Body = AddTask | EditTask | SetTaskState | AddMilestone | EditMilestone | AddStep | EditStep | RemoveStep
_TASK_BODIES = (AddTask, EditTask, SetTaskState)


@dataclass(frozen=True, slots=True)
class Op:
    """One edit: made by replica `origin` as its `seq`-th operation, at hybrid time `stamp`."""

    origin: str
    seq: int
    stamp: Stamp
    body: Body

    @property
    def id(self) -> str:
        """``<origin>-<seq>``: the operation's id, and the id of what it creates."""
        return f"{self.origin}-{self.seq}"

    @property
    def target(self) -> str:
        """The id of the task or milestone it touches."""
        b = self.body
        if isinstance(b, AddTask | AddMilestone):
            return self.id
        if isinstance(b, EditTask | SetTaskState):
            return b.task
        return b.milestone


def _opt(value: object, check: Any, *args: Any) -> None:
    if value is not None:
        check(value, *args)


def _check_priority(value: object) -> None:
    if not isinstance(value, Priority):
        raise InvalidField("priority", f"priority must be a Priority, not {_shown(value)}")


def validate_op(op: Op) -> Op:
    """Every field of an operation from a peer (raises InvalidField naming the field)."""
    if not isinstance(op, Op):
        raise InvalidField("op", f"expected an Op, not {type(op).__name__}")
    _check_id(op.origin, "replica", _REPLICA)
    if isinstance(op.seq, bool) or not isinstance(op.seq, int) or not 1 <= op.seq <= MAX_SEQ:
        raise InvalidField("seq", f"seq must be a whole number from 1 to 2**53, not {_shown(op.seq)}")
    check_stamp(op.stamp)
    if op.stamp.node != op.origin:
        raise InvalidField("stamp", "an operation's stamp must name its origin replica")
    b = op.body
    if isinstance(b, AddTask):
        check_title(b.title)
        _check_priority(b.priority)
        _check_id(b.milestone, "milestone", empty=True)
        _check_id(b.step, "step", _STEP, empty=True)
        if b.step and not b.milestone:
            raise InvalidField("step", "a step needs its milestone")
        check_role(b.role)
        check_note(b.note)
    elif isinstance(b, EditTask):
        _check_id(b.task, "task")
        _opt(b.title, check_title)
        _opt(b.priority, _check_priority)
        _opt(b.milestone, _check_id, "milestone", _ENTITY, True)
        _opt(b.step, _check_id, "step", _STEP, True)
        _opt(b.role, check_role)
        _opt(b.note, check_note)
    elif isinstance(b, SetTaskState):
        _check_id(b.task, "task")
        if not isinstance(b.state, TaskState):
            raise InvalidField("state", f"task state must be a TaskState, not {_shown(b.state)}")
    elif isinstance(b, AddMilestone):
        check_title(b.title)
        check_note(b.note)
        if not isinstance(b.steps, tuple) or len(b.steps) > MAX_STEPS:
            raise InvalidField("steps", f"a milestone starts with at most {MAX_STEPS} steps")
        for text in b.steps:
            check_title(text, "step")
    elif isinstance(b, EditMilestone):
        _check_id(b.milestone, "milestone")
        _opt(b.title, check_title)
        _opt(b.note, check_note)
        if b.state is not None and not isinstance(b.state, MilestoneState):
            raise InvalidField("state", f"milestone state must be a MilestoneState, not {_shown(b.state)}")
    elif isinstance(b, AddStep):
        _check_id(b.milestone, "milestone")
        check_title(b.text, "step")
    elif isinstance(b, EditStep | RemoveStep):
        _check_id(b.milestone, "milestone")
        _check_id(b.step, "step", _STEP)
        if isinstance(b, EditStep):
            check_title(b.text, "step")
    else:
        raise InvalidField("op", f"unknown operation {type(b).__name__}")
    return op


# ---------------------------------------------------------------- context: which op ids a replica has


@dataclass(frozen=True, slots=True)
class Context:
    """Operation ids incorporated: all of ``1..n`` per replica in `vv`, plus `dots` beyond a gap."""

    vv: tuple[tuple[str, int], ...] = ()
    dots: tuple[tuple[str, int], ...] = ()

    def covers(self, origin: str, seq: int) -> bool:
        """Has this context incorporated operation ``origin-seq``?"""
        return seq <= dict(self.vv).get(origin, 0) or (origin, seq) in self.dots


def _check_context(ctx: Context) -> None:
    if not isinstance(ctx, Context):
        raise InvalidField("context", f"expected a Context, not {type(ctx).__name__}")
    for origin, seq in (*ctx.vv, *ctx.dots):
        _check_id(origin, "replica", _REPLICA)
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            raise InvalidField("context", f"context seq out of range: {_shown(seq)}")


class _Ctx:
    """The mutable form: `vv[o] = n` means 1..n all in; `dots[o]` holds ids past the gap."""

    __slots__ = ("dots", "vv")

    def __init__(self) -> None:
        self.vv: dict[str, int] = {}
        self.dots: dict[str, set[int]] = {}

    def has(self, origin: str, seq: int) -> bool:
        if seq <= self.vv.get(origin, 0):
            return True
        d = self.dots.get(origin)
        return d is not None and seq in d

    def add(self, origin: str, seq: int) -> None:
        top = self.vv.get(origin, 0)
        if seq <= top:
            return
        if seq != top + 1:
            self.dots.setdefault(origin, set()).add(seq)
            return
        top = seq
        d = self.dots.get(origin)
        if d:
            while top + 1 in d:
                top += 1
                d.discard(top)
            if not d:
                del self.dots[origin]
        self.vv[origin] = top

    def merge(self, other: Context) -> None:
        for origin, n in other.vv:
            if n > self.vv.get(origin, 0):
                self.vv[origin] = n
                # Dots inside the new prefix are redundant; re-adding the rest lets them extend it.
                for seq in sorted(self.dots.pop(origin, ())):
                    self.add(origin, seq)
        for origin, seq in other.dots:
            self.add(origin, seq)

    def frozen(self) -> Context:
        dots = sorted((o, s) for o, ss in self.dots.items() for s in ss)
        return Context(tuple(sorted(self.vv.items())), tuple(dots))

    def top(self, origin: str) -> int:
        d = self.dots.get(origin)
        return max(self.vv.get(origin, 0), max(d) if d else 0)


@dataclass(frozen=True, slots=True)
class Delta:
    """What one replica sends another: operations the other lacks, then (last batch only) its context."""

    ops: tuple[Op, ...]
    context: Context | None


def split_delta(delta: Delta, max_ops: int) -> list[Delta]:
    """Cut a delta into batches of at most `max_ops`; only the last carries the context (merge it only
    when every batch before it was applied: send them in order on one stream)."""
    if max_ops < 1:
        raise InvalidField("max_ops", "a batch holds at least one operation")
    chunks = [delta.ops[k : k + max_ops] for k in range(0, len(delta.ops), max_ops)] or [()]
    return [Delta(chunk, delta.context if k == len(chunks) - 1 else None) for k, chunk in enumerate(chunks)]


# ---------------------------------------------------------------- state

Key = tuple[int, int, str, int]
"""(wall_ms, counter, origin, seq): the total order of writes."""
Reg = tuple[Key, str]


def _key(op: Op) -> Key:
    return (op.stamp.wall_ms, op.stamp.counter, op.origin, op.seq)


class _Step:
    __slots__ = ("id", "order", "regs")

    def __init__(self, sid: str) -> None:
        self.id = sid
        self.order: tuple[Key, int] | None = None  # None: only edits/removal seen so far
        self.regs: dict[str, Reg] = {}


class _Entity:
    """A task or a milestone: registers by field name; `created` is None while headless."""

    __slots__ = ("created", "id", "regs", "steps", "updated")

    def __init__(self, eid: str) -> None:
        self.id = eid
        self.created: Key | None = None
        self.updated = 0  # wall_ms of the latest operation applied to it
        self.regs: dict[str, Reg] = {}
        self.steps: dict[str, _Step] = {}

    def value(self, name: str, default: str = "") -> str:
        reg = self.regs.get(name)
        return default if reg is None else reg[1]

    def write_keys(self) -> Iterator[Key]:
        for k, _ in self.regs.values():
            yield k
        for step in self.steps.values():
            for k, _ in step.regs.values():
                yield k


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one operation did, for the runtime's store and watchers."""

    op: Op
    new: bool
    """False for a duplicate (nothing changed)."""
    retained: bool
    """Keep it in the store (it decides at least one field)."""
    obsolete: tuple[str, ...] = ()
    """Ids of operations that no longer decide anything: the store may delete them."""

    @property
    def entity(self) -> str:
        """The task or milestone it touched."""
        return self.op.target

    @property
    def kind(self) -> str:
        """Either "task" or "milestone"."""
        return "task" if isinstance(self.op.body, _TASK_BODIES) else "milestone"


# ---------------------------------------------------------------- views


class TaskRow(NamedTuple):
    """One task as the board shows it (a named tuple: a view builds 10,000 of these, and a tuple is
    built ~5x faster than a frozen dataclass; ``row._asdict()`` gives the JSON shape)."""

    id: str
    short_id: str
    title: str
    priority: Priority
    state: RowState
    holder: str
    """Who has claimed it ("" unless `state` is claimed)."""
    until: float | None
    """When that claim ends (the claims protocol's time, as given)."""
    milestone: str
    milestone_title: str
    step: str
    role: str
    note: str
    created_ms: int
    updated_ms: int
    origin: str

    def to_json(self) -> dict[str, Any]:
        """The documented `board --json` task shape (times RFC 3339 UTC; absent values null)."""
        return {
            "id": self.id,
            "short_id": self.short_id,
            "title": self.title,
            "priority": self.priority.value,
            "state": self.state.value,
            "holder": self.holder or None,
            "until": iso(self.until),
            "milestone": self.milestone or None,
            "milestone_title": self.milestone_title or None,
            "step": self.step or None,
            "role": self.role or None,
            "note": self.note,
            "created_at": iso(self.created_ms / 1000),
            "updated_at": iso(self.updated_ms / 1000),
        }


@dataclass(frozen=True, slots=True)
class StepRow:
    """A milestone step, numbered from 1 in creation order, with its tasks' progress."""

    id: str
    number: int
    text: str
    done: int
    total: int

    def to_json(self) -> dict[str, Any]:
        """A step as `milestone show --json` gives it."""
        return {
            "id": self.id,
            "number": self.number,
            "text": self.text,
            "done": self.done,
            "total": self.total,
        }


@dataclass(frozen=True, slots=True)
class MilestoneRow:
    """A milestone and its progress: done / total over its tasks that are not dropped."""

    id: str
    short_id: str
    title: str
    note: str
    state: MilestoneState
    steps: tuple[StepRow, ...]
    done: int
    total: int

    @property
    def percent(self) -> int:
        """Whole percent done (0 when it has no tasks)."""
        return self.done * 100 // self.total if self.total else 0

    def to_json(self) -> dict[str, Any]:
        """The documented `milestone show --json` shape (progress over its tasks that are not dropped)."""
        return {
            "id": self.id,
            "short_id": self.short_id,
            "title": self.title,
            "note": self.note,
            "state": self.state.value,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass(frozen=True, slots=True)
class BoardView:
    """Tasks grouped by priority (P0 first; each group open and claimed first, then done, then dropped,
    each by creation), and every milestone with its progress."""

    groups: tuple[tuple[Priority, tuple[TaskRow, ...]], ...]
    milestones: tuple[MilestoneRow, ...]

    def tasks(self) -> Iterator[TaskRow]:
        """Every task row, in board order."""
        for _, rows in self.groups:
            yield from rows

    def to_json(self) -> dict[str, Any]:
        """The documented `board --json` shape: tasks in board order (P0 first), then the milestones."""
        return {
            "tasks": [t.to_json() for t in self.tasks()],
            "milestones": [m.to_json() for m in self.milestones],
        }


_RANK = {TaskState.OPEN: 0, TaskState.DONE: 1, TaskState.DROPPED: 2}
# Plain dict lookups: calling an enum class costs ~1 us, which a 10k-task view pays three times per task.
_TASK_STATE = {s.value: s for s in TaskState}
_PRIORITY = {p.value: p for p in Priority}
_ROW_STATE = {
    TaskState.OPEN: RowState.OPEN,
    TaskState.DONE: RowState.DONE,
    TaskState.DROPPED: RowState.DROPPED,
}


# ---------------------------------------------------------------- the board


class Board:
    """One replica of the board. Not thread-safe; the runtime owns it."""

    def __init__(self, replica: str, clock: HybridClock | None = None) -> None:
        _check_id(replica, "replica", _REPLICA)
        if clock is not None and clock.node != replica:
            raise InvalidField("clock", "the board's clock must stamp with the board's replica id")
        self.replica = replica
        self.clock = clock or HybridClock(replica)
        self._tasks: dict[str, _Entity] = {}
        self._milestones: dict[str, _Entity] = {}
        self._ops: dict[tuple[str, int], Op] = {}
        self._by_origin: dict[str, set[int]] = {}  # retained seqs per origin, for delta_for
        self._refs: dict[tuple[str, int], int] = {}
        self._ctx = _Ctx()
        self._purged: set[str] = set()
        self._origins: set[str] = {replica}
        self._short: dict[str, str] | None = None
        self._obsolete: list[str] = []
        self.last_applied: Applied | None = None
        """What the latest local verb's operation did (its `obsolete` ids are for the store too)."""

    # -- replication

    def apply(self, op: Op) -> Applied:
        """Apply an operation from anywhere (idempotent, in any order). Raises InvalidField for a bad
        operation and ConflictingOp for a different operation under a known id."""
        validate_op(op)
        oid = (op.origin, op.seq)
        if self._ctx.has(op.origin, op.seq):
            known = self._ops.get(oid)
            if known is not None and known != op:
                raise ConflictingOp(f"operation {op.id} arrived with different content")
            return Applied(op, new=False, retained=known is not None)
        self.clock.observe(op.stamp)
        self._ctx.add(op.origin, op.seq)
        self._know(op.origin)
        if op.target in self._purged:
            return Applied(op, new=True, retained=False)
        self._obsolete = []
        self._refs[oid] = 0
        self._ops[oid] = op
        self._by_origin.setdefault(op.origin, set()).add(op.seq)
        self._effect(op)
        retained = self._refs[oid] > 0
        if not retained:  # it lost every register it wrote: never worth storing
            del self._refs[oid]
            self._forget(oid)
        return Applied(op, new=True, retained=retained, obsolete=tuple(self._obsolete))

    def context(self) -> Context:
        """Which operations this replica has incorporated (send it to a peer on connect)."""
        return self._ctx.frozen()

    def delta_for(self, their: Context) -> Delta:
        """Every kept operation the peer's context lacks, and this replica's context."""
        theirs = dict(their.vv)
        dots = set(their.dots)
        out: list[Op] = []
        for origin, seqs in self._by_origin.items():
            floor = theirs.get(origin, 0)
            for seq in sorted(seqs):
                if seq > floor and (origin, seq) not in dots:
                    out.append(self._ops[(origin, seq)])
        return Delta(tuple(out), self.context())

    def apply_delta(self, delta: Delta) -> list[Applied]:
        """Apply a peer's delta (one batch of it); merge its context when it carries one."""
        if delta.context is not None:
            _check_context(delta.context)
        done = [self.apply(op) for op in delta.ops]
        if delta.context is not None:
            self._ctx.merge(delta.context)
            for origin, _ in (*delta.context.vv, *delta.context.dots):
                self._know(origin)
        return done

    def _know(self, origin: str) -> None:
        if origin not in self._origins:
            self._origins.add(origin)
            self._short = None  # a new replica may lengthen others' short forms

    def retained_ops(self) -> Iterator[Op]:
        """The operations worth storing (what `restore` needs, with `context` and `purged`)."""
        return iter(self._ops.values())

    @property
    def purged(self) -> frozenset[str]:
        """Ids of tombstones `compact` has forgotten."""
        return frozenset(self._purged)

    @classmethod
    def restore(cls, replica: str, ops: Iterable[Op], context: Context, purged: Iterable[str] = ()) -> Board:
        """A board rebuilt from its store."""
        board = cls(replica)
        board._purged = set(purged)
        for op in ops:
            board.apply(op)
        board._ctx.merge(context)
        for origin, _ in (*context.vv, *context.dots):
            board._know(origin)
        return board

    def compact(self, horizon_ms: int) -> tuple[str, ...]:
        """Forget tombstones (dropped tasks and milestones, and headless records) whose last write is
        stamped before `horizon_ms`; returns the ids of operations the store may delete."""
        gone: list[str] = []
        for table, dropped in ((self._tasks, TaskState.DROPPED), (self._milestones, MilestoneState.DROPPED)):
            for eid, ent in list(table.items()):
                state = ent.regs.get("state")
                tomb = ent.created is None or (state is not None and state[1] == dropped)
                if not tomb or max((k[0] for k in ent.write_keys()), default=0) >= horizon_ms:
                    continue
                for k in set(ent.write_keys()):
                    oid = (k[2], k[3])
                    if oid in self._ops:
                        self._refs.pop(oid, None)
                        self._forget(oid)
                        gone.append(f"{k[2]}-{k[3]}")
                del table[eid]
                self._purged.add(eid)
        return tuple(gone)

    # -- effects

    def _effect(self, op: Op) -> None:
        key = _key(op)
        b = op.body
        table = self._tasks if isinstance(b, _TASK_BODIES) else self._milestones
        ent = self._entity(table, op.target)
        ent.updated = max(ent.updated, key[0])
        if isinstance(b, AddTask):
            t = self._entity(self._tasks, op.id)
            t.created = key
            self._pin(op)
            for name, value in (
                ("title", b.title),
                ("priority", b.priority.value),
                ("milestone", b.milestone),
                ("step", b.step),
                ("role", b.role),
                ("note", b.note),
                ("state", TaskState.OPEN.value),
            ):
                self._write(t.regs, name, key, value)
        elif isinstance(b, EditTask):
            t = self._entity(self._tasks, b.task)
            for name, maybe in (
                ("title", b.title),
                ("priority", None if b.priority is None else b.priority.value),
                ("milestone", b.milestone),
                ("step", b.step),
                ("role", b.role),
                ("note", b.note),
            ):
                if maybe is not None:
                    self._write(t.regs, name, key, maybe)
        elif isinstance(b, SetTaskState):
            self._write(self._entity(self._tasks, b.task).regs, "state", key, b.state.value)
        elif isinstance(b, AddMilestone):
            m = self._entity(self._milestones, op.id)
            m.created = key
            self._pin(op)
            for name, value in (("title", b.title), ("note", b.note), ("state", MilestoneState.OPEN.value)):
                self._write(m.regs, name, key, value)
            for k, text in enumerate(b.steps, 1):
                step = self._step(m, f"{op.id}.{k}")
                step.order = (key, k)
                self._write(step.regs, "text", key, text)
        elif isinstance(b, EditMilestone):
            m = self._entity(self._milestones, b.milestone)
            for name, maybe in (
                ("title", b.title),
                ("note", b.note),
                ("state", None if b.state is None else b.state.value),
            ):
                if maybe is not None:
                    self._write(m.regs, name, key, maybe)
        elif isinstance(b, AddStep):
            step = self._step(self._entity(self._milestones, b.milestone), op.id)
            step.order = (key, 0)
            self._pin(op)
            self._write(step.regs, "text", key, b.text)
        elif isinstance(b, EditStep):
            self._write(
                self._step(self._entity(self._milestones, b.milestone), b.step).regs, "text", key, b.text
            )
        else:
            # A removal is final: a register only ever written "removed", kept (pinned) as the tombstone.
            step = self._step(self._entity(self._milestones, b.milestone), b.step)
            self._write(step.regs, "removed", key, "1")

    @staticmethod
    def _entity(table: dict[str, _Entity], eid: str) -> _Entity:
        ent = table.get(eid)
        if ent is None:
            ent = table[eid] = _Entity(eid)
        return ent

    @staticmethod
    def _step(m: _Entity, sid: str) -> _Step:
        step = m.steps.get(sid)
        if step is None:
            step = m.steps[sid] = _Step(sid)
        return step

    def _pin(self, op: Op) -> None:
        # A creating operation is kept for good: it is what makes the task, milestone or step exist.
        self._refs[(op.origin, op.seq)] += 1

    def _write(self, regs: dict[str, Reg], name: str, key: Key, value: str) -> None:
        cur = regs.get(name)
        if cur is not None and cur[0] >= key:
            return
        regs[name] = (key, value)
        self._refs[(key[2], key[3])] += 1
        if cur is not None:
            self._release((cur[0][2], cur[0][3]))

    def _release(self, oid: tuple[str, int]) -> None:
        left = self._refs.get(oid)
        if left is None:
            return
        if left <= 1:
            self._drop_op(oid)
        else:
            self._refs[oid] = left - 1

    def _drop_op(self, oid: tuple[str, int]) -> None:
        self._refs.pop(oid, None)
        self._forget(oid)
        self._obsolete.append(f"{oid[0]}-{oid[1]}")

    def _forget(self, oid: tuple[str, int]) -> None:
        self._ops.pop(oid, None)
        seqs = self._by_origin.get(oid[0])
        if seqs is not None:
            seqs.discard(oid[1])

    # -- ids

    def _shorts(self) -> dict[str, str]:
        if self._short is None:
            origins = sorted(self._origins)
            short: dict[str, str] = {}
            for k, o in enumerate(origins):
                need = 4
                for other in (origins[k - 1] if k else "", origins[k + 1] if k + 1 < len(origins) else ""):
                    common = 0
                    while common < len(o) and common < len(other) and o[common] == other[common]:
                        common += 1
                    need = max(need, common + 1)
                short[o] = o[: min(need, len(o))]
            self._short = short
        return self._short

    def short(self, eid: str) -> str:
        """The short form of a task, milestone or step id, for people."""
        origin, sep, rest = eid.partition("-")
        return f"{self._shorts().get(origin, origin)}{sep}{rest}"

    def _resolve(self, table: dict[str, _Entity], kind: str, given: object) -> str:
        if not isinstance(given, str) or not given.strip():
            raise InvalidField(kind, f"a {kind} id is needed, not {_shown(given)}")
        text = given.strip().lower()
        if text in table and table[text].created is not None:
            return text
        prefix, sep, seq = text.partition("-")
        if not sep or not seq.isdigit() or not prefix:
            raise UnknownId(kind, given)
        found = sorted(
            eid
            for origin in self._shorts()
            if origin.startswith(prefix)
            for eid in (f"{origin}-{int(seq)}",)
            if eid in table and table[eid].created is not None
        )
        if not found:
            raise UnknownId(kind, given)
        if len(found) > 1:
            raise AmbiguousId(kind, given, tuple(found))
        return found[0]

    def resolve_task(self, given: str) -> str:
        """A task's id from what a person typed (a full id or a short one; any case)."""
        return self._resolve(self._tasks, "task", given)

    def resolve_milestone(self, given: str) -> str:
        """A milestone's id from what a person typed."""
        return self._resolve(self._milestones, "milestone", given)

    def resolve_step(self, milestone: str, given: str) -> str:
        """A live step of a milestone, by its number in `MilestoneRow.steps` (from 1) or its id."""
        m = self._milestones[self.resolve_milestone(milestone)]
        live = self._live_steps(m)
        text = given.strip().lower() if isinstance(given, str) else ""
        if text.isdigit() and 1 <= int(text) <= len(live):
            return live[int(text) - 1].id
        for step in live:
            if step.id == text or self.short(step.id) == text:
                return step.id
        raise UnknownId(f"step of milestone {self.short(m.id)}", str(given))

    @staticmethod
    def _live_steps(m: _Entity) -> list[_Step]:
        live = [s for s in m.steps.values() if s.order is not None and "removed" not in s.regs]
        live.sort(key=lambda s: s.order or ((0, 0, "", 0), 0))
        return live

    # -- local verbs: validate, apply, return the op to persist and send

    def _make(self, now_ms: int, body: Body) -> Op:
        seq = self._ctx.top(self.replica) + 1
        op = Op(self.replica, seq, self.clock.tick(now_ms), body)
        self.last_applied = self.apply(op)
        return op

    def _task(self, given: str, *, live: bool = True) -> _Entity:
        t = self._tasks[self.resolve_task(given)]
        if live and t.value("state") == TaskState.DROPPED:
            raise InvalidField("task", f"task {self.short(t.id)} is dropped; reopen it first")
        return t

    def _milestone_ref(self, given: str) -> str:
        mid = self.resolve_milestone(given)
        if self._milestones[mid].value("state") == MilestoneState.DROPPED:
            raise InvalidField("milestone", f"milestone {self.short(mid)} is dropped")
        return mid

    def add_task(
        self,
        now_ms: int,
        title: str,
        *,
        priority: Priority | str = Priority.P2,
        milestone: str = "",
        step: str = "",
        role: str = "",
        note: str = "",
    ) -> Op:
        """Create a task; its id is ``op.id``."""
        if len(self._tasks) >= MAX_TASKS:
            raise InvalidField("task", f"the board holds {MAX_TASKS} tasks; drop some first")
        mid = self._milestone_ref(milestone) if milestone else ""
        if step and not mid:
            raise InvalidField("step", "a step needs --milestone")
        sid = self.resolve_step(mid, step) if step else ""
        body = AddTask(
            check_title(title), parse_priority(priority), mid, sid, check_role(role), check_note(note)
        )
        return self._make(now_ms, body)

    def edit_task(
        self,
        now_ms: int,
        task: str,
        *,
        title: str | None = None,
        priority: Priority | str | None = None,
        milestone: str | None = None,
        step: str | None = None,
        role: str | None = None,
        note: str | None = None,
    ) -> Op:
        """Change fields of a task (None = unchanged; "" clears milestone, step, role or note)."""
        t = self._task(task)
        mid = None if milestone is None else (self._milestone_ref(milestone) if milestone else "")
        if step:
            owner = mid if mid is not None else t.value("milestone")
            if not owner:
                raise InvalidField("step", "a step needs a milestone")
            sid: str | None = self.resolve_step(owner, step)
        else:
            sid = step
        if mid is not None and mid != t.value("milestone") and sid is None:
            sid = ""  # a step belongs to its milestone: moving the task clears it
        body = EditTask(
            t.id,
            None if title is None else check_title(title),
            None if priority is None else parse_priority(priority),
            mid,
            sid,
            None if role is None else check_role(role),
            None if note is None else check_note(note),
        )
        if all(
            v is None for v in (body.title, body.priority, body.milestone, body.step, body.role, body.note)
        ):
            raise InvalidField("task", "nothing to change: give at least one field")
        return self._make(now_ms, body)

    def done(self, now_ms: int, task: str) -> Op:
        """Mark a task done."""
        return self._make(now_ms, SetTaskState(self._task(task).id, TaskState.DONE))

    def drop(self, now_ms: int, task: str) -> Op:
        """Drop a task (it stays as a tombstone; `reopen` brings it back)."""
        return self._make(now_ms, SetTaskState(self._task(task, live=False).id, TaskState.DROPPED))

    def reopen(self, now_ms: int, task: str) -> Op:
        """Make a done or dropped task open again."""
        return self._make(now_ms, SetTaskState(self._task(task, live=False).id, TaskState.OPEN))

    def add_milestone(self, now_ms: int, title: str, *, steps: Iterable[str] = (), note: str = "") -> Op:
        """Create a milestone with initial steps; its id is ``op.id``."""
        texts = tuple(check_title(s, "step") for s in steps)
        if len(texts) > MAX_STEPS:
            raise InvalidField("steps", f"a milestone has at most {MAX_STEPS} steps")
        return self._make(now_ms, AddMilestone(check_title(title), check_note(note), texts))

    def edit_milestone(
        self,
        now_ms: int,
        milestone: str,
        *,
        title: str | None = None,
        note: str | None = None,
        state: MilestoneState | None = None,
    ) -> Op:
        """Change a milestone's title or note, or drop (state=dropped) / reopen it."""
        mid = self.resolve_milestone(milestone)
        if title is None and note is None and state is None:
            raise InvalidField("milestone", "nothing to change: give at least one field")
        body = EditMilestone(
            mid,
            None if title is None else check_title(title),
            None if note is None else check_note(note),
            None if state is None else MilestoneState(state),
        )
        return self._make(now_ms, body)

    def add_step(self, now_ms: int, milestone: str, text: str) -> Op:
        """Append a step to a milestone; its id is ``op.id``."""
        mid = self._milestone_ref(milestone)
        if len(self._live_steps(self._milestones[mid])) >= MAX_STEPS:
            raise InvalidField("steps", f"a milestone has at most {MAX_STEPS} steps")
        return self._make(now_ms, AddStep(mid, check_title(text, "step")))

    def edit_step(self, now_ms: int, milestone: str, step: str, text: str) -> Op:
        """Change a step's text."""
        mid = self._milestone_ref(milestone)
        return self._make(now_ms, EditStep(mid, self.resolve_step(mid, step), check_title(text, "step")))

    def remove_step(self, now_ms: int, milestone: str, step: str) -> Op:
        """Remove a step (for good)."""
        mid = self._milestone_ref(milestone)
        return self._make(now_ms, RemoveStep(mid, self.resolve_step(mid, step)))

    # -- reads

    def __len__(self) -> int:
        return sum(1 for t in self._tasks.values() if t.created is not None)

    def view(
        self,
        claims: Mapping[str, tuple[str, float]] | None = None,
        *,
        priorities: Collection[Priority] | None = None,
        holder: str | None = None,
        role: str | None = None,
        milestone: str | None = None,
        include_done: bool = True,
        include_dropped: bool = False,
    ) -> BoardView:
        """The board: tasks grouped by priority with their state, and milestones with progress.

        `claims` maps a task id to (holder, until) from the claims protocol (type ``task``); a claim on
        a task that is done or dropped is not shown. Filters: `priorities`, `holder` (tasks claimed by
        that session: ``--mine``), `role`, `milestone` (an id), and whether done / dropped tasks appear.
        Milestone progress always counts every task, whatever the filters.
        """
        claims = claims or {}
        shorts = self._shorts()
        mtitles = {mid: m.value("title") for mid, m in self._milestones.items() if m.created is not None}
        groups: dict[Priority, list[tuple[int, Key, TaskRow]]] = {p: [] for p in Priority}
        per_milestone: dict[str, list[int]] = {}
        per_step: dict[tuple[str, str], list[int]] = {}
        for t in self._tasks.values():
            if t.created is None:
                continue
            regs = t.regs
            state = _TASK_STATE[regs["state"][1]]
            mid = regs["milestone"][1]
            sid = regs["step"][1]
            if mid and state is not TaskState.DROPPED:
                done = state is TaskState.DONE
                tally = per_milestone.setdefault(mid, [0, 0])
                tally[0] += done
                tally[1] += 1
                if sid:
                    tally = per_step.setdefault((mid, sid), [0, 0])
                    tally[0] += done
                    tally[1] += 1
            if state is TaskState.DONE and not include_done:
                continue
            if state is TaskState.DROPPED and not include_dropped:
                continue
            prio = _PRIORITY[regs["priority"][1]]
            if priorities is not None and prio not in priorities:
                continue
            task_role = regs["role"][1]
            if role is not None and task_role != role:
                continue
            if milestone is not None and mid != milestone:
                continue
            who, until = claims.get(t.id, ("", None))
            shown = _ROW_STATE[state]
            if state is TaskState.OPEN and who:
                shown = RowState.CLAIMED
            else:
                who, until = "", None
            if holder is not None and who != holder:
                continue
            origin, _, seq = t.id.partition("-")
            row = TaskRow(  # positional: ~2x faster than keywords for a 16-field row
                t.id,
                f"{shorts.get(origin, origin)}-{seq}",
                regs["title"][1],
                prio,
                shown,
                who,
                until,
                mid,
                mtitles.get(mid, ""),
                sid,
                task_role,
                regs["note"][1],
                t.created[0],
                t.updated,
                origin,
            )
            groups[prio].append((_RANK[state], t.created, row))
        for rows in groups.values():
            rows.sort()  # (rank, created) is unique per task, so rows themselves are never compared
        out_groups = tuple((p, tuple(row for _, _, row in rows)) for p, rows in groups.items())
        return BoardView(out_groups, self._milestone_rows(per_milestone, per_step))

    def _milestone_rows(
        self, per_milestone: dict[str, list[int]], per_step: dict[tuple[str, str], list[int]]
    ) -> tuple[MilestoneRow, ...]:
        rows: list[tuple[Key, MilestoneRow]] = []
        for mid, m in self._milestones.items():
            if m.created is None:
                continue
            steps = tuple(
                StepRow(s.id, n, s.regs["text"][1], *per_step.get((mid, s.id), (0, 0)))
                for n, s in enumerate(self._live_steps(m), 1)
            )
            done, total = per_milestone.get(mid, (0, 0))
            rows.append(
                (
                    m.created,
                    MilestoneRow(
                        mid,
                        self.short(mid),
                        m.value("title"),
                        m.value("note"),
                        MilestoneState(m.value("state", MilestoneState.OPEN.value)),
                        steps,
                        done,
                        total,
                    ),
                )
            )
        rows.sort(key=lambda r: r[0])
        return tuple(row for _, row in rows)

    def milestone(self, given: str) -> MilestoneRow:
        """One milestone with its steps and progress (`meshctl milestone show`)."""
        mid = self.resolve_milestone(given)
        for row in self.view(include_dropped=True, milestone=mid).milestones:
            if row.id == mid:
                return row
        raise UnknownId("milestone", given)  # pragma: no cover - resolve found it

    def done_tasks(self) -> Iterator[tuple[str, str, int]]:
        """(task id, milestone id or "", wall_ms of the write that made it done) for every done task:
        what `meshctl stats` counts per milestone within its window."""
        for t in self._tasks.values():
            if t.created is None:
                continue
            key, state = t.regs["state"]
            if state == TaskState.DONE.value:
                yield t.id, t.regs["milestone"][1], key[0]

    def summary(self, eid: str) -> tuple[str, str, str] | None:
        """(kind "task" or "milestone", title, stored state) of a live id, else None: what a watch event
        says about a change, without building a view."""
        for kind, table in (("task", self._tasks), ("milestone", self._milestones)):
            ent = table.get(eid)
            if ent is not None and ent.created is not None:
                return kind, ent.value("title"), ent.value("state")
        return None

    def task_row(self, task: str, claims: Mapping[str, tuple[str, float]] | None = None) -> TaskRow:
        """One task as `view` shows it (any state), by a full or short id."""
        t = self._tasks[self.resolve_task(task)]
        regs = t.regs
        state = _TASK_STATE[regs["state"][1]]
        who, until = (claims or {}).get(t.id, ("", None))
        shown = _ROW_STATE[state]
        if state is TaskState.OPEN and who:
            shown = RowState.CLAIMED
        else:
            who, until = "", None
        mid = regs["milestone"][1]
        m = self._milestones.get(mid)
        assert t.created is not None
        return TaskRow(
            t.id,
            self.short(t.id),
            regs["title"][1],
            _PRIORITY[regs["priority"][1]],
            shown,
            who,
            until,
            mid,
            m.value("title") if m is not None and m.created is not None else "",
            regs["step"][1],
            regs["role"][1],
            regs["note"][1],
            t.created[0],
            t.updated,
            t.id.partition("-")[0],
        )


# ---------------------------------------------------------------- codec (JSON-ready dicts)

_KINDS: dict[type, str] = {
    AddTask: "task.add",
    EditTask: "task.edit",
    SetTaskState: "task.state",
    AddMilestone: "milestone.add",
    EditMilestone: "milestone.edit",
    AddStep: "step.add",
    EditStep: "step.edit",
    RemoveStep: "step.remove",
}
_BY_KIND = {v: k for k, v in _KINDS.items()}


def op_kind(op: Op) -> str:
    """The operation's kind as the codec and watch events name it: "task.add", "milestone.edit", ..."""
    return _KINDS[type(op.body)]


def op_to_dict(op: Op) -> dict[str, Any]:
    """An operation as a dict of JSON types (enums as their values; steps as a list)."""
    body: dict[str, Any] = {}
    for f in fields(op.body):
        name = f.name
        value = getattr(op.body, name)
        body[name] = list(value) if isinstance(value, tuple) else value
    return {
        "origin": op.origin,
        "seq": op.seq,
        "wall_ms": op.stamp.wall_ms,
        "counter": op.stamp.counter,
        "kind": _KINDS[type(op.body)],
        "body": {k: (v.value if isinstance(v, StrEnum) else v) for k, v in body.items()},
    }


def op_from_dict(data: Mapping[str, Any]) -> Op:
    """The inverse of `op_to_dict`, validating everything (raises InvalidField)."""
    if not isinstance(data, Mapping) or set(data) != {"origin", "seq", "wall_ms", "counter", "kind", "body"}:
        raise InvalidField("op", "an operation needs exactly origin, seq, wall_ms, counter, kind and body")
    cls = _BY_KIND.get(data["kind"]) if isinstance(data["kind"], str) else None
    body = data["body"]
    if cls is None:
        raise InvalidField("op", f"unknown operation kind {_shown(data['kind'])}")
    names = {f.name for f in fields(cls)}
    if not isinstance(body, Mapping) or not set(body) <= names:
        raise InvalidField("op", f"unexpected fields in a {data['kind']} operation")
    args: dict[str, Any] = {}
    for name, value in body.items():
        if name == "steps":
            if not isinstance(value, list):
                raise InvalidField("steps", "steps must be a list")
            value = tuple(value)
        elif name == "priority" and value is not None:
            value = (
                parse_priority(value) if isinstance(value, str) and value in Priority.__members__ else value
            )
        elif name == "state" and value is not None:
            enum = TaskState if cls is SetTaskState else MilestoneState
            value = enum(value) if isinstance(value, str) and value in enum._value2member_map_ else value
        args[name] = value
    try:
        built = cls(**args)
    except TypeError as e:  # a required field is missing
        raise InvalidField("op", f"incomplete {data['kind']} operation: {e}") from None
    origin = data["origin"]
    stamp = Stamp(data["wall_ms"], data["counter"], origin if isinstance(origin, str) else "")
    return validate_op(Op(origin, data["seq"], stamp, built))


def context_to_dict(ctx: Context) -> dict[str, Any]:
    """A context as JSON types."""
    return {"vv": [list(p) for p in ctx.vv], "dots": [list(p) for p in ctx.dots]}


def context_from_dict(data: Mapping[str, Any]) -> Context:
    """The inverse of `context_to_dict`, validated."""
    pairs: dict[str, list[tuple[str, int]]] = {"vv": [], "dots": []}
    for name in pairs:
        items = data.get(name, []) if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise InvalidField("context", f"context {name} must be a list")
        for item in items:
            if not (isinstance(item, list | tuple) and len(item) == 2):
                raise InvalidField("context", f"context {name} holds [replica, seq] pairs")
            pairs[name].append((item[0], item[1]))
    ctx = Context(tuple(pairs["vv"]), tuple(pairs["dots"]))
    _check_context(ctx)
    return Context(tuple(sorted(ctx.vv)), tuple(sorted(ctx.dots)))
