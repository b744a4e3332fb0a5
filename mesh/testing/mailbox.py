"""`MemoryMailbox`: the in-memory reference model of `mesh.mailstore.MailStore`, for simulations and tests.

It implements `mesh.core.mailbox.MailboxStore` with the same answers as the SQLite store (test_mailstore.py
runs both side by side); state survives a simulated restart as long as the object is kept.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from mesh.core import validate
from mesh.core.errors import InvalidInput, LimitExceeded
from mesh.core.mailbox import (
    BATCH_MAX,
    INBOX_PAGE_MAX,
    RECEIPT_MAX,
    RETENTION,
    SEND_MAX,
    Contact,
    Envelope,
    InboxMessage,
    MailAck,
    MailBatch,
    OutboxEntry,
    Outgoing,
    OutState,
    ReadReceipt,
    ReceiptAck,
    accept_batch,
    batch_limit,
    message_id,
    new_stream_id,
    send_digest,
)
from mesh.core.values import replace


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
    _members: dict[str, Contact] = field(default_factory=dict)
    _keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # send key -> (id, digest)

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
            if it.key:
                known = self._keys.get(it.key)
                if known is not None:
                    if known[1] != send_digest(it):
                        raise InvalidInput("this send key was already used for a different message")
                    ids.append(known[0])
                    continue
            self._counter += 1
            mid = message_id(self.stream, self._counter)
            ids.append(mid)
            if it.key:
                self._keys[it.key] = (mid, send_digest(it))
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
        self._members[node_id] = Contact(node_id, name, first, max(wall, old.last_seen if old else wall))

    def lookup_name(self, name: str) -> str | None:
        """Node id most recently seen under `name`."""
        hits = [m for m in self._members.values() if m.name == name]
        return max(hits, key=lambda m: m.last_seen).node_id if hits else None

    def members(self, seen_since: float | None = None) -> list[Contact]:
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
