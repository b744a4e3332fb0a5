"""Protobuf <-> the mesh's own values on peer links (the control API's are in `api_codec`): the one place,
with it, where wire types and mesh types meet.

    PeerInfo, StatusRecord, claims messages (and the `wants` hint), mail batches/acks/receipts, board
    deltas and syncs, and service messages <-> one frame.
    Decoders validate: a peer's field that breaks a rule raises ProtocolError (LimitExceeded for a count).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, TypeVar

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh.core import board as bd
from mesh.core import mailbox as mb
from mesh.core import validate
from mesh.core.boardsync import SyncDigest, SyncRequest
from mesh.core.claim_types import Wants
from mesh.core.errors import InvalidInput, LimitExceeded, ProtocolError
from mesh.core.membership import PeerInfo, Verdict
from mesh.core.resources import path_claim
from mesh.core.status import StatusRecord
from mesh.core.values import asdict, fields, is_value
from mesh.core.watch import News

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


_NEWS_PB = {News.ALIVE: pb.ALIVE, News.SUSPECT: pb.SUSPECT, News.DEAD: pb.DEAD}
_PB_NEWS = {v: k for k, v in _NEWS_PB.items()}


def verdict_to_pb(v: Verdict) -> pb.Verdict:
    return pb.Verdict(node_id=v.node_id, incarnation=v.incarnation, state=_NEWS_PB[v.news], seq=v.seq)


@_from_peer
def verdict_from_pb(m: pb.Verdict) -> Verdict:
    validate.ident(m.node_id, "node id")
    validate.ident(m.incarnation, "incarnation")
    news = _PB_NEWS.get(m.state)
    if news is None:
        raise ProtocolError(f"a verdict must say alive, suspect or dead (got state {m.state})")
    return Verdict(m.node_id, m.incarnation, news, m.seq)


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
            (lease.Free, "free", pb.ClaimFree),
            (stewards.CfgPrepare, "cfg_prepare", pb.CfgPrepare),
            (stewards.CfgPromise, "cfg_promise", pb.CfgPromise),
            (stewards.CfgReject, "cfg_reject", pb.CfgReject),
            (stewards.CfgAccept, "cfg_accept", pb.CfgAccept),
            (stewards.CfgAccepted, "cfg_accepted", pb.CfgAccepted),
            (stewards.CfgInstall, "cfg_install", pb.CfgInstall),
            (stewards.CfgInstalled, "cfg_installed", pb.CfgInstalled),
            (stewards.ConfigAnnounce, "config_announce", pb.ConfigAnnounce),
        ):
            _CLAIM_PB[cls] = (field_name, pb_cls)
    return _CLAIM_PB


_MAX_TEXT = 512
_MAX_LIST = 16
_MAX_INT = 1 << 62


_MAX_SNAPSHOT = 2000  # leases in one hand-off (mesh.core.claims.SNAPSHOT_MAX)


def _plain(v: Any) -> Any:
    """Tuples of nested dataclasses (a hand-off's leases) become lists of field dicts."""
    if isinstance(v, tuple) and v and is_value(v[0]):
        return [asdict(x) for x in v]
    return v


def claim_to_pb(msg: Any) -> pb.ClaimMsg:
    """A core claims message as a ClaimMsg."""
    field_name, pb_cls = _claim_table()[type(msg)]
    values = {name: _plain(getattr(msg, name)) for name in fields(msg)}
    return pb.ClaimMsg(**{field_name: pb_cls(**values)})


def _check_scalar(name: str, v: Any) -> Any:
    if isinstance(v, str):
        if len(v) > _MAX_TEXT:
            raise InvalidInput(f"claims field {name} too long")
    elif isinstance(v, float):
        if not math.isfinite(v) or not -1e9 < v < 1e9:
            raise InvalidInput(f"claims field {name} out of range")
    elif isinstance(v, int) and not -_MAX_INT < v < _MAX_INT:
        raise InvalidInput(f"claims field {name} out of range")
    return v


def _snapshot(items: Any) -> tuple[Any, ...]:
    from mesh.core.stewards import SnapLease

    if len(items) > _MAX_SNAPSHOT:
        raise InvalidInput("claims hand-off too long")
    out = []
    for it in items:
        vals = {name: _check_scalar(name, getattr(it, name)) for name in fields(SnapLease)}
        out.append(SnapLease(**vals))
    return tuple(out)


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
    for name in fields(cls):
        v = getattr(inner, name)
        if isinstance(v, str | float | int):
            v = _check_scalar(name, v)
        elif name == "snapshot":
            v = _snapshot(v)
        else:  # repeated string
            v = tuple(v)
            if len(v) > _MAX_LIST or any(not isinstance(x, str) or len(x) > _MAX_TEXT for x in v):
                raise InvalidInput(f"claims field {name} too long")
        values[name] = v
    for r in [values.get("resource", ""), values.get("blocking", "")] + [
        x.resource for x in values.get("snapshot", ())
    ]:
        path_claim(r)  # a path claim's pattern must parse (PatternError: the peer's protocol violation)
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"bad claims message: {e}") from None


