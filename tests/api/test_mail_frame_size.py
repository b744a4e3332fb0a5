"""A mail batch packed as full as the sender's limits allow still fits one gRPC message on the peer link.

A batch over `limits.MAX_MESSAGE_BYTES` fails on the wire, and the link's go-back-N sends that same batch
again after every reconnect: one such batch would stall the link for good.
"""

from __future__ import annotations

import pytest

from mesh import limits
from mesh._proto import mesh_pb2 as pb
from mesh._transport import codec
from mesh._transport.codec import frame_of
from mesh.core.errors import LimitExceeded, ProtocolError
from mesh.core.mailbox import BATCH_MAX, BODY_MAX, SUBJECT_MAX, Envelope, MailBatch, batch_limit

LONG_ID = "i" * 64  # the longest node id, stream, message id and reply-to id
LONG_NAME = "n" * 64  # the longest session name


@pytest.mark.parametrize("columns", [False, True])
@pytest.mark.parametrize("per_message", [100, 1_000, 10_000, 10_400, 10_480, 30_000, BODY_MAX + SUBJECT_MAX])
def test_the_fullest_batch_fits_one_grpc_message(per_message: int, columns: bool) -> None:
    n = batch_limit([per_message] * (BATCH_MAX * 2), BATCH_MAX)
    subject = "s" * min(SUBJECT_MAX, per_message // 2)
    body = "b" * (per_message - len(subject))
    envs = tuple(
        Envelope(LONG_ID, 2**62 + i, LONG_NAME, LONG_NAME, subject, body, 1.7e9, LONG_ID, True)
        for i in range(n)
    )
    frame = frame_of([MailBatch(LONG_ID, LONG_ID, LONG_ID, 2**62, envs)], columns)
    assert bool(frame.mail.ids) is columns and bool(frame.mail.messages) is not columns
    assert frame.ByteSize() <= limits.MAX_MESSAGE_BYTES, (n, frame.ByteSize())


def test_the_same_claims_message_sent_to_every_steward_is_encoded_once() -> None:
    # A claimant's Propose goes to each steward (one frame_of per steward, the same message object): one
    # frame is built and shared; an equal but different message object gets a frame of its own.
    from mesh.core.lease import Propose

    m = Propose("service/x", 3, 7, "n/i", "me", 4.0, 60.0)
    first = codec.frame_of((m,))
    assert codec.frame_of((m,)) is first
    other = codec.frame_of((Propose("service/x", 3, 7, "n/i", "me", 4.0, 60.0),))
    assert other is not first and other == first
    assert codec.service_messages(first) == [m]


def test_a_mail_batch_crosses_the_codec_whole() -> None:
    # every field of every envelope, in order (the envelopes are built in place in the frame)
    envs = tuple(
        Envelope(
            f"aa-{i}", i, "alice", f"bob{i}", f"s{i}", "é" * i, 1.7e9 + i, "zz-1" if i % 2 else "", i == 2
        )
        for i in range(1, 4)
    )
    batch = MailBatch("nodeA", "nodeB", "aa", 1, envs)
    assert codec.batch_from_pb(codec.batch_to_pb(batch)) == batch
    # by column (to a peer whose Hello said mail_columns), through the wire's bytes, the same batch
    wire = codec.frame_of([batch], columns=True).SerializeToString()
    got = codec.service_messages(pb.PeerFrame.FromString(wire))
    assert got == [batch] and all(type(e) is Envelope for e in got[0].messages)  # type: ignore[attr-defined]


def test_a_columnar_batch_whose_columns_differ_is_the_peers_protocol_error() -> None:
    envs = tuple(Envelope(f"aa-{i}", i, "alice", "bob", "s", "b", 1.7e9, "", False) for i in range(1, 4))
    batch = MailBatch("nodeA", "nodeB", "aa", 1, envs)
    short = codec.batch_to_pb(batch, columns=True)
    del short.bodies[-1]
    with pytest.raises(ProtocolError, match="columns differ"):
        codec.batch_from_pb(short)
    both = codec.batch_to_pb(batch, columns=True)
    both.messages.add(id="aa-9", seq=9)
    with pytest.raises(ProtocolError, match="also carries envelopes"):
        codec.batch_from_pb(both)
    many = MailBatch("nodeA", "nodeB", "aa", 1, envs * (BATCH_MAX // 3 + 1))
    with pytest.raises(LimitExceeded):
        codec.batch_from_pb(codec.batch_to_pb(many, columns=True))
