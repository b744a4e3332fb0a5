"""The replicated board: validation, each merge rule from a table, and convergence of generated histories.

`dump` is a replica's whole internal state (registers of every record, headless ones too; the kept
operations; the context), so "same dump" is stronger than "same view".
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mesh.core.board import (
    MAX_STEPS,
    AddTask,
    Board,
    Context,
    Delta,
    EditTask,
    MilestoneState,
    Op,
    Priority,
    RowState,
    SetTaskState,
    TaskState,
    context_from_dict,
    context_to_dict,
    new_replica_id,
    op_from_dict,
    op_to_dict,
    split_delta,
)
from mesh.core.errors import AmbiguousId, ConflictingOp, InvalidField, UnknownId
from mesh.core.hlc import HybridClock, Stamp

A, B, C = "0aaaaaaa", "1bbbbbbb", "2ccccccc"
T0 = 1_700_000_000_000


def dump(b: Board) -> Any:
    def record(e: Any) -> Any:
        steps = {sid: (s.order, dict(s.regs)) for sid, s in e.steps.items()}
        return (e.created, dict(e.regs), steps)

    return (
        {k: record(e) for k, e in b._tasks.items()},
        {k: record(e) for k, e in b._milestones.items()},
        sorted(op.id for op in b.retained_ops()),
        b.context(),
    )


def sync(src: Board, dst: Board, batch: int = 1000, cut: int | None = None) -> None:
    """Anti-entropy src -> dst; `cut` delivers only that many batches (a stream that broke)."""
    batches = split_delta(src.delta_for(dst.context()), batch)
    for d in batches[:cut]:
        dst.apply_delta(d)


def replicas(*ids: str) -> list[Board]:
    return [Board(r) for r in ids]


def row(b: Board, task: str, **view: Any) -> Any:
    for r in b.view(include_dropped=True, **view).tasks():
        if r.id == task:
            return r
    return None


# ---------------------------------------------------------------- ids


def test_replica_ids_are_short_unique_base32() -> None:
    assert new_replica_id(b"\x00" * 5) == "00000000"
    assert new_replica_id(b"\xff" * 5) == "zzzzzzzz"
    assert len({new_replica_id(bytes([i, 7, 7, 7, 7])) for i in range(256)}) == 256
    with pytest.raises(InvalidField):
        new_replica_id(b"1234")
    with pytest.raises(InvalidField):
        Board("not-a-replica")


def test_ids_come_from_the_origin_and_sequence() -> None:
    (a,) = replicas(A)
    first, second = a.add_task(T0, "one"), a.add_milestone(T0, "m")
    assert (first.id, second.id) == (f"{A}-1", f"{A}-2")
    assert a.short(first.id) == "0aaa-1"
    assert a.resolve_task("0aaa-1") == a.resolve_task(f"{A}-1") == a.resolve_task("0AAA-1") == first.id
    assert a.resolve_milestone("0aa-2") == second.id  # any unambiguous prefix


def test_short_ids_grow_where_replicas_share_a_prefix() -> None:
    a, b = replicas("k7qd2mxa", "k7qd9zzz")
    op = b.add_task(T0, "theirs")
    a.apply(op)
    a.apply(a_op := a.add_task(T0, "mine"))
    assert a.short(op.id) == "k7qd9-1" and a.short(a_op.id) == "k7qd2-1"
    with pytest.raises(AmbiguousId) as raised:
        a.resolve_task("k7qd-1")
    assert set(raised.value.choices) == {op.id, a_op.id}
    with pytest.raises(UnknownId):
        a.resolve_task("k7qd9-2")
    with pytest.raises(UnknownId):
        a.resolve_task("nonsense")


# ---------------------------------------------------------------- validation of local verbs


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"title": ""}, "must not be empty"),
        ({"title": "   "}, "must not be empty"),
        ({"title": "x" * 201}, "limit is 200"),
        ({"title": "x" * 100_000}, "limit is 200"),
        ({"title": "a\x1bb"}, "control character"),
        ({"title": "a\nb"}, "control character"),
        ({"title": "evil\u202eshown"}, "control character"),
        ({"title": "ok", "priority": "P7"}, "P0, P1, P2, P3"),
        ({"title": "ok", "priority": "urgent"}, "P0, P1, P2, P3"),
        ({"title": "ok", "note": "x" * 2049}, "limit is 2048"),
        ({"title": "ok", "note": "é" * 1025}, "2050 bytes"),
        ({"title": "ok", "note": "a\tb"}, "control character"),
        ({"title": "ok", "role": "bad role"}, "invalid role"),
        ({"title": "ok", "role": "-x"}, "invalid role"),
        ({"title": "ok", "step": "1"}, "needs --milestone"),
    ],
)
def test_bad_task_fields_are_refused_with_one_clear_line(kwargs: dict[str, Any], fragment: str) -> None:
    (a,) = replicas(A)
    before = dump(a)
    with pytest.raises(InvalidField) as raised:
        a.add_task(T0, **kwargs)
    message = str(raised.value)
    assert fragment in message and "\n" not in message and len(message) < 200
    assert dump(a) == before  # nothing changed


def test_good_fields_pass() -> None:
    (a,) = replicas(A)
    m = a.add_milestone(T0, "M", steps=["s1"])
    op = a.add_task(
        T0, "t" * 200, priority="p0", milestone="0aaa-1", step="1", role="i-match", note="é" * 1024
    )
    assert isinstance(op.body, AddTask)
    assert op.body.priority is Priority.P0 and op.body.milestone == m.id and op.body.step == f"{m.id}.1"
    a.add_task(T0, "multi-line note", note="line 1\nline 2")


def test_references_must_exist_and_be_live() -> None:
    (a,) = replicas(A)
    with pytest.raises(UnknownId, match="no task"):
        a.done(T0, f"{A}-9")
    with pytest.raises(UnknownId, match="no milestone"):
        a.add_task(T0, "t", milestone=f"{A}-9")
    m = a.add_milestone(T0, "M", steps=["s1"])
    with pytest.raises(UnknownId, match="step"):
        a.add_task(T0, "t", milestone=m.id, step="2")
    a.edit_milestone(T0, m.id, state=MilestoneState.DROPPED)
    with pytest.raises(InvalidField, match="dropped"):
        a.add_task(T0, "t", milestone=m.id)
    t = a.add_task(T0, "t")
    with pytest.raises(InvalidField, match="nothing to change"):
        a.edit_task(T0, t.id)
    a.drop(T0, t.id)
    with pytest.raises(InvalidField, match="reopen it first"):
        a.edit_task(T0, t.id, title="x")
    with pytest.raises(InvalidField, match="reopen it first"):
        a.done(T0, t.id)
    a.reopen(T0, t.id)
    a.done(T0, t.id)


def test_milestone_step_limits() -> None:
    (a,) = replicas(A)
    with pytest.raises(InvalidField, match="at most 50 steps"):
        a.add_milestone(T0, "M", steps=["s"] * (MAX_STEPS + 1))
    m = a.add_milestone(T0, "M", steps=["s"] * MAX_STEPS)
    with pytest.raises(InvalidField, match="at most 50 steps"):
        a.add_step(T0, m.id, "one more")
    a.remove_step(T0, m.id, "1")
    a.add_step(T0, m.id, "one more")


# ---------------------------------------------------------------- merge rules, one table each


def both_orders(ops: list[Op], *ids: str) -> list[Board]:
    """Fresh replicas that received `ops` forwards and backwards."""
    fwd, back = replicas("8fffffff", "9fffffff")
    for op in ops:
        fwd.apply(op)
    for op in reversed(ops):
        back.apply(op)
    assert dump(fwd) == dump(back)
    return [fwd, back]


def test_concurrent_edits_of_one_field_later_stamp_wins() -> None:
    a, b = replicas(A, B)
    t = a.add_task(T0, "orig")
    b.apply(t)
    ea = a.edit_task(T0 + 20, t.id, title="from a")  # later wall clock
    eb = b.edit_task(T0 + 10, t.id, title="from b")
    for r in both_orders([t, ea, eb]):
        assert row(r, t.id).title == "from a"


@pytest.mark.parametrize(
    ("a_wall", "b_wall", "winner"),
    [
        (T0 + 5, T0 + 5, "from b"),  # same wall and counter: the higher replica id wins
        (T0 + 6, T0 + 5, "from a"),
        (T0 + 5, T0 + 6, "from b"),
    ],
)
def test_ties_are_broken_by_replica(a_wall: int, b_wall: int, winner: str) -> None:
    a, b = replicas(A, B)
    t = a.add_task(T0, "orig")
    b.apply(t)
    ea, eb = a.edit_task(a_wall, t.id, title="from a"), b.edit_task(b_wall, t.id, title="from b")
    for r in both_orders([t, ea, eb]):
        assert row(r, t.id).title == winner


def test_an_edit_made_after_seeing_another_wins_whatever_the_clocks() -> None:
    a, b = replicas(A, B)
    t = a.add_task(T0, "orig")
    ea = a.edit_task(T0 + 60_000, t.id, title="a, clock a minute fast")
    b.apply(t)
    b.apply(ea)
    eb = b.edit_task(T0, t.id, title="b, replying")  # b's wall clock is behind, it saw a's edit
    assert eb.stamp > ea.stamp
    for r in both_orders([t, ea, eb]):
        assert row(r, t.id).title == "b, replying"


def test_concurrent_edits_of_different_fields_both_survive() -> None:
    a, b = replicas(A, B)
    t = a.add_task(T0, "orig")
    b.apply(t)
    ea = a.edit_task(T0 + 9, t.id, title="new title")
    eb = b.edit_task(T0 + 1, t.id, priority="P0", role="docs")
    for r in both_orders([t, ea, eb]):
        got = row(r, t.id)
        assert (got.title, got.priority, got.role) == ("new title", Priority.P0, "docs")


@pytest.mark.parametrize(
    ("first", "second", "state"),
    [
        ("done", "reopen", RowState.OPEN),
        ("reopen", "done", RowState.DONE),
        ("drop", "reopen", RowState.OPEN),
        ("done", "drop", RowState.DROPPED),
        ("drop", "done_after_reopen", RowState.DONE),
    ],
)
def test_state_is_last_writer_wins(first: str, second: str, state: RowState) -> None:
    a, b = replicas(A, B)
    t = a.add_task(T0, "t")
    b.apply(t)
    ops = [t]
    if first == "reopen":
        ops.append(a.done(T0 + 1, t.id))  # something to reopen
    ops.append(getattr(a, first)(T0 + 2, t.id))
    if second == "done_after_reopen":
        b.apply(ops[-1])
        ops.append(b.reopen(T0 + 3, t.id))
        second = "done"
    ops.append(getattr(b, second)(T0 + 4, t.id))
    for r in both_orders(ops):
        assert row(r, t.id).state is state


def test_an_edit_does_not_resurrect_a_drop() -> None:
    a, b = replicas(A, B)
    t = a.add_task(T0, "t")
    b.apply(t)
    drop = a.drop(T0 + 1, t.id)
    edit = b.edit_task(T0 + 9, t.id, title="edited later, concurrently")
    for r in both_orders([t, drop, edit]):
        got = row(r, t.id)
        assert got.state is RowState.DROPPED and got.title == "edited later, concurrently"
        assert all(x.id != t.id for x in r.view().tasks())  # dropped tasks are hidden by default


def test_operations_before_their_create_wait_headless() -> None:
    a, b = replicas(A, B)
    t = a.add_task(T0, "orig")
    b.apply(t)
    edit = b.edit_task(T0 + 1, t.id, title="edited")
    c = Board(C)
    c.apply(edit)
    assert len(c) == 0 and list(c.view(include_dropped=True).tasks()) == []
    with pytest.raises(UnknownId):
        c.resolve_task(t.id)
    c.apply(t)
    assert row(c, t.id).title == "edited"


def test_steps_concurrent_adds_survive_and_removal_is_final() -> None:
    a, b = replicas(A, B)
    m = a.add_milestone(T0, "M", steps=["one", "two"])
    b.apply(m)
    add_a = a.add_step(T0 + 2, m.id, "a's step")
    add_b = b.add_step(T0 + 1, m.id, "b's step")
    remove = a.remove_step(T0 + 3, m.id, "1")
    edit = b.edit_step(T0 + 9, m.id, "1", "edited concurrently with the removal")
    for r in both_orders([m, add_a, add_b, remove, edit]):
        steps = r.milestone(m.id).steps
        assert [s.text for s in steps] == ["two", "b's step", "a's step"]
        assert [s.number for s in steps] == [1, 2, 3]


def test_moving_a_task_to_another_milestone_clears_its_step() -> None:
    (a,) = replicas(A)
    m1 = a.add_milestone(T0, "M1", steps=["s"])
    m2 = a.add_milestone(T0, "M2", steps=["s"])
    t = a.add_task(T0, "t", milestone=m1.id, step="1")
    op = a.edit_task(T0, t.id, milestone=m2.id)
    assert isinstance(op.body, EditTask) and op.body.step == ""
    assert row(a, t.id).milestone == m2.id and row(a, t.id).step == ""
    a.edit_task(T0, t.id, step="1")
    assert row(a, t.id).step == f"{m2.id}.1"
    a.edit_task(T0, t.id, milestone="")
    assert row(a, t.id).milestone == "" and row(a, t.id).step == ""


# ---------------------------------------------------------------- views


def test_view_groups_by_priority_with_states_and_claims() -> None:
    (a,) = replicas(A)
    m = a.add_milestone(T0, "Release", steps=["build", "ship"])
    t_open = a.add_task(T0 + 1, "open one", priority="P1", milestone=m.id, step="1", role="dev")
    t_claimed = a.add_task(T0 + 2, "claimed one", priority="P1", milestone=m.id, step="1")
    t_done = a.add_task(T0 + 3, "done one", priority="P0", milestone=m.id, step="2")
    t_dropped = a.add_task(T0 + 4, "dropped one", priority="P3", milestone=m.id)
    a.done(T0 + 5, t_done.id)
    a.drop(T0 + 6, t_dropped.id)
    claims = {t_claimed.id: ("session-2", 1234.5), t_done.id: ("session-3", 99.0)}
    v = a.view(claims)
    assert [p for p, _ in v.groups] == [Priority.P0, Priority.P1, Priority.P2, Priority.P3]
    shown = {r.title: (r.priority, r.state, r.holder, r.until) for r in v.tasks()}
    assert shown == {
        "done one": (Priority.P0, RowState.DONE, "", None),  # a claim on a done task is not shown
        "open one": (Priority.P1, RowState.OPEN, "", None),
        "claimed one": (Priority.P1, RowState.CLAIMED, "session-2", 1234.5),
    }
    (ms,) = v.milestones
    assert (ms.title, ms.done, ms.total, ms.percent) == (
        "Release",
        1,
        3,
        33,
    )  # the dropped task is not counted
    assert [(s.text, s.done, s.total) for s in ms.steps] == [("build", 0, 2), ("ship", 1, 1)]
    assert row(a, t_open.id).milestone_title == "Release"

    assert [r.title for r in a.view(claims, holder="session-2").tasks()] == ["claimed one"]
    assert [r.title for r in a.view(claims, priorities={Priority.P0}).tasks()] == ["done one"]
    assert [r.title for r in a.view(claims, role="dev").tasks()] == ["open one"]
    assert {r.title for r in a.view(claims, include_done=False).tasks()} == {"open one", "claimed one"}
    assert len(list(a.view(claims, include_dropped=True, milestone=m.id).tasks())) == 4
    assert a.view(claims, priorities={Priority.P2}).milestones == v.milestones  # progress ignores filters


def test_group_order_open_then_done_then_dropped_each_by_creation() -> None:
    (a,) = replicas(A)
    ids = [a.add_task(T0 + k, f"t{k}").id for k in range(5)]
    a.done(T0 + 10, ids[0])
    a.drop(T0 + 11, ids[1])
    titles = [r.title for r in a.view(include_dropped=True).tasks()]
    assert titles == ["t2", "t3", "t4", "t0", "t1"]


# ---------------------------------------------------------------- what is kept, anti-entropy, restore


def test_superseded_operations_are_reported_obsolete() -> None:
    (a,) = replicas(A)
    t = a.add_task(T0, "t")
    e1 = a.edit_task(T0 + 1, t.id, title="x", role="r")
    e2 = a.edit_task(T0 + 2, t.id, title="y")
    assert {op.id for op in a.retained_ops()} == {t.id, e1.id, e2.id}  # e1 still decides the role
    b = Board(B)
    for op in (t, e1, e2):
        b.apply(op)
    applied = b.apply(e3 := Op(B, 1, Stamp(T0 + 3, 0, B), EditTask(t.id, role="s")))
    assert applied.obsolete == (e1.id,) and applied.retained and applied.entity == t.id
    stale = b.apply(Op(B, 2, Stamp(T0, 5, B), EditTask(t.id, title="late and losing")))
    assert stale.new and not stale.retained
    assert {op.id for op in b.retained_ops()} == {t.id, e2.id, e3.id}
    dup = b.apply(e2)
    assert not dup.new and dup.retained


def test_a_different_operation_under_a_known_id_is_a_protocol_breach() -> None:
    (a,) = replicas(A)
    t = a.add_task(T0, "t")
    forged = Op(t.origin, t.seq, t.stamp, AddTask("something else"))
    with pytest.raises(ConflictingOp):
        a.apply(forged)


def test_late_joiner_catches_up_after_1000_missed_edits() -> None:
    a, b = replicas(A, B)
    ids = [a.add_task(T0 + k, f"task {k}").id for k in range(100)]
    for k in range(1000):
        a.edit_task(T0 + 100 + k, ids[k % 100], title=f"edit {k}", priority=f"P{k % 4}")
    sync(a, b, batch=64)
    assert dump(b)[:3] == dump(a)[:3] and b.context() == a.context()
    assert len(list(a.retained_ops())) == 100 + 100  # a create and the last edit per task
    c = Board(C)
    sync(b, c, batch=7)  # from a replica that never saw the superseded edits
    assert dump(c) == dump(a)
    assert b.delta_for(a.context()).ops == ()  # in sync: nothing to send


def test_a_broken_delta_claims_nothing_it_did_not_deliver() -> None:
    a, b = replicas(A, B)
    for k in range(20):
        a.add_task(T0 + k, f"t{k}")
    sync(a, b, batch=5, cut=2)  # the stream broke after two of four batches
    assert len(b) == 10 and b.context() == Context(((A, 10),), ())
    sync(a, b, batch=5)
    assert dump(b)[:3] == dump(a)[:3]


def test_split_delta() -> None:
    ctx = Context(((A, 3),), ())
    assert split_delta(Delta((), ctx), 10) == [Delta((), ctx)]
    (a,) = replicas(A)
    ops = tuple(a.add_task(T0, f"t{k}") for k in range(5))
    parts = split_delta(Delta(ops, ctx), 2)
    assert [len(p.ops) for p in parts] == [2, 2, 1] and [p.context for p in parts] == [None, None, ctx]
    with pytest.raises(InvalidField):
        split_delta(Delta(ops, ctx), 0)


def test_restore_continues_where_it_stopped() -> None:
    a, b = replicas(A, B)
    t = a.add_task(T0, "t")
    for k in range(5):
        a.edit_task(T0 + k, t.id, title=f"v{k}")
    b.apply(t)
    b.apply(b.edit_task(T0 + 99, t.id, note="b was here"))
    sync(b, a)
    stored = [op_from_dict(op_to_dict(op)) for op in a.retained_ops()]
    again = Board.restore(A, stored, context_from_dict(context_to_dict(a.context())), a.purged)
    assert dump(again) == dump(a)
    nxt = again.edit_task(T0 + 100, t.id, title="after restart")
    assert nxt.seq == 7 and nxt.stamp > max(op.stamp for op in stored)


def test_compact_forgets_old_tombstones_and_ignores_their_late_operations() -> None:
    a, b = replicas(A, B)
    old, recent, alive = (a.add_task(T0, n) for n in ("old", "recent", "alive"))
    m = a.add_milestone(T0, "gone", steps=["s"])
    for op in (old, recent, alive, m):
        b.apply(op)
    late_edit = b.edit_task(T0 + 1, old.id, title="late")  # made before the drop, delivered after
    a.drop(T0 + 1000, old.id)
    a.edit_milestone(T0 + 1000, m.id, state=MilestoneState.DROPPED)
    a.drop(T0 + 9000, recent.id)
    removed = a.compact(T0 + 5000)
    assert set(removed) >= {old.id, m.id} and a.purged == {old.id, m.id}
    assert {r.title for r in a.view(include_dropped=True).tasks()} == {"recent", "alive"}
    result = a.apply(late_edit)
    assert result.new and not result.retained
    assert old.id not in a._tasks and a.context().covers(B, late_edit.seq)
    with pytest.raises(UnknownId):
        a.resolve_task(old.id)


# ---------------------------------------------------------------- codec


def test_codec_round_trips_every_kind() -> None:
    (a,) = replicas(A)
    m = a.add_milestone(T0, "M", steps=["s1", "s2"], note="n")
    t = a.add_task(T0, "t", priority="P0", milestone=m.id, step="2", role="r", note="x\ny")
    ops = [
        m,
        t,
        a.edit_task(T0, t.id, title="t2", priority="P3", role="", note=""),
        a.done(T0, t.id),
        a.edit_milestone(T0, m.id, title="M2", state=MilestoneState.DROPPED),
        a.edit_milestone(T0, m.id, state=MilestoneState.OPEN),
        a.add_step(T0, m.id, "s3"),
        a.edit_step(T0, m.id, "1", "s1'"),
        a.remove_step(T0, m.id, "2"),
    ]
    for op in ops:
        assert op_from_dict(op_to_dict(op)) == op


def good_dict() -> dict[str, Any]:
    (a,) = replicas(A)
    return op_to_dict(a.add_task(T0, "t"))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.pop("seq"), "exactly"),
        (lambda d: d.update(extra=1), "exactly"),
        (lambda d: d.update(kind="task.explode"), "unknown operation kind"),
        (lambda d: d["body"].update(colour="red"), "unexpected fields"),
        (lambda d: d["body"].pop("title"), "incomplete"),
        (lambda d: d["body"].update(title=""), "must not be empty"),
        (lambda d: d["body"].update(title=7), "must be text"),
        (lambda d: d["body"].update(priority="P7"), "priority"),
        (lambda d: d["body"].update(milestone="nope"), "invalid milestone id"),
        (lambda d: d["body"].update(note=None), "must be text"),
        (lambda d: d.update(seq=0), "seq"),
        (lambda d: d.update(seq=True), "seq"),
        (lambda d: d.update(seq=2**60), "seq"),
        (lambda d: d.update(origin="ZZ"), "replica"),
        (lambda d: d.update(wall_ms=-1), "wall_ms"),
        (lambda d: d.update(counter="0"), "counter"),
    ],
)
def test_codec_rejects_bad_input(change: Any, fragment: str) -> None:
    d = good_dict()
    change(d)
    with pytest.raises(InvalidField, match=fragment):
        op_from_dict(d)


@pytest.mark.parametrize(
    "data",
    [{"vv": "x"}, {"vv": [["0aaaaaaa"]]}, {"vv": [["bad", 1]]}, {"dots": [["0aaaaaaa", -1]]}],
)
def test_context_codec_rejects_bad_input(data: Any) -> None:
    with pytest.raises(InvalidField):
        context_from_dict(data)


def test_unhashable_and_mistyped_values_from_a_peer() -> None:
    (a,) = replicas(A)
    t = a.add_task(T0, "t")
    d = op_to_dict(a.done(T0, t.id))
    d["body"]["state"] = []
    with pytest.raises(InvalidField, match="state"):
        op_from_dict(d)
    with pytest.raises(InvalidField, match="context"):
        a.apply_delta(Delta((), Context(((A, -1),), ())))
    with pytest.raises(InvalidField, match="clock"):
        Board(A, clock=HybridClock(B))


def test_task_state_op_from_a_peer_is_validated() -> None:
    (a,) = replicas(A)
    bad = Op(B, 1, Stamp(T0, 0, A), SetTaskState(f"{A}-1", TaskState.DONE))  # stamp names another node
    with pytest.raises(InvalidField, match="origin"):
        a.apply(bad)
    with pytest.raises(InvalidField):
        a.apply(Op(B, 1, Stamp(T0, 0, B), SetTaskState(f"{A}-1", "finished")))  # type: ignore[arg-type]


# ---------------------------------------------------------------- generated histories

ORIGINS = (A, B, C)
TITLES = ["a", "b", "c"]


def live_tasks(b: Board) -> list[str]:
    return sorted(k for k, t in b._tasks.items() if t.created is not None)


def live_milestones(b: Board) -> list[str]:
    return sorted(k for k, m in b._milestones.items() if m.created is not None)


def act(data: st.DataObject, b: Board, now: int) -> Op:
    """One random local verb on replica `b` (raises InvalidField/UnknownId when it does not apply)."""
    tasks, milestones = live_tasks(b), live_milestones(b)
    verbs = ["add_task", "add_milestone"]
    if tasks:
        verbs += ["edit_task", "edit_task", "done", "drop", "reopen"]
    if milestones:
        verbs += ["edit_milestone", "add_step", "edit_step", "remove_step", "file_task"]
    verb = data.draw(st.sampled_from(verbs))
    title = data.draw(st.sampled_from(TITLES))
    if verb == "add_task":
        return b.add_task(now, title, priority=data.draw(st.sampled_from(list(Priority))))
    if verb == "add_milestone":
        return b.add_milestone(now, title, steps=data.draw(st.lists(st.sampled_from(TITLES), max_size=2)))
    if verb in ("done", "drop", "reopen"):
        return getattr(b, verb)(now, data.draw(st.sampled_from(tasks)))  # type: ignore[no-any-return]
    if verb == "edit_task":
        fields = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "title": st.sampled_from(TITLES),
                    "priority": st.sampled_from(list(Priority)),
                    "role": st.sampled_from(["", "dev", "docs"]),
                    "note": st.sampled_from(["", "n1", "n2"]),
                },
            )
        )
        return b.edit_task(now, data.draw(st.sampled_from(tasks)), **fields)
    m = data.draw(st.sampled_from(milestones))
    if verb == "file_task":
        task = data.draw(st.sampled_from(tasks)) if tasks else None
        step = data.draw(st.sampled_from(["", "1", "2"]))
        if task is None:
            return b.add_task(now, title, milestone=m, step=step)
        return b.edit_task(now, task, milestone=m, step=step or None)
    if verb == "edit_milestone":
        state = data.draw(st.sampled_from([None, MilestoneState.OPEN, MilestoneState.DROPPED]))
        return b.edit_milestone(now, m, title=title, state=state)
    if verb == "add_step":
        return b.add_step(now, m, title)
    step = data.draw(st.sampled_from(["1", "2", "3"]))
    if verb == "edit_step":
        return b.edit_step(now, m, step, title)
    return b.remove_step(now, m, step)


def run_history(data: st.DataObject, max_steps: int) -> tuple[list[Board], list[Op]]:
    boards = replicas(*ORIGINS)
    walls = [T0, T0, T0]
    ops: list[Op] = []
    for _ in range(data.draw(st.integers(1, max_steps), label="steps")):
        if data.draw(st.integers(0, 3)) == 0:  # anti-entropy between two replicas, maybe broken off
            src, dst = data.draw(st.permutations(range(3)))[:2]
            sync(
                boards[src],
                boards[dst],
                batch=data.draw(st.sampled_from([1, 3, 100])),
                cut=data.draw(st.sampled_from([None, None, 1])),
            )
            continue
        i = data.draw(st.integers(0, 2))
        walls[i] += data.draw(st.sampled_from([0, 0, 1, 7, -5]))  # ties, drift, a clock stepping back
        try:
            ops.append(act(data, boards[i], walls[i]))
        except (InvalidField, UnknownId):
            pass
    event(f"{len(ops) // 10 * 10}+ ops")
    return boards, ops


@settings(max_examples=100)
@given(st.data())
def test_histories_converge_in_any_order_with_duplicates(data: st.DataObject) -> None:
    boards, ops = run_history(data, 60)
    # Fresh replicas get every op in different orders, some twice.
    states = []
    for k in range(3):
        order = data.draw(st.permutations(ops), label=f"order {k}")
        dups = data.draw(st.lists(st.sampled_from(ops), max_size=5), label=f"dups {k}") if ops else []
        fresh = Board(f"9{k}ffffff")
        for op in [*order, *dups]:
            fresh.apply(op)
        states.append((dump(fresh), fresh.view(include_dropped=True)))
    assert states[0] == states[1] == states[2]
    # The replicas themselves converge through anti-entropy alone.
    for src in (1, 2):
        sync(boards[src], boards[0])
    for dst in (1, 2):
        sync(boards[0], boards[dst])
    for b in boards:
        assert (dump(b), b.view(include_dropped=True)) == states[0]


def join(x: Board, y: Board) -> Board:
    """A new replica holding what x and y hold: x restored, then y's delta."""
    z = Board.restore("8eeeeeee", list(x.retained_ops()), x.context(), x.purged)
    sync(y, z)
    return z


