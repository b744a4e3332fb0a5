"""Validation rules for every field that crosses a boundary (CLI, control API, peer API).

Pure functions: each returns the cleaned value or raises InvalidInput naming the field and the rule.
"""

from __future__ import annotations

from mesh.core.errors import InvalidInput
from mesh.core.errors import shown as shown  # re-exported: the boundary layers call validate.shown

NAME_MAX = 64
TEXT_MAX = 128
NOTE_MAX = 512
ADDRESS_MAX = 262
ID_MAX = 64
NAME_RULE = "1-64 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"

TYPE_CHECKING = False  # no `typing` at run time: meshctl's hot verbs import this module
if TYPE_CHECKING:
    import re
    from collections.abc import Callable


class _Pattern:
    """A regular expression compiled (and `re` imported) on its first use: only `address` has one, and
    meshctl's hot verbs never call it (`re` is ~3 ms of a ~12 ms process). After that first use `fullmatch`
    is the compiled pattern's own method, in a slot: no cost per call."""

    __slots__ = ("fullmatch", "source")

    fullmatch: Callable[[str], re.Match[str] | None]

    def __init__(self, source: str) -> None:
        self.source = source

    def __getattr__(self, attr: str) -> Callable[[str], re.Match[str] | None]:
        if attr != "fullmatch":
            raise AttributeError(attr)
        import re

        self.fullmatch = re.compile(self.source).fullmatch
        return self.fullmatch


_HOST = _Pattern(r"[A-Za-z0-9._:%-]{1,255}")  # IPv4, IPv6 (with a %zone), or a DNS name

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("._-")
_ID_CHARS = _ALNUM | frozenset("_-")
_ID_BYTES = "".join(sorted(_ID_CHARS)).encode()
_TYPE_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_TYPE_CHARS = _TYPE_FIRST | frozenset("0123456789_-")
_CLAIM_NAME_CHARS = _ALNUM | frozenset("._/@:+-")


def _spelled(value: object, first: frozenset[str], rest: frozenset[str], most: int) -> bool:
    """Whether `value` is a str of 1 to `most` characters, the first from `first` and every one from `rest`
    (the name rules as sets, not regular expressions: `re` stays out of meshctl's hot verbs; tests/core/
    test_validate_sets.py holds each equal to its regular expression)."""
    return isinstance(value, str) and 0 < len(value) <= most and value[0] in first and rest.issuperset(value)


def is_id(value: object) -> bool:
    """Whether `value` passes `ident`."""
    return _spelled(value, _ID_CHARS, _ID_CHARS, ID_MAX)


def is_id_text(text: str) -> bool:
    """Whether every character of `text` may be in an id (ids joined: one C scan for a batch of them, the
    allowed bytes deleted from its UTF-8 and nothing left). UnicodeEncodeError for a lone surrogate."""
    return not text.encode().translate(None, _ID_BYTES)


def is_name(value: object) -> bool:
    """Whether `value` passes `name` (one directory name, never a path: find_node builds paths of it)."""
    return _spelled(value, _ALNUM, _NAME_CHARS, NAME_MAX)


def utf8(value: str, field: str) -> str:
    """Text that can travel: encodable as UTF-8 (a lone surrogate is what undecodable argv or stdin bytes
    become in Python, and it would fail deep inside the transport)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} is not valid UTF-8 text (it holds undecodable bytes)") from None
    return value


def page_limit(value: int, field: str = "limit", most: int = 10_000) -> int:
    """A page size: a whole number from 1 to `most`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidInput(f"{field} must be a whole number from 1 to {most}, not {shown(value)}")
    return value


def name(value: str, field: str = "name") -> str:
    """A session, role or mesh name."""
    if not is_name(value):
        raise InvalidInput(f"invalid {field} {shown(value)}: use {NAME_RULE}")
    return value


def ident(value: str, field: str = "id") -> str:
    """A node id or incarnation (opaque, url-safe)."""
    if not _spelled(value, _ID_CHARS, _ID_CHARS, ID_MAX):
        raise InvalidInput(f"invalid {field} {shown(value)}: 1-64 characters from A-Z a-z 0-9 _ -")
    return value


WALL_MAX = 1e10  # unix seconds, year 2286: far beyond any real clock, still a valid datetime everywhere


