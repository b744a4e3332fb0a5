"""Make `mailbox_v2.sql` and `mailbox_v2.json`: a node's mailbox of schema 2 (SQL dump) and what it answered.

Run with the code of a schema-2 version (it was made with commit 9f9618c's), from that checkout's root:
`PYTHONSAFEPATH=1 PYTHONPATH=$PWD python tests/core/data/make_mailbox_v2.py OUT_DIR`. The dump is node B's
mailbox: messages from two senders (read and unread, receipts owed and confirmed, a broadcast, a reply),
and an outbox to them in every state (queued, delivered by an ack, read, expired), send keys and a keyed
batch. `test_mailstore.py::test_schema_2_mailbox_migrates_and_answers_as_before` opens it with this code and
compares `snapshot` (the same function, in the test) with what the old code said.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from mesh.core.mailbox import OutState, Recipient, outgoing
from mesh.mailstore import KeyedBatch, MailStore

A, B, C = Recipient("nodeA", "alice"), Recipient("nodeB", "bob"), Recipient("nodeC", "carol")
WALL0 = 1_700_000_000.0


def snapshot(b: Any) -> dict[str, Any]:
    """Every answer of a mailbox's read side that a migration must keep (JSON-able)."""
    inbox = b.inbox(limit=1000)
    ids = [m.id for m in inbox]
    return {
        "stream": b.stream,
        "inbox": [
            m.to_json() | {"local_seq": m.local_seq, "from_node": m.from_node, "read_at": m.read_at}
            for m in inbox
        ],
        "unread": [m.id for m in b.inbox(unread=True, limit=1000)],
        "unread_2": [m.id for m in b.inbox(unread=True, limit=2)],
        "from_carol": [m.id for m in b.inbox(from_name="carol", limit=1000)],
        "after_3": [m.id for m in b.inbox(after=3, limit=2)],
        "get": [b.get(i).local_seq for i in ids] + [b.get("nope-1"), b.get(ids[0] + "0")],
        "unread_count": b.unread_count(),
        "receipts": {p: (r.ids if (r := b.receipts_for(p)) else None) for p in ("nodeA", "nodeC")},
        "outbox": [e.to_json() | {"to_node": e.to_node, "seq": e.seq} for e in b.outbox(limit=1000)],
        "outbox_read": [e.id for e in b.outbox(state=OutState.READ)],
        "queued_count": b.queued_count(),
        "floors": {p: b.floor(p) for p in ("nodeA", "nodeC")},
        "pending_for_a": [m.id for m in (b.pending_for("nodeA") or _none()).messages],
        "with_key": b.sent_with_key("k1"),
        "in_batch": [b.sent_in_batch("batch-1", i) for i in range(3)],
        "members": [[c.node_id, c.name, c.first_seen, c.last_seen] for c in b.members()],
    }


class _none:
    messages: tuple[Any, ...] = ()


def build(tmp: Path) -> MailStore:
    a = MailStore(tmp / "a.db", node_id=A.node_id, name=A.name, rng=random.Random(1))
    c = MailStore(tmp / "c.db", node_id=C.node_id, name=C.name, rng=random.Random(3))
    b = MailStore(tmp / "b.db", node_id=B.node_id, name=B.name, rng=random.Random(2))
    for who, s in ((A, b), (B, b), (C, b), (A, a), (B, a), (B, c)):
        s.remember_member(who.node_id, who.name, WALL0)
    # in: five from alice (one a broadcast, one a reply), three from carol
    a_ids = a.enqueue([outgoing([B], f"a{i}", f"body a{i}", sender_node=A.node_id) for i in range(3)], WALL0)
    a.enqueue([outgoing([B, C], "all", "to all", sender_node=A.node_id, broadcast=True)], WALL0 + 1)
    a.enqueue([outgoing([B], "re", "a reply", sender_node=A.node_id, in_reply_to="x-1")], WALL0 + 2)
    c.enqueue([outgoing([B], f"c{i}", f"body c{i}", sender_node=C.node_id) for i in range(3)], WALL0 + 3)
    for s, batch_size in ((a, 3), (c, 2)):
        after = 0
        while (bt := s.pending_for("nodeB", after, batch_size)) is not None:
            b.store_incoming(bt, WALL0 + 10 + after)
            after = bt.messages[-1].seq
    b.store_incoming(a.pending_for("nodeB", 0, 2), WALL0 + 20)  # type: ignore[arg-type]  # a resend: no change
    got = b.inbox(limit=100)
    b.mark_read([a_ids[0], a_ids[2], got[5].id, got[7].id], WALL0 + 30)
    rc = b.receipts_for("nodeC")
    assert rc is not None
    b.confirm_receipts(c.apply_receipt(rc, WALL0 + 31))  # carol's confirmed; alice's still owed
    # out: to alice and carol, keyed, a keyed batch, an expired one, acks and a read receipt
    b.enqueue([outgoing([A], "old", "expires", sender_node=B.node_id)], WALL0 - 8 * 24 * 3600)
    b.expire(WALL0 + 40)
    b.enqueue([outgoing([A], "k", "keyed", sender_node=B.node_id, key="k1")], WALL0 + 41)
    items = tuple(outgoing([A], f"b{i}", f"batch {i}", sender_node=B.node_id) for i in range(3))
    b.enqueue_group([KeyedBatch("batch-1", "d" * 32, items)], WALL0 + 42)
    b.enqueue([outgoing([C], f"toc{i}", "x", sender_node=B.node_id) for i in range(3)], WALL0 + 43)
    bt = b.pending_for("nodeA", 0, 2)
    assert bt is not None
    _, ack = a.store_incoming(bt, WALL0 + 44)
    b.mark_delivered(ack, WALL0 + 45)
    bt = b.pending_for("nodeC", 0, 3)
    assert bt is not None
    _, ack = c.store_incoming(bt, WALL0 + 46)
    b.mark_delivered(ack, WALL0 + 47)
    (receipt,) = c.mark_read([bt.messages[1].id], WALL0 + 48)
    b.apply_receipt(receipt, WALL0 + 49)
    a.close()
    c.close()
    return b


def main() -> None:
    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        b = build(Path(tmp))
        assert b._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
        snap = snapshot(b)
        b.close()
        db = sqlite3.connect(Path(tmp) / "b.db")
        dump = "\n".join(db.iterdump()) + "\n"
        db.close()
    (out / "mailbox_v2.sql").write_text(dump)
    (out / "mailbox_v2.json").write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
