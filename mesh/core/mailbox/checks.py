"""Pure rules of messaging: what a valid message is, what a peer may send, what a recipient accepts.

Peer frames that break a rule raise ProtocolError (the peer broke the protocol); a caller's bad message
raises InvalidInput or LimitExceeded.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from hashlib import sha256 as _sha256
from itertools import accumulate, islice, repeat
from operator import add, lt

from mesh.core import validate
from mesh.core.errors import InvalidInput, LimitExceeded, ProtocolError
from mesh.core.mailbox.limits import (
    BATCH_BYTES_MAX,
    BATCH_BYTES_SEND,
    BATCH_MAX,
    BODY_MAX,
    RECEIPT_MAX,
    SUBJECT_MAX,
)
from mesh.core.mailbox.records import (
    Envelope,
    MailAck,
    MailBatch,
    Outgoing,
    ReadReceipt,
    ReceiptAck,
    Recipient,
    SendColumns,
    SendItem,
    columns_of,
)
from mesh.core.mailbox.text import CONTROL_CHARS, check_text


def outgoing(
    recipients: Iterable[Recipient],
    subject: str,
    body: str,
    *,
    sender_node: str,
    in_reply_to: str | None = None,
    broadcast: bool = False,
    key: str | None = None,
) -> Outgoing:
    """Validate a message to send: limits, names, reply id, idempotency key (raises InvalidInput /
    LimitExceeded).

    A broadcast leaves the sender out of its own recipients; a direct message to oneself is an error.
    A broadcast with no other member is valid and queues nothing.
    """
    reply, size = _checked_text(subject, body, in_reply_to, key)
    if not broadcast and isinstance(recipients, tuple | list) and len(recipients) == 1:
        r = recipients[0]  # a direct send: no dict to dedupe one recipient
        validate.ident(r.node_id, "recipient node id")
        validate.name(r.name, "recipient name")
        if r.node_id == sender_node:
            raise InvalidInput(f"cannot send a message to yourself ({r.name})")
        return Outgoing((r,), subject, body, size, reply, broadcast, key or "")
    seen: dict[str, Recipient] = {}
    for r in recipients:
        validate.ident(r.node_id, "recipient node id")
        validate.name(r.name, "recipient name")
        if r.node_id == sender_node:
            if broadcast:
                continue
            raise InvalidInput(f"cannot send a message to yourself ({r.name})")
        seen.setdefault(r.node_id, r)
    if not broadcast and len(seen) != 1:
        raise InvalidInput("a direct message has exactly one recipient")
    return Outgoing(tuple(seen.values()), subject, body, size, reply, broadcast, key or "")


def outgoing_again(
    to: Outgoing, subject: str, body: str, *, in_reply_to: str | None = None, key: str | None = None
) -> Outgoing:
    """`outgoing` for another direct message to the recipient of `to` (a direct message `outgoing` made):
    its text, reply id and key are checked, its recipient not again (a batch's thousand sends to one name
    each checked the same name and node id)."""
    if to.broadcast or len(to.recipients) != 1:
        raise InvalidInput("outgoing_again needs a direct message to copy its recipient from")
    reply, size = _checked_text(subject, body, in_reply_to, key)
    return Outgoing(to.recipients, subject, body, size, reply, False, key or "")


def outgoing_many(to: Outgoing, subjects: Sequence[str], bodies: Sequence[str]) -> list[Outgoing] | None:
    """`outgoing_again(to, subject, body)` for every (subject, body), no reply id or key, their texts checked
    a column at a time (C loops: map, join, set) instead of a check per message; None when any text might
    fail its check (then make each with `outgoing_again`, which says what is wrong). Only ever stricter than
    `check_text`: plain str only, each message's subject and body within BODY_MAX together."""
    if to.broadcast or len(to.recipients) != 1:
        raise InvalidInput("outgoing_many needs a direct message to copy its recipient from")
    if not subjects or len(subjects) != len(bodies):
        return None
    try:
        if set(map(type, subjects)) != _STRS or set(map(type, bodies)) != _STRS:
            return None
        subject_text = "".join(subjects)
        if (
            max(map(len, subjects)) > SUBJECT_MAX
            or not all(map(str.strip, subjects))
            or not CONTROL_CHARS.isdisjoint(subject_text)
            or "\x00" in "".join(bodies)
        ):
            return None
        encode = str.encode
        sizes = list(map(add, map(len, map(encode, subjects)), map(len, map(encode, bodies))))
    except UnicodeEncodeError:  # a lone surrogate: check_text's words for it
        return None
    if max(sizes) > BODY_MAX:
        return None
    rs = to.recipients
    return list(map(Outgoing, repeat(rs), subjects, bodies, sizes, repeat(""), repeat(False), repeat("")))


_STRS = {str}


def _checked_text(subject: str, body: str, in_reply_to: str | None, key: str | None) -> tuple[str, int]:
    """Check a send's text, reply id and key (everything but its recipients): the reply id ("" for none) and
    the text's size in UTF-8 bytes (counted once, here: the store keeps it)."""
    size = check_text(subject, body)
    reply = in_reply_to or ""
    if reply:
        validate.ident(reply, "reply-to id")
    if key:
        validate.ident(key, "send key")
    return reply, size


