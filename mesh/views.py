"""What the API hands out (`Node`, `mesh.connect()` and the control socket alike): frozen values, JSON-ready.

`to_json()` gives the shapes the README documents (`status --json`, `claims --json`, …); times in them are
RFC 3339 UTC strings (`mesh.core.times.iso`). Messages are `mesh.core.mailbox.InboxMessage` / `OutboxEntry`,
the status record is `mesh.core.status.StatusRecord`.
"""

from __future__ import annotations

from mesh._values import ClaimView, MemberView, NodeInfo, Sent
from mesh.core.times import iso

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "BoardEvent",
    "ClaimOverlap",
    "ClaimView",
    "LeaseEvent",
    "MailCounts",
    "MemberEvent",
    "MemberView",
    "MeshStats",
    "MilestoneDone",
    "NodeInfo",
    "RoleRow",
    "Sent",
    "SessionUptime",
    "WatchEvent",
    "iso",
    "role_table",
]

_MORE = frozenset(
    {
        "BoardEvent",
        "ClaimOverlap",
        "LeaseEvent",
        "MailCounts",
        "MemberEvent",
        "MeshStats",
        "MilestoneDone",
        "RoleRow",
        "SessionUptime",
        "WatchEvent",
        "role_table",
    }
)

if TYPE_CHECKING:
    from mesh._views_more import (
        BoardEvent,
        ClaimOverlap,
        LeaseEvent,
        MailCounts,
        MemberEvent,
        MeshStats,
        MilestoneDone,
        RoleRow,
        SessionUptime,
        WatchEvent,
        role_table,
    )


def __getattr__(name: str) -> Any:
    if name not in _MORE:
        raise AttributeError(f"module 'mesh.views' has no attribute {name!r}")
    from mesh import _views_more

    value = getattr(_views_more, name)
    globals()[name] = value
    return value
