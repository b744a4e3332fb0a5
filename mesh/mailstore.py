"""Durable mailbox of one node: outbox, inbox, delivery cursors and the member directory in SQLite (WAL).

The delivery rules live in `mesh.core.mailbox` (read its docstring); this module only makes their state
durable. Every mutating method is one transaction and is durable against a process crash when it
returns, so the runtime may send the ack returned by `store_incoming` (or report `enqueue`'s ids) at once.

Durability: ``synchronous=NORMAL`` (default) survives any process crash (SIGKILL, OOM, exceptions): a
WAL commit is in the OS page cache before the call returns. It can lose the last commits if the *host*
loses power. ``synchronous="FULL"`` fsyncs every commit and survives that too, at the cost measured by
`python -m bench.mail_store` (batched commits keep it affordable on local disks).

Not thread-safe: call it from one thread at a time (the runtime's loop, or one single-thread executor) —
except `checkpoint`, which is meant for a worker thread (see `background_checkpoints`).

Checkpoints: SQLite's automatic WAL checkpoint runs inside the commit that crosses its threshold and syncs
the WAL and the database file there (~4-5 ms on this kind of disk, once every ~200 small commits): a message
on a path of two commits (the sender's enqueue, the recipient's store) had a ~1 % chance of paying it, which
was the delivery p99. With `background_checkpoints=True` (the node's mail service) the owner calls
`checkpoint()` from a worker thread when `checkpoint_due()`, on a connection of its own, and a commit
checkpoints only a WAL that grew past CHECKPOINT_HARD_FRAMES anyway (commits that never paused). The commits
themselves are unchanged (same transactions, same `synchronous`), so durability is unchanged.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import repeat
from operator import add, attrgetter, is_, itemgetter
from pathlib import Path
from typing import Any, Literal, TypeVar

from mesh import storage
from mesh.core import validate
from mesh.core.errors import ConfigError, InvalidInput, LimitExceeded, ProtocolError, StateDamaged
from mesh.core.mailbox import (
    BATCH_MAX,
    INBOX_PAGE_MAX,
    RECEIPT_MAX,
    RETENTION,
    SEND_MAX,
    WINDOW,
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
    json_strings,
    message_id,
    new_stream_id,
    send_digest,
)
from mesh.core.values import value

__all__ = ["SCHEMA_VERSION", "Answer", "KeyedBatch", "MailStore"]

T = TypeVar("T")

SCHEMA_VERSION = 3

# States as small integers on disk; the partial index on state = 0 (queued) keeps `floor` and
# `pending_for` O(log n) however large the delivered history grows.
_STATE = {OutState.QUEUED: 0, OutState.DELIVERED: 1, OutState.READ: 2, OutState.EXPIRED: 3}
_STATE_OF = {v: k for k, v in _STATE.items()}
_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit
CHECKPOINT_EVERY = 100
"""Commits between background checkpoints (SQLite's own default is every ~1000 WAL pages)."""
CHECKPOINT_PASSES = 20
CHECKPOINT_PAUSE = 0.002
"""Passes of one background checkpoint, and the pause between them (see `checkpoint`)."""
CHECKPOINT_HARD_FRAMES = 8_000
"""The owner's own commit checkpoints a WAL this long (~32 MB; SQLite's autocheckpoint, 8 times further
apart than its default): commits that never pause long enough for the background passes to catch up would
otherwise grow it without end. Most of it is checkpointed already by then; only the rest is left to copy."""

COUNTER_BLOCK = 1024
"""Message ids reserved at a time: meta's counter is written when a commit gives out an id past it (then
COUNTER_BLOCK past that id), not by every commit (an UPDATE of it was ~20 µs of a commit of a few dozen
sends). Every id given out is at or below it, in the same transaction, so one never comes twice; a mailbox
opened again starts past it (its ids skip the rest of the block, as a broadcast to nobody skips one). An
older version reads it as its counter, as before."""

TAIL_MAX = 2 * WINDOW
"""Just-queued envelopes kept in memory per linked peer (`enqueue_answers(keep=...)`): enough for a window and
the next one; a tail that grows past this (the peer stopped acking) is dropped and read back from disk."""

_OUTBOX = """
CREATE TABLE IF NOT EXISTS {name} (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    n INTEGER NOT NULL,
    to_node TEXT NOT NULL,
    to_name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,  -- UTF-8 bytes of subject + body, for frame byte limits
    sent_at REAL NOT NULL,
    in_reply_to TEXT NOT NULL,
    broadcast INTEGER NOT NULL,
    state INTEGER NOT NULL,
    changed_at REAL NOT NULL
);
"""
# No UNIQUE (to_node, seq) (schema 1 had one): seqs come from `out_seq` in the transaction that uses them, so
# the pair is unique by construction, and every query on it wants the queued ones (`outbox_queued`); the
# constraint's index was a fourth b-tree written per queued message and never read (see _migrate).
_OUTBOX_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_queued ON outbox (to_node, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS outbox_n ON outbox (n);
"""
# outbox_n, not an index on id (before it, outbox_id): a receipt names messages by id, and an id is
# "<stream>-<n>" of this mailbox's own stream, so its n finds its rows (`apply_receipt`). Ids do not sort as
# they are given out ("s-10" < "s-9"): each new one went into the middle of a text index, a third of the cost
# of queueing a message; n only ever grows, so a new one goes at the end. `_open` drops outbox_id (an older
# version that opens the store makes it again, and works with it; this one drops it again).

_INBOX = """
CREATE TABLE IF NOT EXISTS {cursor} (
    src INTEGER PRIMARY KEY,  -- a sender's stream as an inbox row names it
    from_node TEXT NOT NULL,
    stream TEXT NOT NULL,
    upto INTEGER NOT NULL,  -- every seq at or below it is in the inbox (or was skipped by the floor)
    UNIQUE (stream, from_node)
);
CREATE TABLE IF NOT EXISTS {inbox} (
    local_seq INTEGER PRIMARY KEY,
    src INTEGER NOT NULL,  -- in_cursor.src: the sender node and its stream
    n NOT NULL,  -- the id is "<stream>-<n>": an integer, or text for an id of another form (_id_number)
    from_name TEXT NOT NULL,
    to_name TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    received_at REAL NOT NULL,
    in_reply_to TEXT NOT NULL,
    broadcast INTEGER NOT NULL,
    read_at REAL,
    receipt INTEGER NOT NULL DEFAULT 0  -- 0 none, 1 to send, 2 confirmed by the sender
);
"""
_INBOX_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS inbox_id ON inbox (src, n);
CREATE INDEX IF NOT EXISTS inbox_unread ON inbox (local_seq) WHERE read_at IS NULL;
CREATE INDEX IF NOT EXISTS inbox_receipts ON inbox (src) WHERE receipt = 1;
"""
# Schema 3: the inbox of schema 2 (`_INBOX_2`) less what its rows repeated. A row named its sender's node and
# stream (two 16-character texts) and carried its id as text under a UNIQUE index: every insert went into the
# middle of that text index ("s-10" < "s-9"), a quarter of the cost of storing a message. Now a row names its
# (sender, stream) by `src` (the cursor row's key) and its id by the number n: the id is
# "<stream>-<n>" (`message_id`), and n grows per stream, so the UNIQUE (src, n) index that finds an id and
# refuses a reused one (`store_incoming_many`) takes each new entry at its end. The per-pair seq, read by no
# query, is not kept (the cursor holds the highest). 11 values bound per row instead of 13.
_INBOX_2 = """
CREATE TABLE inbox (
    local_seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    from_node TEXT NOT NULL,
    from_name TEXT NOT NULL,
    to_name TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    received_at REAL NOT NULL,
    in_reply_to TEXT NOT NULL,
    broadcast INTEGER NOT NULL,
    read_at REAL,
    receipt INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE in_cursor (
    from_node TEXT NOT NULL, stream TEXT NOT NULL, upto INTEGER NOT NULL, PRIMARY KEY (from_node, stream)
) WITHOUT ROWID;
"""
"""The inbox tables of schemas 1 and 2 (what `_migrate_2_3` reads)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
{outbox}
CREATE TABLE IF NOT EXISTS out_seq (to_node TEXT PRIMARY KEY, next_seq INTEGER NOT NULL) WITHOUT ROWID;
{inbox}
CREATE TABLE IF NOT EXISTS members (
    node_id TEXT PRIMARY KEY, name TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_name ON members (name, last_seen);
CREATE TABLE IF NOT EXISTS send_keys (
    key TEXT PRIMARY KEY, id TEXT NOT NULL, recipients TEXT NOT NULL, digest TEXT NOT NULL, at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS out_acks (
    to_node TEXT NOT NULL, upto INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (to_node, upto)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS send_batches (
    key TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    answers TEXT NOT NULL,  -- per item its id ("" when not queued), a space between; a newline; per item
                            -- its recipient names joined by "," (ids and names hold neither character)
    at REAL NOT NULL
);
"""
# send_batches and out_acks came after schema 2 without a new version: a table added is additive
# (storage.open_db adds it to an older store). out_acks: each applied ack (peer, cumulative seq, wall time),
# so an ack is one row, not an UPDATE of every outbox row it covers: an outbox row with state 0 (queued) and
# a seq at or below its peer's highest `upto` is *delivered*, at the `at` of the first ack that reached it
# (`_ACKED` and `_STATE_SQL` say so in SQL). `prune` deletes such rows like delivered ones. An older version
# opening the store sees them as queued and sends them again: the recipient's cursor drops them and acks.
_SCHEMA = _SCHEMA.replace(
    "{outbox}", _OUTBOX.format(name="outbox").lstrip() + _OUTBOX_INDEXES.lstrip()
).replace("{inbox}", _INBOX.format(cursor="in_cursor", inbox="inbox").lstrip() + _INBOX_INDEXES.lstrip())
KEY_KEEP = 24 * 3600.0
"""Seconds (wall) a send's idempotency key is remembered: a retry comes within seconds, not days."""

_ACKED = "(SELECT MAX(upto) FROM out_acks AS k WHERE k.to_node = o.to_node)"
"""The highest seq the peer of outbox row `o` acknowledged (NULL: none)."""
_STATE_SQL = f"(CASE WHEN o.state = 0 AND o.seq <= COALESCE({_ACKED}, 0) THEN 1 ELSE o.state END)"
_CHANGED_SQL = (
    f"(CASE WHEN o.state = 0 AND o.seq <= COALESCE({_ACKED}, 0) THEN (SELECT at FROM out_acks AS k"
    " WHERE k.to_node = o.to_node AND k.upto >= o.seq ORDER BY k.upto LIMIT 1) ELSE o.changed_at END)"
)
_OUT_VIEW = (
    "o.id, o.to_node, o.to_name, o.seq, o.subject, o.body, o.sent_at, o.in_reply_to, o.broadcast, "
    f"{_STATE_SQL}, {_CHANGED_SQL}"
)
"""`_OUT_COLS` of outbox AS o, with the state and time an ack gave a row (see out_acks)."""

_OUT_ALL = (
    "id, n, to_node, to_name, seq, subject, body, size, sent_at, in_reply_to, broadcast, state, changed_at"
)
_OUT_COLS = "id, to_node, to_name, seq, subject, body, sent_at, in_reply_to, broadcast, state, changed_at"
_IN_VIEW = (
    "SELECT i.local_seq, c.stream || '-' || i.n, c.from_node, i.from_name, i.to_name, i.subject, i.body,"
    " i.sent_at, i.received_at, i.in_reply_to, i.broadcast, i.read_at"
    " FROM inbox AS i CROSS JOIN in_cursor AS c ON c.src = i.src"
)
"""InboxMessage's fields of inbox rows `i` (CROSS JOIN: the inbox is the outer loop, walked by its index)."""

_TEXT_COLS = slice(2, 8)
assert Envelope._fields[2:8] == ("from_name", "to_name", "subject", "body", "sent_at", "in_reply_to")
_IN_INSERT = (
    "INSERT INTO inbox (from_name, to_name, subject, body, sent_at, in_reply_to, n, broadcast, local_seq,"
    " src, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
"""An inbox row: an Envelope's fields from_name..in_reply_to (`_TEXT_COLS`), then its id's n, broadcast as
an int, local_seq, src and the time it was received."""
_ENVELOPE_TEXT = itemgetter(_TEXT_COLS)
_BROADCAST = itemgetter(len(Envelope._fields) - 1)
assert Envelope._fields[-1] == "broadcast"
_ENVELOPE_OF = partial(tuple.__new__, Envelope)
"""An Envelope from a tuple of its fields (no Python frame per envelope, unlike `Envelope._make`)."""
_RECIPIENTS, _KEY, _BROADCAST_OF = attrgetter("recipients"), attrgetter("key"), attrgetter("broadcast")
_OUTGOING = {Outgoing}
_ENVELOPE_OF_KEPT, _SIZE_OF = itemgetter(0), itemgetter(1)
"""A kept (envelope, size)'s parts (see `pending_for`)."""
_TEXT_OF = attrgetter("subject", "body", "size", "in_reply_to")
"""The fields of an Outgoing that a run's rows and envelopes take a column of (`_enqueue`'s `queue_run`)."""


Answer = tuple[str, list[str] | None]
"""What `enqueue_answers` says of a send: (id, None) queued now, or (first id, its recipient names) for a
repeat of a key."""


@value
class KeyedBatch:
    """The sends of one batch under one idempotency key (a control client's SendBatch): one record for the
    batch in `send_batches` instead of one per send in `send_keys`. A repeat of the key (a retry of a batch
    whose answer was lost) answers what the first answered for the items it queued, and queues the others.

    With the key "" (and any digest), a batch without a key (`Node.send_many`): its sends are queued as a
    group, answered in a list, and recorded nowhere."""

    key: str
    digest: str
    """What the key stands for (the batch's items as sent): the same key with another digest is refused."""
    items: tuple[Outgoing | None, ...]
    """The batch's sends in order; None for an item that failed before the store (it answers nothing now,
    and a repeat of the key may queue it)."""


class MailStore:
    """The SQLite mailbox of one node (implements `mesh.core.mailbox.MailboxStore`).

    Every method leaves with the error tree's storage errors (`mesh.storage.guarded`): StorageFull when the
    disk is full (nothing of that call was stored), StateDamaged when the file is.
    """

    holds = "this node's messages (inbox, outbox, delivery state)"
    aside = "starts an empty mailbox (messages only in it are lost to this node)"

    def __init__(
        self,
        path: str | Path,
        *,
        node_id: str,
        name: str,
        rng: random.Random | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        background_checkpoints: bool = False,
    ) -> None:
        """Open (or create) the mailbox at `path` for node `node_id`; `rng` seeds a new stream id only.
        `background_checkpoints`: commits never checkpoint the WAL; the caller runs `checkpoint()` in a
        worker thread when `checkpoint_due()` (see the module docstring)."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.node_id = validate.ident(node_id, "node id")
        self.name = validate.name(name)
        self.path = Path(path)
        self._synchronous = synchronous
        # Commits made, and their count when the last background checkpoint began: each written by one
        # thread only (the owner's, the checkpoint's), so neither write can undo the other (a worker's reset
        # of one shared count could land inside the owner's `+= 1` and be lost)
        self._commits = self._ckpt_mark = 0
        self._ckpt_lock = threading.Lock()
        self._ckpt_db: sqlite3.Connection | None = None
        self._closed = False
        self.background_checkpoints = background_checkpoints
        pragmas: tuple[str, ...] = (f"synchronous={synchronous}", "temp_store=MEMORY")
        if background_checkpoints:
            pragmas += (f"wal_autocheckpoint={CHECKPOINT_HARD_FRAMES}",)
        self._db, created = storage.open_db(
            self.path, schema=_SCHEMA, holds=self.holds, aside=self.aside, pragmas=pragmas,
            older=(_INBOX_2,), upgrade=self._upgrade,
        )  # fmt: skip
        try:
            self._open(created, rng)
        except BaseException:
            self._db.close()
            raise

    @storage.guarded
    def _open(self, created: bool, rng: random.Random | None) -> None:
        with self._tx():
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                if not created:  # an existing store with no mailbox in it was damaged, not never made
                    raise storage.damaged(self.path, "missing its mailbox header", self.holds, self.aside)
                stream = new_stream_id(rng) if rng is not None else os.urandom(8).hex()  # token_hex(8)
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("schema", str(SCHEMA_VERSION)),
                        ("node_id", self.node_id),
                        ("stream", stream),
                        ("counter", "0"),
                    ],
                )
                meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if not all(isinstance(meta.get(k), str) for k in ("schema", "node_id", "stream", "counter")):
                raise storage.damaged(self.path, "missing part of its mailbox header", self.holds, self.aside)
            if meta["schema"] != str(SCHEMA_VERSION):  # an older one was upgraded (`_upgrade`)
                raise storage.damaged(
                    self.path, f"a mailbox of schema {meta['schema'][:20]!r}, not {SCHEMA_VERSION}",
                    self.holds, self.aside,
                )  # fmt: skip
            if meta["node_id"] != self.node_id:
                raise StateDamaged(
                    f"{self.path} is the mailbox of node {meta['node_id'][:64]!r}, but node.db says this "
                    f"node is {self.node_id!r} (node.db was replaced): restore node.db from a backup, or "
                    f"move mail.db aside (mv {self.path} {self.path}.old) to start with an empty mailbox"
                )
            try:
                validate.ident(meta["stream"], "stream")
                int(meta["counter"])
            except (InvalidInput, ValueError):
                raise storage.damaged(self.path, "holding a bad header", self.holds, self.aside) from None
            self.stream: str = meta["stream"]
            self._db.execute("DROP INDEX IF EXISTS outbox_id")  # outbox_n stands for it (see _OUTBOX_INDEXES)
        self._load_counters()

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """Bring a store of an older schema to this one, in one transaction (all or nothing; `storage.open_db`
        calls it on an existing store before the schema's additive pass). Anything else is left to `_open`."""
        with storage.transaction(db):
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = (
                db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if "meta" in tables
                else None
            )
            old_inbox = "stream" in {r[1] for r in db.execute("PRAGMA table_info(inbox)")}  # schema 2's
            if row is None or row[0] not in ("1", "2"):
                if old_inbox:  # this schema's indexes cannot be made on it: refused here, as `_open` would
                    what = (
                        "missing its mailbox header"
                        if row is None
                        else f"a mailbox of schema {row[0][:20]!r}"
                    )
                    raise storage.damaged(self.path, what, self.holds, self.aside)
                return
            if row[0] == "1":
                _migrate_1_2(db)
            if old_inbox:
                _migrate_2_3(db)
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))

    # ------------------------------------------------------------------------------------ plumbing

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with storage.transaction(self._db) as db:
                yield db
        except BaseException:
            self._load_counters()  # caches may have moved ahead of what was rolled back
            raise
        self._commits += 1

    def checkpoint_due(self) -> bool:
        """Background checkpoints only: enough commits since the last one began that another is due."""
        return self.background_checkpoints and self._commits - self._ckpt_mark >= CHECKPOINT_EVERY

    def checkpoint(self) -> tuple[int, int]:
        """Checkpoint the WAL on a connection of its own (safe in a worker thread while the owner commits):
        PASSIVE passes, never blocking the writer. Returns (frames in the WAL, frames checkpointed) of the
        last pass over this WAL (not of one that found it started over); StorageError when the disk
        refuses."""
        self._ckpt_mark = self._commits
        with self._ckpt_lock:
            if self._closed:
                return 0, 0
            try:
                if self._ckpt_db is None:
                    self._ckpt_db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                    self._ckpt_db.execute(f"PRAGMA synchronous={self._synchronous}")
                # The WAL starts over (its next write goes to its start: it stays small) only when a writer
                # begins with every frame checkpointed; a pass that commits landed during has not caught up,
                # so short passes follow until one finds nothing new (or sees the WAL already restarted).
                last = (-1, -1)
                for _ in range(CHECKPOINT_PASSES):
                    _, log, done = self._ckpt_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
                    if log < last[0]:
                        # A commit started the WAL over: the pass before had checkpointed all of it, and its
                        # figures are this checkpoint's (this pass saw only the new WAL's first frames).
                        break
                    caught_up = log == done and log in (last[0], 0)
                    last = (int(log), int(done))
                    if caught_up:
                        break
                    time.sleep(CHECKPOINT_PAUSE)
            except sqlite3.Error as e:
                raise storage.sqlite_error(e, self.path, self.holds, self.aside) from e
            return last

    def _load_counters(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'counter'").fetchone()
        # meta's counter is a reservation (see COUNTER_BLOCK): every id given out is at or below it, so the
        # next one goes past it
        self._counter = self._reserved = int(row[0]) if row else 0
        self._next_seq: dict[str, int] = dict(self._db.execute("SELECT to_node, next_seq FROM out_seq"))
        # The highest seq each peer acknowledged (out_acks): entries at or below it are delivered.
        self._acked: dict[str, int] = dict(
            self._db.execute("SELECT to_node, MAX(upto) FROM out_acks GROUP BY to_node")
        )
        # Caches of what is on disk, for the link's send path (see `pending_for`); gone with any rollback.
        self._tails: dict[str, deque[tuple[Envelope, int]]] = {}
        self._floors: dict[str, int] = {}
        self._unread: int | None = None  # unread inbox messages, counted once (see `unread_count`)

    def close(self) -> None:
        """Close the database (a clean close also checkpoints the WAL); waits for a running `checkpoint`."""
        with self._ckpt_lock:
            self._closed = True
            if self._ckpt_db is not None:
                self._ckpt_db.close()
                self._ckpt_db = None
            self._db.close()

    def __enter__(self) -> MailStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @storage.guarded
    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check` result ("ok" when sound)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # -------------------------------------------------------------------------------------- outbox

    def enqueue(self, items: Sequence[Outgoing], wall: float) -> list[str]:
        """Queue validated messages (build them with `mesh.core.mailbox.outgoing`); one id per item.

        An item with an idempotency key already used answers the id it was queued under then and queues
        nothing (the same key for different content is InvalidInput).
        """
        return [mid for mid, _ in self.enqueue_answers(items, wall)]

    @storage.guarded
    def enqueue_answers(
        self, items: Sequence[Outgoing], wall: float, keep: Collection[str] = ()
    ) -> list[Answer]:
        """`enqueue`, answering (id, None) per item queued now, and (first id, the recipient names it was
        queued for then) per repeat of a key (so a send need not look its key up again).

        The entries queued for a peer in `keep` (the linked ones) are also kept in memory once committed, so
        `pending_for` hands them to the link without reading back what was just written."""
        got = self._enqueue(items, wall, keep)
        return got  # type: ignore[return-value]  # no KeyedBatch in, none out

    @storage.guarded
    def enqueue_group(
        self, items: Sequence[Outgoing | KeyedBatch], wall: float, keep: Collection[str] = ()
    ) -> list[Answer | list[Answer | InvalidInput | None]]:
        """`enqueue_answers` for sends and keyed batches of sends in one transaction: per KeyedBatch a list
        of its items' answers (None for an item that is None and was not queued before; InvalidInput for an
        item whose own key was used for another message). A KeyedBatch whose key was used for another batch
        raises InvalidInput (nothing of the call is queued)."""
        return self._enqueue(items, wall, keep)

    def _enqueue(
        self, items: Sequence[Outgoing | KeyedBatch], wall: float, keep: Collection[str]
    ) -> list[Answer | list[Answer | InvalidInput | None]]:
        count = sum(len(it.items) if isinstance(it, KeyedBatch) else 1 for it in items)
        if count > SEND_MAX:
            raise LimitExceeded(f"{count} messages in one call; the limit is {SEND_MAX}")
        ids: list[Answer | list[Answer | InvalidInput | None]] = []
        rows: list[tuple[Any, ...]] = []
        keys: list[tuple[Any, ...]] = []
        batch_rows: list[tuple[Any, ...]] = []
        # Per linked peer, its entries of this call in seq order (one run each: seqs are given out here), and
        # the counter as a local: a message's row costs no attribute writes (`_tx` reloads both on failure).
        kept: dict[str, list[tuple[Envelope, int]]] = {}
        next_seq = self._next_seq
        seqs_before = dict(next_seq)  # the peers this call gives seqs to are those whose next seq moved
        stream, me = self.stream, self.name
        counter = self._counter

        def queue(it: Outgoing) -> Answer:
            nonlocal counter
            if it.key:
                digest = send_digest(it)
                known = fresh.get(it.key)
                if known is not None:
                    if known[1] != digest:
                        raise InvalidInput("this send key was already used for a different message")
                    return known[0], known[2]
            subject, body, reply, bcast, size = it.subject, it.body, it.in_reply_to, it.broadcast, it.size
            counter += 1
            mid = message_id(stream, counter)
            for r in it.recipients:
                node = r.node_id
                seq = next_seq.get(node, 1)
                next_seq[node] = seq + 1
                if node in keep:
                    env = Envelope(mid, seq, me, r.name, subject, body, wall, reply, bcast)
                    run = kept.get(node)
                    if run is None:
                        run = kept[node] = []
                    run.append((env, size))
                # int(bcast): sqlite3 binds a bool through its adapter look-up (a third slower per row)
                rows.append(
                    (mid, counter, node, r.name, seq, subject, body, size, wall, reply, int(bcast), wall)
                )
            if it.key:
                names = [r.name for r in it.recipients]
                fresh[it.key] = (mid, digest, names)
                keys.append((it.key, mid, json_strings(names), digest, wall))
            return mid, None

        def queue_run(run: Sequence[Outgoing]) -> list[str]:
            """`queue` for sends that share one recipient (the same Recipient tuple), no key and one kind
            (direct or broadcast): their ids, rows and envelopes a column at a time by C loops (zip, map,
            repeat) instead of a dozen Python steps per send. The same rows, ids and seqs as `queue` would
            give them one by one (one recipient: row order is message order either way)."""
            nonlocal counter
            first = run[0]
            ((node, name),) = ((r.node_id, r.name) for r in first.recipients)
            bcast = first.broadcast
            n = len(run)
            ns = range(counter + 1, counter + n + 1)
            counter += n
            mids = [f"{stream}-{c}" for c in ns]  # message_id's form, without a call per send
            subjects, bodies, sizes, replies = zip(*map(_TEXT_OF, run), strict=True)
            seq = next_seq.get(node, 1)
            next_seq[node] = seq + n
            seqs = range(seq, seq + n)
            # int(bcast): sqlite3 binds a bool through its adapter look-up (see `queue`)
            rows.extend(
                zip(mids, ns, repeat(node), repeat(name), seqs, subjects, bodies, sizes, repeat(wall),
                    replies, repeat(int(bcast)), repeat(wall))
            )  # fmt: skip
            if node in keep:
                envs = map(_ENVELOPE_OF, zip(mids, seqs, repeat(me), repeat(name), subjects, bodies,
                                             repeat(wall), replies, repeat(bcast)))  # fmt: skip
                kept.setdefault(node, []).extend(zip(envs, sizes, strict=True))
            return mids

        def runs(outs: Sequence[Any]) -> Iterator[tuple[int, int, bool]]:
            """(start, end, whether `queue_run` may take it) of the consecutive parts of `outs`: a part of
            sends `queue_run` takes (the same one-recipient tuple, no key, one kind), or one item."""
            i, n = 0, len(outs)
            o = outs[0] if n else None
            if (  # the common case, all of them one run, checked by C loops (a send_many's to one name)
                o.__class__ is Outgoing
                and len(o.recipients) == 1
                and set(map(type, outs)) == _OUTGOING
                and all(map(is_, map(_RECIPIENTS, outs), repeat(o.recipients)))
                and not any(map(_KEY, outs))
                and all(map(is_, map(_BROADCAST_OF, outs), repeat(o.broadcast)))
            ):
                yield 0, n, True
                return
            while i < n:
                o = outs[i]
                if o.__class__ is not Outgoing or o.key or len(o.recipients) != 1:
                    yield i, i + 1, False
                    i += 1
                    continue
                rs, b, j = o.recipients, o.broadcast, i + 1
                while j < n:
                    x = outs[j]
                    if x.__class__ is not Outgoing or x.recipients is not rs or x.key or x.broadcast is not b:
                        break
                    j += 1
                yield i, j, True
                i = j

        with self._tx() as db:
            # Keys used before, looked up in one query per chunk rather than one per item (a client's every
            # send carries a key: a query each was a third of the cost of queueing it).
            item_keys = [
                x.key
                for it in items
                for x in (it.items if isinstance(it, KeyedBatch) else (it,))
                if x is not None and x.key
            ]
            fresh: dict[str, tuple[str, str, list[str]]] = self._by_keys(item_keys) if item_keys else {}
            batches = self._batches([it.key for it in items if isinstance(it, KeyedBatch) and it.key])
            k = 0
            while k < len(items):
                it = items[k]
                if not isinstance(it, KeyedBatch):
                    # a run of lone sends to one recipient (a gather of node.send) a column at a time
                    j = k + 1
                    while j < len(items) and not isinstance(items[j], KeyedBatch):
                        j += 1
                    lone = items[k:j]
                    for a, b, fast in runs(lone):
                        if fast and b - a > 1:
                            ids.extend(zip(queue_run(lone[a:b]), repeat(None)))  # type: ignore[arg-type]
                        else:
                            ids.extend(queue(o) for o in lone[a:b])  # type: ignore[arg-type]
                    k = j
                    continue
                k += 1
                keyed = bool(it.key)  # a group without a key is recorded nowhere
                prior = batches.get(it.key) if keyed else None
                if prior is not None and prior[0] != it.digest:
                    raise InvalidInput("this send key was already used for a different batch")
                if prior is None and it.items:
                    _, b, fast = next(runs(it.items))
                    if fast and b == len(it.items):  # all of it one run (a send_many to one name)
                        mids = queue_run(it.items)  # type: ignore[arg-type]
                        ids.append(list(zip(mids, repeat(None))))
                        if keyed:
                            rnames = [r.name for r in it.items[0].recipients]  # type: ignore[union-attr]
                            batches[it.key] = (it.digest, list(zip(mids, repeat(rnames))))
                            text = " ".join(mids) + "\n" + " ".join(repeat(",".join(rnames), len(mids)))
                            batch_rows.append((it.key, it.digest, text, wall))
                        continue
                record: list[Any] = prior[1] if prior is not None else [None] * len(it.items)
                answers: list[Answer | InvalidInput | None] = []
                changed = prior is None
                # a batch's sends to one name share their recipients (`outgoing_again`), and so their names
                last_rs: tuple[Any, ...] = ()
                last_names: list[str] = []
                for j, x in enumerate(it.items):
                    done = record[j] if j < len(record) else None
                    if done is not None:  # queued by the first try of this batch
                        answers.append((str(done[0]), [str(n) for n in done[1]]))
                    elif x is None:
                        answers.append(None)
                    else:
                        try:
                            got = queue(x)
                        except InvalidInput as e:  # its own key, used for another message: it fails alone
                            answers.append(e)
                            continue
                        answers.append(got)
                        if not keyed:
                            continue
                        names = got[1]
                        if names is None:
                            if x.recipients is not last_rs:
                                last_rs = x.recipients
                                last_names = [r.name for r in last_rs]
                            names = last_names
                        record[j] = [got[0], names]
                        changed = True
                if changed and keyed:
                    batches[it.key] = (it.digest, record)
                    batch_rows.append((it.key, it.digest, _answers_text(record), wall))
                ids.append(answers)
            if keys:
                db.executemany("INSERT INTO send_keys VALUES (?, ?, ?, ?, ?)", keys)
            if batch_rows:
                db.executemany(
                    "INSERT INTO send_batches VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET answers = excluded.answers",
                    batch_rows,
                )
            if rows:
                db.executemany(
                    "INSERT INTO outbox (id, n, to_node, to_name, seq, subject, body, size, sent_at,"
                    " in_reply_to, broadcast, state, changed_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    rows,
                )
                db.executemany(
                    "INSERT INTO out_seq VALUES (?, ?)"
                    " ON CONFLICT (to_node) DO UPDATE SET next_seq = excluded.next_seq",
                    [(p, n) for p, n in next_seq.items() if seqs_before.get(p) != n],
                )
                if counter > self._reserved:  # ids past the reserved ones: reserve the next block with them
                    self._reserved = counter + COUNTER_BLOCK  # (`_tx` reloads it if this rolls back)
                    db.execute("UPDATE meta SET value = ? WHERE key = 'counter'", (str(self._reserved),))
            self._counter = counter  # a broadcast to nobody took a number too (never given out twice)
        for peer, run in kept.items():  # committed: now they may be sent
            tail = self._tails.setdefault(peer, deque())
            if tail and tail[-1][0].seq != run[0][0].seq - 1:
                tail.clear()  # not contiguous (cannot happen while seqs come from here): start again
            tail.extend(run)
            if len(tail) > TAIL_MAX:  # a link far behind: what is past the cap is read from disk
                tail.clear()
        return ids

    def drop_tail(self, peer: str) -> None:
        """Forget the envelopes kept in memory for `peer` (its link went down)."""
        self._tails.pop(peer, None)

    def _by_keys(self, keys: Sequence[str]) -> dict[str, tuple[str, str, list[str]]]:
        """key -> (id, digest, recipient names) of the keys among `keys` that were used before."""
        found: dict[str, tuple[str, str, list[str]]] = {}
        for chunk in _chunks(list(dict.fromkeys(keys))):
            marks = ",".join("?" * len(chunk))
            for key, mid, digest, names in self._db.execute(
                f"SELECT key, id, digest, recipients FROM send_keys WHERE key IN ({marks})", chunk
            ):
                found[str(key)] = (str(mid), str(digest), _names(names))
        return found

    def _batches(self, keys: Sequence[str]) -> dict[str, tuple[str, list[Any]]]:
        """key -> (digest, per-item answers) of the batch keys among `keys` that were used before."""
        found: dict[str, tuple[str, list[Any]]] = {}
        for chunk in _chunks(list(dict.fromkeys(keys))):
            marks = ",".join("?" * len(chunk))
            for key, digest, answers in self._db.execute(
                f"SELECT key, digest, answers FROM send_batches WHERE key IN ({marks})", chunk
            ):
                found[str(key)] = (str(digest), _answers(answers))
        return found

    @storage.guarded
    def sent_in_batch(self, key: str, index: int) -> tuple[str, list[str]] | None:
        """(id, recipient names) of item `index` of the batch queued under key `key`, if that queued it."""
        row = self._db.execute("SELECT answers FROM send_batches WHERE key = ?", (key,)).fetchone()
        answers = _answers(row[0]) if row else []
        done = answers[index] if 0 <= index < len(answers) else None
        return (str(done[0]), [str(n) for n in done[1]]) if done is not None else None

    @storage.guarded
    def sent_with_key(self, key: str) -> tuple[str, list[str]] | None:
        """(id, recipient names) of the message queued under idempotency key `key`, if one was."""
        row = self._db.execute("SELECT id, recipients FROM send_keys WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return str(row[0]), _names(row[1])

    @storage.guarded
    def floor(self, peer: str) -> int:
        """Lowest queued seq for `peer` (next seq to allocate when none is queued)."""
        got = self._floor(peer)
        return got if got is not None else self._next_seq.get(peer, 1)

    @storage.guarded
    def pending_for(self, peer: str, after: int = 0, limit: int = BATCH_MAX) -> MailBatch | None:
        """The next queued entries for `peer` with seq > after, in order (None when there are none).

        Served from memory when the entries just after `after` were kept by `enqueue_answers` (a live link
        keeping up: the common case); otherwise read from disk (a resend, a link that just came up)."""
        limit = max(1, min(limit, BATCH_MAX))
        if after >= self._next_seq.get(peer, 1) - 1:
            return None  # no seq past `after` was ever given out: the pump's last look, asked without a query
        tail = self._tails.get(peer)
        if tail:
            while tail and tail[0][0].seq <= after:  # sent on this link already
                tail.popleft()
            # Only a tail that reaches the newest entry stands for the disk (an entry queued without `keep`
            # is not in it).
            if tail and tail[-1][0].seq != self._next_seq.get(peer, 1) - 1:
                tail.clear()
            if tail and tail[0][0].seq == after + 1:
                known = self._floors.get(peer)
                if known is None:
                    known = self._floor(peer)
                if known is not None:
                    self._floors[peer] = known
                    n = batch_limit(map(_SIZE_OF, tail), limit)
                    envs = tuple(map(_ENVELOPE_OF_KEPT, [tail.popleft() for _ in range(n)]))
                    return MailBatch(self.node_id, peer, self.stream, known, envs)
        floor = self._floor(peer)
        if floor is None:
            return None
        self._floors[peer] = floor
        rows = self._db.execute(
            "SELECT id, seq, to_name, subject, body, sent_at, in_reply_to, broadcast, size FROM outbox"
            " WHERE to_node = ? AND state = 0 AND seq > ? ORDER BY seq LIMIT ?",
            (peer, max(after, self._acked.get(peer, 0)), limit),
        ).fetchall()
        if not rows:
            return None
        n = batch_limit((r[8] for r in rows), limit)
        envs = tuple(
            Envelope(r[0], r[1], self.name, r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows[:n]
        )
        return MailBatch(self.node_id, peer, self.stream, floor, envs)

    def _floor(self, peer: str) -> int | None:
        """Lowest queued seq for `peer`, None when nothing is queued."""
        row = self._db.execute(
            "SELECT MIN(seq) FROM outbox WHERE to_node = ? AND state = 0 AND seq > ?",
            (peer, self._acked.get(peer, 0)),
        ).fetchone()
        return int(row[0]) if row[0] is not None else None

    @storage.guarded
    def peers_with_pending(self) -> list[str]:
        """Node ids that have queued entries."""
        return [p for p in sorted(self._next_seq) if self._floor(p) is not None]

    def mark_delivered(self, ack: MailAck, wall: float) -> int:
        """Apply a (checked) ack: queued entries up to ack.upto become delivered; returns how many."""
        return self.mark_delivered_many([ack], wall)

    @storage.guarded
    def mark_delivered_many(self, acks: Sequence[MailAck], wall: float) -> int:
        """`mark_delivered` for acks from several peers in one transaction; returns how many entries."""
        mine = [a for a in acks if a.from_node == self.node_id and a.stream == self.stream]
        if not mine:  # acks for a stream this mailbox no longer has
            return 0
        counts: list[int] = []
        moved: dict[str, int] = {}
        with self._tx() as db:
            for ack in mine:
                # One row per ack, not an UPDATE of each entry it covers (see out_acks). Never past the
                # seqs given out: an entry queued later is not delivered by an ack that came before it.
                peer = ack.to_node
                was = moved.get(peer, self._acked.get(peer, 0))
                upto = min(ack.upto, self._next_seq.get(peer, 1) - 1)
                if upto <= was:
                    counts.append(0)
                    continue
                counts.append(
                    db.execute(
                        "SELECT COUNT(*) FROM outbox"
                        " WHERE to_node = ? AND state = 0 AND seq > ? AND seq <= ?",
                        (peer, was, upto),
                    ).fetchone()[0]
                )
                db.execute("INSERT OR REPLACE INTO out_acks VALUES (?, ?, ?)", (peer, upto, wall))
                moved[peer] = upto
        self._acked.update(moved)
        for ack, n in zip(mine, counts, strict=True):
            if n:
                self._floors.pop(ack.to_node, None)
            tail = self._tails.get(ack.to_node)
            while tail and tail[0][0].seq <= ack.upto:
                tail.popleft()
        return sum(counts)

    @storage.guarded
    def outbox(
        self, *, state: OutState | None = None, to_name: str | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        """Outbox entries oldest first (the newest `limit` matching)."""
        limit = _page(limit)
        where: list[str] = []
        args: list[Any] = []
        if state is not None:
            where.append(f"{_STATE_SQL} = ?")
            args.append(_STATE[state])
        if to_name is not None:
            where.append("o.to_name = ?")
            args.append(to_name)
        sql = f"SELECT {_OUT_VIEW} FROM outbox AS o"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY o.rowid DESC LIMIT ?"
        rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_out_entry(r) for r in reversed(rows)]

    @storage.guarded
    def expire(self, wall: float, retention: float = RETENTION) -> list[OutboxEntry]:
        """Expire queued entries older than `retention` (a prefix of each pair's queue); returns them."""
        cutoff = wall - retention
        with self._tx() as db:
            # Per pair: everything queued below the first entry that is still young.
            rows = db.execute(
                f"SELECT {_OUT_COLS} FROM outbox AS o WHERE state = 0 AND seq > COALESCE({_ACKED}, 0)"
                " AND seq < COALESCE((SELECT MIN(seq) FROM outbox AS y WHERE y.to_node = o.to_node"
                f" AND y.state = 0 AND y.sent_at >= ? AND y.seq > COALESCE({_ACKED}, 0)),"
                " 9223372036854775807) ORDER BY rowid",
                (cutoff,),
            ).fetchall()
            db.executemany(
                "UPDATE outbox SET state = 3, changed_at = ? WHERE to_node = ? AND state = 0 AND seq = ?",
                [(wall, r[1], r[3]) for r in rows],
            )
        if rows:  # no longer queued: neither the floors nor the tails may offer them
            self._floors.clear()
            self._tails.clear()
        return [_out_entry((*r[:9], _STATE[OutState.EXPIRED], wall)) for r in rows]

    @storage.guarded
    def prune(self, wall: float, keep: float = RETENTION) -> int:
        """Forget delivered/read/expired outbox entries older than `keep` (queued ones never go).

        A full scan: call it rarely (hourly), not per frame.
        """
        cutoff = wall - keep
        with self._tx() as db:
            db.execute("DELETE FROM send_keys WHERE at < ?", (wall - min(keep, KEY_KEEP),))
            db.execute("DELETE FROM send_batches WHERE at < ?", (wall - min(keep, KEY_KEEP),))
            n = db.execute("DELETE FROM outbox WHERE state != 0 AND changed_at < ?", (cutoff,)).rowcount
            # Entries an ack delivered before the cutoff, and those acks (each peer's highest stays: the
            # cursor).
            for peer, upto in db.execute(
                "SELECT to_node, MAX(upto) FROM out_acks WHERE at < ? GROUP BY to_node", (cutoff,)
            ).fetchall():
                n += db.execute(
                    "DELETE FROM outbox WHERE to_node = ? AND state = 0 AND seq <= ?", (peer, upto)
                ).rowcount
                db.execute("DELETE FROM out_acks WHERE to_node = ? AND upto < ?", (peer, upto))
            return n

    @storage.guarded
    def apply_receipt(self, receipt: ReadReceipt, wall: float) -> ReceiptAck:
        """Sender side: record a (checked) read receipt; returns the ack to send back."""
        # An id of this mailbox is "<stream>-<n>" (`message_id`), n its rows' n (outbox_n); an id of another
        # form names none of them.
        prefix = self.stream + "-"
        cut = len(prefix)
        ns = [
            int(tail)
            for mid in receipt.ids
            if mid.startswith(prefix) and (tail := mid[cut:]).isdecimal() and tail.isascii()
            and str(int(tail)) == tail
        ]  # fmt: skip
        with self._tx() as db:
            for chunk in _chunks(ns):
                marks = ",".join("?" * len(chunk))
                db.execute(
                    f"UPDATE outbox SET state = 2, changed_at = ? WHERE to_node = ? AND state != 2"
                    f" AND n IN ({marks})",
                    (wall, receipt.reader_node, *chunk),
                )
        # A receipt may cover an entry still queued (its ack was lost): it is no longer one to send.
        self._floors.pop(receipt.reader_node, None)
        self._tails.pop(receipt.reader_node, None)
        return ReceiptAck(receipt.reader_node, receipt.sender_node, receipt.ids)

    # --------------------------------------------------------------------------------------- inbox

    @storage.guarded
    def store_incoming(self, batch: MailBatch, wall: float) -> tuple[list[InboxMessage], MailAck]:
        """Persist what is new in a (checked) batch, cursor included, in one transaction.

        Returns the new messages (for live followers) and the cumulative ack to send once this returns.
        """
        ((new, ack, _),) = self.store_incoming_many([batch], wall)
        return new, ack

    @storage.guarded
    def store_incoming_many(
        self, batches: Sequence[MailBatch], wall: float, *, messages: bool = True
    ) -> list[tuple[list[InboxMessage], MailAck, int]]:
        """`store_incoming` for (checked) batches that arrived together, in order, in one transaction (a
        window of batches from a peer is one commit, not one each); per batch its new messages, its ack and
        how many it stored. `messages=False` (nobody follows the inbox) builds no InboxMessage: the lists
        are empty, the counts are not."""
        try:
            return self._store_incoming(batches, wall, messages)
        except sqlite3.IntegrityError:
            senders = sorted({b.from_node for b in batches})
            raise ProtocolError(
                f"bad mail frame: a message id from {', '.join(senders)} is already in the inbox under"
                " another sender or seq"
            ) from None

    def _store_incoming(
        self, batches: Sequence[MailBatch], wall: float, messages: bool
    ) -> list[tuple[list[InboxMessage], MailAck, int]]:
        out: list[tuple[list[InboxMessage], MailAck, int]] = []
        rows: list[tuple[Any, ...]] = []
        cursors: dict[tuple[str, str], tuple[int, int, int]] = {}  # (sender, stream) -> (src, on disk, now)
        with self._tx() as db:
            last = db.execute("SELECT COALESCE(MAX(local_seq), 0) FROM inbox").fetchone()[0]
            for batch in batches:
                sender, stream = pair = (batch.from_node, batch.stream)
                known = cursors.get(pair)
                if known is None:
                    known = cursors[pair] = self._cursor(db, sender, stream)
                src = known[0]
                fresh, cursor = accept_batch(known[2], batch)
                cursors[pair] = (src, known[1], cursor)
                first = last + 1
                last += len(fresh)
                # A row: the envelope's texts (a tuple slice), its id's n, its bool as an int (sqlite3 binds a
                # bool through its adapter look-up: a tenth of the insert), the rest from the batch; C loops.
                cut = len(stream) + 1
                ns = _id_numbers([m[0][cut:] for m in fresh])
                tail = zip(ns, map(int, map(_BROADCAST, fresh)), range(first, last + 1), repeat(src),
                           repeat(wall))  # fmt: skip
                rows += map(add, map(_ENVELOPE_TEXT, fresh), tail)
                new = (
                    [
                        InboxMessage(
                            n, m.id, sender, m.from_name, m.to_name, m.subject, m.body, m.sent_at, wall,
                            m.in_reply_to, m.broadcast, None,
                        )
                        for n, m in zip(range(first, last + 1), fresh, strict=True)
                    ]
                    if messages
                    else []
                )  # fmt: skip
                out.append((new, MailAck(sender, batch.to_node, stream, cursor), len(fresh)))
            # UNIQUE (src, n) is the second line of defence: with an honest sender the cursor already dropped
            # every duplicate, so a clash means a peer reused an id: refuse the whole batch.
            db.executemany(_IN_INSERT, rows)
            moved = [(now, src) for src, was, now in cursors.values() if now != was]
            if moved:
                db.executemany("UPDATE in_cursor SET upto = ? WHERE src = ?", moved)
        if self._unread is not None:  # committed: every row stored is unread
            self._unread += len(rows)
        return out

    def _cursor(self, db: sqlite3.Connection, sender: str, stream: str) -> tuple[int, int, int]:
        """(src, upto, upto) of `sender`'s `stream`, its cursor row made now if it has none (inside the
        caller's transaction)."""
        row = db.execute(
            "SELECT src, upto FROM in_cursor WHERE stream = ? AND from_node = ?", (stream, sender)
        ).fetchone()
        if row is not None:
            return int(row[0]), int(row[1]), int(row[1])
        # A stream is one mailbox's, and a mailbox is one node's (a MailStore refuses another node's): the
        # stream of another sender here is that sender's ids sent again by this one (schema 2's UNIQUE id
        # refused them one by one).
        if db.execute("SELECT 1 FROM in_cursor WHERE stream = ?", (stream,)).fetchone() is not None:
            raise sqlite3.IntegrityError(f"stream {stream} is another sender's")
        made = db.execute(
            "INSERT INTO in_cursor (from_node, stream, upto) VALUES (?, ?, 0)", (sender, stream)
        ).lastrowid
        assert made is not None
        return made, 0, 0

    def _locate(self, ids: Iterable[str]) -> dict[int, tuple[str, dict[int | str, str]]]:
        """src -> (its sender node, {n: id}) of the inbox rows `ids` may name. Any "-" in an id may end its
        stream (a stream id may hold one): each reading whose stream is known is looked up."""
        by_stream: dict[str, list[tuple[int | str, str]]] = {}
        for mid in dict.fromkeys(ids):
            if not isinstance(mid, str):
                continue
            i = mid.find("-", 1)
            while i > 0:
                by_stream.setdefault(mid[:i], []).append((_id_number(mid[i + 1 :]), mid))
                i = mid.find("-", i + 1)
        found: dict[int, tuple[str, dict[int | str, str]]] = {}
        for chunk in _chunks(list(by_stream)):
            marks = ",".join("?" * len(chunk))
            for src, sender, stream in self._db.execute(
                f"SELECT src, from_node, stream FROM in_cursor WHERE stream IN ({marks})", chunk
            ):
                found.setdefault(int(src), (str(sender), {}))[1].update(by_stream[stream])
        return found

    @storage.guarded
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
        where: list[str] = []
        args: list[Any] = []
        if unread:
            where.append("i.read_at IS NULL")
        if from_name is not None:
            where.append("i.from_name = ?")
            args.append(from_name)
        if after is not None:
            where.append("i.local_seq > ?")
            args.append(after)
        sql = _IN_VIEW
        if where:
            sql += " WHERE " + " AND ".join(where)
        if after is not None:
            rows = self._db.execute(sql + " ORDER BY i.local_seq LIMIT ?", (*args, limit)).fetchall()
        else:
            rows = self._db.execute(sql + " ORDER BY i.local_seq DESC LIMIT ?", (*args, limit)).fetchall()
            rows.reverse()
        return [_inbox_msg(r) for r in rows]

    @storage.guarded
    def get(self, message_id: str) -> InboxMessage | None:
        """One inbox message by id."""
        for src, (_, by_n) in self._locate([message_id]).items():
            for n in by_n:
                row = self._db.execute(_IN_VIEW + " WHERE i.src = ? AND i.n = ?", (src, n)).fetchone()
                if row is not None:
                    return _inbox_msg(row)
        return None

    @storage.guarded
    def queued_count(self) -> int:
        """Outbox entries still queued (one per recipient)."""
        return sum(
            int(
                self._db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE to_node = ? AND state = 0 AND seq > ?",
                    (peer, self._acked.get(peer, 0)),
                ).fetchone()[0]
            )
            for peer in self._next_seq
        )

    @storage.guarded
    def unread_count(self) -> int:
        """Unread messages in the inbox: counted on disk once, then kept by the commits that change it (a
        COUNT walked every unread entry of the index, ~9 ms for 200,000, and the node's status asks for it
        every UNREAD_DEBOUNCE while mail streams in)."""
        if self._unread is None:
            self._unread = int(
                self._db.execute("SELECT COUNT(*) FROM inbox WHERE read_at IS NULL").fetchone()[0]
            )
        return self._unread

    @storage.guarded
    def mark_read(self, ids: Sequence[str], wall: float) -> list[ReadReceipt]:
        """Mark inbox messages read; returns receipts (one per sender, chunked) for those newly read."""
        found: list[tuple[int, str, str]] = []  # (local_seq, sender, id) of each row newly read
        with self._tx() as db:
            for src, (sender, by_n) in self._locate(ids).items():
                for chunk in _chunks(list(by_n)):
                    marks = ",".join("?" * len(chunk))
                    found += (
                        (seq, sender, by_n[n])
                        for seq, n in db.execute(
                            f"SELECT local_seq, n FROM inbox WHERE src = ? AND n IN ({marks})"
                            " AND read_at IS NULL",
                            (src, *chunk),
                        )
                    )
            found.sort()
            db.executemany(
                "UPDATE inbox SET read_at = ?, receipt = 1 WHERE local_seq = ?", ((wall, f[0]) for f in found)
            )
        if self._unread is not None:  # committed
            self._unread -= len(found)
        by_sender: dict[str, list[str]] = {}
        for _, sender, mid in found:
            by_sender.setdefault(sender, []).append(mid)
        return [
            ReadReceipt(self.node_id, s, tuple(mids[i : i + RECEIPT_MAX]), wall)
            for s, mids in sorted(by_sender.items())
            for i in range(0, len(mids), RECEIPT_MAX)
        ]

    @storage.guarded
    def receipts_for(self, peer: str, limit: int = RECEIPT_MAX) -> ReadReceipt | None:
        """Unconfirmed read receipts for messages from `peer` (send them on every connect)."""
        rows = self._db.execute(
            # CROSS JOIN: the peer's streams first, then their rows owed a receipt (inbox_receipts); a plain
            # JOIN let SQLite walk the whole inbox in local_seq order instead
            "SELECT c.stream || '-' || i.n, i.read_at FROM in_cursor AS c"
            " CROSS JOIN inbox AS i ON i.src = c.src AND i.receipt = 1 WHERE c.from_node = ?"
            " ORDER BY i.local_seq LIMIT ?",
            (peer, max(1, min(limit, RECEIPT_MAX))),
        ).fetchall()
        if not rows:
            return None
        return ReadReceipt(self.node_id, peer, tuple(r[0] for r in rows), max(r[1] for r in rows))

    @storage.guarded
    def confirm_receipts(self, ack: ReceiptAck) -> None:
        """Recipient side: the sender recorded these receipts; stop resending them."""
        with self._tx() as db:
            for src, (sender, by_n) in self._locate(ack.ids).items():
                if sender != ack.sender_node:
                    continue
                for chunk in _chunks(list(by_n)):
                    marks = ",".join("?" * len(chunk))
                    db.execute(
                        f"UPDATE inbox SET receipt = 2 WHERE src = ? AND n IN ({marks}) AND receipt = 1",
                        (src, *chunk),
                    )

    # ------------------------------------------------------------------------------------- members

    @storage.guarded
    def remember_member(self, node_id: str, name: str, wall: float) -> None:
        """Record that `node_id` was seen under `name` (the latest name wins)."""
        validate.ident(node_id, "node id")
        validate.name(name)
        with self._tx() as db:
            db.execute(
                "INSERT INTO members VALUES (?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET"
                " name = excluded.name, last_seen = MAX(last_seen, excluded.last_seen)",
                (node_id, name, wall, wall),
            )

    @storage.guarded
    def lookup_name(self, name: str) -> str | None:
        """Node id most recently seen under `name` (None if never seen in this mesh)."""
        row = self._db.execute(
            "SELECT node_id FROM members WHERE name = ? ORDER BY last_seen DESC LIMIT 1", (name,)
        ).fetchone()
        return str(row[0]) if row else None

    @storage.guarded
    def members(self, seen_since: float | None = None) -> list[Contact]:
        """Every node seen (since a wall time), oldest first."""
        rows = self._db.execute(
            "SELECT node_id, name, first_seen, last_seen FROM members WHERE last_seen >= ?"
            " ORDER BY first_seen, node_id",
            (float("-inf") if seen_since is None else seen_since,),
        ).fetchall()
        return [Contact(*r) for r in rows]


def _names(text: Any) -> list[str]:
    try:
        return [str(n) for n in json.loads(text)]
    except (ValueError, TypeError):
        return []


def _answers_text(record: Sequence[Any]) -> str:
    """A send_batches row's answers (see the table), from per item [id, names] or None: two joins, not a
    JSON encoder walking a thousand small lists (items that share their names list join it once)."""
    ids: list[str] = []
    names: list[str] = []
    last: Any = None
    joined = ""
    for a in record:
        if a is None:
            ids.append("")
            names.append("")
            continue
        ids.append(a[0])
        if a[1] is not last:
            last = a[1]
            joined = ",".join(last)
        names.append(joined)
    return " ".join(ids) + "\n" + " ".join(names)


def _answers(text: Any) -> list[Any]:
    """A send_batches row's answers: per item [id, [names]] or None (a damaged row reads as nothing queued,
    never as an exception in the send path)."""
    if not isinstance(text, str) or text.count("\n") != 1:
        return []
    ids, names = (part.split(" ") for part in text.split("\n"))
    if len(ids) != len(names):
        return []
    return [[i, n.split(",") if n else []] if i else None for i, n in zip(ids, names, strict=True)]


def _out_entry(r: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), _STATE_OF[r[9]], r[10])


def _inbox_msg(r: Sequence[Any]) -> InboxMessage:
    return InboxMessage(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]), r[11])


def _id_number(tail: str) -> int | str:
    """The n an inbox row keeps for an id "<stream>-<tail>": the integer when `tail` is one written the usual
    way (`message_id`'s: ASCII digits, no leading zero, within SQLite's integers), else the text itself (a
    peer's ids need only start with its stream), so "<stream>-<n>" is the id again."""
    if tail.isdecimal() and tail.isascii() and (tail[0] != "0" or tail == "0") and int(tail) <= _INT_MAX:
        return int(tail)
    return tail


_INT_MAX = 2**63 - 1


def _id_numbers(tails: list[str]) -> list[int | str]:
    """`_id_number` of each tail; for a batch of the usual ids, C loops over them joined (ids hold no space):
    ASCII digits only, no tail empty or with a leading zero (none starts the text or follows a space)."""
    text = " ".join(tails)
    if (
        text.isascii()
        and text.replace(" ", "").isdecimal()
        and not text.startswith("0")
        and " 0" not in text
        and "  " not in text
        and not text.endswith(" ")
    ):
        try:
            ns = list(map(int, tails))
        except ValueError:  # a tail with a space in it
            pass
        else:
            if max(ns) <= _INT_MAX:
                return ns  # type: ignore[return-value]  # list[int] is a list[int | str]
    return list(map(_id_number, tails))


def _chunks(ids: Sequence[T]) -> Iterator[Sequence[T]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _page(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= INBOX_PAGE_MAX:
        raise InvalidInput(f"limit must be 0..{INBOX_PAGE_MAX}, not {limit!r}")
    return limit


def _statements(script: str) -> list[str]:
    """The statements of `script`, to run one at a time (executescript would COMMIT the transaction); no
    ";" in its comments."""
    return [x for x in (x.strip() for x in script.split(";")) if x]


def _migrate_1_2(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the outbox without its UNIQUE (to_node, seq), which SQLite can drop only by copying the
    table (rowids kept: `outbox` pages by them)."""
    db.execute(_OUTBOX.format(name="outbox_v2"))
    db.execute(f"INSERT INTO outbox_v2 (rowid, {_OUT_ALL}) SELECT rowid, {_OUT_ALL} FROM outbox")
    db.execute("DROP TABLE outbox")  # its indexes go with it
    db.execute("ALTER TABLE outbox_v2 RENAME TO outbox")
    for stmt in _statements(_OUTBOX_INDEXES):
        db.execute(stmt)


_TAIL_SQL = "substr(i.id, length(i.stream) + 2)"
_N_SQL = (
    f"(CASE WHEN {_TAIL_SQL} = '0' OR ({_TAIL_SQL} GLOB '[1-9]*' AND {_TAIL_SQL} NOT GLOB '*[^0-9]*'"
    f" AND (length({_TAIL_SQL}) < 19 OR (length({_TAIL_SQL}) = 19 AND {_TAIL_SQL} <= '{_INT_MAX}')))"
    f" THEN CAST({_TAIL_SQL} AS INTEGER) ELSE {_TAIL_SQL} END)"
)
"""An inbox row of schema 2's n: `_id_number` of its id's tail past "<stream>-", in SQL."""


def _migrate_2_3(db: sqlite3.Connection) -> None:
    """Schema 2 -> 3: the inbox and the cursors copied into their new layout (see `_INBOX`); every row keeps
    its local_seq, read state and receipt state; every id reads back as it was."""
    for stmt in _statements(_INBOX.format(cursor="in_cursor_v3", inbox="inbox_v3")):
        db.execute(stmt)
    db.execute(
        "INSERT INTO in_cursor_v3 (from_node, stream, upto) SELECT from_node, stream, upto FROM in_cursor"
    )
    # Rows without a cursor row cannot be (they are stored with it), but none may be lost if there were.
    db.execute(
        "INSERT INTO in_cursor_v3 (from_node, stream, upto) SELECT DISTINCT from_node, stream, 0 FROM inbox"
        " WHERE true ON CONFLICT DO NOTHING"
    )
    # Schema 2 refused an id not of its batch's stream ("<stream>-..."), so every id is the stream, "-" and
    # a tail; n is that tail (as `_id_number` reads it), and "<stream>-<n>" gives the id back.
    db.execute(
        "INSERT INTO inbox_v3 (local_seq, src, n, from_name, to_name, subject, body, sent_at, received_at,"
        f" in_reply_to, broadcast, read_at, receipt) SELECT i.local_seq, c.src, {_N_SQL}, i.from_name,"
        " i.to_name, i.subject, i.body, i.sent_at, i.received_at, i.in_reply_to, i.broadcast, i.read_at,"
        " i.receipt FROM inbox AS i JOIN in_cursor_v3 AS c"
        " ON c.from_node = i.from_node AND c.stream = i.stream"
    )
    db.execute("DROP TABLE inbox")  # its indexes go with it
    db.execute("DROP TABLE in_cursor")
    db.execute("ALTER TABLE inbox_v3 RENAME TO inbox")
    db.execute("ALTER TABLE in_cursor_v3 RENAME TO in_cursor")
    for stmt in _statements(_INBOX_INDEXES):
        db.execute(stmt)
