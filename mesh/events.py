"""What the public API hands out: member views and watch events (frozen, past tense, JSON-ready)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any


def iso(t: float | None) -> str | None:
    """Unix seconds -> RFC 3339 UTC with milliseconds (the JSON time format)."""
    if t is None or t <= 0:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def claim_json(resource: str, holder: str, holder_node: str, token: int, expires_at: float) -> dict[str, Any]:
    """The documented `claims --json` entry."""
    type_, _, name = resource.partition("/")
    return {
        "type": type_,
        "name": name,
        "holder": holder,
        "holder_node": holder_node,
        "token": token,
        "expires_at": iso(expires_at),
    }


@dataclass(frozen=True, slots=True)
class MemberView:
    """One node of the mesh as the answering node sees it."""

    name: str
    node_id: str
    role: str
    state: str  # alive | suspect | dead | left
    action: str
    target: str
    phase: str
    progress: int
    note: str
    last_seen: float  # unix seconds
    is_self: bool = False
    address: str = ""
    incarnation: str = ""
    state_since: float = 0.0
    status_version: int = 0
    status_updated_at: float = 0.0
    steward: bool = False
    claims: tuple[tuple[str, int, float], ...] = ()  # (TYPE/NAME, fencing token, ends at)
    unread: int = 0  # unread messages in its inbox (exact for the answering node, ~1 s behind for others)

    def to_json(self) -> dict[str, Any]:
        """The documented `status --json` shape."""
        return {
            "name": self.name,
            "node_id": self.node_id,
            "role": self.role,
            "state": self.state,
            "action": self.action,
            "target": self.target,
            "phase": self.phase,
            "progress": self.progress,
            "note": self.note,
            "last_seen": iso(self.last_seen),
            "is_self": self.is_self,
            "address": self.address,
            "state_since": iso(self.state_since),
            "status_updated_at": iso(self.status_updated_at),
            "steward": self.steward,
            "unread": self.unread,
            "claims": [claim_json(r, self.name, self.node_id, t, x) for r, t, x in self.claims],
        }


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """Something changed about a member: `joined`, `state` (liveness), `status`, or `snapshot`."""

    kind: str
    member: MemberView
    at: float
    previous: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The documented `watch --json` line."""
        return {
            "event": self.kind,
            "at": iso(self.at),
            "previous": self.previous,
            "member": self.member.to_json(),
        }