def send_digest(out: Outgoing) -> str:
    """What a send key stands for: the message (a retry of it has the same digest; another message not).

    A broadcast's recipients are whoever is known at the time, so a retry may see one more or fewer: they
    are not part of it.

    Stored with the key (for KEY_KEEP), so its bytes never change: sha256 of
    `json.dumps([names, subject, body, in_reply_to, broadcast])`, its first 32 hex digits. Written out here
    in one f-string rather than through `json_list` (it runs for every keyed send: every client send).
    """
    rs = out.recipients
    if out.broadcast:
        to = '["*"]'
    elif len(rs) == 1:
        to = f"[{_esc(rs[0].name)}]"
    else:
        to = json_strings(sorted(r.name for r in rs))
    flag = "true" if out.broadcast else "false"
    text = f"[{to}, {_esc(out.subject)}, {_esc(out.body)}, {_esc(out.in_reply_to)}, {flag}]"
    return _sha256(text.encode()).hexdigest()[:32]


def batch_digest(items: Iterable[SendItem] | SendColumns) -> str:
    """What a batch key stands for: its items as sent, in order (a retry of the batch sends the same).

    Stored with the batch's record, so its bytes never change: sha256 of the items' fields joined by
    \x01 within an item and \x00 between items, its first 32 hex digits (the same for a batch's SendItems
    and its SendColumns)."""
    if not isinstance(items, SendColumns):
        items = columns_of(list(items))
    text = "\x00".join(
        [  # a list, not a generator: join makes one of it anyway
            f"{to if to is not None else ''}\x01{int(to is None)}\x01{subject}\x01{body}\x01{reply}\x01{key}"
            for to, subject, body, reply, key in zip(
                items.to, items.subjects, items.bodies, items.reply_tos, items.keys, strict=True
            )
        ]
    )
    return _sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


_esc = json.encoder.encode_basestring_ascii  # json.dumps's own string escaper (the C one when built)


def json_strings(items: Iterable[str]) -> str:
    """`json.dumps(list(items))`, character for character (see `json_list`)."""
    return "[" + ", ".join(map(_esc, items)) + "]"


def json_list(parts: list[list[str] | str | bool]) -> bytes:
    """`json.dumps(parts).encode()`, byte for byte, for a list of strings, booleans and lists of strings: it
    runs twice per message sent, and json.dumps's generic encoder was a tenth of the cost of queueing one."""
    out = []
    for p in parts:
        if isinstance(p, bool):
            out.append("true" if p else "false")
        elif isinstance(p, str):
            out.append(_esc(p))
        else:
            out.append(json_strings(p))
    return ("[" + ", ".join(out) + "]").encode()


def _protocol(cond: bool, what: str) -> None:
    if not cond:
        raise ProtocolError(f"bad mail frame: {what}")


def check_batch(batch: MailBatch, *, peer_node: str, self_node: str) -> MailBatch:
    """Validate a batch received from `peer_node` (raises ProtocolError: the peer broke the protocol).

    Every message is checked (seq, id, names, text), but each distinct name once per batch: a batch is one
    sender's messages, nearly always to one name, and checking its two names a thousand times was a fifth
    of the recipient's cost per message. The common batch passes `_batch_ok` (the same rules, a column of
    the batch at a time); any other goes message by message, which says what is wrong."""
    _protocol(batch.from_node == peer_node, "batch not from the link's peer")
    _protocol(batch.to_node == self_node, "batch addressed to another node")
    _protocol(0 < len(batch.messages) <= BATCH_MAX, f"batch of {len(batch.messages)} messages")
    floor = batch.floor
    _protocol(isinstance(floor, int) and floor >= 1, "floor")
    if not _batch_ok(batch):
        _check_each(batch)
    return batch


def _check_each(batch: MailBatch) -> None:
    """`check_batch`'s rules for the messages, one message at a time (ProtocolError says which rule)."""
    floor = batch.floor
    try:
        validate.ident(batch.stream, "stream")
        prefix = batch.stream + "-"
        names: set[str] = set()  # the names checked so far in this batch
        total = 0
        prev = 0
        for m in batch.messages:
            seq = m.seq
            if not (isinstance(seq, int) and seq > prev):
                _protocol(False, "seqs not increasing")
            if seq < floor:
                _protocol(False, "seq below floor")
            prev = seq
            validate.ident(m.id, "message id")
            # Ids embed their stream, so ids of different streams can never collide in an inbox.
            if not m.id.startswith(prefix):
                _protocol(False, "message id not of the batch's stream")
            if m.from_name not in names:
                names.add(validate.name(m.from_name, "sender name"))
            if m.to_name not in names:
                names.add(validate.name(m.to_name, "recipient name"))
            if m.in_reply_to:
                validate.ident(m.in_reply_to, "reply-to id")
            if not isinstance(m.sent_at, float | int):
                _protocol(False, "sent_at")
            total += check_text(m.subject, m.body)
    except (InvalidInput, LimitExceeded) as exc:
        raise ProtocolError(f"bad mail frame: {exc}") from None
    _protocol(len(batch.messages) == 1 or total <= BATCH_BYTES_MAX, f"batch of {total} bytes")


