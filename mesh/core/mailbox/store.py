"""`MailboxStore`: what the runtime calls on a mailbox. `mesh.mailstore.MailStore` (SQLite) implements it;
`mesh.testing.mailbox.MemoryMailbox` is its reference model for tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mesh.core.mailbox.limits import BATCH_MAX, RECEIPT_MAX, RETENTION
from mesh.core.mailbox.records import (
    Contact,
    InboxMessage,
    MailAck,
    MailBatch,
    OutboxEntry,
    Outgoing,
    OutState,
    ReadReceipt,
    ReceiptAck,
)


class MailboxStore(Protocol):
    """What the runtime calls on a mailbox.

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

    def members(self, seen_since: float | None = None) -> list[Contact]:
        """Every node seen (since a wall time), oldest first."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...
