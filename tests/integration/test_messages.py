"""Messages on real node processes: never lost, never shown twice, per-sender order, honest delivery state."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import FAST, Mesh, until

NO_MDNS = ["--no-mdns", *FAST]


def in_send_order(ids: list[str]) -> list[str]:
    """Concurrent sends are ordered by the sender's node as they arrive: id `<stream>-<n>` says the order."""
    return sorted(ids, key=lambda i: int(i.rsplit("-", 1)[1]))


def pair(mesh: Mesh) -> None:
    a = mesh.up("a", *NO_MDNS)
    mesh.up("b", *NO_MDNS, "--peer", a.address)
    until(lambda: mesh.states("a").get("b") == "alive" and mesh.states("b").get("a") == "alive")


def inbox(mesh: Mesh, node: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(mesh.ctl("inbox", "--json", "--limit", "10000", node=node).stdout)
    return out


def outbox(mesh: Mesh, node: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(mesh.ctl("outbox", "--json", "--limit", "10000", node=node).stdout)
    return out


async def _send_many(home: Path, mesh_name: str, node: str, to: str, n: int, tag: str) -> list[str]:
    from mesh.client import connect

    ids: list[str] = []
    async with await connect(node, mesh=mesh_name, home=home) as c:
        for start in range(0, n, 50):  # chunks: concurrent sends share a transaction
            chunk = range(start, min(n, start + 50))
            sent = await asyncio.gather(*(c.send(to, f"{tag} {i:05d}", "x" * 200) for i in chunk))
            ids += [s.id for s in sent]
    return ids


def test_send_inbox_outbox_and_read_receipt(mesh: Mesh) -> None:
    pair(mesh)
    r = json.loads(mesh.ctl("send", "b", "build", "i-match is green", "--json", node="a").stdout)
    assert r["queued"] and r["recipients"] == ["b"]
    msg = until(lambda: inbox(mesh, "b"), what="b has the message")[0]
    assert (msg["id"], msg["from"], msg["to"], msg["subject"], msg["body"]) == (
        r["id"],
        "a",
        "b",
        "build",
        "i-match is green",
    )
    assert msg["read"] is False and msg["in_reply_to"] is None
    assert mesh.status("b")["b"]["unread"] == 1
    until(lambda: mesh.status("a")["b"]["unread"] == 1, what="b's unread count reaches a")
    until(lambda: outbox(mesh, "a")[0]["state"] == "delivered", what="delivered (acked by b's node)")
    shown = json.loads(mesh.ctl("read", r["id"], "--json", node="b").stdout)
    assert shown["body"] == "i-match is green"
    until(lambda: outbox(mesh, "a")[0]["state"] == "read", what="the read receipt reached a")
    assert mesh.status("b")["b"]["unread"] == 0
    # A reply links to what it answers; the body can come from stdin.
    mesh.ctl("send", "a", "re: build", "-", "--reply-to", r["id"], node="b", input="thanks\n")
    reply = until(lambda: inbox(mesh, "a"))[0]
    assert reply["in_reply_to"] == r["id"] and reply["body"] == "thanks\n"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["send", "nobody", "s", "b"], "no session named 'nobody'"),
        (["send", "b", "", "body"], "subject is empty"),
        (["send", "b", "s", "x" * 70_000], "limit is 65536 bytes"),
        (["send", "b", "s"], "send takes TO SUBJECT BODY"),
    ],
)
def test_bad_messages_are_refused_and_queue_nothing(mesh: Mesh, args: list[str], needle: str) -> None:
    pair(mesh)
    r = mesh.ctl(*args, node="a", check=False)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert outbox(mesh, "a") == []


