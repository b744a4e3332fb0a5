"""Store-only mail throughput: durable enqueue -> pending_for -> store_incoming -> mark_delivered.

`python -m bench.mail_store [--messages N] [--json]`: two MailStores (sender, recipient) in a temp dir,
200-byte bodies, batches of 100, for synchronous=NORMAL and FULL; also single-message enqueue (one
transaction per `send`, what `meshctl send` does). `inbox/s` is the recipient's `store_incoming` alone.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from mesh.core.mailbox import BATCH_MAX, Recipient, outgoing
from mesh.mailstore import MailStore

BODY = "x" * 200


def run(messages: int, synchronous: Literal["NORMAL", "FULL"], per_send: int) -> dict[str, Any]:
    """Move `messages` through a sender and a recipient store; returns rates."""
    with tempfile.TemporaryDirectory() as tmp:
        a = MailStore(
            Path(tmp) / "a.db", node_id="nodeA", name="a", rng=random.Random(1), synchronous=synchronous
        )
        b = MailStore(
            Path(tmp) / "b.db", node_id="nodeB", name="b", rng=random.Random(2), synchronous=synchronous
        )
        msg = outgoing([Recipient("nodeB", "b")], "bench", BODY, sender_node="nodeA")
        t_enq = t_flow = t_store = 0.0
        sent = 0
        wall = 1e9
        while sent < messages:
            t0 = time.perf_counter()
            for _ in range(BATCH_MAX // per_send):
                a.enqueue([msg] * per_send, wall)
            t1 = time.perf_counter()
            batch = a.pending_for("nodeB", 0, BATCH_MAX)
            assert batch is not None and len(batch.messages) == BATCH_MAX
            t_s = time.perf_counter()
            new, ack = b.store_incoming(batch, wall)
            t_store += time.perf_counter() - t_s
            assert len(new) == BATCH_MAX
            assert a.mark_delivered(ack, wall) == BATCH_MAX
            t2 = time.perf_counter()
            t_enq += t1 - t0
            t_flow += t2 - t1
            sent += BATCH_MAX
        assert b.unread_count() == sent
        a.close()
        b.close()
    total = t_enq + t_flow
    return {
        "synchronous": synchronous,
        "enqueue_per_txn": per_send,
        "messages": sent,
        "end_to_end_msgs_per_s": round(sent / total),
        "enqueue_msgs_per_s": round(sent / t_enq),
        "deliver_msgs_per_s": round(sent / t_flow),
        "store_incoming_msgs_per_s": round(sent / t_store),
    }


def main() -> None:
    """Print the figures (a table, or JSON lines with --json)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = [
        run(args.messages, sync, per_send) for sync in ("NORMAL", "FULL") for per_send in (BATCH_MAX, 1)
    ]
    if args.json:
        for r in results:
            print(json.dumps(r))
        return
    print(
        f"{'synchronous':<12}{'msgs/enqueue':>13}{'end-to-end/s':>14}{'enqueue/s':>12}{'deliver/s':>12}"
        f"{'inbox/s':>10}"
    )
    for r in results:
        print(
            f"{r['synchronous']:<12}{r['enqueue_per_txn']:>13}{r['end_to_end_msgs_per_s']:>14,}"
            f"{r['enqueue_msgs_per_s']:>12,}{r['deliver_msgs_per_s']:>12,}{r['store_incoming_msgs_per_s']:>10,}"
        )
    print(
        "(200-byte bodies; deliver = pending_for + store_incoming + mark_delivered, batch 100; inbox ="
        " store_incoming alone, one batch per transaction)"
    )


if __name__ == "__main__":
    main()
