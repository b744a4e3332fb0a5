"""One replica of the board (`Board`): its entities, registers, merge and views (rules: `mesh.core.board`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping

from mesh.core.board.context import Context, Delta, MutableContext, check_context
from mesh.core.board.fields import (
    MAX_STEPS,
    MAX_TASKS,
    REPLICA_ID,
    MilestoneState,
    Priority,
    RowState,
    TaskState,
    check_id,
    check_note,
    check_role,
    check_title,
    parse_priority,
)
from mesh.core.board.ops import (
    TASK_BODIES,
    AddMilestone,
    AddStep,
    AddTask,
    Body,
    EditMilestone,
    EditStep,
    EditTask,
    Op,
    RemoveStep,
    SetTaskState,
    validate_op,
)
from mesh.core.board.views import (
    PRIORITY_OF,
    ROW_STATE_OF,
    STATE_RANK,
    TASK_STATE_OF,
    BoardView,
    MilestoneRow,
    StepRow,
    TaskRow,
)
from mesh.core.errors import AmbiguousId, ConflictingOp, InvalidField, UnknownId, shown
from mesh.core.hlc import HybridClock
from mesh.core.values import value

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


@value
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
        return "task" if isinstance(self.op.body, TASK_BODIES) else "milestone"


# ---------------------------------------------------------------- the board


class Board:
    """One replica of the board. Not thread-safe; the runtime owns it."""

    def __init__(self, replica: str, clock: HybridClock | None = None) -> None:
        check_id(replica, "replica", REPLICA_ID)
        if clock is not None and clock.node != replica:
            raise InvalidField("clock", "the board's clock must stamp with the board's replica id")
        self.replica = replica
        self.clock = clock or HybridClock(replica)
        self._tasks: dict[str, _Entity] = {}
        self._milestones: dict[str, _Entity] = {}
        self._ops: dict[tuple[str, int], Op] = {}
        self._by_origin: dict[str, set[int]] = {}  # retained seqs per origin, for delta_for
        self._refs: dict[tuple[str, int], int] = {}
        self._ctx = MutableContext()
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
            check_context(delta.context)
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
        table = self._tasks if isinstance(b, TASK_BODIES) else self._milestones
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
            raise InvalidField(kind, f"a {kind} id is needed, not {shown(given)}")
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
            state = TASK_STATE_OF[regs["state"][1]]
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
            prio = PRIORITY_OF[regs["priority"][1]]
            if priorities is not None and prio not in priorities:
                continue
            task_role = regs["role"][1]
            if role is not None and task_role != role:
                continue
            if milestone is not None and mid != milestone:
                continue
            who, until = claims.get(t.id, ("", None))
            row_state = ROW_STATE_OF[state]
            if state is TaskState.OPEN and who:
                row_state = RowState.CLAIMED
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
                row_state,
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
            groups[prio].append((STATE_RANK[state], t.created, row))
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
        state = TASK_STATE_OF[regs["state"][1]]
        who, until = (claims or {}).get(t.id, ("", None))
        shown = ROW_STATE_OF[state]
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
            PRIORITY_OF[regs["priority"][1]],
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
