"""Messaging core: limits, validation, acceptance, send window, and a Hypothesis model of a faulty network.

`MailMachine` drives several mailboxes through sends, broadcasts, pumping, delivery with drop /
duplicate / reorder, disconnect / reconnect, restarts, reads and ageing past the retention window, and
checks after every step: exactly-once and per-sender order in every inbox, delivered/read only what the
recipient really has, nothing lost. Its teardown heals everything and checks that every message not
expired arrives. `tests/core/test_mailstore.py` runs the same machine on the SQLite store.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mesh.core import mailbox as mb
from mesh.core.mailbox import (
    BATCH_BYTES_MAX,
    BATCH_BYTES_SEND,
    BATCH_MAX,
    BODY_MAX,
    RESEND_AFTER,
    RETENTION,
    SUBJECT_MAX,
    Envelope,
    MailAck,
    MailBatch,
    MailboxStore,
    OutState,
    ReadReceipt,
    ReceiptAck,
    Recipient,
    SendWindow,
    accept_batch,
    check_ack,
    check_batch,
    check_receipt,
    check_receipt_ack,
    outgoing,
)
from mesh.core.mailbox.text import body_bytes, check_subject, check_text
from mesh.errors import InvalidInput, LimitExceeded, ProtocolError
from mesh.testing.mailbox import MemoryMailbox

A, B, C = Recipient("nodeA", "alice"), Recipient("nodeB", "bob"), Recipient("nodeC", "carol")
WALL0 = 1_700_000_000.0


def box(r: Recipient, seed: int = 0) -> MemoryMailbox:
    return MemoryMailbox.create(r.node_id, r.name, random.Random(seed))


def direct(frm: Recipient, to: Recipient, subject: str = "hi", body: str = "hello", reply: str = "") -> Any:
    return outgoing([to], subject, body, sender_node=frm.node_id, in_reply_to=reply or None)


def env(stream: str, seq: int, **kw: Any) -> Envelope:
    fields: dict[str, Any] = dict(
        id=f"{stream}-{seq}", seq=seq, from_name="alice", to_name="bob", subject="s", body="b", sent_at=WALL0
    )
    fields.update(kw)
    return Envelope(**fields)


def batch(seqs: list[int], floor: int = 1, stream: str = "00000000000000aa") -> MailBatch:
    return MailBatch("nodeA", "nodeB", stream, floor, tuple(env(stream, s) for s in seqs))


# ---------------------------------------------------------------------------------- validation


def test_subject_limit_is_inclusive_and_errors_name_the_limit() -> None:
    direct(A, B, subject="s" * SUBJECT_MAX)
    with pytest.raises(LimitExceeded, match=f"201 characters; the limit is {SUBJECT_MAX}"):
        direct(A, B, subject="s" * (SUBJECT_MAX + 1))


def test_body_limit_counts_utf8_bytes_not_characters() -> None:
    direct(A, B, body="x" * BODY_MAX)
    direct(A, B, body="é" * (BODY_MAX // 2))  # 2 bytes each: exactly the limit
    with pytest.raises(LimitExceeded, match=f"{BODY_MAX + 2} bytes"):
        direct(A, B, body="é" * (BODY_MAX // 2 + 1))
    with pytest.raises(LimitExceeded):
        direct(A, B, body="x" * (BODY_MAX + 1))


@pytest.mark.parametrize(
    ("subject", "body", "match"),
    [
        ("", "b", "subject is empty"),
        ("   ", "b", "subject is empty"),
        ("two\nlines", "b", "control characters"),
        ("ok", "bad \ud800 surrogate", "not valid UTF-8"),
        ("ok", "nul\x00", "NUL"),
    ],
)
def test_bad_text_is_refused_not_truncated(subject: str, body: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        direct(A, B, subject=subject, body=body)


def test_body_may_be_empty_and_multiline() -> None:
    assert direct(A, B, body="").body == ""
    assert direct(A, B, body="a\nb\tc").body == "a\nb\tc"


def test_recipients_and_reply_ids_are_validated() -> None:
    with pytest.raises(InvalidInput, match="yourself"):
        direct(A, A)
    with pytest.raises(InvalidInput, match="recipient name"):
        outgoing([Recipient("nodeB", "bad name")], "s", "b", sender_node="nodeA")
    with pytest.raises(InvalidInput, match="reply-to"):
        direct(A, B, reply="no spaces allowed")
    with pytest.raises(InvalidInput, match="exactly one"):
        outgoing([B, C], "s", "b", sender_node="nodeA")
    bc = outgoing([A, B, C, B], "s", "b", sender_node="nodeA", broadcast=True)
    assert bc.recipients == (B, C) and bc.broadcast  # self left out, duplicates merged
    assert outgoing([A], "s", "b", sender_node="nodeA", broadcast=True).recipients == ()


# ---------------------------------------------------------------------------- incoming checks


def test_check_batch_accepts_what_a_mailbox_sends() -> None:
    a = box(A)
    a.enqueue([direct(A, B)] * 3, WALL0)
    b = a.pending_for("nodeB")
    assert b is not None
    assert check_batch(b, peer_node="nodeA", self_node="nodeB") is b


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda b: MailBatch("nodeX", b.to_node, b.stream, b.floor, b.messages), "not from the link's peer"),
        (lambda b: MailBatch(b.from_node, "nodeX", b.stream, b.floor, b.messages), "another node"),
        (lambda b: MailBatch(b.from_node, b.to_node, b.stream, b.floor, ()), "batch of 0"),
        (lambda b: MailBatch(b.from_node, b.to_node, b.stream, b.floor, b.messages * 51), "batch of 102"),
        (lambda b: MailBatch(b.from_node, b.to_node, b.stream, b.floor, b.messages[::-1]), "not increasing"),
        (lambda b: MailBatch(b.from_node, b.to_node, b.stream, 3, b.messages), "below floor"),
        (lambda b: MailBatch(b.from_node, b.to_node, "ffffffffffffffff", b.floor, b.messages), "stream"),
        (lambda b: MailBatch(b.from_node, b.to_node, "bad stream", b.floor, b.messages), "invalid stream"),
    ],
)
def test_check_batch_refuses_broken_frames(mutate: Any, match: str) -> None:
    good = batch([1, 2])
    with pytest.raises(ProtocolError, match=match):
        check_batch(mutate(good), peer_node="nodeA", self_node="nodeB")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"from_name": "bad name"}, "invalid sender name"),
        ({"to_name": "bad name"}, "invalid recipient name"),
        ({"subject": "two\nlines"}, "control characters"),
        ({"subject": " "}, "subject is empty"),
        ({"subject": "s" * (SUBJECT_MAX + 1)}, "the limit is"),
        ({"subject": "\ud800"}, "not valid UTF-8"),
        ({"body": "nul\x00"}, "NUL"),
        ({"body": "\udfff"}, "not valid UTF-8"),
        ({"in_reply_to": "no spaces"}, "reply-to id"),
        ({"id": "x y"}, "invalid message id"),
        ({"sent_at": "now"}, "sent_at"),
    ],
)
def test_check_batch_checks_every_message_not_only_the_first(bad: dict[str, Any], match: str) -> None:
    # a batch's names are checked once per distinct name: a bad one after good ones is still refused
    stream = "00000000000000aa"
    msgs = (env(stream, 1), env(stream, 2), env(stream, 3, **({"id": f"{stream}-3"} | bad)))
    with pytest.raises(ProtocolError, match=match):
        check_batch(MailBatch("nodeA", "nodeB", stream, 1, msgs), peer_node="nodeA", self_node="nodeB")


@pytest.mark.parametrize(
    ("subject", "body"),
    [("hi", "hello"), ("é", "ü" * 10), ("s" * SUBJECT_MAX, "x" * (BODY_MAX - SUBJECT_MAX)),
     ("s" * SUBJECT_MAX, "x" * BODY_MAX), ("a\u2028b", ""), ("tab\there", "b"), ("ok", "x" * (BODY_MAX + 1)),
     ("", "b"), ("\x7f", "b"), (None, "b"), ("ok", None), ("ok", "\ud800"), ("ok", "a\x00b")],
)  # fmt: skip
def test_check_text_is_check_subject_and_body_bytes(subject: Any, body: Any) -> None:
    # the one-pass path answers exactly what the two separate checks answer (size or error)
    def separate() -> int:
        check_subject(subject)
        return body_bytes(body) + len(subject.encode())

    want: Any
    try:
        want = separate()
    except (InvalidInput, LimitExceeded) as e:
        want = (type(e), str(e))
    got: Any
    try:
        got = check_text(subject, body)
    except (InvalidInput, LimitExceeded) as e:
        got = (type(e), str(e))
    assert got == want


def test_check_batch_refuses_oversized_fields_and_frames() -> None:
    big = "x" * (BODY_MAX + 1)
    with pytest.raises(ProtocolError, match="limit"):
        check_batch(
            MailBatch("nodeA", "nodeB", "aa", 1, (env("aa", 1, body=big),)),
            peer_node="nodeA",
            self_node="nodeB",
        )
    n = BATCH_BYTES_MAX // BODY_MAX + 1
    msgs = tuple(env("aa", i, body="x" * BODY_MAX) for i in range(1, n + 1))
    with pytest.raises(ProtocolError, match="bytes"):
        check_batch(MailBatch("nodeA", "nodeB", "aa", 1, msgs), peer_node="nodeA", self_node="nodeB")


_S = "00000000000000aa"
_GOOD_OR_BAD: dict[str, list[Any]] = {  # per field: a good value first, then ones some rule refuses
    "id": [None, "x y", "", f"{_S}-é", "ab-1", 5, f"{_S}-" + "x" * 64, f"{_S}-\ud800", f"{_S}-1"],
    "seq": [None, 0, True, 2.0, -1, 1],
    "from_name": ["alice", "bad name", "", "a" * 65, None, "é"],
    "to_name": ["bob", "bad name", "", "b" * 65, None],
    "subject": ["s", "two\nlines", " ", "s" * (SUBJECT_MAX + 1), "\ud800", "", "é", 3, "a\u2028b"],
    "body": ["b", "nul\x00", "\udfff", "x" * BODY_MAX, "ü" * (BODY_MAX // 2 + 1), None, ""],
    "sent_at": [WALL0, "now", True, 1, None],
    "in_reply_to": ["", "aa-1", "no spaces", None, 0, "x" * 65],
    "broadcast": [False, True],
}


def _batch_of(picks: list[dict[str, int]], floor: int) -> MailBatch:
    """A batch of len(picks) messages, field `name` of message i being _GOOD_OR_BAD[name][picks[i][name]]."""
    msgs = []
    for i, pick in enumerate(picks, start=1):
        fields = {name: choices[pick.get(name, 0)] for name, choices in _GOOD_OR_BAD.items()}
        fields["id"] = f"{_S}-{i}" if fields["id"] is None else fields["id"]
        fields["seq"] = i if fields["seq"] is None else fields["seq"]
        msgs.append(Envelope(**fields))
    return MailBatch("nodeA", "nodeB", _S, floor, tuple(msgs))


def test_the_batch_wide_check_accepts_only_what_the_message_by_message_check_accepts() -> None:
    # check_batch's fast path (`_batch_ok`, a column at a time) must never accept a batch the per-message
    # rules refuse: every bad value at every place of a batch of three, then random mixes of them
    from mesh.core.mailbox.checks import _batch_ok, _check_each

    cases = [
        ([{name: k} if j == at else {} for j in range(3)], 1)
        for name, choices in _GOOD_OR_BAD.items()
        for k in range(1, len(choices))
        for at in range(3)
    ]
    rng = random.Random(15)
    for _ in range(3000):
        picks = [
            {
                name: rng.randrange(len(_GOOD_OR_BAD[name]))
                for name in rng.sample(sorted(_GOOD_OR_BAD), rng.randrange(3))
            }
            for _ in range(rng.randint(1, 5))
        ]
        cases.append((picks, rng.choice([1, 1, 1, 2, 4])))
    fast_refused = 0
    for picks, floor in cases:
        b = _batch_of(picks, floor)
        try:
            _check_each(b)
            per_message = True
        except ProtocolError:
            per_message = False
        if _batch_ok(b):
            assert per_message, b
        else:
            fast_refused += 1
    assert 0 < fast_refused < len(cases)


def test_the_common_batch_takes_the_batch_wide_check() -> None:
    from mesh.core.mailbox.checks import _batch_ok

    msgs = tuple(
        env(_S, i, subject=f"s {i}", body="é" * 100, in_reply_to="aa-1" if i % 2 else "")
        for i in range(1, 101)
    )
    assert _batch_ok(MailBatch("nodeA", "nodeB", _S, 1, msgs))
    big = tuple(env(_S, i, body="x" * (BODY_MAX - 1)) for i in range(1, 4))  # more than BODY_MAX together
    assert _batch_ok(MailBatch("nodeA", "nodeB", _S, 1, big))


def test_acks_and_receipts_only_from_the_right_peer() -> None:
    ack = MailAck("nodeA", "nodeB", "aa", 3)
    assert check_ack(ack, peer_node="nodeB", self_node="nodeA") is ack
    with pytest.raises(ProtocolError):
        check_ack(ack, peer_node="nodeC", self_node="nodeA")
    rc = ReadReceipt("nodeB", "nodeA", ("aa-1",), WALL0)
    assert check_receipt(rc, peer_node="nodeB", self_node="nodeA") is rc
    with pytest.raises(ProtocolError):
        check_receipt(rc, peer_node="nodeC", self_node="nodeA")  # C cannot report B's reads
    with pytest.raises(ProtocolError):
        check_receipt(ReadReceipt("nodeB", "nodeA", ("bad id",), WALL0), peer_node="nodeB", self_node="nodeA")
    rack = ReceiptAck("nodeB", "nodeA", ("aa-1",))
    assert check_receipt_ack(rack, peer_node="nodeA", self_node="nodeB") is rack
    with pytest.raises(ProtocolError):
        check_receipt_ack(rack, peer_node="nodeC", self_node="nodeB")


# ---------------------------------------------------------------------------------- acceptance


@pytest.mark.parametrize(
    ("cursor", "seqs", "floor", "accepted", "new_cursor"),
    [
        (0, [1, 2, 3], 1, [1, 2, 3], 3),  # in order
        (2, [1, 2, 3, 4], 1, [3, 4], 4),  # a resend overlapping what is stored: duplicates skipped
        (0, [2, 3], 1, [], 0),  # gap: nothing accepted, the sender will go back
        (0, [1, 3, 4], 1, [1], 1),  # gap in the middle: stop there
        (0, [5, 6], 5, [5, 6], 6),  # floor: 1-4 were acked or expired at the sender
        (7, [5, 6, 8], 5, [8], 8),  # floor below the cursor changes nothing
        (9, [5, 6], 5, [], 9),  # all duplicates
        (3, [4, 5, 6], 1, [4, 5, 6], 6),  # the next seqs, all of them (the common batch)
        (0, [1, 2, 4, 5], 1, [1, 2], 2),  # a gap inside
        (0, [1, 2, 3, 5], 1, [1, 2, 3], 3),  # a gap before the last
    ],
)
def test_accept_batch(cursor: int, seqs: list[int], floor: int, accepted: list[int], new_cursor: int) -> None:
    fresh, cur = accept_batch(cursor, batch(seqs, floor))
    assert [m.seq for m in fresh] == accepted
    assert cur == new_cursor


# --------------------------------------------------------------------------------- send window


def test_send_window_fills_acks_and_rewinds_on_stall() -> None:
    w = SendWindow("nodeB", 1, now=0.0, window=250)
    assert w.want() == (0, BATCH_MAX) and w.next_deadline() is None
    w.on_sent(batch(list(range(1, 101))), 0.0)
    w.on_sent(batch(list(range(101, 201))), 0.1)
    assert w.want() == (200, 50)  # only 50 more fit in the window
    w.on_sent(batch(list(range(201, 251))), 0.2)
    assert w.want() is None
    assert w.next_deadline() == RESEND_AFTER  # clock started when the first batch left
    assert w.on_ack(MailAck("nodeA", "nodeB", "aa", 100), 1.0)
    assert not w.on_ack(MailAck("nodeA", "nodeB", "aa", 50), 1.1)  # stale ack: no progress
    assert w.want() == (250, 100)
    assert not w.on_timer(1.0 + RESEND_AFTER - 0.01)
    assert w.on_timer(1.0 + RESEND_AFTER)  # acks stalled: go back to the oldest unacked
    assert w.want() == (100, 100)
    w.on_ack(MailAck("nodeA", "nodeB", "aa", 250), 5.0)
    assert w.in_flight == 0 and w.next_deadline() is None and not w.on_timer(100.0)


def test_send_window_starts_at_floor_and_skips_expired() -> None:
    w = SendWindow("nodeB", 11, now=0.0)
    assert w.want() == (10, BATCH_MAX)
    w.on_floor(21)
    assert w.want() == (20, BATCH_MAX)
    w.on_floor(5)
    assert w.want() == (20, BATCH_MAX)
    with pytest.raises(InvalidInput):
        SendWindow("nodeB", 1, now=0.0, window=0)


# ------------------------------------------------------------------------------ mailbox basics


def test_direct_message_queued_delivered_read() -> None:
    a, b = box(A, 1), box(B, 2)
    (mid,) = a.enqueue([direct(A, B, "subj", "body")], WALL0)
    assert mid == f"{a.stream}-1"
    assert [e.state for e in a.outbox()] == [OutState.QUEUED]
    bt = a.pending_for("nodeB")
    assert bt is not None and bt.floor == 1 and [m.seq for m in bt.messages] == [1]
    new, ack = b.store_incoming(bt, WALL0 + 1)
    assert [m.id for m in new] == [mid] and ack == MailAck("nodeA", "nodeB", a.stream, 1)
    assert b.unread_count() == 1
    assert a.outbox()[0].state is OutState.QUEUED  # nothing is delivered before the ack arrives
    assert a.mark_delivered(ack, WALL0 + 2) == 1
    assert a.outbox()[0].state is OutState.DELIVERED and a.pending_for("nodeB") is None
    (rc,) = b.mark_read([mid, mid, "nope-1"], WALL0 + 3)
    assert rc == ReadReceipt("nodeB", "nodeA", (mid,), WALL0 + 3)
    assert b.mark_read([mid], WALL0 + 4) == []  # already read: no second receipt
    assert b.receipts_for("nodeA") == rc  # kept until the sender confirms
    rack = a.apply_receipt(rc, WALL0 + 5)
    assert a.outbox()[0].state is OutState.READ
    b.confirm_receipts(rack)
    assert b.receipts_for("nodeA") is None
    m = b.get(mid)
    assert m is not None and m.to_json() == {
        "id": mid,
        "from": "alice",
        "to": "bob",
        "subject": "subj",
        "body": "body",
        "sent_at": "2023-11-14T22:13:20.000Z",  # WALL0: JSON times are RFC 3339 (README)
        "in_reply_to": None,
        "read": True,
        "broadcast": False,
        "received_at": "2023-11-14T22:13:21.000Z",
    }


def test_broadcast_fans_out_to_every_known_member_with_one_id() -> None:
    a = box(A)
    a.enqueue([direct(A, B)], WALL0)
    (mid,) = a.enqueue([outgoing([A, B, C], "all", "x", sender_node="nodeA", broadcast=True)], WALL0)
    entries = a.outbox()
    assert [(e.id, e.to_node, e.seq, e.broadcast) for e in entries][1:] == [
        (mid, "nodeB", 2, True),
        (mid, "nodeC", 1, True),
    ]
    assert a.peers_with_pending() == ["nodeB", "nodeC"]


def test_resend_after_lost_ack_is_deduplicated() -> None:
    a, b = box(A, 1), box(B, 2)
    a.enqueue([direct(A, B, body=str(i)) for i in range(5)], WALL0)
    first = a.pending_for("nodeB")
    assert first is not None
    b.store_incoming(first, WALL0)  # persisted; the ack is lost (crash between persist and ack)
    again = a.pending_for("nodeB")
    assert again == first
    new, ack = b.store_incoming(again, WALL0)
    assert new == [] and ack.upto == 5
    assert [m.body for m in b.inbox()] == ["0", "1", "2", "3", "4"]


def test_reply_links_to_the_original() -> None:
    a, b = box(A, 1), box(B, 2)
    (q,) = a.enqueue([direct(A, B, "q", "?")], WALL0)
    b.store_incoming(a.pending_for("nodeB"), WALL0)  # type: ignore[arg-type]
    b.enqueue([direct(B, A, "re: q", "!", reply=q)], WALL0)
    a.store_incoming(b.pending_for("nodeA"), WALL0)  # type: ignore[arg-type]
    assert a.inbox()[0].in_reply_to == q


def test_batches_respect_count_and_byte_limits() -> None:
    a = box(A)
    a.enqueue([direct(A, B, body="x" * 100)] * 250, WALL0)
    bt = a.pending_for("nodeB", 0, 1000)
    assert bt is not None and len(bt.messages) == BATCH_MAX
    assert [m.seq for m in a.pending_for("nodeB", 200, 7).messages] == list(range(201, 208))  # type: ignore[union-attr]
    big = box(C)
    big.enqueue([direct(C, B, body="x" * BODY_MAX)] * 40, WALL0)
    bt = big.pending_for("nodeB")
    assert bt is not None and len(bt.messages) == BATCH_BYTES_SEND // (BODY_MAX + 2)
    check_batch(bt, peer_node="nodeC", self_node="nodeB")


def test_expiry_is_visible_never_silent_and_expires_a_prefix_only() -> None:
    a, b = box(A, 1), box(B, 2)
    a.enqueue([direct(A, B, body="old")], WALL0)
    a.enqueue([direct(A, B, body="young")], WALL0 + 100)
    a.enqueue([direct(A, B, body="old-again")], WALL0)  # wall clock stepped back
    assert a.expire(WALL0 + RETENTION - 1) == []
    gone = a.expire(WALL0 + RETENTION + 1)
    assert [e.body for e in gone] == ["old"]  # the third waits behind the young one: no hole in the stream
    assert {e.body: e.state for e in a.outbox()}["old"] is OutState.EXPIRED
    bt = a.pending_for("nodeB")
    assert bt is not None and bt.floor == 2 and [m.seq for m in bt.messages] == [2, 3]
    new, ack = b.store_incoming(bt, WALL0)  # the recipient skips the expired seq 1 via floor
    assert [m.body for m in new] == ["young", "old-again"]
    a.mark_delivered(MailAck("nodeA", "nodeB", a.stream, ack.upto), WALL0)
    states = [e.state for e in a.outbox()]
    assert states == [OutState.EXPIRED, OutState.DELIVERED, OutState.DELIVERED]  # the ack never "delivers" 1
    assert a.prune(WALL0 + RETENTION * 2, keep=RETENTION) == 2  # delivered at WALL0; expired later stays
    assert a.prune(WALL0 + RETENTION * 3, keep=RETENTION) == 1
    assert a.outbox() == [] and a.floor("nodeB") == 4  # seqs are never reused after pruning


def test_acks_of_another_stream_are_ignored() -> None:
    a = box(A, 1)
    a.enqueue([direct(A, B)], WALL0)
    assert a.mark_delivered(MailAck("nodeA", "nodeB", "0123456789abcdef", 5), WALL0) == 0
    assert a.mark_delivered(MailAck("nodeX", "nodeB", a.stream, 5), WALL0) == 0
    assert a.outbox()[0].state is OutState.QUEUED


def test_recipient_that_lost_its_store_resumes_from_floor() -> None:
    a, b = box(A, 1), box(B, 2)
    a.enqueue([direct(A, B, body=str(i)) for i in range(3)], WALL0)
    _, ack = b.store_incoming(a.pending_for("nodeB"), WALL0)  # type: ignore[arg-type]
    a.mark_delivered(ack, WALL0)
    a.enqueue([direct(A, B, body="after")], WALL0)
    fresh_b = box(B, 3)  # state dir wiped
    new, _ = fresh_b.store_incoming(a.pending_for("nodeB"), WALL0)  # type: ignore[arg-type]
    assert [m.body for m in new] == ["after"]


def test_sender_that_lost_its_store_gets_a_new_stream_and_is_not_deduplicated() -> None:
    a1, b = box(A, 1), box(B, 2)
    a1.enqueue([direct(A, B, body="one")], WALL0)
    b.store_incoming(a1.pending_for("nodeB"), WALL0)  # type: ignore[arg-type]
    a2 = box(A, 99)  # same node id, new mailbox
    assert a2.stream != a1.stream
    a2.enqueue([direct(A, B, body="two")], WALL0)
    new, _ = b.store_incoming(a2.pending_for("nodeB"), WALL0)  # type: ignore[arg-type]
    assert [m.body for m in new] == ["two"] and b.unread_count() == 2


def test_inbox_queries() -> None:
    a, c, b = box(A, 1), box(C, 3), box(B, 2)
    a.enqueue([direct(A, B, body=f"a{i}") for i in range(3)], WALL0)
    c.enqueue([direct(C, B, body=f"c{i}") for i in range(2)], WALL0)
    b.store_incoming(a.pending_for("nodeB"), WALL0)  # type: ignore[arg-type]
    b.store_incoming(c.pending_for("nodeB"), WALL0)  # type: ignore[arg-type]
    assert [m.body for m in b.inbox()] == ["a0", "a1", "a2", "c0", "c1"]
    assert [m.body for m in b.inbox(limit=2)] == ["c0", "c1"]  # newest last
    assert [m.body for m in b.inbox(from_name="carol")] == ["c0", "c1"]
    first = b.inbox()[0]
    b.mark_read([first.id], WALL0)
    assert [m.body for m in b.inbox(unread=True)] == ["a1", "a2", "c0", "c1"]
    assert [m.body for m in b.inbox(after=first.local_seq + 1, limit=2)] == ["a2", "c0"]
    assert b.unread_count() == 4
    with pytest.raises(InvalidInput):
        b.inbox(limit=-1)


def test_members_directory() -> None:
    a = box(A)
    assert a.lookup_name("bob") is None
    a.remember_member("nodeB", "bob", WALL0)
    a.remember_member("nodeB2", "bob", WALL0 + 10)  # a new node took the name later
    a.remember_member("nodeC", "carol", WALL0 + 5)
    assert a.lookup_name("bob") == "nodeB2"
    assert [m.node_id for m in a.members()] == ["nodeB", "nodeC", "nodeB2"]
    assert [m.node_id for m in a.members(seen_since=WALL0 + 6)] == ["nodeB2"]


# ------------------------------------------------------------------------ the faulty-network model

NODES = (A, B, C)
PAIRS = [(s, d) for s in range(3) for d in range(3) if s != d]
Frame = tuple[str, Any]


class MailMachine(RuleBasedStateMachine):
    """Three mailboxes on a network that drops, duplicates and reorders frames; links break; nodes restart."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.wall = WALL0
        self.stores: list[MailboxStore] = [self.make_store(i) for i in range(3)]
        self.links: dict[tuple[int, int], list[Frame]] = {p: [] for p in PAIRS}
        self.windows: dict[tuple[int, int], SendWindow] = {}
        self.sent: dict[tuple[int, int], list[str]] = {p: [] for p in PAIRS}
        self.bodies = 0
        for s, d in PAIRS:
            if s < d:
                self._connect(s, d)

    # Backends override these two.
    def make_store(self, i: int) -> MailboxStore:
        return MemoryMailbox.create(NODES[i].node_id, NODES[i].name, random.Random(i))

    def reopen(self, i: int) -> MailboxStore:
        return self.stores[i]  # the in-memory model keeps its durable state across a restart

    # ---------------------------------------------------------------------------------- plumbing

    def connected(self, s: int, d: int) -> bool:
        return (s, d) in self.windows

    def _connect(self, s: int, d: int) -> None:
        for x, y in ((s, d), (d, s)):
            self.windows[(x, y)] = SendWindow(
                NODES[y].node_id, self.stores[x].floor(NODES[y].node_id), now=self.now
            )
            rc = self.stores[x].receipts_for(NODES[y].node_id)  # unconfirmed receipts go again on connect
            if rc is not None:
                self.links[(x, y)].append(("receipt", rc))

    def _disconnect(self, s: int, d: int) -> None:
        for x, y in ((s, d), (d, s)):
            self.windows.pop((x, y), None)
            self.links[(x, y)].clear()  # a broken stream loses what was in flight

    def _pump(self, s: int, d: int) -> bool:
        w = self.windows.get((s, d))
        if w is None:
            return False
        want = w.want()
        if want is None:
            return False
        bt = self.stores[s].pending_for(NODES[d].node_id, *want)
        if bt is None:
            return False
        w.on_sent(bt, self.now)
        self.links[(s, d)].append(("batch", bt))
        return True

    def _process(self, s: int, d: int, frame: Frame) -> None:
        kind, body = frame
        me, peer = self.stores[d], NODES[s].node_id
        back = self.links[(d, s)]
        if kind == "batch":
            check_batch(body, peer_node=peer, self_node=me.node_id)
            _, ack = me.store_incoming(body, self.wall)
            back.append(("ack", ack))  # only after the store returned: ack after persist
        elif kind == "ack":
            check_ack(body, peer_node=peer, self_node=me.node_id)
            me.mark_delivered(body, self.wall)
            w = self.windows.get((d, s))
            if w is not None:
                w.on_ack(body, self.now)
        elif kind == "receipt":
            check_receipt(body, peer_node=peer, self_node=me.node_id)
            back.append(("rack", me.apply_receipt(body, self.wall)))
        else:
            check_receipt_ack(body, peer_node=peer, self_node=me.node_id)
            me.confirm_receipts(body)

    def _send(self, s: int, d: int) -> None:
        self.bodies += 1
        (mid,) = self.stores[s].enqueue([direct(NODES[s], NODES[d], body=f"m{self.bodies}")], self.wall)
        self.sent[(s, d)].append(mid)

    # ------------------------------------------------------------------------------------- rules

    @rule(pair=st.sampled_from(PAIRS), n=st.integers(1, 3))
    def send(self, pair: tuple[int, int], n: int) -> None:
        for _ in range(n):
            self._send(*pair)
        self._pump(*pair)  # like the runtime: a live link sends at once

    @rule(s=st.integers(0, 2))
    def broadcast(self, s: int) -> None:
        (mid,) = self.stores[s].enqueue(
            [outgoing(NODES, "all", "everyone", sender_node=NODES[s].node_id, broadcast=True)], self.wall
        )
        for d in range(3):
            if d != s:
                self.sent[(s, d)].append(mid)
                self._pump(s, d)

    @rule(pair=st.sampled_from(PAIRS))
    def connect(self, pair: tuple[int, int]) -> None:
        if not self.connected(*pair):
            self._connect(*pair)
            self._pump(*pair)
            self._pump(pair[1], pair[0])

    @rule(pair=st.sampled_from(PAIRS))
    def disconnect(self, pair: tuple[int, int]) -> None:
        self._disconnect(*pair)

    @rule(pair=st.sampled_from(PAIRS), times=st.integers(1, 3))
    def pump(self, pair: tuple[int, int], times: int) -> None:
        for _ in range(times):
            self._pump(*pair)

    @rule(
        link=st.integers(0, 5),
        pick=st.integers(0, 7),
        fault=st.sampled_from(["ok", "ok", "ok", "drop", "dup"]),
    )
    def deliver(self, link: int, pick: int, fault: str) -> None:
        busy = [p for p in PAIRS if self.links[p]]
        if not busy:
            return
        pair = busy[link % len(busy)]
        frames = self.links[pair]
        i = 0 if pick >= 4 else pick % len(frames)  # mostly in order; i > 0 reorders
        frame = frames[i] if fault == "dup" else frames.pop(i)
        if fault != "drop":
            self._process(pair[0], pair[1], frame)
            if frame[0] == "ack":
                self._pump(pair[1], pair[0])  # an ack opens the window: the runtime sends more

    @rule(i=st.integers(0, 2))
    def restart(self, i: int) -> None:
        for s, d in PAIRS:
            if i in (s, d):
                self._disconnect(s, d)
        self.stores[i] = self.reopen(i)

    @rule(dt=st.sampled_from([0.1, 1.0, RESEND_AFTER]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.wall += dt
        for w in self.windows.values():
            w.on_timer(self.now)

    @rule(i=st.integers(0, 2), k=st.sampled_from([1, 2, 10_000]))
    def read(self, i: int, k: int) -> None:
        unread = self.stores[i].inbox(unread=True, limit=k)
        for rc in self.stores[i].mark_read([m.id for m in unread], self.wall):
            s = next(j for j, n in enumerate(NODES) if n.node_id == rc.sender_node)
            if self.connected(i, s):
                self.links[(i, s)].append(("receipt", rc))

    @rule()
    def wall_clock_steps_back(self) -> None:
        self.wall -= RETENTION / 4  # NTP corrections happen; expiry must still never punch a hole

    @rule()
    def age(self) -> None:
        self.wall += RETENTION / 3
        for i, st_ in enumerate(self.stores):
            st_.expire(self.wall)
            for d in range(3):
                w = self.windows.get((i, d))
                if w is not None:
                    w.on_floor(st_.floor(NODES[d].node_id))

    # -------------------------------------------------------------------------------- invariants

    def inbox_from(self, d: int, s: int) -> list[str]:
        return [m.id for m in self.stores[d].inbox(limit=10_000) if m.from_node == NODES[s].node_id]

    @invariant()
    def exactly_once_in_order_and_nothing_claimed_falsely(self) -> None:
        for s, d in PAIRS:
            got = self.inbox_from(d, s)
            assert len(got) == len(set(got)), "duplicate in inbox"
            sent = self.sent[(s, d)]
            pos = [sent.index(m) for m in got]
            assert pos == sorted(pos), "per-sender order broken"
            have = set(got)
            read = {m.id for m in self.stores[d].inbox(limit=10_000) if m.read}
            for e in self.stores[s].outbox(limit=10_000):
                if e.to_node != NODES[d].node_id:
                    continue
                if e.state in (OutState.DELIVERED, OutState.READ):
                    assert e.id in have, f"{e.id} marked {e.state} but not in the recipient's inbox"
                if e.state is OutState.READ:
                    assert e.id in read, f"{e.id} marked read but not read"

    def teardown(self) -> None:
        try:
            self.heal_and_check()
        finally:
            for st_ in self.stores:
                st_.close()

    def heal_and_check(self) -> None:
        for s, d in PAIRS:
            self._disconnect(s, d)
        for s, d in PAIRS:
            if not self.connected(s, d):
                self._connect(s, d)
        for _ in range(10_000):
            moved = False
            for pair in PAIRS:
                moved |= self._pump(*pair)
                while self.links[pair]:
                    self._process(pair[0], pair[1], self.links[pair].pop(0))
                    moved = True
            if not moved:
                break
        else:
            raise AssertionError("did not quiesce")
        for s, d in PAIRS:
            outbox = {
                e.id: e.state for e in self.stores[s].outbox(limit=10_000) if e.to_node == NODES[d].node_id
            }
            assert len(outbox) == len(self.sent[(s, d)])
            got = self.inbox_from(d, s)
            want = [m for m in self.sent[(s, d)] if outbox[m] is not OutState.EXPIRED or m in got]
            assert got == want, "lost or reordered"
            for mid, state in outbox.items():
                assert state is not OutState.QUEUED, f"{mid} still queued after healing"
                if self.stores[d].get(mid) is not None and self.stores[d].get(mid).read:  # type: ignore[union-attr]
                    assert state is OutState.READ, f"{mid} read but the receipt never arrived"
        assert all(self.stores[i].receipts_for(n.node_id) is None for i in range(3) for n in NODES)


SIM = settings(
    max_examples=120,
    stateful_step_count=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMailMachine = MailMachine.TestCase
TestMailMachine.settings = SIM


@given(
    names=st.lists(st.text(), max_size=4),
    subject=st.text(),
    body=st.text(),
    reply=st.text(max_size=20),
    flag=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_the_fast_json_encoding_is_json_dumps_byte_for_byte(
    names: list[str], subject: str, body: str, reply: str, flag: bool
) -> None:
    # Stored send-key digests and recipient lists were made with json.dumps: a retry after an upgrade must
    # find the same digest, and the reader (json.loads) the same names.
    parts: list[list[str] | str | bool] = [names, subject, body, reply, flag]
    assert mb.json_list(parts) == json.dumps(parts).encode()
    assert mb.json_strings(names) == json.dumps(names)
    assert json.loads(mb.json_strings(names)) == names


@given(
    names=st.lists(st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True), min_size=1, max_size=4, unique=True),
    subject=st.text(),
    body=st.text(),
    reply=st.text(max_size=20),
    flag=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_the_send_digest_is_the_stored_format(
    names: list[str], subject: str, body: str, reply: str, flag: bool
) -> None:
    # A digest stored with a key (kept 24 h) is compared with the retry's: its format is fixed, whichever
    # version made it.
    rcpts = tuple(Recipient(f"n{i}", n) for i, n in enumerate(names))
    out = mb.Outgoing(rcpts, subject, body, 0, reply, flag)  # the size is not part of the digest
    to = ["*"] if flag else sorted(names)
    want = hashlib.sha256(json.dumps([to, subject, body, reply, flag]).encode()).hexdigest()[:32]
    assert mb.send_digest(out) == want


_SEND_ITEMS = st.lists(
    st.builds(
        mb.SendItem,
        st.one_of(st.none(), st.text(max_size=5)),
        st.text(max_size=10),
        st.text(max_size=20),
        st.one_of(st.none(), st.text(max_size=5)),
        st.one_of(st.none(), st.text(max_size=5)),
    ),
    max_size=6,
)
"""A send_many's items: broadcasts (to None), empty and odd texts, reply ids and keys or none."""


@given(_SEND_ITEMS)
@settings(max_examples=300, deadline=None)
def test_the_batch_digest_is_the_stored_format(items: list[mb.SendItem]) -> None:
    # Stored with a batch's key and compared with a retry's: its bytes are fixed, whichever version made it.
    text = "\x00".join(
        f"{'' if it.to is None else it.to}\x01{1 if it.to is None else 0}\x01{it.subject}\x01{it.body}"
        f"\x01{it.reply_to or ''}\x01{it.key or ''}"
        for it in items
    )
    assert mb.batch_digest(items) == hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def test_every_lazy_mailbox_name_is_its_submodules_object() -> None:
    import importlib

    import mesh.core.mailbox as pkg

    for name, where in pkg._WHERE.items():
        assert getattr(pkg, name) is getattr(importlib.import_module(where), name), name


def test_outgoing_again_checks_what_outgoing_checks_but_the_recipient() -> None:
    from mesh.core.mailbox import outgoing_again
    from mesh.errors import InvalidInput, LimitExceeded

    a, b = NODES[0], NODES[1]
    first = outgoing([b], "hi", "one", sender_node=a.node_id)
    again = outgoing_again(first, "re", "two", in_reply_to="s-1", key="k-2")
    assert again == outgoing([b], "re", "two", sender_node=a.node_id, in_reply_to="s-1", key="k-2")
    with pytest.raises(InvalidInput):
        outgoing_again(first, "bad\x07subject", "x")
    with pytest.raises(InvalidInput):
        outgoing_again(first, "hi", "x", in_reply_to="not an id")
    with pytest.raises(InvalidInput):
        outgoing_again(first, "hi", "x", key="bad key")
    with pytest.raises(LimitExceeded):
        outgoing_again(first, "hi", "x" * (10 * 1024 * 1024))
    with pytest.raises(InvalidInput):
        outgoing_again(outgoing([b], "all", "x", sender_node=a.node_id, broadcast=True), "hi", "x")


@given(_SEND_ITEMS)
@settings(max_examples=200, deadline=None)
def test_a_batch_as_columns_has_the_digest_of_its_items(items: list[mb.SendItem]) -> None:
    # A columnar SendBatch's retry and an items one are the same batch to its key.
    assert mb.batch_digest(mb.columns_of(items)) == mb.batch_digest(items)


@given(
    st.lists(
        st.tuples(
            st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(["", " ", "a\x07", "s\n"]),
            st.text(max_size=20) | st.sampled_from(["\x00", "é" * 3, "\ud800"]),
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=400, deadline=None)
def test_outgoing_many_is_outgoing_again_for_each_text_or_declines(texts: list[tuple[str, str]]) -> None:
    # Column-wise checks never accept a text `outgoing_again` refuses, and build what it builds.
    from mesh.core.mailbox import outgoing_again, outgoing_many
    from mesh.errors import MeshError

    a, b = NODES[0], NODES[1]
    first = outgoing([b], "hi", "one", sender_node=a.node_id)
    subjects, bodies = [s for s, _ in texts], [x for _, x in texts]
    made = outgoing_many(first, subjects, bodies)
    each: list[mb.Outgoing | None] = []
    for s, x in texts:
        try:
            each.append(outgoing_again(first, s, x))
        except MeshError:
            each.append(None)
    # small texts: declined exactly when one of them is refused
    assert made == (None if None in each else each)


def test_outgoing_many_declines_a_batch_with_a_text_over_its_limits() -> None:
    from mesh.core.mailbox import outgoing_many

    a, b = NODES[0], NODES[1]
    first = outgoing([b], "hi", "one", sender_node=a.node_id)
    assert outgoing_many(first, ["ok", "ok"], ["x", "x" * (mb.BODY_MAX + 1)]) is None
    assert outgoing_many(first, ["ok", "s" * (mb.SUBJECT_MAX + 1)], ["x", "x"]) is None
    assert outgoing_many(first, ["ok"], ["x", "y"]) is None  # columns of different lengths
    got = outgoing_many(first, ["one", "two"], ["x", "é"])
    assert got is not None and [o.size for o in got] == [4, 5] and got[0].recipients is first.recipients


def test_send_columns_pick_takes_the_places_asked_in_order() -> None:
    cols = mb.SendColumns(["a", None, "c", "d"], ["s0", "s1", "s2", "s3"], ["b0", "b1", "b2", "b3"],
                          ["", "r1", "", ""], ["k0", "", "", "k3"])  # fmt: skip
    run, gaps = cols.pick([1, 2]), cols.pick([0, 3])
    assert list(run.to) == [None, "c"] and list(run.reply_tos) == ["r1", ""] and len(run) == 2
    assert list(gaps.subjects) == ["s0", "s3"] and list(gaps.bodies) == ["b0", "b3"]
    assert list(gaps.keys) == ["k0", "k3"] and len(cols.pick([])) == 0
