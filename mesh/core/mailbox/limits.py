"""Every bound of the messaging core (bytes, counts, seconds); the runtime and stores use these too."""

from __future__ import annotations

SUBJECT_MAX = 200
"""Characters in a subject (one line: no control characters)."""
BODY_MAX = 64 * 1024
"""Bytes of a body, UTF-8 encoded."""
BATCH_MAX = 100
"""Messages per peer frame: the per-message cost of a gRPC frame is what limits throughput, so batch."""
BATCH_BYTES_MAX = 1024 * 1024
"""Subject + body bytes a recipient accepts in one batch (a batch carries at least one message)."""
BATCH_BYTES_SEND = BATCH_BYTES_MAX - 64 * 1024
"""Subject + body bytes a sender packs into one batch: less than a recipient accepts, by room for the
envelopes' other fields (ids, names, seqs: up to ~310 encoded bytes each, BATCH_MAX of them), so the fullest
batch still fits one gRPC message on the link (1 MiB, mesh.limits.MAX_MESSAGE_BYTES). At BATCH_BYTES_MAX a
batch of 100 ~10 KB messages with long names did not, and its link resent it after every reconnect."""
SEND_MAX = 1000
"""Messages per `enqueue` call (one transaction)."""
RECEIPT_MAX = 1000
"""Message ids per read receipt or receipt ack frame."""
INBOX_PAGE_MAX = 10_000
"""Rows per inbox/outbox query."""
WINDOW = 32 * BATCH_MAX
"""Messages in flight (sent, not yet acked) per peer link: enough to cover the ack round trip while the
recipient commits earlier batches (8 batches left the link idle between acks under load). The sender's
alone: a recipient never counts it."""
RESEND_AFTER = 2.0
"""Seconds without ack progress on a live link before the sender rewinds to the oldest unacked entry."""
RETENTION = 7 * 24 * 3600.0
"""Seconds (wall) a queued message waits for its recipient before it becomes `expired`."""