def test_send_many_from_json_lines_pipelines_every_line_in_order(mesh: Mesh) -> None:
    pair(mesh)
    lines = [
        {"to": "b", "subject": "one", "body": "first"},
        {"all": True, "subject": "all", "body": "to everyone"},
        {"to": "b", "subject": "keyed", "body": "once", "key": "k-1"},
        {"to": "b", "subject": "keyed", "body": "once", "key": "k-1"},  # a repeat: same id, queued once
        {"to": "nobody", "subject": "lost", "body": "no such session"},
        *({"to": "b", "subject": f"bulk {i:04d}", "body": "x" * 200} for i in range(1500)),
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n\n"
    r = mesh.ctl("send", "-", "--json", node="a", input=text, check=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == ["meshctl: message 5: no session named 'nobody' has been seen in "
                                             f"mesh {mesh.name!r} (see `meshctl status`; names are "
                                             "case-sensitive)"]  # fmt: skip
    answers = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(answers) == len(lines)
    assert answers[4]["error"] == "UnknownRecipient"
    assert answers[2]["id"] == answers[3]["id"]
    assert answers[1]["recipients"] == ["b"]
    ids = [a["id"] for i, a in enumerate(answers) if i not in (3, 4)]
    assert ids == in_send_order(ids)  # one stream, batches in order: queued in line order

    def all_in() -> list[dict[str, Any]] | None:
        got = inbox(mesh, "b")
        return got if len(got) == len(ids) else None

    got = until(all_in, timeout=60, what="every message in b's inbox")
    assert [m["id"] for m in got] == ids
    assert [m["subject"] for m in got[:3]] == ["one", "all", "keyed"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"to": "b", "subject": "s", "body": "b"}\nnot json\n', "stdin line 2: not a JSON object"),
        ('{"to": "b", "all": true, "subject": "s", "body": "b"}\n', 'stdin line 1: give "to"'),
        ('{"to": "b", "subject": "s"}\n', '"subject" and "body" are needed'),
        ('{"to": "b", "subject": "s", "body": "b", "colour": 1}\n', "unknown field 'colour'"),
        ('{"to": "b", "subject": "", "body": "b"}\n', "stdin line 1: subject is empty"),
        ("\n\n", "no messages on stdin"),
    ],
)
def test_send_many_refuses_a_bad_line_and_sends_nothing(mesh: Mesh, text: str, needle: str) -> None:
    pair(mesh)
    r = mesh.ctl("send", "-", node="a", input=text, check=False)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert outbox(mesh, "a") == []


def test_recipient_killed_mid_burst_gets_everything_once_in_order(mesh: Mesh) -> None:
    pair(mesh)
    n = 600

    async def burst_and_kill() -> list[str]:
        sending = asyncio.ensure_future(_send_many(mesh.home, mesh.name, "a", "b", n, "burst"))
        # Kill the recipient while messages are in flight (some delivered, some not).
        while len(inbox(mesh, "b")) < 50:
            await asyncio.sleep(0.01)
        mesh.signal("b", signal.SIGKILL)
        return await sending

    ids = asyncio.run(burst_and_kill())
    assert len(set(ids)) == n
    states = {e["state"] for e in outbox(mesh, "a")}
    assert "queued" in states  # b is dead: nothing more is claimed delivered
    mesh.up("b", *NO_MDNS, "--peer", mesh.nodes["a"].address)  # same name and home: same node, same inbox
    until(lambda: len(inbox(mesh, "b")) == n, timeout=60, what="all messages after b restarts")
    got = inbox(mesh, "b")
    assert [m["id"] for m in got] == in_send_order(ids)  # exactly once, in the sender's order
    until(lambda: {e["state"] for e in outbox(mesh, "a")} == {"delivered"}, what="all delivered")


async def _send_batched(home: Path, mesh_name: str, node: str, to: str, n: int, tag: str) -> list[str]:
    from mesh.client import connect
    from mesh.core.mailbox import SendItem
    from mesh.views import Sent

    async with await connect(node, mesh=mesh_name, home=home) as c:
        got = await c.send_many([SendItem(to, f"{tag} {i:05d}", "x" * 200) for i in range(n)])
    assert all(isinstance(g, Sent) for g in got), got
    return [g.id for g in got if isinstance(g, Sent)]


@pytest.mark.parametrize("batched", [False, True])
def test_sender_killed_with_a_queued_outbox_delivers_after_restart(mesh: Mesh, batched: bool) -> None:
    """SIGKILL right after the sends returned (Client.send, or Client.send_many's answers): each answered
    message was on disk at the sender, and is delivered once the sender is back."""
    pair(mesh)
    mesh.ctl("down", node="b")
    send = _send_batched if batched else _send_many
    ids = asyncio.run(send(mesh.home, mesh.name, "a", "b", 1500 if batched else 40, "queued"))
    assert {e["state"] for e in outbox(mesh, "a")} == {"queued"}
    mesh.signal("a", signal.SIGKILL)
    b = mesh.up("b", *NO_MDNS)
    mesh.up("a", *NO_MDNS, "--peer", b.address)
    until(lambda: len(inbox(mesh, "b")) == len(ids), timeout=30, what="the queued outbox is delivered")
    assert [m["id"] for m in inbox(mesh, "b")] == in_send_order(ids)


