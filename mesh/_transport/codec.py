"""Protobuf <-> core dataclasses. The only module (with the servicers) that touches mesh._proto types.

Every decode validates: a field from the network that breaks a rule raises InvalidInput.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mesh._proto import mesh_pb2 as pb
from mesh.core import validate
from mesh.core.membership import Liveness, Member, PeerInfo
from mesh.core.status import StatusRecord
from mesh.errors import InvalidInput
from mesh.events import MemberEvent, MemberView

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


def member_to_pb(m: Member, last_seen_wall: float, state_since_wall: float) -> pb.Member:
    out = pb.Member(
        node=peer_to_pb(m.info),
        state=LIVENESS_TO_PB[m.state],
        last_seen=last_seen_wall,
        is_self=m.is_self,
        state_since=state_since_wall,
    )
    if m.status is not None:
        out.status.CopyFrom(status_to_pb(m.status))
    return out


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
    if isinstance(v, tuple) and v and dataclasses.is_dataclass(v[0]):
        return [dataclasses.asdict(x) for x in v]
    return v


def claim_to_pb(msg: Any) -> pb.ClaimMsg:
    """A core claims message as a ClaimMsg."""
    field_name, pb_cls = _claim_table()[type(msg)]
    values = {f.name: _plain(getattr(msg, f.name)) for f in dataclasses.fields(msg)}
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
        vals = {f.name: _check_scalar(f.name, getattr(it, f.name)) for f in dataclasses.fields(SnapLease)}
        out.append(SnapLease(**vals))
    return tuple(out)


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
        if isinstance(v, str | float | int):
            v = _check_scalar(f.name, v)
        elif f.name == "snapshot":
            v = _snapshot(v)
        else:  # repeated string
            v = tuple(v)
            if len(v) > _MAX_LIST or any(not isinstance(x, str) or len(x) > _MAX_TEXT for x in v):
                raise InvalidInput(f"claims field {f.name} too long")
        values[f.name] = v
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"bad claims message: {e}") from None
