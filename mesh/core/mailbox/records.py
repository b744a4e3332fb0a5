"""Messaging records: what travels between nodes (wire records) and what a mailbox keeps (local records).

Wire records hold plain str/int/float/bool fields only, so that they map 1:1 onto protobuf messages.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from mesh.core.times import iso
from mesh.core.values import value


class OutState(StrEnum):
    """Delivery state of one outbox entry, as the sender sees it."""

    QUEUED = "queued"  # durable in the sender's outbox, no ack from the recipient node yet
    DELIVERED = "delivered"  # the recipient node acked after persisting it to its inbox
    READ = "read"  # the recipient's read receipt came back
    EXPIRED = "expired"  # not acked within the retention window; no longer sent


# ---------------------------------------------------------------- wire records


# Plain str/int/float/bool fields only, so that they map 1:1 onto protobuf messages.


class Envelope(NamedTuple):
    """One message to one recipient, as it travels in a MailBatch.

    A named tuple, not a `@value`: a recipient builds one per message received from its protobuf's fields
    (a tuple is made from them ~4x faster than a value's `__init__`), and checks and stores a batch a column
    at a time (`zip(*messages)`), the row to insert being the envelope followed by what the batch says."""

    id: str  # "<stream>-<n>": the same for every recipient of a broadcast
    seq: int  # per (sender node -> recipient node) pair, from 1
    from_name: str
    to_name: str
    subject: str
    body: str
    sent_at: float  # wall clock at the sender
    in_reply_to: str = ""  # "" = not a reply
    broadcast: bool = False


@value
class SendItem:
    """One send of a batch (a SendStream's): to a session, or to everyone known when `to` is None."""

    to: str | None
    subject: str
    body: str
    reply_to: str | None = None
    key: str | None = None


@value
class SendColumns:
    """A batch of sends as parallel columns (a SendStream's columnar batch): send i is to `to[i]` (None: to
    everyone known), with `subjects[i]`, `bodies[i]`, `reply_tos[i]` and its own key `keys[i]` ("" = none).
    Every column has one entry per send; `columns_of` makes them from SendItems."""

    to: Sequence[str | None]
    subjects: Sequence[str]
    bodies: Sequence[str]
    reply_tos: Sequence[str]
    keys: Sequence[str]

    def __len__(self) -> int:
        return len(self.to)

    def pick(self, idx: Sequence[int]) -> SendColumns:
        """Sends `idx` (item places, ascending) of this batch, as a batch of their own: slices when the places
        are consecutive (the common case), else a list per column."""
        if idx and idx[-1] - idx[0] + 1 == len(idx):
            a, z = idx[0], idx[-1] + 1
            return SendColumns(
                self.to[a:z], self.subjects[a:z], self.bodies[a:z], self.reply_tos[a:z], self.keys[a:z]
            )
        return SendColumns(
            [self.to[i] for i in idx],
            [self.subjects[i] for i in idx],
            [self.bodies[i] for i in idx],
            [self.reply_tos[i] for i in idx],
            [self.keys[i] for i in idx],
        )


def columns_of(items: Sequence[SendItem]) -> SendColumns:
    """SendItems as SendColumns."""
    return SendColumns(
        [it.to for it in items],
        [it.subject for it in items],
        [it.body for it in items],
        [it.reply_to or "" for it in items],
        [it.key or "" for it in items],
    )


@value
class MailBatch:
    """Consecutive outbox entries of one pair, in seq order (one peer frame)."""

    from_node: str
    to_node: str
    stream: str  # the sender mailbox's stream id
    floor: int  # every seq below this is acked or expired at the sender: the recipient may skip to it
    messages: tuple[Envelope, ...]


@value
class MailAck:
    """Cumulative ack, recipient -> sender: every seq <= upto of this stream is in the recipient's inbox."""

    from_node: str  # the sender whose outbox this acknowledges
    to_node: str  # the recipient that persisted
    stream: str
    upto: int


@value
class ReadReceipt:
    """Recipient -> sender: these messages (the sender's ids) were read."""

    reader_node: str
    sender_node: str
    ids: tuple[str, ...]
    read_at: float  # wall


@value
class ReceiptAck:
    """Sender -> recipient: the receipts for these ids are recorded; stop resending them."""

    reader_node: str
    sender_node: str
    ids: tuple[str, ...]


# ---------------------------------------------------------------- local records


@value
class Recipient:
    """A member a message is addressed to."""

    node_id: str
    name: str


@value
class Outgoing:
    """A validated message to send (build it with `outgoing()`)."""

    recipients: tuple[Recipient, ...]
    subject: str
    body: str
    size: int
    """UTF-8 bytes of subject + body, as `check_text` counted them (the store keeps it for frame limits)."""
    in_reply_to: str = ""
    broadcast: bool = False
    key: str = ""
    """The sender's idempotency key ("" = none): a send repeated with the same key is queued once."""


@value
class Contact:
    """A node ever seen in this mesh (an entry of the name -> node id directory)."""

    node_id: str
    name: str
    first_seen: float
    last_seen: float


@value
class InboxMessage:
    """A message in this node's inbox."""

    local_seq: int  # position in this inbox, increasing (use it to follow new messages)
    id: str
    from_node: str
    from_name: str
    to_name: str
    subject: str
    body: str
    sent_at: float
    received_at: float
    in_reply_to: str
    broadcast: bool
    read_at: float | None

    @property
    def read(self) -> bool:
        """True once marked read."""
        return self.read_at is not None

    def to_json(self) -> dict[str, Any]:
        """The documented `meshctl inbox --json` shape (times as RFC 3339 strings)."""
        return {
            "id": self.id,
            "from": self.from_name,
            "to": self.to_name,
            "subject": self.subject,
            "body": self.body,
            "sent_at": iso(self.sent_at),
            "in_reply_to": self.in_reply_to or None,
            "read": self.read,
            "broadcast": self.broadcast,
            "received_at": iso(self.received_at),
        }


@value
class OutboxEntry:
    """One (message, recipient) entry of this node's outbox."""

    id: str
    to_node: str
    to_name: str
    seq: int
    subject: str
    body: str
    sent_at: float
    in_reply_to: str
    broadcast: bool
    state: OutState
    changed_at: float  # wall time of the last state change (sent_at while queued)

    def to_json(self) -> dict[str, Any]:
        """The documented `meshctl outbox --json` shape (times as RFC 3339 strings)."""
        return {
            "id": self.id,
            "to": self.to_name,
            "subject": self.subject,
            "sent_at": iso(self.sent_at),
            "state": self.state.value,
            "changed_at": iso(self.changed_at),
            "broadcast": self.broadcast,
            "in_reply_to": self.in_reply_to or None,
        }


def new_stream_id(rng: random.Random) -> str:
    """A fresh mailbox stream id: 64 random bits as 16 hex digits."""
    return f"{rng.getrandbits(64):016x}"


def message_id(stream: str, n: int) -> str:
    """The id of a mailbox's n-th message."""
    return f"{stream}-{n}"
