"""What a claimed resource's name says: an item, or a path pattern held exclusively or shared.

    TYPE/NAME           an item: exactly one holder; it conflicts only with claims of the same name
    path/PATTERN        exclusive path claim: no other session may hold an overlapping pattern at once
    path-shared/PATTERN shared path claim: any number of sessions at once; conflicts with exclusive ones

PATTERN is a `mesh.core.globs` pattern in its normal form (anchored at the project root; several patterns
claimed at once are one pattern, their brace union ``{A,B,C}``: one lease, granted all or none). Two claims
conflict iff they are path claims whose patterns overlap (some path matches both; decided exactly) and at
least one is exclusive; or they are the same item.

An acceptor keeps one PaxosLease slot per resource, except that a shared path claim gets a slot per owner
(``slot_key``): several owners hold it at once, each with its own ballots, so a shared claim's fencing
tokens increase per holder identity (a restarted node is a new holder), not across holders. Conflicts
between different slots are the acceptor's overlap check (``mesh.core.lease.AcceptorState``).
"""

from __future__ import annotations

from mesh.core.errors import PatternError
from mesh.core.values import value

# `globs` (with `re` tables and dataclasses) is imported where a path pattern is looked at: a `meshctl
# claim service X` names PATH_TYPES and nothing else of this module, and starts ~6 ms sooner without it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from mesh.core import globs

__all__ = [
    "MAX_PATH_CLAIM",
    "PATH",
    "PATH_TYPES",
    "SHARED_PATH",
    "PathClaim",
    "conflict",
    "is_shared",
    "literal",
    "path_claim",
    "path_resource",
    "slot_key",
]

PATH = "path"
SHARED_PATH = "path-shared"
PATH_TYPES = (PATH, SHARED_PATH)
MAX_PATH_CLAIM = 200
"""Characters in a path claim's pattern (its normal form): the claim travels in status records."""


@value
class PathClaim:
    """A path claim's pattern and mode."""

    glob: globs.Glob
    exclusive: bool


PARSED_MAX = 4096
_parsed: dict[str, PathClaim] = {}
"""Path claims parsed so far, by resource (at most PARSED_MAX: when full it starts afresh, O(1), where
dropping a dict's oldest entry one by one costs a scan over the dropped ones). A dict, not
`functools.lru_cache`: `functools` (with `collections`) is ~2 ms of a `meshctl claim`, which imports this
module for PATH_TYPES alone."""


def path_claim(resource: str) -> PathClaim | None:
    """The pattern and mode of a path claim; None for an item. PatternError for a malformed pattern."""
    type_, _, name = resource.partition("/")
    if type_ not in PATH_TYPES:
        return None
    got = _parsed.get(resource)
    if got is None:
        from mesh.core import globs

        got = PathClaim(globs.parse(name), type_ == PATH)
        if len(_parsed) >= PARSED_MAX:
            _parsed.clear()
        _parsed[resource] = got
    return got


def is_shared(resource: str) -> bool:
    """A shared path claim: several owners may hold it at once (each with a lease and tokens of its own)."""
    return resource.startswith(SHARED_PATH + "/")


def slot_key(resource: str, owner: str) -> str:
    """The acceptor slot of ``owner``'s claim on ``resource``: one per resource, one per owner if shared."""
    return f"{resource}\n{owner}" if is_shared(resource) else resource


def conflict(a: str, b: str) -> bool:
    """Do two different resources' leases exclude each other? (Path claims only: overlap, one exclusive.)"""
    pa, pb = path_claim(a), path_claim(b)
    if pa is None or pb is None or not (pa.exclusive or pb.exclusive):
        return False
    from mesh.core import globs

    return globs.overlaps(pa.glob, pb.glob)


def path_resource(patterns: Sequence[str], shared: bool = False) -> str:
    """The resource of a claim on these patterns (all or none: their brace union), validated and normalised.

    PatternError names what is wrong (a malformed pattern, or too long a union).
    """
    if not patterns:
        raise PatternError("", "give at least one path pattern")
    from mesh.core import globs

    texts = sorted({globs.normalise(p) for p in patterns})
    pattern = texts[0] if len(texts) == 1 else "{" + ",".join(texts) + "}"
    if len(pattern) > MAX_PATH_CLAIM:
        raise PatternError(
            pattern, f"these patterns make a claim of {len(pattern)} characters; at most {MAX_PATH_CLAIM}"
        )
    text = globs.normalise(pattern)
    if len(text) > MAX_PATH_CLAIM:
        raise PatternError(
            pattern, f"these patterns expand to {len(text)} characters; at most {MAX_PATH_CLAIM}"
        )
    return f"{SHARED_PATH if shared else PATH}/{text}"


def literal(path: str) -> str:
    """The pattern that matches exactly this project-relative path (metacharacters as classes).

    A leading ``!`` cannot be written (it would read as a negation); ``?`` stands for it, which matches a
    little more, never less.
    """
    from mesh.core import globs

    text = "".join(f"[{c}]" if c in "*?[{}," else c for c in globs.normalise_path(path))
    return "?" + text[1:] if text.startswith("!") else text
