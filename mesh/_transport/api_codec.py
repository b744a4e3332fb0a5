"""Protobuf <-> the control API's values (MeshAPI's answers and arguments), in both directions.

    MemberView, MemberEvent, BoardEvent, NodeInfo, StatusRecord changes, ClaimView, LeaseEvent, Sent,
    InboxMessage, OutboxEntry, MailCounts, the board's TaskRow / MilestoneRow / BoardView (in chunks),
    MeshStats

The control servicer and the Client build the RPC envelopes; every value inside one is converted here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc

from mesh._proto import mesh_pb2 as pb
from mesh._transport.errors import from_status
from mesh.core import mailbox as mb
from mesh.core.board import BoardView, MilestoneRow, MilestoneState, Priority, RowState, StepRow, TaskRow
from mesh.core.errors import InvalidInput, MeshError
from mesh.core.values import asdict
from mesh.views import (
    BoardEvent,
    ClaimOverlap,
    ClaimView,
    LeaseEvent,
    MemberEvent,
    MemberView,
    MeshStats,
    MilestoneDone,
    NodeInfo,
    Sent,
    SessionUptime,
    WatchEvent,
)

STATE_TO_PB = {"alive": pb.ALIVE, "suspect": pb.SUSPECT, "dead": pb.DEAD, "left": pb.LEFT}
KIND_TO_PB = {
    "joined": pb.Event.JOINED,
    "state": pb.Event.STATE,
    "status": pb.Event.STATUS,
    "snapshot": pb.Event.SNAPSHOT,
}


def view_to_pb(v: MemberView) -> pb.Member:
    return pb.Member(
        node=pb.NodeRef(
            node_id=v.node_id, name=v.name, incarnation=v.incarnation, address=v.address, role=v.role
        ),
        state=STATE_TO_PB[v.state],
        status=pb.Status(
            node_id=v.node_id,
            incarnation=v.incarnation,
            version=v.status_version,
            name=v.name,
            role=v.role,
            action=v.action,
            target=v.target,
            phase=v.phase,
            progress=v.progress,
            note=v.note,
            updated_at=v.status_updated_at,
            claims=[pb.HeldClaim(resource=r, token=t, expires_at=x) for r, t, x in v.claims],
        ),
        last_seen=v.last_seen,
        is_self=v.is_self,
        state_since=v.state_since,
        steward=v.steward,
        unread=v.unread,
    )


def event_to_pb(e: WatchEvent) -> pb.Event:
    if isinstance(e, BoardEvent):
        change = pb.BoardChange(
            change=e.change, entity=e.entity, id=e.id, short_id=e.short_id, title=e.title, state=e.state,
            local=e.local, count=e.count,
        )  # fmt: skip
        return pb.Event(kind=pb.Event.BOARD, at=e.at, board=change)
    return pb.Event(
        kind=KIND_TO_PB[e.kind],
        member=view_to_pb(e.member),
        at=e.at,
        previous=STATE_TO_PB.get(e.previous or "", pb.MEMBER_STATE_UNSPECIFIED),
    )


STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}
KIND_FROM_PB = {v: k for k, v in KIND_TO_PB.items()}


def view_from_pb(m: pb.Member) -> MemberView:
    st = m.status
    return MemberView(
        name=m.node.name,
        node_id=m.node.node_id,
        role=m.node.role,
        state=STATE_FROM_PB.get(m.state, "dead"),
        action=st.action,
        target=st.target,
        phase=st.phase,
        progress=st.progress,
        note=st.note,
        last_seen=m.last_seen,
        is_self=m.is_self,
        address=m.node.address,
        incarnation=m.node.incarnation,
        state_since=m.state_since,
        status_version=st.version,
        status_updated_at=st.updated_at,
        steward=m.steward,
        unread=m.unread,
        claims=tuple((c.resource, c.token, c.expires_at) for c in st.claims),
    )


def event_from_pb(e: pb.Event) -> WatchEvent:
    if e.kind == pb.Event.BOARD:
        b = e.board
        return BoardEvent(b.change, b.entity, b.id, b.short_id, b.title, b.state, b.local, e.at, b.count)
    prev = STATE_FROM_PB.get(e.previous) if e.previous else None
    return MemberEvent(
        kind=KIND_FROM_PB.get(e.kind, "status"), member=view_from_pb(e.member), at=e.at, previous=prev
    )


def info_to_pb(i: NodeInfo) -> pb.NodeInfo:
    return pb.NodeInfo(
        node=pb.NodeRef(node_id=i.node_id, name=i.name, incarnation=i.incarnation, address=i.address),
        mesh=i.mesh,
        state_dir=i.state_dir,
        pid=i.pid,
        version=i.version,
        epoch=i.epoch,
        stewards=list(i.stewards),
        node_now=i.node_now,
        steward_note=i.steward_note,
        local_links=i.local_links,
        grpc_links=i.grpc_links,
    )


def info_from_pb(r: pb.NodeInfo) -> NodeInfo:
    return NodeInfo(
        name=r.node.name,
        node_id=r.node.node_id,
        incarnation=r.node.incarnation,
        mesh=r.mesh,
        address=r.node.address,
        pid=r.pid,
        state_dir=r.state_dir,
        version=r.version,
        epoch=r.epoch,
        stewards=tuple(r.stewards),
        node_now=r.node_now,
        steward_note=r.steward_note,
        local_links=r.local_links,
        grpc_links=r.grpc_links,
    )


def status_changes_to_pb(**changes: Any) -> pb.StatusUpdate:
    """heartbeat() keywords (None = keep) as a StatusUpdate (a negative progress cannot be encoded)."""
    return pb.StatusUpdate(**{k: v for k, v in changes.items() if v is not None})


def status_changes_from_pb(m: pb.StatusUpdate) -> dict[str, Any]:
    """The fields a StatusUpdate sets, as heartbeat() keywords."""
    return {
        f: getattr(m, f) for f in ("action", "target", "phase", "progress", "note", "role") if m.HasField(f)
    }


def claim_reply_to_pb(c: ClaimView) -> pb.ClaimReply:
    return pb.ClaimReply(
        granted=True, resource=c.resource, holder=c.holder, holder_node=c.holder_node, token=c.token,
        expires_at=c.expires_at, valid_until=c.valid_until, node_now=c.node_now, holder_id=c.holder_id,
    )  # fmt: skip


def claim_reply_from_pb(r: pb.ClaimReply) -> ClaimView:
    return ClaimView(
        r.resource, r.holder, r.holder_node, r.token, r.expires_at, r.valid_until, r.node_now, r.holder_id
    )


def claims_to_pb(claims: list[ClaimView]) -> pb.ClaimList:
    return pb.ClaimList(
        claims=[
            pb.ClaimEntry(resource=c.resource, holder=c.holder, holder_node=c.holder_node, token=c.token,
                          expires_at=c.expires_at, holder_id=c.holder_id)
            for c in claims
        ]
    )  # fmt: skip


def claims_from_pb(r: pb.ClaimList) -> list[ClaimView]:
    return [
        ClaimView(c.resource, c.holder, c.holder_node, c.token, c.expires_at, holder_id=c.holder_id)
        for c in r.claims
    ]


_LEASE_KIND_TO_PB = {
    "held": pb.LeaseEvent.HELD,
    "renewed": pb.LeaseEvent.RENEWED,
    "lost": pb.LeaseEvent.LOST,
    "released": pb.LeaseEvent.RELEASED,
}
_LEASE_KIND_FROM_PB = {v: k for k, v in _LEASE_KIND_TO_PB.items()}


def lease_event_to_pb(e: LeaseEvent) -> pb.LeaseEvent:
    return pb.LeaseEvent(
        kind=_LEASE_KIND_TO_PB[e.kind], resource=e.resource, token=e.token, valid_until=e.valid_until,
        node_now=e.node_now,
    )  # fmt: skip


def lease_event_from_pb(m: pb.LeaseEvent) -> LeaseEvent:
    return LeaseEvent(_LEASE_KIND_FROM_PB.get(m.kind, "held"), m.resource, m.token, m.valid_until, m.node_now)


def sent_to_pb(s: Sent) -> pb.SendReply:
    return pb.SendReply(id=s.id, recipients=list(s.recipients))


def sent_from_pb(r: pb.SendReply) -> Sent:
    return Sent(r.id, tuple(r.recipients))


def columns_to_pb(batch: pb.SendBatch, cols: mb.SendColumns) -> None:
    """Fill `batch.columns` with `cols` (SendColumns; a `to` of None is a broadcast)."""
    c = batch.columns
    to = cols.to
    if None in to:
        c.all.extend(i for i, t in enumerate(to) if t is None)
        c.to.extend("" if t is None else t for t in to)
    else:
        c.to.extend(to)  # type: ignore[arg-type]  # no None in it
    c.subject.extend(cols.subjects)
    c.body.extend(cols.bodies)
    if any(cols.reply_tos):  # none: the column stays empty
        c.in_reply_to.extend(cols.reply_tos)
    if any(cols.keys):
        c.key.extend(cols.keys)


def columns_to_requests(batch: pb.SendBatch, cols: mb.SendColumns) -> None:
    """Fill `batch.items` with `cols` as SendRequests (the batch's form for a node that reads no columns)."""
    add = batch.items.add
    for to, subject, body, reply, key in zip(
        cols.to, cols.subjects, cols.bodies, cols.reply_tos, cols.keys, strict=True
    ):
        if to is None:
            add(all=True, subject=subject, body=body, in_reply_to=reply, key=key)
        else:
            add(to=to, subject=subject, body=body, in_reply_to=reply, key=key)


def columns_from_pb(batch: pb.SendBatch) -> tuple[mb.SendColumns, dict[int, MeshError]]:
    """A columnar SendBatch's sends, and the errors of items that cannot be sent (no recipient, or both a
    recipient and all). A batch whose columns do not fit together (lengths, indices) is InvalidInput."""
    c = batch.columns
    if batch.items:
        raise InvalidInput("a send batch carries items or columns, not both")
    to: list[str | None] = list(c.to)
    n = len(to)
    subjects, bodies = list(c.subject), list(c.body)
    replies = list(c.in_reply_to) or [""] * n
    keys = list(c.key) or [""] * n
    if not len(subjects) == len(bodies) == len(replies) == len(keys) == n:
        raise InvalidInput(
            f"a send batch's columns differ in length: to {n}, subject {len(subjects)}, body {len(bodies)},"
            f" in_reply_to {len(c.in_reply_to)}, key {len(c.key)} (in_reply_to and key: one each, or none)"
        )
    bad: dict[int, MeshError] = {}
    for i in c.all:
        if i >= n:
            raise InvalidInput(f"a send batch's broadcast index {i} is beyond its {n} items")
        if to[i]:
            bad[i] = InvalidInput("give a recipient or --all, not both")
        else:
            to[i] = None
    if "" in to:
        for i, t in enumerate(to):
            if t == "":
                bad[i] = InvalidInput("a recipient name is needed (or --all)")
    return mb.SendColumns(to, subjects, bodies, replies, keys), bad


def add_send_result(add: Any, got: Sent | MeshError) -> None:
    """One send's SendResult, built in place by `add` (a repeated field's `add`): a SendResult built apart
    would be copied in, with its SendReply (three protobuf builds per send instead of one)."""
    if isinstance(got, MeshError):
        add(error_class=type(got).__name__, error=str(got))
    else:
        reply = add().sent
        reply.id = got.id
        reply.recipients.extend(got.recipients)


def answers_to_pb(to: Sequence[str | None], got: Sequence[Sent | MeshError]) -> pb.SendResults:
    """The answer to a columnar batch (SendAnswers): item i went `to[i]` and was answered `got[i]`. Items
    queued to their own `to` alone under consecutive ids of one stream are one run; every other in full."""
    out = pb.SendResults()
    a = out.answers
    run_at: list[int] = []
    run_count: list[int] = []
    run_stream: list[str] = []
    run_first: list[int] = []
    other_at: list[int] = []
    add = a.other.add
    prefix = ""
    nxt = end = -1  # the next id's number and item index that extend the current run
    for i, (t, g) in enumerate(zip(to, got, strict=True)):
        if g.__class__ is Sent:
            rs = g.recipients
            if len(rs) == 1 and rs[0] == t:
                mid: str = g.id
                if i == end and mid == f"{prefix}{nxt}":
                    run_count[-1] += 1
                    nxt += 1
                    end += 1
                    continue
                stream, _, num = mid.rpartition("-")
                if num.isascii() and num.isdigit() and str(int(num)) == num:
                    run_at.append(i)
                    run_count.append(1)
                    run_stream.append(stream)
                    run_first.append(int(num))
                    prefix = stream + "-"
                    nxt = int(num) + 1
                    end = i + 1
                    continue
        other_at.append(i)
        add_send_result(add, g)
    a.run_at.extend(run_at)
    a.run_count.extend(run_count)
    a.run_stream.extend(run_stream)
    a.run_first.extend(run_first)
    a.other_at.extend(other_at)
    return out


def run_to_pb(to: Sequence[str | None], ids: list[str], names: tuple[str, ...]) -> pb.SendResults | None:
    """`answers_to_pb` for a batch whose every item went to `names` and was queued as `ids` (the node's
    `send_batch`): one run, checked by C loops (no step per item in Python); None when it is not one run
    (another recipient, ids not consecutive): then answer it item by item."""
    n = len(ids)
    if not n or len(to) != n or len(names) != 1 or to.count(names[0]) != n:
        return None
    stream, _, num = ids[0].rpartition("-")
    if not (num.isascii() and num.isdigit() and str(int(num)) == num):
        return None
    first = int(num)
    prefix = stream + "-"
    if list(map(prefix.__add__, map(str, range(first, first + n)))) != ids:
        return None
    out = pb.SendResults()
    a = out.answers
    a.run_at.append(0)
    a.run_count.append(n)
    a.run_stream.append(stream)
    a.run_first.append(first)
    return out


def answers_from_pb(
    results: pb.SendResults, to: Sequence[str | None]
) -> list[Sent | MeshError | None] | None:
    """Each item's answer to a batch whose items went `to` (None for an item with no answer in it); None
    when the node answered in `results` (a node that reads no columns: it saw none of the items)."""
    if not results.HasField("answers"):
        return None
    a = results.answers
    n = len(to)
    got: list[Sent | MeshError | None] = [None] * n
    for at, count, stream, first in zip(a.run_at, a.run_count, a.run_stream, a.run_first, strict=False):
        if at + count > n:
            continue  # not an answer to this batch: its items stay unanswered
        prefix = stream + "-"
        last: str | None = None
        names: tuple[str, ...] = ()
        for i in range(at, at + count):
            t = to[i]
            if t is not last:  # a run's sends are mostly to one name: one tuple of it
                last = t
                names = (t,) if t is not None else ()
            got[i] = Sent(f"{prefix}{first}", names)
            first += 1
    for at, r in zip(a.other_at, a.other, strict=False):
        if at < n:
            got[at] = result_from_pb(r)
    return got


def result_from_pb(r: pb.SendResult) -> Sent | MeshError:
    """One SendResult: its Sent, or the MeshError it names."""
    if r.HasField("sent"):
        return Sent(r.sent.id, tuple(r.sent.recipients))
    return from_status(grpc.StatusCode.UNKNOWN, r.error, r.error_class)


def inbox_to_pb(m: mb.InboxMessage) -> pb.InboxItem:
    item = pb.InboxItem(
        id=m.id, to=m.to_name, subject=m.subject, body=m.body, sent_at=m.sent_at, in_reply_to=m.in_reply_to,
        read=m.read, broadcast=m.broadcast, received_at=m.received_at, local_seq=m.local_seq,
        from_node=m.from_node, read_at=m.read_at or 0.0,
    )  # fmt: skip
    setattr(item, "from", m.from_name)  # "from" is a Python keyword
    return item


def inbox_from_pb(i: pb.InboxItem) -> mb.InboxMessage:
    return mb.InboxMessage(
        local_seq=i.local_seq, id=i.id, from_node=i.from_node, from_name=getattr(i, "from"), to_name=i.to,
        subject=i.subject, body=i.body, sent_at=i.sent_at, received_at=i.received_at,
        in_reply_to=i.in_reply_to, broadcast=i.broadcast,
        read_at=(i.read_at or i.received_at) if i.read else None,
    )  # fmt: skip


def outbox_to_pb(entries: list[mb.OutboxEntry]) -> pb.OutboxList:
    return pb.OutboxList(
        items=[
            pb.OutboxItem(
                id=e.id, to=e.to_name, subject=e.subject, sent_at=e.sent_at, in_reply_to=e.in_reply_to,
                broadcast=e.broadcast, state=e.state.value, changed_at=e.changed_at, to_node=e.to_node,
                seq=e.seq, body=e.body,
            )
            for e in entries
        ]
    )  # fmt: skip


def outbox_from_pb(r: pb.OutboxList) -> list[mb.OutboxEntry]:
    return [
        mb.OutboxEntry(
            id=e.id, to_node=e.to_node, to_name=e.to, seq=e.seq, subject=e.subject, body=e.body,
            sent_at=e.sent_at, in_reply_to=e.in_reply_to, broadcast=e.broadcast, state=mb.OutState(e.state),
            changed_at=e.changed_at,
        )
        for e in r.items
    ]  # fmt: skip


# ---------------------------------------------------------------- the task board


def task_fields_to_pb(**fields: str | None) -> pb.TaskFields:
    """task_add / task_edit keywords (None = keep) as TaskFields."""
    return pb.TaskFields(**{k: v for k, v in fields.items() if v is not None})


def task_fields_from_pb(m: pb.TaskFields) -> dict[str, str]:
    """The fields a TaskFields sets, as task_add / task_edit keywords."""
    return {
        f: getattr(m, f) for f in ("title", "priority", "milestone", "step", "role", "note") if m.HasField(f)
    }


def task_row_to_pb(r: TaskRow) -> pb.TaskRow:
    return pb.TaskRow(
        id=r.id, short_id=r.short_id, title=r.title, priority=r.priority.value, state=r.state.value,
        holder=r.holder, until=r.until or 0.0, milestone=r.milestone, milestone_title=r.milestone_title,
        step=r.step, role=r.role, note=r.note, created_ms=r.created_ms, updated_ms=r.updated_ms,
        origin=r.origin,
    )  # fmt: skip


_PRIORITY = {p.value: p for p in Priority}
_ROW_STATE = {s.value: s for s in RowState}


def task_row_from_pb(m: pb.TaskRow) -> TaskRow:
    return TaskRow(
        m.id, m.short_id, m.title, _PRIORITY.get(m.priority, Priority.P2),
        _ROW_STATE.get(m.state, RowState.OPEN), m.holder, m.until or None, m.milestone, m.milestone_title,
        m.step, m.role, m.note, m.created_ms, m.updated_ms, m.origin,
    )  # fmt: skip


def milestone_to_pb(r: MilestoneRow) -> pb.MilestoneRow:
    return pb.MilestoneRow(
        id=r.id, short_id=r.short_id, title=r.title, note=r.note, state=r.state.value,
        steps=[
            pb.StepRow(id=s.id, number=s.number, text=s.text, done=s.done, total=s.total) for s in r.steps
        ],
        done=r.done, total=r.total,
    )  # fmt: skip


def milestone_from_pb(m: pb.MilestoneRow) -> MilestoneRow:
    state = MilestoneState(m.state) if m.state in MilestoneState._value2member_map_ else MilestoneState.OPEN
    return MilestoneRow(
        m.id, m.short_id, m.title, m.note, state,
        tuple(StepRow(s.id, s.number, s.text, s.done, s.total) for s in m.steps), m.done, m.total,
    )  # fmt: skip


CHUNK_BYTES = 512 * 1024  # a board chunk stays well under the 1 MiB message limit
_PRIORITY_CODE = {p: i for i, p in enumerate(Priority)}
_STATE_CODE = {st: i for i, st in enumerate(RowState)}
_PRIORITIES = tuple(Priority)
_STATES = tuple(RowState)


def _row_bytes(r: TaskRow) -> int:
    """An upper bound on a row's encoded size: titles count 4 bytes a character, a note 2 KiB at most."""
    return 4 * len(r.title) + min(4 * len(r.note), 2048) + 400


def _columns(rows: list[TaskRow]) -> pb.TaskColumns:
    return pb.TaskColumns(
        id=[r.id for r in rows], short_id=[r.short_id for r in rows], title=[r.title for r in rows],
        priority=bytes(_PRIORITY_CODE[r.priority] for r in rows),
        state=bytes(_STATE_CODE[r.state] for r in rows),
        holder=[r.holder for r in rows], until=[r.until or 0.0 for r in rows],
        milestone=[r.milestone for r in rows], step=[r.step for r in rows], role=[r.role for r in rows],
        note=[r.note for r in rows], created_ms=[r.created_ms for r in rows],
        updated_ms=[r.updated_ms for r in rows], origin=[r.origin for r in rows],
    )  # fmt: skip


def board_to_chunks(view: BoardView) -> Iterator[pb.BoardChunk]:
    """A board as messages of at most ~CHUNK_BYTES: milestones first, then the tasks in board order, by
    column (without their milestone's title, which the milestones carry)."""
    chunk = pb.BoardChunk()
    size = 0
    for m in view.milestones:
        item = milestone_to_pb(m)
        n = item.ByteSize() + 8
        if size and size + n > CHUNK_BYTES:
            yield chunk
            chunk, size = pb.BoardChunk(), 0
        chunk.milestones.append(item)
        size += n
    part: list[TaskRow] = []
    for r in view.tasks():
        n = _row_bytes(r)
        if size and size + n > CHUNK_BYTES:
            if part:
                chunk.tasks.CopyFrom(_columns(part))
            yield chunk
            chunk, size, part = pb.BoardChunk(), 0, []
        part.append(r)
        size += n
    if part:
        chunk.tasks.CopyFrom(_columns(part))
    yield chunk


def board_from_chunks(chunks: Iterable[pb.BoardChunk]) -> BoardView:
    milestones: list[MilestoneRow] = []
    groups: dict[Priority, list[TaskRow]] = {p: [] for p in Priority}
    titles: dict[str, str] = {}
    for c in chunks:
        for m in c.milestones:
            row = milestone_from_pb(m)
            milestones.append(row)
            titles[row.id] = row.title
        t = c.tasks
        cols = (
            t.id, t.short_id, t.title, t.holder, t.until, t.milestone, t.step, t.role, t.note, t.created_ms,
            t.updated_ms, t.origin,
        )  # fmt: skip
        if any(len(col) != len(t.id) for col in (*cols, t.priority, t.state)):
            raise ValueError("board chunk columns of different lengths")
        for tid, short, title, holder, until, mid, step, role, note, created, updated, origin, p, st in zip(
            *cols, t.priority, t.state, strict=True
        ):
            prio = _PRIORITIES[p] if p < 4 else Priority.P2
            groups[prio].append(
                TaskRow(
                    tid,
                    short,
                    title,
                    prio,
                    _STATES[st] if st < 4 else RowState.OPEN,
                    holder,
                    until or None,
                    mid,
                    titles.get(mid, ""),
                    step,
                    role,
                    note,
                    created,
                    updated,
                    origin,
                )
            )
    return BoardView(tuple((p, tuple(rows)) for p, rows in groups.items()), tuple(milestones))


# ---------------------------------------------------------------- stats (a JSON document of plain fields)


def stats_to_pb(s: MeshStats) -> pb.StatsReply:
    return pb.StatsReply(json=json.dumps(asdict(s)))


def stats_from_pb(m: pb.StatsReply) -> MeshStats:
    d: dict[str, Any] = json.loads(m.json)
    return MeshStats(
        since=d["since"],
        until=d["until"],
        refused=d["refused"],
        refused_by_item=tuple((r, n) for r, n in d["refused_by_item"]),
        overlaps=tuple(ClaimOverlap(**o) for o in d["overlaps"]),
        replies=d["replies"],
        reply_p50=d["reply_p50"],
        reply_p90=d["reply_p90"],
        by_reply=d["by_reply"],
        by_read=d["by_read"],
        unanswered=d["unanswered"],
        within_target=d["within_target"],
        uptime=tuple(SessionUptime(**u) for u in d["uptime"]),
        tasks_done=tuple(MilestoneDone(**t) for t in d["tasks_done"]),
    )
