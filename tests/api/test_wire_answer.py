"""One rule for an answer of the hook wire's `api` op, the same in both wire clients (the Client's async lane
and meshctl's blocking WireClient): a classed error is the node's verdict; a classless one is the wire's own
refusal, and only "unknown op 'api'" means an older node (ask gRPC, not this wire again)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from mesh._transport import wirecodec
from mesh.client import _Unanswered, _WireLane
from mesh.core.errors import ClaimDenied, MeshError, NodeUnavailable, UnknownRecipient
from mesh.views import Sent
from mesh.wireclient import NO_API_OP, _Wire

OLDER = {"error": "unknown op 'api'; ops: check, heartbeat"}
REFUSED = {"error": "request longer than 1048576 bytes"}
FAULT = {"error": "api failed inside the node (see its log)"}
VERDICT = {"error": "no session named 'zed'", "class": "UnknownRecipient"}
SENT = {"ok": True, "result": {"id": "s-1", "recipients": ["b"]}}


def test_a_result_is_decoded_as_its_verb_returns_it() -> None:
    assert wirecodec.answer("send", SENT) == Sent("s-1", ("b",))
    assert wirecodec.answer("send", {"ok": True, "item": SENT["result"]}, "item") == Sent("s-1", ("b",))


def test_a_classed_error_is_the_nodes_verdict() -> None:
    with pytest.raises(UnknownRecipient, match="zed"):
        wirecodec.answer("send", VERDICT)
    denied = {"error": "held", "class": "ClaimDenied", "holder": "x", "expires_at": 5.0}
    with pytest.raises(ClaimDenied) as got:
        wirecodec.answer("claim_once", denied)
    assert got.value.holder == "x"


def test_only_an_unknown_api_op_means_an_older_node() -> None:
    with pytest.raises(NodeUnavailable) as got:
        wirecodec.answer("send", OLDER)
    assert got.value.args == (NO_API_OP,)
    for refusal in (REFUSED, FAULT, {"error": "not a JSON object", "class": ""}):
        with pytest.raises(NodeUnavailable) as got:
            wirecodec.answer("send", refusal)
        assert got.value.args != (NO_API_OP,)
        assert "refused the request" in str(got.value)


@pytest.mark.parametrize("bad", [None, [], "x", 3])
def test_anything_but_an_object_is_no_answer(bad: Any) -> None:
    with pytest.raises(NodeUnavailable, match="not a JSON object"):
        wirecodec.answer("send", bad)


def _serve(path: Path, reply: dict[str, Any]) -> threading.Thread:
    """A wire that answers every request line with `reply`, on a private socket of this user."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)

    def run() -> None:
        with srv:
            conn, _ = srv.accept()
            with conn:
                buf = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    while b"\n" in buf:
                        _, _, buf = buf.partition(b"\n")
                        conn.sendall(json.dumps(reply).encode() + b"\n")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def wire_dir(tmp_path: Path) -> Path:
    d = tmp_path / "w"
    d.mkdir()
    os.chmod(d, 0o700)
    return d


CASES = [
    # reply, what the blocking client raises, lane: raises _Unanswered?, lane broken afterwards?
    (OLDER, NodeUnavailable, True, True),
    (REFUSED, NodeUnavailable, True, False),
    (FAULT, NodeUnavailable, True, False),
    (VERDICT, UnknownRecipient, False, False),
]


@pytest.mark.parametrize(("reply", "raised", "unanswered", "broken"), CASES)
def test_both_clients_read_an_answer_alike(
    wire_dir: Path, reply: dict[str, Any], raised: type[MeshError], unanswered: bool, broken: bool
) -> None:
    args = {"to": "b", "subject": "s", "body": "x"}
    blocking = wire_dir / "blocking.sock"
    _serve(blocking, reply)
    w = _Wire(str(blocking))
    try:
        with pytest.raises(raised) as got:
            w.call("send", args, 5.0)
    finally:
        w.close()
    assert (got.value.args == (NO_API_OP,)) == (reply is OLDER)

    lane_sock = wire_dir / "lane.sock"
    _serve(lane_sock, reply)

    async def lane_call() -> _WireLane:
        lane = _WireLane(lane_sock)
        try:
            if unanswered:  # not a verdict: the Client asks again on its SendStream, same key
                with pytest.raises(_Unanswered):
                    await lane.call("send", args)
            else:
                with pytest.raises(raised):
                    await lane.call("send", args)
        finally:
            lane.close()
        return lane

    lane = asyncio.run(lane_call())
    assert lane.broken is broken


def test_both_clients_decode_a_result_alike(wire_dir: Path) -> None:
    blocking = wire_dir / "b.sock"
    _serve(blocking, SENT)
    w = _Wire(str(blocking))
    try:
        assert w.call("send", {"to": "b", "subject": "s", "body": "x"}, 5.0) == Sent("s-1", ("b",))
    finally:
        w.close()
    lane_sock = wire_dir / "l.sock"
    _serve(lane_sock, SENT)

    async def go() -> Any:
        lane = _WireLane(lane_sock)
        try:
            return await lane.call("send", {"to": "b", "subject": "s", "body": "x"})
        finally:
            lane.close()

    assert asyncio.run(go()) == Sent("s-1", ("b",))
