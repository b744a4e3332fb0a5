"""One error tree for the whole mesh; each class carries the gRPC status it travels as.

    MeshError
    ├── ConfigError            bad option / value given by the caller          INVALID_ARGUMENT
    │   └── InvalidInput       a field failed validation (name, size, range)   INVALID_ARGUMENT
    ├── NodeNotFound           no running node matches (meshctl, connect())     NOT_FOUND
    ├── AmbiguousNode          several nodes match; say which                   FAILED_PRECONDITION
    ├── NameTaken              another live node already has this name          ALREADY_EXISTS
    ├── NodeUnavailable        the node is not reachable / is shutting down     UNAVAILABLE
    ├── StateError             local state unreadable: refuse rather than guess  FAILED_PRECONDITION
    ├── ClaimError             claims
    │   ├── ClaimDenied        another session holds it (holder, expires)       FAILED_PRECONDITION
    │   ├── ClaimLost          a held lease could not be renewed                ABORTED
    │   └── NoQuorum           not enough stewards reachable to decide          UNAVAILABLE
    ├── MessageError           messaging
    │   └── UnknownRecipient   the name was never seen in this mesh             NOT_FOUND
    ├── LimitExceeded          a rate / size / count limit was hit              RESOURCE_EXHAUSTED
    ├── AuthError              credentials missing or wrong                     UNAUTHENTICATED
    │   └── PermissionDenied   authenticated, but not allowed                   PERMISSION_DENIED
    └── ProtocolError          a peer broke the protocol                        INVALID_ARGUMENT

`grpc.RpcError` never reaches a caller of the public API: `mesh._transport.status` translates at the edge.
"""

from __future__ import annotations

import grpc


class MeshError(Exception):
    """Base of every error the mesh raises."""

    grpc_status: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    exit_code: int = 2

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message or self.__class__.__name__


class ConfigError(MeshError):
    """A bad option or value given by the caller."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class InvalidInput(ConfigError):
    """A field failed validation (name, size, range)."""


class NodeNotFound(MeshError):
    """No running node matches the request."""

    grpc_status = grpc.StatusCode.NOT_FOUND


class AmbiguousNode(MeshError):
    """Several running nodes match; the caller must say which."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class NameTaken(MeshError):
    """Another live node in this mesh already has this name."""

    grpc_status = grpc.StatusCode.ALREADY_EXISTS


class NodeUnavailable(MeshError):
    """The node cannot be reached or is shutting down."""

    grpc_status = grpc.StatusCode.UNAVAILABLE


class StateError(MeshError):
    """A local state file (steward state, the home's epoch) is unreadable: never guessed, never rewritten."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class ClaimError(MeshError):
    """Base of claim errors."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class ClaimDenied(ClaimError):
    """Another session holds the item."""

    exit_code = 3

    def __init__(self, message: str = "", *, holder: str = "", expires_at: float | None = None) -> None:
        super().__init__(message or f"held by {holder}")
        self.holder = holder
        self.expires_at = expires_at


class ClaimLost(ClaimError):
    """A held lease could not be renewed in time; stop acting on the item."""

    grpc_status = grpc.StatusCode.ABORTED


class NoQuorum(ClaimError):
    """Not enough stewards are reachable to decide a claim."""

    grpc_status = grpc.StatusCode.UNAVAILABLE


class MessageError(MeshError):
    """Base of messaging errors."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class UnknownRecipient(MessageError):
    """The recipient name was never seen in this mesh."""

    grpc_status = grpc.StatusCode.NOT_FOUND


class LimitExceeded(MeshError):
    """A size, count or rate limit was hit."""

    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED


class AuthError(MeshError):
    """Credentials are missing or wrong."""

    grpc_status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AuthError):
    """Authenticated, but not allowed to do this."""

    grpc_status = grpc.StatusCode.PERMISSION_DENIED


class ProtocolError(MeshError):
    """A peer broke the protocol."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


_BY_STATUS: dict[grpc.StatusCode, type[MeshError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: NodeNotFound,
    grpc.StatusCode.ALREADY_EXISTS: NameTaken,
    grpc.StatusCode.UNAVAILABLE: NodeUnavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceeded,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.ABORTED: ClaimLost,
    grpc.StatusCode.FAILED_PRECONDITION: MeshError,
}

# Errors whose exact class must survive the trip (the status code alone is ambiguous): sent in metadata.
ERROR_CLASS_KEY = "mesh-error"


def error_classes() -> dict[str, type[MeshError]]:
    """Every MeshError subclass by name (for decoding the exact class sent in trailing metadata)."""
    out: dict[str, type[MeshError]] = {}
    stack: list[type[MeshError]] = [MeshError]
    while stack:
        cls = stack.pop()
        out[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return out


def from_status(code: grpc.StatusCode, details: str, class_name: str | None = None) -> MeshError:
    """Rebuild the MeshError a server raised, from its status (and class name, if it sent one)."""
    cls = error_classes().get(class_name or "") or _BY_STATUS.get(code, MeshError)
    return cls(details)
