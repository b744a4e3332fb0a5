"""A message's text checks, importable alone: `meshctl send` checks a message before it asks the node
(a 10 MB body gets the body limit's message, not the transport's) without loading the rest of the mailbox
core (records, the store protocol, hashlib, random, typing: ~8 ms of its start-up)."""

from __future__ import annotations

from mesh.core import validate
from mesh.core.errors import InvalidInput, LimitExceeded
from mesh.core.mailbox.limits import BODY_MAX, SUBJECT_MAX

# A subject is one line. A set's `isdisjoint` scans the text in C, as a regular expression would, without
# `re` (~3 ms of a `meshctl send`).
CONTROL_CHARS = frozenset(map(chr, [*range(0x20), 0x7F]))


def check_subject(value: str) -> str:
    """A subject: one line of UTF-8 text, not empty, within SUBJECT_MAX characters."""
    if not isinstance(value, str):
        raise InvalidInput("subject must be text")
    if len(value) > SUBJECT_MAX:
        raise LimitExceeded(f"subject is {len(value)} characters; the limit is {SUBJECT_MAX}")
    if not value.strip():
        raise InvalidInput("subject is empty")
    if not CONTROL_CHARS.isdisjoint(value):
        raise InvalidInput("subject contains control characters (it is one line)")
    validate.utf8(value, "subject")
    return value


def body_bytes(value: str) -> int:
    """A body's size in UTF-8 bytes, checked: text without NUL, within BODY_MAX bytes."""
    if not isinstance(value, str):
        raise InvalidInput("body must be text")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("body is not valid UTF-8 text (it holds undecodable bytes)") from None
    if size > BODY_MAX:
        raise LimitExceeded(f"body is {size} bytes (UTF-8); the limit is {BODY_MAX} bytes")
    if "\x00" in value:
        raise InvalidInput("body contains a NUL character")
    return size


def check_text(subject: str, body: str) -> int:
    """A message's subject and body within their limits (also checked by a client before it sends: a
    10 MB body gets this message, not the transport's); returns their size in UTF-8 bytes.

    The same rules as `check_subject` and `body_bytes`, in one pass for the common message (it runs for
    every message sent and every one received); anything they might refuse goes through them, for their
    words."""
    try:
        if (
            subject.__class__ is str
            and body.__class__ is str
            and len(subject) <= SUBJECT_MAX
            and CONTROL_CHARS.isdisjoint(subject)
            and subject.strip()
            and "\x00" not in body
        ):
            size = len(subject.encode()) + len(body.encode())
            if size <= BODY_MAX:  # the body alone is within its limit when both are
                return size
    except UnicodeEncodeError:
        pass
    check_subject(subject)
    return body_bytes(body) + len(subject.encode())


def check_outgoing(subject: str, body: str, reply_to: str | None, key: str | None) -> int:
    """What a client checks before it sends (`Client`, `WireClient`): the text's limits, the reply-to id and
    the idempotency key, as the node will check them. Returns the text's size in UTF-8 bytes."""
    size = check_text(subject, body)
    if reply_to:
        validate.ident(reply_to, "reply-to id")
    if key:
        validate.ident(key, "send key")
    return size
