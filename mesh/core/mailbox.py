"""Messaging core (sans-IO): message envelopes, limits, per-peer send windows, inbox acceptance, and an
in-memory mailbox that is the reference model of the SQLite store (`mesh.mailstore.MailStore`).

How delivery works (one sender node S, one recipient node R):

* **Streams and ids.** Every mailbox (one per node state dir) has a random *stream* id, made once when
  the mailbox is created. A message id is ``<stream>-<n>`` with ``n`` the mailbox's own message counter,
  so ids are unique mesh-wide without coordination and never depend on the node id's format. If a node
  loses its mailbox but keeps its node id, the new mailbox has a new stream: its counters restart at 1
  without colliding with ids or sequence numbers the recipients have already seen (a ``<node_id>-<n>``
  scheme would have its fresh messages deduplicated away as "already seen" - silent loss).
* **Per-pair sequence.** Each outbox entry also has ``seq``, counted per (S -> R) pair from 1. A
  broadcast is one message id fanned out at send time into one entry per known member, each with its own
  pair ``seq``; direct and broadcast messages from S to R therefore share one order.
* **Go-back-N, not hold-back.** R accepts the entry with ``seq == cursor + 1`` only (``cursor`` is the
  highest seq it has persisted for (S, stream)); anything at or below the cursor is a duplicate, anything
  beyond a gap is dropped unacknowledged. S sends in seq order from the oldest unacknowledged entry on
  every new link and rewinds to it when no ack progress is seen for ``RESEND_AFTER`` seconds. On an
  in-order stream gaps never happen, so nothing is wasted in the normal case; after a fault the
  retransmission fills the gap. R needs no buffer for out-of-order messages and its whole dedupe state is
  one integer per (sender, stream), persisted in the same transaction as the messages.
* **Floor.** Entries leave S's queue only as a prefix: cumulative acks deliver a prefix and expiry
  expires a prefix, so the queued entries of a pair are always the contiguous range ``floor..last``.
  Each batch carries ``floor``; R moves its cursor up to ``floor - 1`` first. That lets R skip entries S
  has expired, and lets a recipient that lost its store start again from what S still has.
* **Ack after persist.** R's store persists a batch and its cursor in one transaction, then returns the
  cumulative ack ``(S, R, stream, upto=cursor)`` for the runtime to send. S marks entries delivered only
  when such an ack arrives, and only entries still ``queued`` (an ``expired`` entry stays expired: the
  ack may cover it only because R's cursor jumped over it).
* **Read receipts** travel back from R to S, are retried on every connect until S confirms them, and
  move an entry to ``read`` (a receipt also proves delivery, so it upgrades ``queued``/``expired`` too).
* **Retention** (wall time, it spans restarts): queued entries older than ``RETENTION`` become
  ``expired``, visible in the sender's outbox; only a prefix of each pair's queue expires, so a wall
  clock stepping backwards can delay an expiry but never punch a hole in a stream.

Time: ``now`` is the runtime's monotonic clock (resend timers); ``wall`` is Unix time, stored and shown.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from mesh.core import validate
from mesh.core.errors import InvalidInput, LimitExceeded, ProtocolError
from mesh.core.times import iso

__all__ = [
    "BATCH_BYTES_MAX",
    "BATCH_MAX",
    "BODY_MAX",
    "INBOX_PAGE_MAX",
    "RECEIPT_MAX",
    "RESEND_AFTER",
    "RETENTION",
    "SEND_MAX",
    "SUBJECT_MAX",
    "WINDOW",
    "Envelope",
    "InboxMessage",
    "MailAck",
    "MailBatch",
    "MailboxStore",
    "Member",
    "MemoryMailbox",
    "OutState",
    "OutboxEntry",
    "Outgoing",
    "ReadReceipt",
    "ReceiptAck",
    "Recipient",
    "SendWindow",
    "accept_batch",
    "batch_limit",
    "check_ack",
    "check_batch",
    "check_receipt",
    "check_receipt_ack",
    "message_id",
    "new_stream_id",
    "outgoing",
]

# ---------------------------------------------------------------------------------------------- limits

SUBJECT_MAX = 200
"""Characters in a subject (one line: no control characters)."""
BODY_MAX = 64 * 1024
"""Bytes of a body, UTF-8 encoded."""
BATCH_MAX = 100
"""Messages per peer frame: the per-message cost of a gRPC frame is what limits throughput, so batch."""
BATCH_BYTES_MAX = 1024 * 1024
"""Subject + body bytes per frame (a frame carries at least one message); stays under gRPC's 4 MiB."""
SEND_MAX = 1000
"""Messages per `enqueue` call (one transaction)."""
RECEIPT_MAX = 1000
"""Message ids per read receipt or receipt ack frame."""
INBOX_PAGE_MAX = 10_000
"""Rows per inbox/outbox query."""
WINDOW = 8 * BATCH_MAX
"""Messages in flight (sent, not yet acked) per peer link: enough to cover the ack round trip."""
RESEND_AFTER = 2.0
"""Seconds without ack progress on a live link before the sender rewinds to the oldest unacked entry."""
RETENTION = 7 * 24 * 3600.0
"""Seconds (wall) a queued message waits for its recipient before it becomes `expired`."""


