"""Protobuf <-> the mesh's own values: the one place where wire types and mesh types meet.

    peer links   PeerInfo, StatusRecord, claims messages, mail batches/acks/receipts   (decoders validate:
                 a peer's field that breaks a rule raises ProtocolError, or LimitExceeded for a count)
    control API  MemberView, MemberEvent, NodeInfo, ClaimView, LeaseEvent, Sent, InboxMessage, OutboxEntry

The servicers, the runtime's link layer and the Client build request/reply envelopes; every value inside
one is converted here, in both directions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mesh._proto import mesh_pb2 as pb
from mesh.core import mailbox as mb
from mesh.core import validate
from mesh.core.errors import InvalidInput, LimitExceeded, ProtocolError
from mesh.core.membership import Liveness, PeerInfo
from mesh.core.status import StatusRecord
from mesh.views import ClaimView, LeaseEvent, MemberEvent, MemberView, NodeInfo, Sent

R = TypeVar("R")


def _from_peer(fn: Callable[..., R]) -> Callable[..., R]:
    """A decoder of what a peer sent: a rule it breaks is the peer's protocol violation, not our input."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> R:
        try:
            return fn(*args)
        except InvalidInput as e:
            raise ProtocolError(str(e)) from None

    return wrapper


LIVENESS_TO_PB = {
    Liveness.ALIVE: pb.ALIVE,
    Liveness.SUSPECT: pb.SUSPECT,
    Liveness.DEAD: pb.DEAD,
    Liveness.LEFT: pb.LEFT,
}
LIVENESS_FROM_PB = {v: k for k, v in LIVENESS_TO_PB.items()}


def peer_to_pb(p: PeerInfo) -> pb.NodeRef:
    return pb.NodeRef(
        node_id=p.node_id,
        name=p.name,
        incarnation=p.incarnation,
        address=p.address,
        role=p.role,
        started_at=p.started_at,
    )


@_from_peer
def peer_from_pb(m: pb.NodeRef) -> PeerInfo:
    validate.ident(m.node_id, "node id")
    validate.ident(m.incarnation, "incarnation")
    validate.name(m.name)
    if m.role:
        validate.name(m.role, "role")
    if m.address:
        validate.address(m.address)
    validate.wall_time(m.started_at, "started_at")  # stewards are chosen by age: NaN would break the sort
    return PeerInfo(
        node_id=m.node_id,
        incarnation=m.incarnation,
        name=m.name,
        role=m.role,
        address=m.address,
        started_at=m.started_at,
    )


def status_to_pb(s: StatusRecord) -> pb.Status:
    return pb.Status(
        node_id=s.node_id,
        incarnation=s.incarnation,
        version=s.version,
        name=s.name,
        role=s.role,
        action=s.action,
        target=s.target,
        phase=s.phase,
        progress=s.progress,
        note=s.note,
        updated_at=s.updated_at,
        claims=[pb.HeldClaim(resource=r, token=t, expires_at=x) for r, t, x in s.claims],
        unread=s.unread,
    )


@_from_peer
def status_from_pb(m: pb.Status) -> StatusRecord:
    # Wall times are display only, but every node renders them (datetime, JSON): NaN/inf must not get in.
    validate.wall_time(m.updated_at, "updated_at")
    for c in m.claims[:257]:
        validate.wall_time(c.expires_at, "claim expires_at")
    return StatusRecord(
        node_id=m.node_id,
        incarnation=m.incarnation,
        name=m.name,
        role=m.role,
        action=m.action,
        target=m.target,
        phase=m.phase,
        progress=m.progress,
        note=m.note,
        version=m.version,
        updated_at=m.updated_at,
        claims=tuple((c.resource, c.token, c.expires_at) for c in m.claims[:257]),
        unread=m.unread,
    ).validated()


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


def event_to_pb(e: MemberEvent) -> pb.Event:
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


def event_from_pb(e: pb.Event) -> MemberEvent:
    prev = STATE_FROM_PB.get(e.previous) if e.previous else None
    return MemberEvent(
        kind=KIND_FROM_PB.get(e.kind, "status"), member=view_from_pb(e.member), at=e.at, previous=prev
    )


# ---------------------------------------------------------------- claims messages
# Each core message dataclass maps to the proto message whose fields have the same names.

_CLAIM_PB: dict[type, tuple[str, type]] = {}


