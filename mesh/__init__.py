"""session mesh: a peer-to-peer coordination mesh for simultaneous AI coding sessions.

    from mesh import Node
    async with Node(name="session-4", role="i-match") as node:
        await node.heartbeat(action="build", target="i-match", phase="tests", progress=40)

`Node` (embedded) and `connect()` (a running node) both implement `MeshAPI`. Names are imported on first use
(PEP 562), so `meshctl` starts without loading what a verb does not need.
"""

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    from typing import Any

    from mesh._version import __version__
    from mesh.api import MeshAPI
    from mesh.claim import Lease, PendingClaim
    from mesh.client import Client, connect
    from mesh.config import NodeConfig
    from mesh.core.board import BoardView, MilestoneRow, TaskRow
    from mesh.core.mailbox import InboxMessage, OutboxEntry
    from mesh.core.status import StatusRecord
    from mesh.errors import (
        AmbiguousId,
        AmbiguousNode,
        AuthError,
        ClaimDenied,
        ClaimError,
        ClaimLost,
        ConfigError,
        ConflictingOp,
        InvalidField,
        InvalidInput,
        LimitExceeded,
        MeshError,
        MessageError,
        NameTaken,
        NodeNotFound,
        NodeUnavailable,
        NoQuorum,
        PatternError,
        PermissionDenied,
        ProtocolError,
        StateDamaged,
        StorageError,
        StorageFull,
        UnknownId,
        UnknownRecipient,
    )
    from mesh.node import Node
    from mesh.views import (
        BoardEvent,
        ClaimView,
        LeaseEvent,
        MailCounts,
        MemberEvent,
        MemberView,
        MeshStats,
        NodeInfo,
        Sent,
        WatchEvent,
    )

_WHERE = {
    "__version__": "mesh._version",  # on first use too: meshctl's hot verbs import `mesh`, not its version
    "MeshAPI": "mesh.api",
    "Lease": "mesh.claim",
    "PendingClaim": "mesh.claim",
    "Client": "mesh.client",
    "connect": "mesh.client",
    "NodeConfig": "mesh.config",
    "BoardView": "mesh.core.board",
    "MilestoneRow": "mesh.core.board",
    "TaskRow": "mesh.core.board",
    "InboxMessage": "mesh.core.mailbox",
    "OutboxEntry": "mesh.core.mailbox",
    "StatusRecord": "mesh.core.status",
    "Node": "mesh.node",
    **{
        n: "mesh.views"
        for n in (
            "BoardEvent",
            "ClaimView",
            "LeaseEvent",
            "MailCounts",
            "MemberEvent",
            "MemberView",
            "MeshStats",
            "NodeInfo",
            "Sent",
            "WatchEvent",
        )
    },
    **{
        n: "mesh.errors"
        for n in (
            "AmbiguousId",
            "AmbiguousNode",
            "AuthError",
            "ClaimDenied",
            "ClaimError",
            "ClaimLost",
            "ConfigError",
            "ConflictingOp",
            "InvalidField",
            "InvalidInput",
            "LimitExceeded",
            "MeshError",
            "MessageError",
            "NameTaken",
            "NoQuorum",
            "NodeNotFound",
            "NodeUnavailable",
            "PatternError",
            "PermissionDenied",
            "ProtocolError",
            "StateDamaged",
            "StorageError",
            "StorageFull",
            "UnknownId",
            "UnknownRecipient",
        )
    },
}

__all__ = [
    "AmbiguousId",
    "AmbiguousNode",
    "AuthError",
    "BoardEvent",
    "BoardView",
    "ClaimDenied",
    "ClaimError",
    "ClaimLost",
    "ClaimView",
    "Client",
    "ConfigError",
    "ConflictingOp",
    "InboxMessage",
    "InvalidField",
    "InvalidInput",
    "Lease",
    "LeaseEvent",
    "LimitExceeded",
    "MailCounts",
    "MemberEvent",
    "MemberView",
    "MeshAPI",
    "MeshError",
    "MeshStats",
    "MessageError",
    "MilestoneRow",
    "NameTaken",
    "NoQuorum",
    "Node",
    "NodeConfig",
    "NodeInfo",
    "NodeNotFound",
    "NodeUnavailable",
    "OutboxEntry",
    "PatternError",
    "PendingClaim",
    "PermissionDenied",
    "ProtocolError",
    "Sent",
    "StateDamaged",
    "StatusRecord",
    "StorageError",
    "StorageFull",
    "TaskRow",
    "UnknownId",
    "UnknownRecipient",
    "WatchEvent",
    "__version__",
    "connect",
]


def __getattr__(name: str) -> "Any":
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'mesh' has no attribute {name!r}")
    import importlib  # here, not at the top: it loads `warnings`, and meshctl's hot verbs import `mesh`

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