class OutState(StrEnum):
    """Delivery state of one outbox entry, as the sender sees it."""

    QUEUED = "queued"  # durable in the sender's outbox, no ack from the recipient node yet
    DELIVERED = "delivered"  # the recipient node acked after persisting it to its inbox
    READ = "read"  # the recipient's read receipt came back
    EXPIRED = "expired"  # not acked within the retention window; no longer sent


# ------------------------------------------------------------------------------------- wire records
# Plain str/int/float/bool fields only, so that they map 1:1 onto protobuf messages.


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to one recipient, as it travels in a MailBatch."""

    id: str  # "<stream>-<n>": the same for every recipient of a broadcast
    seq: int  # per (sender node -> recipient node) pair, from 1
    from_name: str
    to_name: str
    subject: str
    body: str
    sent_at: float  # wall clock at the sender
    in_reply_to: str = ""  # "" = not a reply
    broadcast: bool = False


@dataclass(frozen=True, slots=True)
class MailBatch:
    """Consecutive outbox entries of one pair, in seq order (one peer frame)."""

    from_node: str
    to_node: str
    stream: str  # the sender mailbox's stream id
    floor: int  # every seq below this is acked or expired at the sender: the recipient may skip to it
    messages: tuple[Envelope, ...]


@dataclass(frozen=True, slots=True)
class MailAck:
    """Cumulative ack, recipient -> sender: every seq <= upto of this stream is in the recipient's inbox."""

    from_node: str  # the sender whose outbox this acknowledges
    to_node: str  # the recipient that persisted
    stream: str
    upto: int


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """Recipient -> sender: these messages (the sender's ids) were read."""

    reader_node: str
    sender_node: str
    ids: tuple[str, ...]
    read_at: float  # wall


@dataclass(frozen=True, slots=True)
class ReceiptAck:
    """Sender -> recipient: the receipts for these ids are recorded; stop resending them."""

    reader_node: str
    sender_node: str
    ids: tuple[str, ...]


# ------------------------------------------------------------------------------------- local records


@dataclass(frozen=True, slots=True)
class Recipient:
    """A member a message is addressed to."""

    node_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A validated message to send (build it with `outgoing()`)."""

    recipients: tuple[Recipient, ...]
    subject: str
    body: str
    in_reply_to: str = ""
    broadcast: bool = False


@dataclass(frozen=True, slots=True)
class Member:
    """A node ever seen in this mesh (the name -> node id directory)."""

    node_id: str
    name: str
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


# ------------------------------------------------------------------------------------- pure functions


def new_stream_id(rng: random.Random) -> str:
    """A fresh mailbox stream id: 64 random bits as 16 hex digits."""
    return f"{rng.getrandbits(64):016x}"


def message_id(stream: str, n: int) -> str:
    """The id of a mailbox's n-th message."""
    return f"{stream}-{n}"