def _claim_table() -> dict[type, tuple[str, type]]:
    if not _CLAIM_PB:
        from mesh.core import lease, stewards

        for cls, field_name, pb_cls in (
            (lease.Prepare, "prepare", pb.ClaimPrepare),
            (lease.Promise, "promise", pb.ClaimPromise),
            (lease.PrepareReject, "prepare_reject", pb.ClaimPrepareReject),
            (lease.Propose, "propose", pb.ClaimPropose),
            (lease.Accepted, "accepted", pb.ClaimAccepted),
            (lease.AcceptReject, "accept_reject", pb.ClaimAcceptReject),
            (lease.Release, "release", pb.ClaimRelease),
            (stewards.CfgPrepare, "cfg_prepare", pb.CfgPrepare),
            (stewards.CfgPromise, "cfg_promise", pb.CfgPromise),
            (stewards.CfgReject, "cfg_reject", pb.CfgReject),
            (stewards.CfgAccept, "cfg_accept", pb.CfgAccept),
            (stewards.CfgAccepted, "cfg_accepted", pb.CfgAccepted),
            (stewards.ConfigAnnounce, "config_announce", pb.ConfigAnnounce),
        ):
            _CLAIM_PB[cls] = (field_name, pb_cls)
    return _CLAIM_PB


_MAX_TEXT = 512
_MAX_LIST = 16
_MAX_INT = 1 << 62


def claim_to_pb(msg: Any) -> pb.ClaimMsg:
    """A core claims message as a ClaimMsg."""
    field_name, pb_cls = _claim_table()[type(msg)]
    values = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    return pb.ClaimMsg(**{field_name: pb_cls(**values)})


@_from_peer
def claim_from_pb(m: pb.ClaimMsg) -> Any:
    """A ClaimMsg as the core's dataclass; every field checked for type and bounds (InvalidInput)."""
    which = m.WhichOneof("msg")
    if which is None:
        raise InvalidInput("empty claims message")
    by_field = {name: c for c, (name, _) in _claim_table().items()}
    cls = by_field[which]
    inner = getattr(m, which)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        v = getattr(inner, f.name)
        if isinstance(v, str):
            if len(v) > _MAX_TEXT:
                raise InvalidInput(f"claims field {f.name} too long")
        elif isinstance(v, float):
            if not math.isfinite(v) or not -1e9 < v < 1e9:
                raise InvalidInput(f"claims field {f.name} out of range")
        elif isinstance(v, int):
            if not -_MAX_INT < v < _MAX_INT:
                raise InvalidInput(f"claims field {f.name} out of range")
        else:  # repeated string
            v = tuple(v)
            if len(v) > _MAX_LIST or any(len(x) > _MAX_TEXT for x in v):
                raise InvalidInput(f"claims field {f.name} too long")
        values[f.name] = v
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"bad claims message: {e}") from None


# ---------------------------------------------------------------- mail messages (peer links)


def batch_to_pb(b: mb.MailBatch) -> pb.MailBatch:
    return pb.MailBatch(
        from_node=b.from_node,
        to_node=b.to_node,
        stream=b.stream,
        floor=b.floor,
        messages=[
            pb.MailEnvelope(
                id=e.id, seq=e.seq, from_name=e.from_name, to_name=e.to_name, subject=e.subject, body=e.body,
                sent_at=e.sent_at, in_reply_to=e.in_reply_to, broadcast=e.broadcast,
            )
            for e in b.messages
        ],
    )  # fmt: skip


def batch_from_pb(m: pb.MailBatch) -> mb.MailBatch:
    if len(m.messages) > mb.BATCH_MAX:
        raise LimitExceeded(f"a mail batch carries at most {mb.BATCH_MAX} messages")
    return mb.MailBatch(
        from_node=m.from_node,
        to_node=m.to_node,
        stream=m.stream,
        floor=m.floor,
        messages=tuple(
            mb.Envelope(
                id=e.id, seq=e.seq, from_name=e.from_name, to_name=e.to_name, subject=e.subject, body=e.body,
                sent_at=e.sent_at, in_reply_to=e.in_reply_to, broadcast=e.broadcast,
            )
            for e in m.messages
        ),
    )  # fmt: skip


def ack_to_pb(a: mb.MailAck) -> pb.MailAck:
    return pb.MailAck(from_node=a.from_node, to_node=a.to_node, stream=a.stream, upto=a.upto)


def ack_from_pb(m: pb.MailAck) -> mb.MailAck:
    return mb.MailAck(from_node=m.from_node, to_node=m.to_node, stream=m.stream, upto=m.upto)


def receipt_to_pb(r: mb.ReadReceipt) -> pb.ReadReceipt:
    return pb.ReadReceipt(
        reader_node=r.reader_node, sender_node=r.sender_node, ids=list(r.ids), read_at=r.read_at
    )


def receipt_from_pb(m: pb.ReadReceipt) -> mb.ReadReceipt:
    if len(m.ids) > mb.RECEIPT_MAX:
        raise LimitExceeded(f"a read receipt carries at most {mb.RECEIPT_MAX} ids")
    return mb.ReadReceipt(
        reader_node=m.reader_node, sender_node=m.sender_node, ids=tuple(m.ids), read_at=m.read_at
    )