_NUMBERS = {int, float}
_INTS = {int}


def _batch_ok(batch: MailBatch) -> bool:
    """Whether every message of `batch` passes `check_batch`'s per-message rules, checked a column of the
    batch at a time (`zip(*messages)`: envelopes are tuples) by C loops (map, join, set) instead of a Python
    loop of a dozen steps per message (that loop was a tenth of the recipient's CPU per message). Only ever
    stricter than the loop (plain int and float only; text that is not str fails its join or its str
    method); False sends the batch to the loop, which says what is wrong. The batch's floor, nodes and
    length are checked by the caller."""
    try:
        ids, seqs, froms, tos, subjects, bodies, sents, replies, _ = zip(*batch.messages, strict=True)
        prefix = validate.ident(batch.stream, "stream") + "-"
        subject_text = "".join(subjects)
        body_text = "".join(bodies)
        if not (
            set(map(type, seqs)) == _INTS  # seqs: increasing, the first at or above the floor (>= 1)
            and seqs[0] >= batch.floor
            and all(map(lt, seqs, seqs[1:]))
            and all(map(str.startswith, ids, repeat(prefix)))  # ids: of the stream, id characters only
            and max(map(len, ids)) <= validate.ID_MAX
            and validate.is_id_text("".join(ids))
            and all(map(validate.is_name, {*froms, *tos}))
            and (not any(replies) or all(validate.is_id(r) for r in replies if r))
            and set(map(type, sents)) <= _NUMBERS
            and max(map(len, subjects)) <= SUBJECT_MAX  # subjects: one line, not blank, short enough
            and all(map(str.strip, subjects))
            and CONTROL_CHARS.isdisjoint(subject_text)
            and "\x00" not in body_text
        ):
            return False
        # UTF-8 bytes (a lone surrogate raises: the loop refuses it in its words); each message's text within
        # BODY_MAX, measured one by one only when all of them together are not
        total = len(subject_text.encode()) + len(body_text.encode())
        if total > BODY_MAX and max(map(check_text, subjects, bodies)) > BODY_MAX:
            return False
    except (TypeError, ValueError, UnicodeEncodeError, InvalidInput, LimitExceeded):
        return False
    return len(ids) == 1 or total <= BATCH_BYTES_MAX


def check_ack(ack: MailAck, *, peer_node: str, self_node: str) -> MailAck:
    """Validate an ack received from `peer_node` (it must acknowledge this node's outbox)."""
    _protocol(ack.to_node == peer_node and ack.from_node == self_node, "ack for another pair")
    _protocol(isinstance(ack.upto, int) and ack.upto >= 0, "ack upto")
    return ack


def check_receipt(receipt: ReadReceipt, *, peer_node: str, self_node: str) -> ReadReceipt:
    """Validate a read receipt received from `peer_node` (only the reader can report its reads)."""
    _protocol(
        receipt.reader_node == peer_node and receipt.sender_node == self_node, "receipt for another pair"
    )
    _protocol(0 < len(receipt.ids) <= RECEIPT_MAX, f"receipt of {len(receipt.ids)} ids")
    try:
        for i in receipt.ids:
            validate.ident(i, "message id")
    except InvalidInput as exc:
        raise ProtocolError(f"bad mail frame: {exc}") from None
    return receipt


def check_receipt_ack(ack: ReceiptAck, *, peer_node: str, self_node: str) -> ReceiptAck:
    """Validate a receipt ack received from `peer_node`."""
    _protocol(ack.sender_node == peer_node and ack.reader_node == self_node, "receipt ack for another pair")
    _protocol(len(ack.ids) <= RECEIPT_MAX, f"receipt ack of {len(ack.ids)} ids")
    return ack


def accept_batch(cursor: int, batch: MailBatch) -> tuple[list[Envelope], int]:
    """Which envelopes of (checked) `batch` to persist, given the persisted cursor of (sender, stream).

    Returns (new envelopes in order, new cursor). Duplicates (seq <= cursor) are skipped; a gap stops
    acceptance (go-back-N: the sender will resend from the oldest unacked entry).
    """
    cur = max(cursor, batch.floor - 1)
    msgs = batch.messages
    # The common batch: the next seqs, all of them (a checked batch's seqs increase: first and last say so).
    if msgs and msgs[0].seq == cur + 1 and msgs[-1].seq == cur + len(msgs):
        return list(msgs), msgs[-1].seq
    fresh: list[Envelope] = []
    for m in msgs:
        if m.seq <= cur:
            continue
        if m.seq != cur + 1:
            break
        fresh.append(m)
        cur = m.seq
    return fresh, cur


def batch_limit(sizes: Iterable[int], limit: int) -> int:
    """How many of the next messages (their byte sizes, in order) fit in one frame (at least one)."""
    # The running totals of the first `limit` (C loops): those within the frame's bytes, at least one.
    totals = list(accumulate(islice(sizes, max(limit, 0))))
    return max(1, bisect_right(totals, BATCH_BYTES_SEND)) if totals else 0
