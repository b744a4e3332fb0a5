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

from mesh.core.board.context import Context, Delta, context_from_dict, context_to_dict, split_delta
from mesh.core.board.fields import (
    MAX_STEPS,
    MAX_TASKS,
    NOTE_MAX_BYTES,
    RETENTION_MS,
    TITLE_MAX,
    MilestoneState,
    Priority,
    RowState,
    TaskState,
    check_note,
    check_replica,
    check_role,
    check_title,
    new_replica_id,
    parse_priority,
)
from mesh.core.board.ops import (
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
    op_from_dict,
    op_kind,
    op_to_dict,
    validate_op,
)
from mesh.core.board.replica import Applied, Board
from mesh.core.board.views import BoardView, MilestoneRow, StepRow, TaskRow

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
