"""Anti-entropy for the board on peer links: the messages and the pure rules (sans-IO).

The board core (`mesh.core.board`) says what a replica holds (`Board.context()`) and what another lacks
(`Board.delta_for`); this module says when two replicas talk and how a delta is cut into frames.

    live edit      the origin sends `Delta((op,), None)` to every linked peer at once
    link up        each side sends `SyncRequest(replica, context)`; the other answers with `delta_batches`
    peer back      a peer that turns alive again (a partition healed, a pause ended) gets a SyncRequest
    every 5 s      each side sends a `SyncDigest` of its context; a peer whose own digest differs answers
                   with a SyncRequest (frames lost while a link stayed up are found this way)
    answering      a SyncRequest is answered with the delta the requester lacks, in order on the one link,
                   the last batch carrying the answerer's context; if the requester's context holds
                   operations the answerer lacks (`lacks`), the answerer sends its own SyncRequest back.
                   A requester merges the context only after the batches before it (the board core's
                   rule), so "it holds everything the answerer held" is true when the context arrives.

Why this ends: after A asks B and B answers, A holds everything B held; B's own request (sent only when A
had something B lacked) is answered by A with everything, and A's context then covers B's, so no third
request follows. Digests are the same for the same set of incorporated operations (a context's form is
canonical), so two converged replicas exchange nothing but digests.
"""

from __future__ import annotations

import hashlib

from mesh.core.board import Context, Delta, Op
from mesh.core.values import fields, value

__all__ = [
    "BATCH_BYTES",
    "BATCH_OPS",
    "DIGEST_EVERY",
    "SyncDigest",
    "SyncRequest",
    "context_digest",
    "delta_batches",
    "lacks",
    "op_size",
]

BATCH_OPS = 500
"""Operations in one delta frame at most."""
BATCH_BYTES = 256 * 1024
"""Estimated bytes of operations in one delta frame at most: a quarter of the 1 MiB frame limit (the
estimate counts every character as 4 bytes, so a frame stays far below the limit)."""
DIGEST_EVERY = 5.0
"""Seconds between digests to every linked peer."""


@value
class SyncRequest:
    """What replica `replica` has incorporated: "send me what I lack"."""

    replica: str
    context: Context


@value
class SyncDigest:
    """A fingerprint of replica `replica`'s context: a peer whose own differs asks for a delta."""

    replica: str
    digest: bytes


def context_digest(ctx: Context) -> bytes:
    """16 bytes that differ (but for a 2**-128 chance) for any two different contexts."""
    h = hashlib.blake2b(digest_size=16)
    for part, pairs in ((b"v", ctx.vv), (b"d", ctx.dots)):
        h.update(part)
        for origin, seq in pairs:
            h.update(f"{origin}:{seq};".encode())
    return h.digest()


def lacks(mine: Context, theirs: Context) -> bool:
    """Does `theirs` cover an operation `mine` does not (so their holder should send us a delta)?

    `mine` must be a replica's own context (`Board.context()`), whose prefix is canonical: ``vv[o] = n``
    means 1..n are in and n+1 is not (it would have extended the prefix), so a longer prefix there always
    means something is missing here.
    """
    vv = dict(mine.vv)
    dots = set(mine.dots)
    if any(n > vv.get(origin, 0) for origin, n in theirs.vv):
        return True
    return any(seq > vv.get(origin, 0) and (origin, seq) not in dots for origin, seq in theirs.dots)


def op_size(op: Op) -> int:
    """An upper bound on an operation's encoded size: every character as 4 bytes, plus field overhead."""
    size = 64
    for name in fields(op.body):
        value = getattr(op.body, name)
        if isinstance(value, str):
            size += 4 * len(value) + 8
        elif isinstance(value, tuple):
            size += sum(4 * len(v) + 8 for v in value)
        elif value is not None:
            size += 8
    return size


def delta_batches(delta: Delta, max_ops: int = BATCH_OPS, max_bytes: int = BATCH_BYTES) -> list[Delta]:
    """Cut a delta into frames of at most `max_ops` operations and about `max_bytes`; only the last carries
    the context (send them in order on one link)."""
    if max_ops < 1 or max_bytes < 1:
        raise ValueError("a batch holds at least one operation")
    chunks: list[tuple[Op, ...]] = []
    cur: list[Op] = []
    size = 0
    for op in delta.ops:
        n = op_size(op)
        if cur and (len(cur) >= max_ops or size + n > max_bytes):
            chunks.append(tuple(cur))
            cur, size = [], 0
        cur.append(op)
        size += n
    chunks.append(tuple(cur))
    last = len(chunks) - 1
    return [Delta(chunk, delta.context if k == last else None) for k, chunk in enumerate(chunks)]
