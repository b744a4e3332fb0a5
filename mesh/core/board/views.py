"""What the board shows: rows and the `BoardView` a read returns (values, no behaviour)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from mesh.core.board.fields import MilestoneState, Priority, RowState, TaskState
from mesh.core.times import iso
from mesh.core.values import value

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


@value
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


@value
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


@value
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


STATE_RANK = {TaskState.OPEN: 0, TaskState.DONE: 1, TaskState.DROPPED: 2}
# Plain dict lookups: calling an enum class costs ~1 us, which a 10k-task view pays three times per task.
TASK_STATE_OF = {s.value: s for s in TaskState}
PRIORITY_OF = {p.value: p for p in Priority}
ROW_STATE_OF = {
    TaskState.OPEN: RowState.OPEN,
    TaskState.DONE: RowState.DONE,
    TaskState.DROPPED: RowState.DROPPED,
}
