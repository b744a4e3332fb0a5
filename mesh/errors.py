"""The mesh's errors: one tree under `MeshError` (drawn, with how each class travels, in `mesh.core.errors`).

`grpc.RpcError` never reaches a caller of the public API: `mesh._transport.errors` translates at the edge.
"""

from __future__ import annotations

from mesh.core.errors import (
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

__all__ = [
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
]