# ---------------------------------------------------------------- mail messages (peer links)


def batch_to_pb(b: mb.MailBatch, columns: bool = False) -> pb.MailBatch:
    """A batch as the wire carries it: by column to a peer that reads them (its Hello said mail_columns),
    else an envelope each."""
    if columns:
        # the envelopes' columns by one C loop (envelopes are tuples), each column one C loop into the message
        ids, seqs, froms, tos, subjects, bodies, sents, replies, bcasts = zip(*b.messages, strict=True)
        return pb.MailBatch(
            from_node=b.from_node, to_node=b.to_node, stream=b.stream, floor=b.floor, ids=ids, seqs=seqs,
            from_names=froms, to_names=tos, subjects=subjects, bodies=bodies, sent_ats=sents,
            in_reply_tos=replies, broadcasts=bcasts,
        )  # fmt: skip
    m = pb.MailBatch(from_node=b.from_node, to_node=b.to_node, stream=b.stream, floor=b.floor)
    # Each envelope built in place (`add`): one built apart is copied into the batch (1.7x the cost).
    add = m.messages.add
    for e in b.messages:
        add(
            id=e.id, seq=e.seq, from_name=e.from_name, to_name=e.to_name, subject=e.subject, body=e.body,
            sent_at=e.sent_at, in_reply_to=e.in_reply_to, broadcast=e.broadcast,
        )  # fmt: skip
    return m


def batch_from_pb(m: pb.MailBatch) -> mb.MailBatch:
    """A batch from the wire, in either form (a peer may send envelopes or, told we read them, columns)."""
    if m.ids:
        return _batch_of_columns(m)
    if len(m.messages) > mb.BATCH_MAX:
        raise LimitExceeded(f"a mail batch carries at most {mb.BATCH_MAX} messages")
    return mb.MailBatch(
        from_node=m.from_node,
        to_node=m.to_node,
        stream=m.stream,
        floor=m.floor,
        # the fields read by one C getter into a tuple, made an Envelope (a named tuple) as it is: no Python
        # frame per envelope
        messages=tuple(map(_ENVELOPE_OF, map(_ENVELOPE_FIELDS, m.messages))),
    )  # fmt: skip


def _batch_of_columns(m: pb.MailBatch) -> mb.MailBatch:
    n = len(m.ids)
    if n > mb.BATCH_MAX:
        raise LimitExceeded(f"a mail batch carries at most {mb.BATCH_MAX} messages")
    cols = (m.ids, m.seqs, m.from_names, m.to_names, m.subjects, m.bodies, m.sent_ats, m.in_reply_tos,
            m.broadcasts)  # fmt: skip
    if m.messages or any(len(c) != n for c in cols):
        raise ProtocolError(
            "bad mail frame: a batch's columns differ in length (or it also carries envelopes)"
        )
    # an envelope per row of the columns: zip's tuple made an Envelope as it is (no Python frame each)
    return mb.MailBatch(m.from_node, m.to_node, m.stream, m.floor, tuple(map(_ENVELOPE_OF, zip(*cols))))  # noqa: B905