def _subject(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput("subject must be text")
    if len(value) > SUBJECT_MAX:
        raise LimitExceeded(f"subject is {len(value)} characters; the limit is {SUBJECT_MAX}")
    if not value.strip():
        raise InvalidInput("subject is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput("subject contains control characters (it is one line)")
    return value


def _body_bytes(value: str) -> int:
    if not isinstance(value, str):
        raise InvalidInput("body must be text")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"body is not valid Unicode text: {exc.reason}") from None
    if size > BODY_MAX:
        raise LimitExceeded(f"body is {size} bytes (UTF-8); the limit is {BODY_MAX} bytes")
    if "\x00" in value:
        raise InvalidInput("body contains a NUL character")
    return size


def outgoing(
    recipients: Iterable[Recipient],
    subject: str,
    body: str,
    *,
    sender_node: str,
    in_reply_to: str | None = None,
    broadcast: bool = False,
) -> Outgoing:
    """Validate a message to send: limits, names, reply id (raises InvalidInput / LimitExceeded).

    A broadcast leaves the sender out of its own recipients; a direct message to oneself is an error.
    A broadcast with no other member is valid and queues nothing.
    """
    _subject(subject)
    _body_bytes(body)
    reply = in_reply_to or ""
    if reply:
        validate.ident(reply, "reply-to id")
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
    return Outgoing(tuple(seen.values()), subject, body, reply, broadcast)


def _protocol(cond: bool, what: str) -> None:
    if not cond:
        raise ProtocolError(f"bad mail frame: {what}")


def check_batch(batch: MailBatch, *, peer_node: str, self_node: str) -> MailBatch:
    """Validate a batch received from `peer_node` (raises ProtocolError: the peer broke the protocol)."""
    _protocol(batch.from_node == peer_node, "batch not from the link's peer")
    _protocol(batch.to_node == self_node, "batch addressed to another node")
    _protocol(0 < len(batch.messages) <= BATCH_MAX, f"batch of {len(batch.messages)} messages")
    _protocol(isinstance(batch.floor, int) and batch.floor >= 1, "floor")
    try:
        validate.ident(batch.stream, "stream")
        total = 0
        prev = 0
        for m in batch.messages:
            _protocol(isinstance(m.seq, int) and m.seq > prev, "seqs not increasing")
            _protocol(m.seq >= batch.floor, "seq below floor")
            prev = m.seq
            validate.ident(m.id, "message id")
            # Ids embed their stream, so ids of different streams can never collide in an inbox.
            _protocol(m.id.startswith(batch.stream + "-"), "message id not of the batch's stream")
            validate.name(m.from_name, "sender name")
            validate.name(m.to_name, "recipient name")
            if m.in_reply_to:
                validate.ident(m.in_reply_to, "reply-to id")
            _protocol(isinstance(m.sent_at, float | int), "sent_at")
            _subject(m.subject)
            total += _body_bytes(m.body) + len(m.subject.encode("utf-8"))
    except (InvalidInput, LimitExceeded) as exc:
        raise ProtocolError(f"bad mail frame: {exc}") from None
    _protocol(len(batch.messages) == 1 or total <= BATCH_BYTES_MAX, f"batch of {total} bytes")
    return batch


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
    """Which envelopes of `batch` to persist, given the persisted cursor of (sender, stream).

    Returns (new envelopes in order, new cursor). Duplicates (seq <= cursor) are skipped; a gap stops
    acceptance (go-back-N: the sender will resend from the oldest unacked entry).
    """
    cur = max(cursor, batch.floor - 1)
    fresh: list[Envelope] = []
    for m in batch.messages:
        if m.seq <= cur:
            continue
        if m.seq != cur + 1:
            break
        fresh.append(m)
        cur = m.seq
    return fresh, cur


def batch_limit(sizes: Iterable[int], limit: int) -> int:
    """How many of the next messages (their byte sizes, in order) fit in one frame (at least one)."""
    total = 0
    n = 0
    for s in sizes:
        if n >= limit or (n and total + s > BATCH_BYTES_MAX):
            break
        total += s
        n += 1
    return n


# ---------------------------------------------------------------------------------------- send window


class SendWindow:
    """Flow control for one live link to one peer (volatile: make a new one on every (re)connect).

    Start it from the store's `floor(peer)`: everything below was acked or expired, so a new link
    resends from the oldest unacked entry (at-least-once on the wire; the recipient dedupes).
    """

    def __init__(
        self, peer: str, floor: int, *, now: float, window: int = WINDOW, resend_after: float = RESEND_AFTER
    ) -> None:
        if window < 1 or resend_after <= 0:
            raise InvalidInput("window must be >= 1 and resend_after > 0")
        self.peer = peer
        self.acked = floor - 1  # highest seq known to be out of the queue
        self.sent = self.acked  # highest seq sent on this link
        self.window = window
        self.resend_after = resend_after
        self._progress_at = now

    @property
    def in_flight(self) -> int:
        """Seqs sent but not acked (an upper bound: expired entries inside count too)."""
        return self.sent - self.acked

    def want(self) -> tuple[int, int] | None:
        """(after_seq, limit) for `store.pending_for`, or None while the window is full."""
        room = self.window - self.in_flight
        if room <= 0:
            return None
        return self.sent, min(BATCH_MAX, room)

    def on_sent(self, batch: MailBatch, now: float) -> None:
        """The runtime wrote `batch` to the link."""
        if not batch.messages:
            return
        if self.sent <= self.acked:
            self._progress_at = now  # the resend clock starts when something is in flight
        self.sent = max(self.sent, batch.messages[-1].seq)

    def on_ack(self, ack: MailAck, now: float) -> bool:
        """An ack arrived (already applied to the store); True if it made progress."""
        if ack.upto <= self.acked:
            return False
        self.acked = ack.upto
        self.sent = max(self.sent, self.acked)
        self._progress_at = now
        return True

    def on_floor(self, floor: int) -> None:
        """The store's floor moved (expiry): skip what is no longer queued."""
        if floor - 1 > self.acked:
            self.acked = floor - 1
            self.sent = max(self.sent, self.acked)

    def next_deadline(self) -> float | None:
        """When `on_timer` may rewind (None while nothing is in flight)."""
        return self._progress_at + self.resend_after if self.sent > self.acked else None

    def on_timer(self, now: float) -> bool:
        """Rewind to the oldest unacked entry if acks stalled; True if the runtime should send again."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return False
        self.sent = self.acked
        self._progress_at = now
        return True


# ----------------------------------------------------------------------------------- store interface


class MailboxStore(Protocol):
    """What the runtime calls; `MemoryMailbox` (here) and `mesh.mailstore.MailStore` (SQLite) implement it.

    Every mutating call is atomic and, for the SQLite store, durable when it returns.
    """

    node_id: str
    name: str
    stream: str

    def enqueue(self, items: Sequence[Outgoing], wall: float) -> list[str]:
        """Queue validated messages (one id per item) in one transaction."""
        ...

    def floor(self, peer: str) -> int:
        """Lowest queued seq for `peer` (next seq to allocate when none is queued)."""
        ...

    def pending_for(self, peer: str, after: int = 0, limit: int = BATCH_MAX) -> MailBatch | None:
        """The next queued entries for `peer` with seq > after, in order (None when there are none)."""
        ...

    def peers_with_pending(self) -> list[str]:
        """Node ids that have queued entries."""
        ...

    def mark_delivered(self, ack: MailAck, wall: float) -> int:
        """Apply an ack: queued entries up to ack.upto become delivered; returns how many."""
        ...

    def store_incoming(self, batch: MailBatch, wall: float) -> tuple[list[InboxMessage], MailAck]:
        """Persist what is new in a (checked) batch; returns the new messages and the ack to send."""
        ...

    def inbox(
        self,
        *,
        unread: bool = False,
        from_name: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[InboxMessage]:
        """Inbox messages oldest first: the newest `limit`, or the first `limit` after local_seq `after`."""
        ...

    def get(self, message_id: str) -> InboxMessage | None:
        """One inbox message by id."""
        ...

    def unread_count(self) -> int:
        """Unread messages in the inbox."""
        ...

    def mark_read(self, ids: Sequence[str], wall: float) -> list[ReadReceipt]:
        """Mark inbox messages read; returns receipts (one per sender) for those newly read."""
        ...

    def receipts_for(self, peer: str, limit: int = RECEIPT_MAX) -> ReadReceipt | None:
        """Unconfirmed read receipts for messages from `peer` (resend on connect)."""
        ...

    def apply_receipt(self, receipt: ReadReceipt, wall: float) -> ReceiptAck:
        """Sender side: record a (checked) read receipt; returns the ack to send back."""
        ...

    def confirm_receipts(self, ack: ReceiptAck) -> None:
        """Recipient side: the sender recorded these receipts."""
        ...

    def outbox(
        self, *, state: OutState | None = None, to_name: str | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        """Outbox entries oldest first (the newest `limit` matching)."""
        ...

    def expire(self, wall: float, retention: float = RETENTION) -> list[OutboxEntry]:
        """Expire queued entries older than `retention`; returns them."""
        ...

    def prune(self, wall: float, keep: float = RETENTION) -> int:
        """Forget delivered/read/expired outbox entries older than `keep`; returns how many."""
        ...

    def remember_member(self, node_id: str, name: str, wall: float) -> None:
        """Record that `node_id` was seen under `name`."""
        ...

    def lookup_name(self, name: str) -> str | None:
        """Node id most recently seen under `name` (None if never seen)."""
        ...

    def members(self, seen_since: float | None = None) -> list[Member]:
        """Every node seen (since a wall time), oldest first."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


# ------------------------------------------------------------------------------------ memory mailbox


@dataclass(slots=True)
class _Out:
    id: str
    to_node: str
    to_name: str
    seq: int
    subject: str
    body: str
    sent_at: float
    in_reply_to: str
    broadcast: bool
    state: OutState = OutState.QUEUED
    changed_at: float = 0.0
    order: int = 0  # insertion order across all pairs (the outbox lists in it)

    def entry(self) -> OutboxEntry:
        return OutboxEntry(
            self.id,
            self.to_node,
            self.to_name,
            self.seq,
            self.subject,
            self.body,
            self.sent_at,
            self.in_reply_to,
            self.broadcast,
            self.state,
            self.changed_at,
        )


@dataclass(slots=True)
class _In:
    msg: InboxMessage
    receipt: int = 0  # 0 none, 1 pending, 2 confirmed


@dataclass
class MemoryMailbox:
    """In-memory mailbox: the reference model of MailStore, for simulation and tests (state survives a
    simulated restart as long as the object is kept; only SendWindows are volatile)."""

    node_id: str
    name: str
    stream: str
    _counter: int = 0
    _rows: int = 0
    _out: dict[str, list[_Out]] = field(default_factory=dict)  # by recipient node, seq order
    _next_seq: dict[str, int] = field(default_factory=dict)
    _in: list[_In] = field(default_factory=list)
    _in_ids: dict[str, int] = field(default_factory=dict)
    _cursors: dict[tuple[str, str], int] = field(default_factory=dict)
    _members: dict[str, Member] = field(default_factory=dict)

    @classmethod
    def create(cls, node_id: str, name: str, rng: random.Random) -> MemoryMailbox:
        """A new, empty mailbox with a fresh stream id."""
        return cls(validate.ident(node_id, "node id"), validate.name(name), new_stream_id(rng))

    def enqueue(self, items: Sequence[Outgoing], wall: float) -> list[str]:
        """Queue validated messages (one id per item)."""
        if len(items) > SEND_MAX:
            raise LimitExceeded(f"{len(items)} messages in one call; the limit is {SEND_MAX}")
        ids = []
        for it in items:
            self._counter += 1
            mid = message_id(self.stream, self._counter)
            ids.append(mid)
            for r in it.recipients:
                seq = self._next_seq.get(r.node_id, 1)
                self._next_seq[r.node_id] = seq + 1
                self._out.setdefault(r.node_id, []).append(
                    _Out(mid, r.node_id, r.name, seq, it.subject, it.body, wall, it.in_reply_to, it.broadcast)
                )
                last = self._out[r.node_id][-1]
                last.changed_at = wall
                self._rows += 1
                last.order = self._rows
        return ids

    def _queued(self, peer: str) -> list[_Out]:
        return [o for o in self._out.get(peer, []) if o.state is OutState.QUEUED]

    def floor(self, peer: str) -> int:
        """Lowest queued seq for `peer` (next seq to allocate when none is queued)."""
        q = self._queued(peer)
        return q[0].seq if q else self._next_seq.get(peer, 1)

    def pending_for(self, peer: str, after: int = 0, limit: int = BATCH_MAX) -> MailBatch | None:
        """The next queued entries for `peer` with seq > after, in order."""
        q = self._queued(peer)
        if not q:
            return None
        nxt = [o for o in q if o.seq > after][: max(1, min(limit, BATCH_MAX))]
        if not nxt:
            return None
        n = batch_limit((len(o.body.encode()) + len(o.subject.encode()) for o in nxt), limit)
        envs = tuple(
            Envelope(
                o.id, o.seq, self.name, o.to_name, o.subject, o.body, o.sent_at, o.in_reply_to, o.broadcast
            )
            for o in nxt[:n]
        )
        return MailBatch(self.node_id, peer, self.stream, q[0].seq, envs)

    def peers_with_pending(self) -> list[str]:
        """Node ids that have queued entries."""
        return sorted(p for p in self._out if self._queued(p))

    def mark_delivered(self, ack: MailAck, wall: float) -> int:
        """Apply an ack: queued entries up to ack.upto become delivered."""
        if ack.from_node != self.node_id or ack.stream != self.stream:
            return 0
        n = 0
        for o in self._out.get(ack.to_node, []):
            if o.seq > ack.upto:
                break
            if o.state is OutState.QUEUED:
                o.state, o.changed_at = OutState.DELIVERED, wall
                n += 1
        return n

    def store_incoming(self, batch: MailBatch, wall: float) -> tuple[list[InboxMessage], MailAck]:
        """Persist what is new in a batch; returns the new messages and the ack to send."""
        key = (batch.from_node, batch.stream)
        fresh, cursor = accept_batch(self._cursors.get(key, 0), batch)
        new: list[InboxMessage] = []
        for m in fresh:
            if m.id in self._in_ids:
                continue  # cannot happen with an honest sender; the id index is a second line of defence
            im = InboxMessage(
                len(self._in) + 1,
                m.id,
                batch.from_node,
                m.from_name,
                m.to_name,
                m.subject,
                m.body,
                m.sent_at,
                wall,
                m.in_reply_to,
                m.broadcast,
                None,
            )
            self._in_ids[m.id] = len(self._in)
            self._in.append(_In(im))
            new.append(im)
        self._cursors[key] = cursor
        return new, MailAck(batch.from_node, batch.to_node, batch.stream, cursor)

    def inbox(
        self,
        *,
        unread: bool = False,
        from_name: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[InboxMessage]:
        """Inbox messages oldest first: the newest `limit`, or the first `limit` after local_seq `after`."""
        limit = _page(limit)
        rows = [
            i.msg
            for i in self._in
            if (not unread or i.msg.read_at is None) and (from_name is None or i.msg.from_name == from_name)
        ]
        if after is not None:
            return [m for m in rows if m.local_seq > after][:limit]
        return rows[-limit:] if limit else []

    def get(self, message_id: str) -> InboxMessage | None:
        """One inbox message by id."""
        i = self._in_ids.get(message_id)
        return None if i is None else self._in[i].msg

    def unread_count(self) -> int:
        """Unread messages in the inbox."""
        return sum(1 for i in self._in if i.msg.read_at is None)

    def mark_read(self, ids: Sequence[str], wall: float) -> list[ReadReceipt]:
        """Mark inbox messages read; returns receipts (one per sender) for those newly read."""
        by_sender: dict[str, list[str]] = {}
        for mid in dict.fromkeys(ids):
            i = self._in_ids.get(mid)
            if i is None or self._in[i].msg.read_at is not None:
                continue
            rec = self._in[i]
            rec.msg = _replace_read(rec.msg, wall)
            rec.receipt = 1
            by_sender.setdefault(rec.msg.from_node, []).append(mid)
        return [
            ReadReceipt(self.node_id, s, tuple(chunk), wall)
            for s, mids in sorted(by_sender.items())
            for chunk in _chunks(mids, RECEIPT_MAX)
        ]

    def receipts_for(self, peer: str, limit: int = RECEIPT_MAX) -> ReadReceipt | None:
        """Unconfirmed read receipts for messages from `peer`."""
        pend = [i.msg for i in self._in if i.receipt == 1 and i.msg.from_node == peer][
            : min(limit, RECEIPT_MAX)
        ]
        if not pend:
            return None
        return ReadReceipt(self.node_id, peer, tuple(m.id for m in pend), max(m.read_at or 0.0 for m in pend))

    def apply_receipt(self, receipt: ReadReceipt, wall: float) -> ReceiptAck:
        """Sender side: record a read receipt; returns the ack to send back."""
        ids = set(receipt.ids)
        for o in self._out.get(receipt.reader_node, []):
            if o.id in ids and o.state is not OutState.READ:
                o.state, o.changed_at = OutState.READ, wall
        return ReceiptAck(receipt.reader_node, receipt.sender_node, receipt.ids)

    def confirm_receipts(self, ack: ReceiptAck) -> None:
        """Recipient side: the sender recorded these receipts."""
        for mid in ack.ids:
            i = self._in_ids.get(mid)
            if i is not None and self._in[i].msg.from_node == ack.sender_node and self._in[i].receipt == 1:
                self._in[i].receipt = 2

    def outbox(
        self, *, state: OutState | None = None, to_name: str | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        """Outbox entries oldest first (the newest `limit` matching)."""
        limit = _page(limit)
        rows = sorted(
            (o for q in self._out.values() for o in q),
            key=lambda o: o.order,
        )
        sel = [
            o.entry()
            for o in rows
            if (state is None or o.state is state) and (to_name is None or o.to_name == to_name)
        ]
        return sel[-limit:] if limit else []

    def expire(self, wall: float, retention: float = RETENTION) -> list[OutboxEntry]:
        """Expire queued entries older than `retention` (a prefix of each pair's queue)."""
        cutoff = wall - retention
        out: list[_Out] = []
        for q in self._out.values():
            for o in q:
                if o.state is not OutState.QUEUED:
                    continue
                if o.sent_at >= cutoff:
                    break
                o.state, o.changed_at = OutState.EXPIRED, wall
                out.append(o)
        return [o.entry() for o in sorted(out, key=lambda o: o.order)]

    def prune(self, wall: float, keep: float = RETENTION) -> int:
        """Forget delivered/read/expired outbox entries older than `keep` (queued ones never go)."""
        cutoff = wall - keep
        n = 0
        for peer, q in self._out.items():
            kept = [o for o in q if o.state is OutState.QUEUED or o.changed_at >= cutoff]
            n += len(q) - len(kept)
            self._out[peer] = kept
        return n

    def remember_member(self, node_id: str, name: str, wall: float) -> None:
        """Record that `node_id` was seen under `name`."""
        old = self._members.get(node_id)
        first = old.first_seen if old else wall
        self._members[node_id] = Member(node_id, name, first, max(wall, old.last_seen if old else wall))

    def lookup_name(self, name: str) -> str | None:
        """Node id most recently seen under `name`."""
        hits = [m for m in self._members.values() if m.name == name]
        return max(hits, key=lambda m: m.last_seen).node_id if hits else None

    def members(self, seen_since: float | None = None) -> list[Member]:
        """Every node seen (since a wall time), oldest first."""
        ms = [m for m in self._members.values() if seen_since is None or m.last_seen >= seen_since]
        return sorted(ms, key=lambda m: (m.first_seen, m.node_id))

    def close(self) -> None:
        """Nothing to release."""


def _replace_read(m: InboxMessage, wall: float) -> InboxMessage:
    return replace(m, read_at=wall)


def _chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _page(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= INBOX_PAGE_MAX:
        raise InvalidInput(f"limit must be 0..{INBOX_PAGE_MAX}, not {limit!r}")
    return limit