def test_paused_recipient_gets_messages_after_it_resumes(mesh: Mesh) -> None:
    pair(mesh)
    mesh.signal("b", signal.SIGSTOP)  # cut off: nothing it receives is processed, nothing is acked
    try:
        ids = asyncio.run(_send_many(mesh.home, mesh.name, "a", "b", 30, "cut"))
        until(lambda: mesh.states("a")["b"] in ("suspect", "dead"), what="a notices b is gone")
        assert {e["state"] for e in outbox(mesh, "a")} == {"queued"}
    finally:
        mesh.signal("b", signal.SIGCONT)
    until(lambda: len(inbox(mesh, "b")) == 30, timeout=30, what="delivered after the heal")
    assert [m["id"] for m in inbox(mesh, "b")] == in_send_order(ids)
    until(lambda: {e["state"] for e in outbox(mesh, "a")} == {"delivered"})


def test_broadcast_reaches_a_node_that_was_down(mesh: Mesh) -> None:
    a = mesh.up("a", *NO_MDNS)
    mesh.up("b", *NO_MDNS, "--peer", a.address)
    mesh.up("c", *NO_MDNS, "--peer", a.address)
    until(lambda: len([s for s in mesh.states("a").values() if s == "alive"]) == 3)
    mesh.ctl("down", node="c")
    r = json.loads(mesh.ctl("send", "--all", "standup", "in 5 minutes", "--json", node="b").stdout)
    assert sorted(r["recipients"]) == ["a", "c"]
    until(lambda: [m["id"] for m in inbox(mesh, "a")] == [r["id"]])
    mesh.up("c", *NO_MDNS, "--peer", a.address)
    got = until(lambda: inbox(mesh, "c"), what="c gets the broadcast when it returns")
    assert got[0]["id"] == r["id"] and got[0]["broadcast"] is True
    assert {(e["to"], e["state"]) for e in outbox(mesh, "b")} >= {("a", "delivered")}
    until(
        lambda: {(e["to"], e["state"]) for e in outbox(mesh, "b")} == {("a", "delivered"), ("c", "delivered")}
    )