@settings(max_examples=100)
@given(st.data())
def test_merging_is_associative_and_commutative(data: st.DataObject) -> None:
    _, ops = run_history(data, 60)
    parts: list[list[Op]] = [[], [], []]
    for op in ops:
        parts[data.draw(st.integers(0, 2))].append(op)
    x, y, z = replicas("5aaaaaaa", "6bbbbbbb", "7ccccccc")
    for board, part in zip((x, y, z), parts, strict=True):
        for op in part:
            board.apply(op)
    left, right = join(join(x, y), z), join(x, join(y, z))
    swapped = join(join(z, y), x)
    assert dump(left) == dump(right) == dump(swapped)
    everything = Board("8eeeeeee")
    for op in ops:
        everything.apply(op)
    assert dump(left) == dump(everything)
    assert dump(join(left, left)) == dump(left)  # idempotent


@settings(max_examples=60)
@given(st.data())
def test_late_joiner_gets_everything_through_anti_entropy(data: st.DataObject) -> None:
    boards, ops = run_history(data, 80)
    for src in (1, 2):
        sync(boards[src], boards[0])
    joiner = Board("9fffffff")
    sync(boards[0], joiner, batch=data.draw(st.sampled_from([1, 4, 1000])))
    everything = Board("9fffffff")
    for op in ops:
        everything.apply(op)
    assert dump(joiner) == dump(everything)
    second = Board("9eeeeeee")
    sync(joiner, second)  # a joiner that learned from a joiner
    assert dump(second)[:3] == dump(everything)[:3] and second.context() == everything.context()
