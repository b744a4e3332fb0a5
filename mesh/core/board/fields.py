"""The board's values: limits, enums, and the checks every field passes (one place, shared by local
verbs, peer operations and the CLI)."""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from mesh.core.errors import InvalidField, shown

TITLE_MAX = 200
"""Characters in a task title, milestone title or step text."""
NOTE_MAX_BYTES = 2048
"""UTF-8 bytes in a note."""
MAX_STEPS = 50
"""Steps a milestone may be created with, and may have live at once (local verbs)."""
MAX_TASKS = 100_000
"""Tasks (dropped ones included) a local verb may create; beyond it `add_task` refuses."""
RETENTION_MS = 30 * 24 * 3600 * 1000
"""How long a dropped task or milestone is kept as a tombstone before `compact` may forget it."""
MAX_SEQ = 2**53
"""Largest per-replica sequence number (exact in every JSON implementation)."""


class Priority(StrEnum):
    """P0 is the most urgent."""

    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


class TaskState(StrEnum):
    """A task's stored state (claims are not stored on the board)."""

    OPEN = "open"
    DONE = "done"
    DROPPED = "dropped"


class MilestoneState(StrEnum):
    """A milestone's stored state; its progress is computed from its tasks."""

    OPEN = "open"
    DROPPED = "dropped"


class RowState(StrEnum):
    """A task's state as a view shows it: `claimed` comes from the claims protocol."""

    OPEN = "open"
    CLAIMED = "claimed"
    DONE = "done"
    DROPPED = "dropped"


# ---------------------------------------------------------------- validation

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case: no i l o u
REPLICA_ID = re.compile(r"[0-9a-hjkmnp-tv-z]{8}")
ENTITY_ID = re.compile(r"([0-9a-hjkmnp-tv-z]{8})-([1-9][0-9]{0,15})")
STEP_ID = re.compile(r"([0-9a-hjkmnp-tv-z]{8})-([1-9][0-9]{0,15})(?:\.([1-9][0-9]?))?")
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROLE_RULE = "1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"
# Besides Cc: line/paragraph separators and bidirectional overrides, which reorder what a terminal shows.
_INVISIBLE = {
    "\u2028",
    "\u2029",
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
}


def new_replica_id(entropy: bytes) -> str:
    """A replica id from at least 5 random bytes (the runtime passes ``os.urandom(5)``)."""
    if len(entropy) < 5:
        raise InvalidField("entropy", "a replica id needs at least 5 random bytes")
    n = int.from_bytes(entropy[:5], "big")
    return "".join(_ALPHABET[(n >> (5 * k)) & 31] for k in range(7, -1, -1))


def _bad_char(value: str, allow_newline: bool = False) -> str | None:
    if value.isprintable():  # the common case, fast: no Cc, no separators, no format characters
        return None
    for c in value:
        if c == "\n" and allow_newline:
            continue
        if c in _INVISIBLE or unicodedata.category(c) == "Cc":
            return c
    return None


def check_title(value: object, field: str = "title") -> str:
    """A title or step text: 1-200 characters, not blank, no control characters."""
    if not isinstance(value, str):
        raise InvalidField(field, f"{field} must be text, not {type(value).__name__}")
    if not value.strip():
        raise InvalidField(field, f"{field} must not be empty")
    if len(value) > TITLE_MAX:
        raise InvalidField(field, f"{field} is {len(value)} characters; the limit is {TITLE_MAX}")
    bad = _bad_char(value)
    if bad is not None:
        raise InvalidField(field, f"{field} contains the control character {bad!r}")
    return value


def check_note(value: object, field: str = "note") -> str:
    """A note: at most 2 KiB of UTF-8; line breaks allowed, other control characters not."""
    if not isinstance(value, str):
        raise InvalidField(field, f"{field} must be text, not {type(value).__name__}")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > NOTE_MAX_BYTES:
        raise InvalidField(field, f"{field} is {size} bytes; the limit is {NOTE_MAX_BYTES} (2 KiB)")
    bad = _bad_char(value, allow_newline=True)
    if bad is not None:
        raise InvalidField(field, f"{field} contains the control character {bad!r}")
    return value


def check_role(value: object) -> str:
    """A role name, or "" for none."""
    if value == "":
        return ""
    if not isinstance(value, str) or not _ROLE.fullmatch(value):
        raise InvalidField("role", f"invalid role {shown(value)}: use {ROLE_RULE}")
    return value


def parse_priority(value: object) -> Priority:
    """P0-P3 (any case)."""
    if isinstance(value, str) and value.upper() in Priority.__members__:
        return Priority(value.upper())
    raise InvalidField(
        "priority", f"priority must be one of P0, P1, P2, P3 (P0 is the most urgent), not {shown(value)}"
    )


def check_replica(value: object) -> str:
    """A replica id (8 characters of Crockford base32, lower case), e.g. from a peer's sync message."""
    return check_id(value, "replica", REPLICA_ID)


def check_id(value: object, field: str, pattern: re.Pattern[str] = ENTITY_ID, empty: bool = False) -> str:
    if empty and value == "":
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidField(field, f"invalid {field} id {shown(value)}")
    return value