def rack_to_pb(r: mb.ReceiptAck) -> pb.ReceiptAck:
    return pb.ReceiptAck(reader_node=r.reader_node, sender_node=r.sender_node, ids=list(r.ids))


def rack_from_pb(m: pb.ReceiptAck) -> mb.ReceiptAck:
    if len(m.ids) > mb.RECEIPT_MAX:
        raise LimitExceeded(f"a receipt ack carries at most {mb.RECEIPT_MAX} ids")
    return mb.ReceiptAck(reader_node=m.reader_node, sender_node=m.sender_node, ids=tuple(m.ids))


# ---------------------------------------------------------------- service messages <-> one frame

_RECEIPTS_PER_FRAME = 16  # acks, receipts, receipt acks per frame, at most (a peer sending more is cut)


def service_messages(f: pb.PeerFrame) -> list[object]:
    """The service messages a frame carries (mail), decoded, in the order a service applies them."""
    out: list[object] = []
    if f.HasField("mail"):
        out.append(batch_from_pb(f.mail))
    out += [ack_from_pb(a) for a in f.mail_acks[:_RECEIPTS_PER_FRAME]]
    out += [receipt_from_pb(r) for r in f.receipts[:_RECEIPTS_PER_FRAME]]
    out += [rack_from_pb(r) for r in f.receipt_acks[:_RECEIPTS_PER_FRAME]]
    return out


def frame_of(msgs: Sequence[object]) -> pb.PeerFrame:
    """One frame carrying service messages (at most one mail batch)."""
    mail: pb.MailBatch | None = None
    acks: list[pb.MailAck] = []
    receipts: list[pb.ReadReceipt] = []
    racks: list[pb.ReceiptAck] = []
    for m in msgs:
        if isinstance(m, mb.MailBatch):
            if mail is not None:
                raise ValueError("one mail batch per frame")
            mail = batch_to_pb(m)
        elif isinstance(m, mb.MailAck):
            acks.append(ack_to_pb(m))
        elif isinstance(m, mb.ReadReceipt):
            receipts.append(receipt_to_pb(m))
        elif isinstance(m, mb.ReceiptAck):
            racks.append(rack_to_pb(m))
        else:
            raise TypeError(f"not a service message: {type(m).__name__}")
    return pb.PeerFrame(mail=mail, mail_acks=acks, receipts=receipts, receipt_acks=racks)


# ---------------------------------------------------------------- control API values


def info_to_pb(i: NodeInfo) -> pb.NodeInfo:
    return pb.NodeInfo(
        node=pb.NodeRef(node_id=i.node_id, name=i.name, incarnation=i.incarnation, address=i.address),
        mesh=i.mesh,
        state_dir=i.state_dir,
        pid=i.pid,
        version=i.version,
        epoch=i.epoch,
        stewards=list(i.stewards),
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
        expires_at=c.expires_at,
    )  # fmt: skip


def claim_reply_from_pb(r: pb.ClaimReply) -> ClaimView:
    return ClaimView(r.resource, r.holder, r.holder_node, r.token, r.expires_at)


def claims_to_pb(claims: list[ClaimView]) -> pb.ClaimList:
    return pb.ClaimList(
        claims=[
            pb.ClaimEntry(resource=c.resource, holder=c.holder, holder_node=c.holder_node, token=c.token,
                          expires_at=c.expires_at)
            for c in claims
        ]
    )  # fmt: skip


def claims_from_pb(r: pb.ClaimList) -> list[ClaimView]:
    return [ClaimView(c.resource, c.holder, c.holder_node, c.token, c.expires_at) for c in r.claims]


_LEASE_KIND_TO_PB = {
    "held": pb.LeaseEvent.HELD,
    "renewed": pb.LeaseEvent.RENEWED,
    "lost": pb.LeaseEvent.LOST,
    "released": pb.LeaseEvent.RELEASED,
}
_LEASE_KIND_FROM_PB = {v: k for k, v in _LEASE_KIND_TO_PB.items()}


def lease_event_to_pb(e: LeaseEvent) -> pb.LeaseEvent:
    return pb.LeaseEvent(kind=_LEASE_KIND_TO_PB[e.kind], resource=e.resource, token=e.token)


def lease_event_from_pb(m: pb.LeaseEvent) -> LeaseEvent:
    return LeaseEvent(_LEASE_KIND_FROM_PB.get(m.kind, "held"), m.resource, m.token)


def sent_to_pb(s: Sent) -> pb.SendReply:
    return pb.SendReply(id=s.id, recipients=list(s.recipients))


def sent_from_pb(r: pb.SendReply) -> Sent:
    return Sent(r.id, tuple(r.recipients))


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