def wall_time(value: float, field: str) -> float:
    """A wall-clock time from a peer (display only): finite and from 0 to WALL_MAX.

    NaN, infinities or absurd values would otherwise break whoever renders them (a datetime, JSON) or sorts
    by them, on every node the record reaches.
    """
    # The range test refuses NaN (every comparison with it is false) and the infinities too, without `math`
    # (a C module meshctl's hot verbs would load for this one call), and a huge int without OverflowError.
    if not isinstance(value, (int, float)) or not 0 <= value <= WALL_MAX:
        raise InvalidInput(f"{field} must be a unix time from 0 to {WALL_MAX:.0e}, not {shown(value)}")
    return float(value)


def text(value: str, field: str, limit: int = TEXT_MAX) -> str:
    """A free-text field: bounded, printable (no control characters)."""
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value)} characters; the limit is {limit}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{field} contains control characters")
    return utf8(value, field)


def progress(value: int) -> int:
    """A progress percentage, 0-100."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidInput(f"progress must be a whole number from 0 to 100, not {shown(value)}")
    return value


def address(value: str, field: str = "address") -> tuple[str, int]:
    """host:port (IPv6 hosts in brackets) -> (host, port)."""
    if not value or len(value) > ADDRESS_MAX:
        raise InvalidInput(f"invalid {field} {shown(value)}: expected HOST:PORT")
    host, sep, port_s = value.rpartition(":")
    if not sep or not host or not port_s.isascii() or not port_s.isdigit() or len(port_s) > 5:
        raise InvalidInput(f"invalid {field} {shown(value)}: expected HOST:PORT")
    port = int(port_s)
    if not 0 < port < 65536:
        raise InvalidInput(f"invalid {field} {shown(value)}: port must be 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if any(c.isspace() for c in host):
        raise InvalidInput(f"invalid {field} {shown(value)}: host has spaces")
    # Addresses travel in gossip and end up in logs and dials: an IP literal or a DNS name, nothing else.
    if not _HOST.fullmatch(host):
        raise InvalidInput(f"invalid {field} {shown(value)}: host must be an IP address or a DNS name")
    return host, port


# ---- claims: TYPE/NAME and a claim's maximum life

CLAIM_TYPE_RULE = "1-32 characters from a-z 0-9 _ - starting with a letter"
CLAIM_NAME_RULE = "1-200 characters from A-Z a-z 0-9 . _ - / @ : + starting with a letter or digit"
CLAIM_TYPE_MAX = 32
CLAIM_NAME_MAX = 200
MAX_TTL = 7 * 24 * 3600.0


def resource_name(type_: str, name: str) -> str:
    """`TYPE/NAME`, validated (InvalidInput names the rule); a path claim's pattern in its normal form.

    Types `path` and `path-shared` take a path pattern (`mesh.core.globs`) as NAME (PatternError says
    what is wrong with it); every other type an item name.
    """
    if not _spelled(type_, _TYPE_FIRST, _TYPE_CHARS, CLAIM_TYPE_MAX):
        raise InvalidInput(f"invalid claim type {shown(type_)}: use {CLAIM_TYPE_RULE}")
    # Imported here: path patterns (and their glob compiler) are a few ms that `meshctl status` never needs.
    from mesh.core import resources

    if type_ in resources.PATH_TYPES:
        return resources.path_resource([name], shared=type_ == resources.SHARED_PATH)
    if not _spelled(name, _ALNUM, _CLAIM_NAME_CHARS, CLAIM_NAME_MAX) or "//" in name or name.endswith("/"):
        raise InvalidInput(f"invalid claim name {shown(name)}: use {CLAIM_NAME_RULE}")
    return f"{type_}/{name}"


def split_resource(resource: str) -> tuple[str, str]:
    """`TYPE/NAME` -> (TYPE, NAME), validated."""
    type_, sep, name = resource.partition("/")
    if not sep:
        raise InvalidInput(f"invalid claim {shown(resource)}: expected TYPE/NAME")
    resource_name(type_, name)
    return type_, name


def claim_resource(resource: str) -> str:
    """`TYPE/NAME` validated, in the one spelling claims are decided under (a path pattern normalised)."""
    return resource_name(*split_resource(resource))


def check_ttl(ttl: float) -> float:
    """A claim's maximum life in seconds: positive and at most 7 days."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl != ttl or not 0 < ttl <= MAX_TTL:
        raise InvalidInput(f"ttl must be more than 0 and at most 7 days, not {shown(ttl)} s")
    return float(ttl)


def check_wait(wait: float) -> float:
    """How long a claim keeps trying while another session holds the item: 0 to 7 days (checked before any
    deadline is computed from it: a huge one would overflow the RPC's deadline, not say why)."""
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= MAX_TTL:
        raise InvalidInput(f"wait must be from 0 to 7 days, not {shown(wait)} s")
    return float(wait)
