"""Board operations: the eight bodies, the stamped `Op`, validation of a peer's op, and the JSON codec."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from mesh.core.board.fields import (
    ENTITY_ID,
    MAX_SEQ,
    MAX_STEPS,
    REPLICA_ID,
    STEP_ID,
    MilestoneState,
    Priority,
    TaskState,
    check_id,
    check_note,
    check_role,
    check_title,
    parse_priority,
)
from mesh.core.errors import InvalidField, shown
from mesh.core.hlc import Stamp, check_stamp
from mesh.core.values import fields, value

# ---------------------------------------------------------------- operations


@value
class AddTask:
    """Create a task (its id is the operation's)."""

    title: str
    priority: Priority = Priority.P2
    milestone: str = ""
    step: str = ""
    role: str = ""
    note: str = ""


@value
class EditTask:
    """Change some fields of a task (None = unchanged; "" clears milestone, step, role or note)."""

    task: str
    title: str | None = None
    priority: Priority | None = None
    milestone: str | None = None
    step: str | None = None
    role: str | None = None
    note: str | None = None


@value
class SetTaskState:
    """Done, drop or reopen a task."""

    task: str
    state: TaskState


@value
class AddMilestone:
    """Create a milestone with initial steps (ids ``<milestone>.1``, ``.2``, ...)."""

    title: str
    note: str = ""
    steps: tuple[str, ...] = ()


@value
class EditMilestone:
    """Change a milestone's title, note or state (None = unchanged)."""

    milestone: str
    title: str | None = None
    note: str | None = None
    state: MilestoneState | None = None


@value
class AddStep:
    """Append a step to a milestone (its id is the operation's)."""

    milestone: str
    text: str


@value
class EditStep:
    """Change a step's text."""

    milestone: str
    step: str
    text: str


@value
class RemoveStep:
    """Remove a step (final)."""

    milestone: str
    step: str


Body = AddTask | EditTask | SetTaskState | AddMilestone | EditMilestone | AddStep | EditStep | RemoveStep
TASK_BODIES = (AddTask, EditTask, SetTaskState)


@value
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
        raise InvalidField("priority", f"priority must be a Priority, not {shown(value)}")


def validate_op(op: Op) -> Op:
    """Every field of an operation from a peer (raises InvalidField naming the field)."""
    if not isinstance(op, Op):
        raise InvalidField("op", f"expected an Op, not {type(op).__name__}")
    check_id(op.origin, "replica", REPLICA_ID)
    if isinstance(op.seq, bool) or not isinstance(op.seq, int) or not 1 <= op.seq <= MAX_SEQ:
        raise InvalidField("seq", f"seq must be a whole number from 1 to 2**53, not {shown(op.seq)}")
    check_stamp(op.stamp)
    if op.stamp.node != op.origin:
        raise InvalidField("stamp", "an operation's stamp must name its origin replica")
    b = op.body
    if isinstance(b, AddTask):
        check_title(b.title)
        _check_priority(b.priority)
        check_id(b.milestone, "milestone", empty=True)
        check_id(b.step, "step", STEP_ID, empty=True)
        if b.step and not b.milestone:
            raise InvalidField("step", "a step needs its milestone")
        check_role(b.role)
        check_note(b.note)
    elif isinstance(b, EditTask):
        check_id(b.task, "task")
        _opt(b.title, check_title)
        _opt(b.priority, _check_priority)
        _opt(b.milestone, check_id, "milestone", ENTITY_ID, True)
        _opt(b.step, check_id, "step", STEP_ID, True)
        _opt(b.role, check_role)
        _opt(b.note, check_note)
    elif isinstance(b, SetTaskState):
        check_id(b.task, "task")
        if not isinstance(b.state, TaskState):
            raise InvalidField("state", f"task state must be a TaskState, not {shown(b.state)}")
    elif isinstance(b, AddMilestone):
        check_title(b.title)
        check_note(b.note)
        if not isinstance(b.steps, tuple) or len(b.steps) > MAX_STEPS:
            raise InvalidField("steps", f"a milestone starts with at most {MAX_STEPS} steps")
        for text in b.steps:
            check_title(text, "step")
    elif isinstance(b, EditMilestone):
        check_id(b.milestone, "milestone")
        _opt(b.title, check_title)
        _opt(b.note, check_note)
        if b.state is not None and not isinstance(b.state, MilestoneState):
            raise InvalidField("state", f"milestone state must be a MilestoneState, not {shown(b.state)}")
    elif isinstance(b, AddStep):
        check_id(b.milestone, "milestone")
        check_title(b.text, "step")
    elif isinstance(b, EditStep | RemoveStep):
        check_id(b.milestone, "milestone")
        check_id(b.step, "step", STEP_ID)
        if isinstance(b, EditStep):
            check_title(b.text, "step")
    else:
        raise InvalidField("op", f"unknown operation {type(b).__name__}")
    return op


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
    for name in fields(op.body):
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
        raise InvalidField("op", f"unknown operation kind {shown(data['kind'])}")
    names = set(fields(cls))
    if not isinstance(body, Mapping) or not set(body) <= names:
        raise InvalidField("op", f"unexpected fields in a {data['kind']} operation")
    args: dict[str, Any] = {}
    for name, given in body.items():
        if name == "steps":
            if not isinstance(given, list):
                raise InvalidField("steps", "steps must be a list")
            given = tuple(given)
        elif name == "priority" and given is not None:
            given = (
                parse_priority(given) if isinstance(given, str) and given in Priority.__members__ else given
            )
        elif name == "state" and given is not None:
            enum = TaskState if cls is SetTaskState else MilestoneState
            given = enum(given) if isinstance(given, str) and given in enum._value2member_map_ else given
        args[name] = given
    try:
        built = cls(**args)
    except TypeError as e:  # a required field is missing
        raise InvalidField("op", f"incomplete {data['kind']} operation: {e}") from None
    origin = data["origin"]
    stamp = Stamp(data["wall_ms"], data["counter"], origin if isinstance(origin, str) else "")
    return validate_op(Op(origin, data["seq"], stamp, built))
