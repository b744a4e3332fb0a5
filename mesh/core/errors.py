"""One error tree for the whole mesh, pure Python (the core raises these too; no transport is imported).

    MeshError
    ├── ConfigError            bad option / value given by the caller          INVALID_ARGUMENT
    │   └── InvalidInput       a field failed validation (name, size, range)   INVALID_ARGUMENT
    ├── NodeNotFound           no running node matches (meshctl, connect())     NOT_FOUND
    ├── AmbiguousNode          several nodes match; say which                   FAILED_PRECONDITION
    ├── NameTaken              another live node already has this name          ALREADY_EXISTS
    ├── NodeUnavailable        the node is not reachable / is shutting down     UNAVAILABLE
    ├── ClaimError             claims                                           FAILED_PRECONDITION
    │   ├── ClaimDenied        another session holds it (holder, expires)       FAILED_PRECONDITION
    │   ├── ClaimLost          a held lease could not be renewed                ABORTED
    │   └── NoQuorum           not enough stewards reachable to decide          UNAVAILABLE
    ├── MessageError           messaging                                        FAILED_PRECONDITION
    │   └── UnknownRecipient   the name was never seen in this mesh             NOT_FOUND
    ├── LimitExceeded          a rate / size / count limit was hit              RESOURCE_EXHAUSTED
    ├── AuthError              credentials missing or wrong                     UNAUTHENTICATED
    │   └── PermissionDenied   authenticated, but not allowed                   PERMISSION_DENIED
    └── ProtocolError          a peer broke the protocol (not the caller)       INVALID_ARGUMENT

The right-hand column is how each class travels over gRPC; that table lives at the transport edge
(`mesh._transport.errors`), so these classes stay importable without grpc. `exit_code` is what meshctl
exits with when the error ends a command.
"""

from __future__ import annotations

__all__ = [
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
]


class MeshError(Exception):
    """Base of every error the mesh raises."""

    exit_code: int = 2

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message or self.__class__.__name__


class ConfigError(MeshError):
    """A bad option or value given by the caller."""


class InvalidInput(ConfigError):
    """A field failed validation (name, size, range)."""


class NodeNotFound(MeshError):
    """No running node matches the request."""


class AmbiguousNode(MeshError):
    """Several running nodes match; the caller must say which."""


class NameTaken(MeshError):
    """Another live node in this mesh already has this name."""


class NodeUnavailable(MeshError):
    """The node cannot be reached or is shutting down."""


class ClaimError(MeshError):
    """Base of claim errors."""


class ClaimDenied(ClaimError):
    """Another session holds the item."""

    exit_code = 3

    def __init__(self, message: str = "", *, holder: str = "", expires_at: float | None = None) -> None:
        super().__init__(message or f"held by {holder}")
        self.holder = holder
        self.expires_at = expires_at


class ClaimLost(ClaimError):
    """A held lease could not be renewed in time; stop acting on the item."""


class NoQuorum(ClaimError):
    """Not enough stewards are reachable to decide a claim."""


class MessageError(MeshError):
    """Base of messaging errors."""


class UnknownRecipient(MessageError):
    """The recipient name was never seen in this mesh."""


class LimitExceeded(MeshError):
    """A size, count or rate limit was hit."""


class AuthError(MeshError):
    """Credentials are missing or wrong."""


class PermissionDenied(AuthError):
    """Authenticated, but not allowed to do this."""


class ProtocolError(MeshError):
    """A peer broke the protocol (what it sent was malformed or not its to send); the link ends."""


def error_classes() -> dict[str, type[MeshError]]:
    """Every MeshError subclass by name (to rebuild the exact class an error travelled as)."""
    out: dict[str, type[MeshError]] = {}
    stack: list[type[MeshError]] = [MeshError]
    while stack:
        cls = stack.pop()
        out[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return out