_ENVELOPE_OF = functools.partial(tuple.__new__, mb.Envelope)
_ENVELOPE_FIELDS = attrgetter(*mb.Envelope._fields)
"""A pb.Envelope's fields in `mb.Envelope`'s order (the same names; tests/api/test_mail_frame_size.py
round-trips a batch)."""


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


# ---------------------------------------------------------------- the board (peer links)


def board_op_to_pb(op: bd.Op) -> pb.BoardOp:
    d = bd.op_to_dict(op)
    body = json.dumps(d["body"], ensure_ascii=False, separators=(",", ":"))
    return pb.BoardOp(
        origin=op.origin, seq=op.seq, wall_ms=op.stamp.wall_ms, counter=op.stamp.counter, kind=d["kind"],
        body=body,
    )  # fmt: skip


@_from_peer
def board_op_from_pb(m: pb.BoardOp) -> bd.Op:
    """An operation from a peer, every field validated by the board core (a bad one is a ProtocolError)."""
    if len(m.body) > limits.BOARD_OP_BODY_MAX:
        raise InvalidInput(f"a board operation body is at most {limits.BOARD_OP_BODY_MAX} bytes")
    try:
        body = json.loads(m.body)
        return bd.op_from_dict(
            {"origin": m.origin, "seq": m.seq, "wall_ms": m.wall_ms, "counter": m.counter, "kind": m.kind,
             "body": body}
        )  # fmt: skip
    except (ValueError, TypeError, RecursionError) as e:  # InvalidField is a ValueError too
        raise InvalidInput(f"bad board operation: {e}") from None


def board_context_to_pb(ctx: bd.Context) -> pb.BoardContext:
    return pb.BoardContext(
        vv=[pb.ReplicaSeq(replica=o, seq=n) for o, n in ctx.vv],
        dots=[pb.ReplicaSeq(replica=o, seq=n) for o, n in ctx.dots],
    )


@_from_peer
def board_context_from_pb(m: pb.BoardContext) -> bd.Context:
    if len(m.vv) + len(m.dots) > limits.BOARD_CONTEXT_MAX:
        raise LimitExceeded(f"a board context lists at most {limits.BOARD_CONTEXT_MAX} entries")
    return bd.context_from_dict(
        {"vv": [[p.replica, p.seq] for p in m.vv], "dots": [[p.replica, p.seq] for p in m.dots]}
    )


def board_delta_to_pb(d: bd.Delta) -> pb.BoardDelta:
    ctx = None if d.context is None else board_context_to_pb(d.context)
    return pb.BoardDelta(ops=[board_op_to_pb(op) for op in d.ops], context=ctx)


def board_delta_from_pb(m: pb.BoardDelta) -> bd.Delta:
    if len(m.ops) > limits.BOARD_OPS_PER_FRAME:
        raise LimitExceeded(f"a frame carries at most {limits.BOARD_OPS_PER_FRAME} board operations")
    ctx = board_context_from_pb(m.context) if m.HasField("context") else None
    return bd.Delta(tuple(board_op_from_pb(op) for op in m.ops), ctx)


def board_sync_to_pb(s: SyncRequest | SyncDigest) -> pb.BoardSync:
    if isinstance(s, SyncRequest):
        return pb.BoardSync(replica=s.replica, context=board_context_to_pb(s.context))
    return pb.BoardSync(replica=s.replica, digest=s.digest)


@_from_peer
def board_sync_from_pb(m: pb.BoardSync) -> SyncRequest | SyncDigest:
    replica = bd.check_replica(m.replica)
    if m.HasField("context"):
        return SyncRequest(replica, board_context_from_pb(m.context))
    if len(m.digest) != 16:
        raise InvalidInput("a board digest is 16 bytes")
    return SyncDigest(replica, m.digest)


# ---------------------------------------------------------------- service messages <-> one frame

_RECEIPTS_PER_FRAME = 16  # acks, receipts, receipt acks per frame, at most (a peer sending more is cut)
_CLAIMS_PER_FRAME = 256  # claims messages per frame, at most (a peer sending more is cut)
_WANTS_PER_FRAME = 64


