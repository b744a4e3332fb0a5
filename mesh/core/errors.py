"""Errors raised by the pure cores (globs, board, stats): standard library only, so no core imports grpc.

    CoreError
    ├── InvalidField       a value failed validation; names the field and the rule  -> InvalidInput
    │   ├── PatternError   a path-claim pattern is malformed (mesh.core.globs)       -> InvalidInput
    │   └── AmbiguousId    a short id matches several tasks or milestones            -> InvalidInput
    ├── UnknownId          no task or milestone has this id                          -> NOT_FOUND
    └── ConflictingOp      a peer sent two different operations under one id         -> ProtocolError

The arrow says what the runtime turns each into at its edge (`mesh.errors` carries the gRPC status and the
CLI exit code: 2 for every one of them). `mesh.errors` imports grpc, which a core must not, hence this
separate tree. `InvalidField` is also a `ValueError` and `UnknownId` a `LookupError`, so plain Python
callers can catch them without knowing the mesh.
"""

from __future__ import annotations

__all__ = ["AmbiguousId", "ConflictingOp", "CoreError", "InvalidField", "PatternError", "UnknownId"]


class CoreError(Exception):
    """Base of every error a pure core raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidField(CoreError, ValueError):
    """A value failed validation; `field` names it (the message names the rule)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PatternError(InvalidField):
    """A path-claim pattern is malformed; `pattern` is the offending input."""

    def __init__(self, pattern: str, message: str) -> None:
        super().__init__("pattern", message)
        self.pattern = pattern


class AmbiguousId(InvalidField):
    """A short id matches several ids; `choices` lists them."""

    def __init__(self, field: str, given: str, choices: tuple[str, ...]) -> None:
        shown = ", ".join(choices[:5]) + (", ..." if len(choices) > 5 else "")
        super().__init__(field, f"{field} {given!r} is ambiguous: it could be {shown}")
        self.choices = choices


class UnknownId(CoreError, LookupError):
    """No task or milestone has this id."""

    def __init__(self, kind: str, given: str) -> None:
        super().__init__(f"no {kind} has the id {given!r}")
        self.kind = kind
        self.given = given


class ConflictingOp(CoreError):
    """A peer sent an operation whose id is already known with different content (a protocol breach)."""
