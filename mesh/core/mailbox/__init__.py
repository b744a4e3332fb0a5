"""Messaging core (sans-IO): limits, records, the rules a message and a peer's frame must keep, per-peer send
windows, and the store interface (`MailboxStore`; SQLite in `mesh.mailstore`, a reference model in
`mesh.testing.mailbox`).

    limits.py   every bound         records.py  wire and local records      checks.py  validation, acceptance
    window.py   SendWindow          store.py    MailboxStore

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

# The names below load their submodule on first use (PEP 562): `meshctl send` imports only
# mesh.core.mailbox.text, and a package that imported every submodule would cost it ~8 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from mesh.core.mailbox.checks import (
        accept_batch,
        batch_digest,
        batch_limit,
        check_ack,
        check_batch,
        check_receipt,
        check_receipt_ack,
        json_list,
        json_strings,
        outgoing,
        outgoing_again,
        outgoing_run,
        send_digest,
    )
    from mesh.core.mailbox.limits import (
        BATCH_BYTES_MAX,
        BATCH_BYTES_SEND,
        BATCH_MAX,
        BODY_MAX,
        INBOX_PAGE_MAX,
        RECEIPT_MAX,
        RESEND_AFTER,
        RETENTION,
        SEND_MAX,
        SUBJECT_MAX,
        WINDOW,
    )
    from mesh.core.mailbox.records import (
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
        Recipient,
        SendItem,
        message_id,
        new_stream_id,
    )
    from mesh.core.mailbox.store import (
        MailboxStore,
    )
    from mesh.core.mailbox.text import check_text
    from mesh.core.mailbox.window import (
        SendWindow,
    )

_WHERE = {  # name -> the submodule that defines it (the same names as the TYPE_CHECKING imports above)
    **dict.fromkeys(
        (
            "accept_batch",
            "batch_limit",
            "check_ack",
            "check_batch",
            "check_receipt",
            "check_receipt_ack",
            "json_list",
            "json_strings",
            "outgoing",
            "outgoing_again",
            "outgoing_run",
            "send_digest",
            "batch_digest",
        ),
        "mesh.core.mailbox.checks",
    ),
    **dict.fromkeys(
        (
            "BATCH_BYTES_MAX",
            "BATCH_BYTES_SEND",
            "BATCH_MAX",
            "BODY_MAX",
            "INBOX_PAGE_MAX",
            "RECEIPT_MAX",
            "RESEND_AFTER",
            "RETENTION",
            "SEND_MAX",
            "SUBJECT_MAX",
            "WINDOW",
        ),
        "mesh.core.mailbox.limits",
    ),
    **dict.fromkeys(
        (
            "Contact",
            "Envelope",
            "InboxMessage",
            "MailAck",
            "MailBatch",
            "OutState",
            "OutboxEntry",
            "Outgoing",
            "ReadReceipt",
            "ReceiptAck",
            "Recipient",
            "SendItem",
            "message_id",
            "new_stream_id",
        ),
        "mesh.core.mailbox.records",
    ),
    **dict.fromkeys(("MailboxStore",), "mesh.core.mailbox.store"),
    **dict.fromkeys(("check_text",), "mesh.core.mailbox.text"),
    **dict.fromkeys(("SendWindow",), "mesh.core.mailbox.window"),
}


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    got = getattr(importlib.import_module(where), name)
    globals()[name] = got
    return got


__all__ = [
    "BATCH_BYTES_MAX",
    "BATCH_BYTES_SEND",
    "BATCH_MAX",
    "BODY_MAX",
    "INBOX_PAGE_MAX",
    "RECEIPT_MAX",
    "RESEND_AFTER",
    "RETENTION",
    "SEND_MAX",
    "SUBJECT_MAX",
    "WINDOW",
    "Contact",
    "Envelope",
    "InboxMessage",
    "MailAck",
    "MailBatch",
    "MailboxStore",
    "OutState",
    "OutboxEntry",
    "Outgoing",
    "ReadReceipt",
    "ReceiptAck",
    "Recipient",
    "SendItem",
    "SendWindow",
    "accept_batch",
    "batch_digest",
    "batch_limit",
    "check_ack",
    "check_batch",
    "check_receipt",
    "check_receipt_ack",
    "check_text",
    "json_list",
    "json_strings",
    "message_id",
    "new_stream_id",
    "outgoing",
    "outgoing_again",
    "outgoing_run",
    "send_digest",
]
