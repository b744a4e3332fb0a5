"""Validation rules for every field that crosses a boundary (CLI, control API, peer API).

Pure functions: each returns the cleaned value or raises InvalidInput naming the field and the rule.
"""

from __future__ import annotations

import re

from mesh.errors import InvalidInput

NAME_MAX = 64
TEXT_MAX = 128
NOTE_MAX = 512
ADDRESS_MAX = 262
ID_MAX = 64
NAME_RULE = "1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def name(value: str, field: str = "name") -> str:
    """A session, role or mesh name."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInput(f"invalid {field} {value!r}: use {NAME_RULE}")
    return value


def ident(value: str, field: str = "id") -> str:
    """A node id or incarnation (opaque, url-safe)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInput(f"invalid {field} {value!r}: 1-64 characters from A-Z a-z 0-9 _ -")
    return value


def text(value: str, field: str, limit: int = TEXT_MAX) -> str:
    """A free-text field: bounded, printable (no control characters)."""
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value)} characters; the limit is {limit}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{field} contains control characters")
    return value


def progress(value: int) -> int:
    """A progress percentage, 0-100."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidInput(f"progress must be a whole number from 0 to 100, not {value!r}")
    return value


def address(value: str, field: str = "address") -> tuple[str, int]:
    """host:port (IPv6 hosts in brackets) -> (host, port)."""
    if not value or len(value) > ADDRESS_MAX:
        raise InvalidInput(f"invalid {field} {value!r}: expected HOST:PORT")
    host, sep, port_s = value.rpartition(":")
    if not sep or not host or not port_s.isdigit():
        raise InvalidInput(f"invalid {field} {value!r}: expected HOST:PORT")
    port = int(port_s)
    if not 0 < port < 65536:
        raise InvalidInput(f"invalid {field} {value!r}: port must be 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if any(c.isspace() for c in host):
        raise InvalidInput(f"invalid {field} {value!r}: host has spaces")
    return host, port