def test_inbox_follow_streams_new_messages(mesh: Mesh) -> None:
    import subprocess

    from tests.integration.harness import MESHCTL

    pair(mesh)
    follower = subprocess.Popen(
        [*MESHCTL, "inbox", "--follow", "--json", "--node", "b"],
        env=mesh.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        mesh.ctl("send", "b", "live", "pushed to you", node="a")
        line = json.loads(follower.stdout.readline())
        assert (line["from"], line["subject"]) == ("a", "live")
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0


def test_partition_and_heal_delivers_everything_once(mesh: Mesh, tmp_path: Path) -> None:
    part = tmp_path / "partition"
    part.write_text("")
    mesh.extra_env["MESH_TEST_FAULTS"] = str(part)  # test-only hook: frames between groups are dropped
    pair(mesh)
    part.write_text("a\nb\n")  # a | b: the links stay open, nothing crosses them
    until(lambda: mesh.states("a")["b"] in ("suspect", "dead"), what="a stops hearing b")
    ids = asyncio.run(_send_many(mesh.home, mesh.name, "a", "b", 30, "part"))
    assert inbox(mesh, "b") == []
    assert {e["state"] for e in outbox(mesh, "a")} == {"queued"}  # nothing claimed delivered across a cut
    part.write_text("")  # heal
    until(lambda: len(inbox(mesh, "b")) == 30, timeout=30, what="delivered after the heal")
    assert [m["id"] for m in inbox(mesh, "b")] == in_send_order(ids)
    until(lambda: {e["state"] for e in outbox(mesh, "a")} == {"delivered"})


def test_client_send_many_answers_each_item_in_order(mesh: Mesh) -> None:
    """`Client.send_many` (mesh.connect): whole SendBatches of SEND_MAX; a bad item (refused by the client's
    own check, or by the node: an unknown recipient) fails alone with its own error, every other item gets
    its own id in order, a repeated key its first id, and the inbox holds each message once."""
    from mesh.client import connect
    from mesh.core.mailbox import SendItem
    from mesh.errors import InvalidInput, UnknownRecipient

    pair(mesh)
    items = [
        SendItem("b", "first", "one"),
        SendItem("b", "", "empty subject"),  # the client's check
        SendItem("nobody", "lost", "no such session"),  # the node's
        SendItem(None, "all", "to everyone", key="k-all"),
        *(SendItem("b", f"bulk {i:04d}", "x" * 200) for i in range(2100)),
        SendItem("nobody", "lost again", "the same unknown name, looked up once per batch"),
        SendItem("a", "self", "to its own sender"),
        SendItem(None, "all", "to everyone", key="k-all"),  # a repeat of its key, in another batch
    ]

    async def go() -> list[Any]:
        async with await connect("a", mesh=mesh.name, home=mesh.home) as c:
            return await c.send_many(items)

    got = asyncio.run(go())
    assert len(got) == len(items)
    assert isinstance(got[1], InvalidInput) and "subject" in str(got[1])
    assert isinstance(got[2], UnknownRecipient)
    assert isinstance(got[-3], UnknownRecipient) and "nobody" in str(got[-3])
    assert isinstance(got[-2], InvalidInput) and "yourself" in str(got[-2])
    assert got[-1] == got[3] and got[3].recipients == ("b",)
    ids = [s.id for i, s in enumerate(got[:-3]) if i not in (1, 2)]
    assert ids == in_send_order(ids) and len(set(ids)) == len(ids)

    def all_in() -> list[dict[str, Any]] | None:
        got = inbox(mesh, "b")
        return got if len(got) == len(ids) else None

    inb = until(all_in, timeout=60, what="every message in b's inbox")
    assert [m["id"] for m in inb] == ids
    assert [m["subject"] for m in inb[:3]] == ["first", "all", "bulk 0000"]


async def _stream(mesh: Mesh, node: str, *batches: Any) -> list[Any]:
    """The SendStream's answers to `batches` (SendBatch protobufs), spoken raw to `node`'s control socket."""
    import grpc

    from mesh._proto import mesh_pb2_grpc as pbg

    sock = json.loads(next(mesh.home.glob(f"meshes/*/nodes/{node}/node.json")).read_text())["socket"]
    async with grpc.aio.insecure_channel(f"unix:{sock}") as ch:
        call = pbg.ControlStub(ch).SendStream()
        out = []
        for b in batches:
            await call.write(b)
            out.append(await call.read())
        await call.done_writing()
        return out


def _columns(batch_key: str, to: list[str], /, **cols: list[Any]) -> Any:
    from mesh._proto import mesh_pb2 as pb

    batch = pb.SendBatch(key=batch_key)
    batch.columns.to.extend(to)
    for name, values in cols.items():
        getattr(batch.columns, name).extend(values)
    return batch


def test_a_columnar_send_batch_answers_each_item_and_once_for_a_repeat_of_its_key(mesh: Mesh) -> None:
    """A SendBatch as columns: runs of consecutive ids for its plain sends, a full answer (or the item's own
    error) for every other; sent again with its key (its answer lost), the same answers and nothing queued
    twice; a unary retry of one item naming the batch's key answers what the batch queued. An old-form
    batch (items) on the same stream is answered as before."""
    from mesh._proto import mesh_pb2 as pb
    from mesh._transport import api_codec
    from mesh.errors import InvalidInput, UnknownRecipient
    from mesh.views import Sent

    pair(mesh)
    to = ["b", "b", "", "nobody", "b", "b", "b"]
    n = len(to)
    subjects = [f"col {i}" for i in range(n)]
    subjects[5] = "bad\x07subject"
    batch = _columns(
        "colkey-1", to, subject=subjects, body=["x"] * n, all=[2],
        in_reply_to=[""] * n, key=[""] * 6 + ["own-key-6"],
    )  # fmt: skip
    # items the servicer itself refuses (no recipient; a recipient and all): each its own error
    malformed = _columns("colkey-2", ["", "b", "b"], subject=["s", "s", "t"], body=["x"] * 3, all=[1])
    old = pb.SendBatch(key="oldkey-1", items=[pb.SendRequest(to="b", subject="old", body="y")])
    first, again, bad, old_answer = asyncio.run(_stream(mesh, "a", batch, batch, malformed, old))
    got = api_codec.answers_from_pb(first, to)
    assert got is not None and list(first.results) == [] and again == first  # the repeat: the same answers
    assert [type(g) for g in got] == [Sent, Sent, Sent, UnknownRecipient, Sent, InvalidInput, Sent]
    assert "control characters" in str(got[5])
    assert got[2].recipients == ("b",) and got[0].recipients == got[6].recipients == ("b",)  # type: ignore[union-attr]
    ids = [g.id for g in got if isinstance(g, Sent)]
    assert ids == in_send_order(ids) and len(set(ids)) == 5
    assert list(first.answers.run_at) == [0, 4, 6] and list(first.answers.other_at) == [2, 3, 5]
    bad_got = api_codec.answers_from_pb(bad, ["", "b", "b"])
    assert (
        bad_got is not None and isinstance(bad_got[0], InvalidInput) and isinstance(bad_got[1], InvalidInput)
    )
    assert "a recipient name is needed" in str(bad_got[0]) and "not both" in str(bad_got[1])
    assert isinstance(bad_got[2], Sent)
    assert len(old_answer.results) == 1 and old_answer.results[0].sent.recipients == ["b"]

    async def unary_retry() -> Any:
        import grpc

        from mesh._proto import mesh_pb2_grpc as pbg

        sock = json.loads(next(mesh.home.glob("meshes/*/nodes/a/node.json")).read_text())["socket"]
        async with grpc.aio.insecure_channel(f"unix:{sock}") as ch:
            req = pb.SendRequest(to="b", subject="col 1", body="x", key="retry-1", batch_key="colkey-1",
                                 batch_index=1)  # fmt: skip
            return await pbg.ControlStub(ch).Send(req)

    assert asyncio.run(unary_retry()).id == got[1].id  # type: ignore[union-attr]
    more = [bad_got[2].id, old_answer.results[0].sent.id]
    want = len(ids) + len(more)  # the repeats queued nothing
    until(lambda: len(inbox(mesh, "b")) >= want, timeout=30, what="the batches in b's inbox")
    assert sorted(m["id"] for m in inbox(mesh, "b")) == sorted([*ids, *more])


@pytest.mark.parametrize(
    ("batch", "code", "needle"),
    [
        (dict(to=["b", "b"], subject=["s"], body=["x", "y"]), "INVALID_ARGUMENT", "differ in length"),
        (dict(to=["b"], subject=["s"], body=["x"], key=["k", "k2"]), "INVALID_ARGUMENT", "differ in length"),
        (dict(to=[""], subject=["s"], body=["x"], all=[3]), "INVALID_ARGUMENT", "broadcast index 3"),
        (dict(items=True, to=["b"], subject=["s"], body=["x"]), "INVALID_ARGUMENT", "items or columns"),
        (dict(to=["b"] * 1001, subject=["s"] * 1001, body=["x"] * 1001), "RESOURCE_EXHAUSTED", "1001 sends"),
    ],
)
def test_a_malformed_columnar_send_batch_is_refused_with_what_is_wrong(
    mesh: Mesh, batch: dict[str, Any], code: str, needle: str
) -> None:
    import grpc

    mesh.up("a", *NO_MDNS)
    with_items = batch.pop("items", False)
    b = _columns("badkey-1", batch.pop("to"), **batch)
    if with_items:
        b.items.add(to="b", subject="s", body="x")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        asyncio.run(_stream(mesh, "a", b))
    assert info.value.code() == getattr(grpc.StatusCode, code) and needle in (info.value.details() or "")
    assert json.loads(mesh.ctl("outbox", "--json", node="a").stdout) == []  # nothing queued


def test_a_client_sends_to_a_node_that_reads_no_columns_as_before(tmp_path: Path) -> None:
    """A node older than columnar SendBatches sees one as a batch of no items (and answers `results`): the
    client then sends its batches as SendRequests, and every send (Client.send_many's, concurrent
    Client.sends) is answered with its id and queued once."""
    from mesh.client import connect
    from mesh.core.mailbox import SendItem
    from mesh.views import Sent

    old = Mesh(home=tmp_path / "home", extra_env={"MESH_TEST_OLD_SEND_STREAM": "1"})
    try:
        pair(old)

        async def go() -> list[Any]:
            async with await connect("a", mesh=old.name, home=old.home) as c:
                many = c.send_many([SendItem("b", f"many {i:04d}", "x") for i in range(1500)])
                each = asyncio.gather(*(c.send("b", f"each {i:03d}", "y") for i in range(300)))
                got_many, got_each = await asyncio.gather(many, each)
                return [*got_many, *got_each]

        got = asyncio.run(go())
        assert all(isinstance(g, Sent) and g.recipients == ("b",) for g in got), got[:3]
        ids = [g.id for g in got]
        assert len(set(ids)) == len(ids) == 1800
        until(lambda: len(inbox(old, "b")) >= len(ids), timeout=60, what="every send in b's inbox")
        assert sorted(m["id"] for m in inbox(old, "b")) == sorted(ids)  # each once
    finally:
        old.cleanup()
