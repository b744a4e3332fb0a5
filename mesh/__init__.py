"""session mesh: a peer-to-peer coordination mesh for simultaneous AI coding sessions.

    from mesh import Node
    async with Node(name="session-4", role="i-match") as node:
        await node.heartbeat(action="build", target="i-match", phase="tests", progress=40)

Names are imported on first use (PEP 562), so `meshctl` starts without loading what a verb does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mesh._version import __version__

if TYPE_CHECKING:
    from mesh.client import Client, NodeInfo, connect
    from mesh.config import NodeConfig
    from mesh.errors import (
        AmbiguousNode,
        AuthError,
        ClaimDenied,
        ClaimError,
        ClaimLost,
        ConfigError,
        InvalidInput,
        LimitExceeded,
        MeshError,
        MessageError,
        NameTaken,
        NodeNotFound,
        NodeUnavailable,
        NoQuorum,
        PermissionDenied,
        ProtocolError,
        UnknownRecipient,
    )
    from mesh.events import MemberEvent, MemberView
    from mesh.node import Node

_WHERE = {
    "Client": "mesh.client",
    "NodeInfo": "mesh.client",
    "connect": "mesh.client",
    "NodeConfig": "mesh.config",
    "MemberEvent": "mesh.events",
    "MemberView": "mesh.events",
    "Node": "mesh.node",
    **{
        n: "mesh.errors"
        for n in (
            "AmbiguousNode",
            "AuthError",
            "ClaimDenied",
            "ClaimError",
            "ClaimLost",
            "ConfigError",
            "InvalidInput",
            "LimitExceeded",
            "MeshError",
            "MessageError",
            "NameTaken",
            "NoQuorum",
            "NodeNotFound",
            "NodeUnavailable",
            "PermissionDenied",
            "ProtocolError",
            "UnknownRecipient",
        )
    },
}

__all__ = [
    "AmbiguousNode",
    "AuthError",
    "ClaimDenied",
    "ClaimError",
    "ClaimLost",
    "Client",
    "ConfigError",
    "InvalidInput",
    "LimitExceeded",
    "MemberEvent",
    "MemberView",
    "MeshError",
    "MessageError",
    "NameTaken",
    "NoQuorum",
    "Node",
    "NodeConfig",
    "NodeInfo",
    "NodeNotFound",
    "NodeUnavailable",
    "PermissionDenied",
    "ProtocolError",
    "UnknownRecipient",
    "__version__",
    "connect",
]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'mesh' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
