"""The API's values that `meshctl`'s hot verbs hand out (claims, members, the node, a sent message).

Import them from `mesh.views`, which re-exports them; they live here so that `mesh.views` can build the
rest only on first use (see mesh._views_more) while neither module imports the other. They are
`mesh.core.values.value` classes (frozen, slotted, like the dataclasses they were) so that a `meshctl`
process never imports `dataclasses`, `inspect` or `typing`.
"""

from __future__ import annotations

from mesh.core.times import iso
from mesh.core.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ClaimView", "MemberView", "NodeInfo", "Sent"]


@value
class ClaimView:
    """A live claim: who holds TYPE/NAME, its fencing token, and when its maximum life ends.

    A claim just granted to this node (`claim_once`) also says until when the lease is certainly held, on
    the node's monotonic clock (CLOCK_BOOTTIME), and that clock's reading when the node answered, so that
    a `Lease` can map the instant onto its own clock (see mesh.claim). Claims listed by `claims()` leave
    both at 0: only the holder knows them.
    """

    resource: str  # TYPE/NAME
    holder: str  # the holder's session name
    holder_node: str  # the holder's node id
    token: int
    expires_at: float  # unix seconds; 0 when unknown
    valid_until: float = 0.0  # granted here: certainly held until then on the node's monotonic clock
    node_now: float = 0.0  # the node's monotonic clock when it answered
    holder_id: str = ""  # the holder's node identity NODE_ID/INCARNATION ("" when not known)

    @property
    def type(self) -> str:
        return self.resource.partition("/")[0]

    @property
    def name(self) -> str:
        return self.resource.partition("/")[2]

    def to_json(self) -> dict[str, Any]:
        """The documented `claims --json` entry."""
        return {
            "type": self.type,
            "name": self.name,
            "holder": self.holder,
            "holder_node": self.holder_node,
            "token": self.token,
            "expires_at": iso(self.expires_at),
        }


@value
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

    def claim_views(self) -> list[ClaimView]:
        """The claims this member holds."""
        return [ClaimView(r, self.name, self.node_id, t, x) for r, t, x in self.claims]

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
            "claims": [c.to_json() for c in self.claim_views()],
        }


@value
class NodeInfo:
    """Who the answering node is, where it lives, and the steward set it has adopted."""

    name: str
    node_id: str
    incarnation: str
    mesh: str
    address: str
    pid: int
    state_dir: str
    version: str
    epoch: int = 0
    stewards: tuple[str, ...] = ()  # steward names ("?" + id prefix when not a known member)
    node_now: float = 0.0  # the node's monotonic clock (CLOCK_BOOTTIME) when it answered
    steward_note: str = ""
    """Empty when claims can be decided; else why not (no config yet, stewards missing) and what to do."""
    local_links: int = 0
    """Open peer links on same-host unix streams (mesh._transport.local)."""
    grpc_links: int = 0
    """Open peer links on gRPC (mutual TLS)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node_id": self.node_id,
            "incarnation": self.incarnation,
            "mesh": self.mesh,
            "address": self.address,
            "pid": self.pid,
            "state_dir": self.state_dir,
            "version": self.version,
            "epoch": self.epoch,
            "stewards": list(self.stewards),
        }


@value
class Sent:
    """A message durably queued in this node's outbox: its id and the sessions it is addressed to."""

    id: str
    recipients: tuple[str, ...]

    def __str__(self) -> str:
        return self.id

    def to_json(self) -> dict[str, Any]:
        """The documented `send --json` shape."""
        return {"id": self.id, "queued": True, "recipients": list(self.recipients)}


# Every other value is built on first use (PEP 562): see mesh._views_more for why.
