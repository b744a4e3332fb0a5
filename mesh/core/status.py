"""A node's status record: what it is doing, versioned so the newest always wins."""

from __future__ import annotations

from mesh.core import validate
from mesh.core.errors import InvalidInput
from mesh.core.values import replace, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_CLAIMS_SHOWN = 256


@value  # not a dataclass: `meshctl heartbeat` hands it out (see mesh.core.values)
class StatusRecord:
    """What a session publishes about itself; `version` orders updates within one incarnation."""

    node_id: str
    incarnation: str
    name: str
    role: str = ""
    action: str = ""
    target: str = ""
    phase: str = ""
    progress: int = 0
    note: str = ""
    version: int = 0
    updated_at: float = 0.0  # wall clock, display only
    claims: tuple[tuple[str, int, float], ...] = ()  # (TYPE/NAME, fencing token, ends at wall clock)
    unread: int = 0  # messages in its inbox not yet read

    def newer_than(self, other: StatusRecord | None) -> bool:
        """True when this record should replace `other` (a new incarnation always does)."""
        if other is None or other.node_id != self.node_id:
            return True
        if other.incarnation != self.incarnation:
            return True
        return self.version > other.version

    def validated(self) -> StatusRecord:
        """Check every field (raises InvalidInput)."""
        validate.ident(self.node_id, "node id")
        validate.ident(self.incarnation, "incarnation")
        validate.name(self.name)
        if self.role:
            validate.name(self.role, "role")
        validate.text(self.action, "action")
        validate.text(self.target, "target")
        validate.text(self.phase, "phase")
        validate.text(self.note, "note", validate.NOTE_MAX)
        validate.progress(self.progress)
        if not 0 <= self.unread < 1 << 31:
            raise InvalidInput("unread count out of range")
        if len(self.claims) > MAX_CLAIMS_SHOWN:
            raise InvalidInput(f"a status lists at most {MAX_CLAIMS_SHOWN} claims")
        for resource, token, _ in self.claims:
            validate.text(resource, "claim", 240)
            if token < 0:
                raise InvalidInput("claim token must not be negative")
        return self

    def update(self, *, wall: float, **changes: Any) -> StatusRecord:
        """A new version with the given fields changed (None = keep)."""
        given = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **given, version=self.version + 1, updated_at=wall).validated()
