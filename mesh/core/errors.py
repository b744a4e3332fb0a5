"""One error tree for the whole mesh, pure Python (the core raises these too; no transport is imported).

    MeshError
    ├── ConfigError            bad option / value given by the caller          INVALID_ARGUMENT
    │   └── InvalidInput       a field failed validation (name, size, range)   INVALID_ARGUMENT
    │       └── InvalidField   a core's value check; names the `field`         INVALID_ARGUMENT
    │           ├── PatternError  a path-claim pattern is malformed (globs)    INVALID_ARGUMENT
    │           └── AmbiguousId   a short id matches several (board)           INVALID_ARGUMENT
    ├── NodeNotFound           no running node matches (meshctl, connect())     NOT_FOUND
    ├── UnknownId              no task or milestone has this id (board)         NOT_FOUND
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
    ├── StorageError           local state cannot be read or written            FAILED_PRECONDITION
    │   ├── StorageFull        the disk holding it is full (recovers by itself) RESOURCE_EXHAUSTED
    │   └── StateDamaged       a state file is damaged, empty or not ours       DATA_LOSS
    ├── AuthError              credentials missing or wrong                     UNAUTHENTICATED
    │   └── PermissionDenied   authenticated, but not allowed                   PERMISSION_DENIED
    └── ProtocolError          a peer broke the protocol (not the caller)       INVALID_ARGUMENT
        └── ConflictingOp      two different operations under one id (board)    INVALID_ARGUMENT

The right-hand column is how each class travels over gRPC; that table lives at the transport edge
(`mesh._transport.errors`), so these classes stay importable without grpc. `exit_code` is what meshctl
exits with when the error ends a command. `InvalidField` is also a `ValueError` and `UnknownId` a
`LookupError`, so plain Python callers of a core can catch them without knowing the mesh.

Storage faults (sqlite3 and OS errors: a full disk, a read-only home, a damaged file) become `StorageError`s
in one place, `mesh.storage`, which every store and state file goes through; each message names the file
and what to do.
"""

from __future__ import annotations

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


class InvalidField(InvalidInput, ValueError):
    """A value a core checks failed validation; `field` names it (the message names the rule)."""

    field: str = (
        ""  # class defaults: an error rebuilt from its status (mesh.connect) carries only the message
    )

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PatternError(InvalidField):
    """A path-claim pattern is malformed; `pattern` is the offending input."""

    pattern: str = ""

    def __init__(self, pattern: str, message: str) -> None:
        super().__init__("pattern", message)
        self.pattern = pattern


class AmbiguousId(InvalidField):
    """A short id matches several ids; `choices` lists them."""

    choices: tuple[str, ...] = ()

    def __init__(self, field: str, given: str, choices: tuple[str, ...]) -> None:
        shown = ", ".join(choices[:5]) + (", ..." if len(choices) > 5 else "")
        super().__init__(field, f"{field} {given!r} is ambiguous: it could be {shown}")
        self.choices = choices


class NodeNotFound(MeshError):
    """No running node matches the request."""


class UnknownId(MeshError, LookupError):
    """No task or milestone has this id."""

    kind: str = ""
    given: str = ""

    def __init__(self, kind: str, given: str) -> None:
        super().__init__(f"no {kind} has the id {given!r}")
        self.kind = kind
        self.given = given


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

    def __init__(
        self, message: str = "", *, holder: str = "", expires_at: float | None = None, holder_id: str = ""
    ) -> None:
        super().__init__(message or f"held by {holder}")
        self.holder = holder
        self.expires_at = expires_at
        self.holder_id = holder_id
        """The holder's node identity NODE_ID/INCARNATION ("" when the stewards did not say)."""


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


class StorageError(MeshError):
    """This node's local state cannot be read or written (read-only, not permitted, not a directory)."""


class StorageFull(StorageError):
    """The disk (or quota) holding this node's state is full; what failed is not stored. The node carries
    on and recovers by itself once there is room."""


class StateDamaged(StorageError):
    """A state file is damaged, empty, or not what this node wrote; the node refuses to run on it (it
    would lose or split data), and the message says what to restore or move aside."""


class AuthError(MeshError):
    """Credentials are missing or wrong."""


class PermissionDenied(AuthError):
    """Authenticated, but not allowed to do this."""


class ProtocolError(MeshError):
    """A peer broke the protocol (what it sent was malformed or not its to send); the link ends."""


class ConflictingOp(ProtocolError):
    """A peer sent an operation whose id is already known with different content (a protocol breach)."""


def shown(value: object) -> str:
    """A rejected value as an error message shows it: repr'd (no raw control characters), cut."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def error_classes() -> dict[str, type[MeshError]]:
    """Every MeshError subclass by name (to rebuild the exact class an error travelled as)."""
    out: dict[str, type[MeshError]] = {}
    stack: list[type[MeshError]] = [MeshError]
    while stack:
        cls = stack.pop()
        out[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return out
