"""session mesh: a peer-to-peer coordination mesh for simultaneous AI coding sessions.

from mesh import Node
async with Node(name="session-4", role="i-match") as node:
    await node.heartbeat(action="build", target="i-match", phase="tests", progress=40)
"""

from mesh._version import __version__
from mesh.client import Client, NodeInfo, connect
from mesh.config import NodeConfig
from mesh.errors import (
    AmbiguousNode,
    ClaimDenied,
    ClaimError,
    ClaimLost,
    ConfigError,
    InvalidInput,
    LimitExceeded,
    MeshError,
    NameTaken,
    NodeNotFound,
    NodeUnavailable,
    NoQuorum,
    UnknownRecipient,
)
from mesh.events import MemberEvent, MemberView
from mesh.node import Node

__all__ = [
    "AmbiguousNode",
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
    "NameTaken",
    "NoQuorum",
    "Node",
    "NodeConfig",
    "NodeInfo",
    "NodeNotFound",
    "NodeUnavailable",
    "UnknownRecipient",
    "__version__",
    "connect",
]