def service_messages(f: pb.PeerFrame) -> list[object]:
    """The service messages a frame carries (claims, mail, board), decoded, in the order a service applies
    them."""
    board = f.HasField("board") or f.HasField("board_sync")
    out: list[object] = []
    if f.claims:
        out += [claim_from_pb(m) for m in f.claims[:_CLAIMS_PER_FRAME]]
    if f.wants:
        out.append(Wants(tuple(w for w in f.wants[:_WANTS_PER_FRAME] if len(w) <= _MAX_TEXT)))
    if not (board or f.HasField("mail") or f.mail_acks or f.receipts or f.receipt_acks):
        return out  # most frames: heartbeats, status, claims
    if f.HasField("mail"):
        out.append(batch_from_pb(f.mail))
    out += [ack_from_pb(a) for a in f.mail_acks[:_RECEIPTS_PER_FRAME]]
    out += [receipt_from_pb(r) for r in f.receipts[:_RECEIPTS_PER_FRAME]]
    out += [rack_from_pb(r) for r in f.receipt_acks[:_RECEIPTS_PER_FRAME]]
    if board:  # a delta before a sync: a request answered in the same frame sees the delta applied
        if f.HasField("board"):
            out.append(board_delta_from_pb(f.board))
        if f.HasField("board_sync"):
            out.append(board_sync_from_pb(f.board_sync))
    return out


_last_claims: list[Any] = [(), None]
"""The last claims-only frame built and the message objects it was built from: a claimant sends the same
Prepare/Propose object to every steward (one `frame_of` each), so it is encoded once, not once per steward.
Core messages are frozen values, and a queued frame is never changed (a batch copies it)."""


def frame_of(msgs: Sequence[object], columns: bool = False) -> pb.PeerFrame:
    """One frame carrying service messages (at most one mail batch, one board delta, one board sync);
    `columns`: its mail batch by column (the peer's Hello said mail_columns)."""
    if len(msgs) == 1:  # the common case: one batch, one ack or one receipt
        (m,) = msgs
        if isinstance(m, mb.MailBatch):
            return pb.PeerFrame(mail=batch_to_pb(m, columns))
        if isinstance(m, mb.MailAck):
            return pb.PeerFrame(mail_acks=[ack_to_pb(m)])
    table = _claim_table()
    if all(type(m) in table for m in msgs):  # a claims core's sends to one peer
        prev, built = _last_claims
        same = len(prev) == len(msgs) and all(a is b for a, b in zip(prev, msgs, strict=True))
        if same and built is not None:
            return built  # type: ignore[no-any-return]
        f = pb.PeerFrame(claims=[claim_to_pb(m) for m in msgs])
        _last_claims[:] = [tuple(msgs), f]
        return f
    mail: pb.MailBatch | None = None
    acks: list[pb.MailAck] = []
    receipts: list[pb.ReadReceipt] = []
    racks: list[pb.ReceiptAck] = []
    claims: list[pb.ClaimMsg] = []
    wants: list[str] = []
    board: pb.BoardDelta | None = None
    sync: pb.BoardSync | None = None
    for m in msgs:
        if type(m) in table:
            claims.append(claim_to_pb(m))
        elif isinstance(m, Wants):
            wants += m.resources
        elif isinstance(m, bd.Delta):
            if board is not None:
                raise ValueError("one board delta per frame")
            board = board_delta_to_pb(m)
        elif isinstance(m, SyncRequest | SyncDigest):
            if sync is not None:
                raise ValueError("one board sync per frame")
            sync = board_sync_to_pb(m)
        elif isinstance(m, mb.MailBatch):
            if mail is not None:
                raise ValueError("one mail batch per frame")
            mail = batch_to_pb(m, columns)
        elif isinstance(m, mb.MailAck):
            acks.append(ack_to_pb(m))
        elif isinstance(m, mb.ReadReceipt):
            receipts.append(receipt_to_pb(m))
        elif isinstance(m, mb.ReceiptAck):
            racks.append(rack_to_pb(m))
        else:
            raise TypeError(f"not a service message: {type(m).__name__}")
    return pb.PeerFrame(
        mail=mail,
        mail_acks=acks,
        receipts=receipts,
        receipt_acks=racks,
        claims=claims,
        wants=wants,
        board=board,
        board_sync=sync,
    )
