"""The page's pure rules: how messages show (and whose bodies), how outbox entries group, member order."""

from __future__ import annotations

from mesh.core.mailbox import InboxMessage, OutboxEntry, OutState
from mesh.views import MemberView
from mesh.web import feed


def out(mid: str, to: str, state: OutState, broadcast: bool = False, sent: float = 100.0) -> OutboxEntry:
    return OutboxEntry(
        id=mid, to_node="n-" + to, to_name=to, seq=1, subject="standup", body="secret body", sent_at=sent,
        in_reply_to="", broadcast=broadcast, state=state, changed_at=sent,
    )  # fmt: skip


def inbox(mid: str, body: str, read: bool = False) -> InboxMessage:
    return InboxMessage(
        local_seq=1, id=mid, from_node="n-b", from_name="b", to_name="a", subject="i-match", body=body,
        sent_at=200.0, received_at=200.1, in_reply_to="", broadcast=False, read_at=201.0 if read else None,
    )  # fmt: skip


def test_a_broadcast_is_one_row_with_its_recipients_states_and_no_body() -> None:
    rows = feed._outbox_rows(
        [out("m-1", "b", OutState.READ, True), out("m-1", "c", OutState.QUEUED, True),
         out("m-1", "d", OutState.READ, True), out("m-2", "b", OutState.DELIVERED)]
    )  # fmt: skip
    shown = [feed._public_message(r, "a") for r in rows]
    assert [(m["from"], m["to"], m["state"]) for m in shown] == [
        ("a", "all (3)", "1 queued, 2 read"),
        ("a", "b", "delivered"),
    ]
    assert all("body" not in m for m in shown)  # what this session sent: subject and state only


def test_a_received_message_shows_its_body_bounded() -> None:
    long = "x" * (feed.BODY_MAX + 10)
    m = feed._public_message(feed._inbox_entry(inbox("m-9", long)), "a")
    assert (m["from"], m["to"], m["subject"], m["state"]) == ("b", "a", "i-match", "unread")
    assert len(m["body"]) == feed.BODY_MAX and m["truncated"] is True
    assert feed._public_message(feed._inbox_entry(inbox("m-8", "hi", read=True)), "a")["state"] == "read"


def test_sessions_keep_their_place_while_alive_or_suspect_and_the_gone_go_last() -> None:
    def view(name: str, state: str) -> MemberView:
        return MemberView(name=name, node_id=name, role="", state=state, action="", target="", phase="",
                          progress=0, note="", last_seen=0.0)  # fmt: skip

    ms = [view("d", "left"), view("c", "dead"), view("b", "suspect"), view("a", "alive"), view("e", "alive")]
    assert [m.name for m in sorted(ms, key=feed._member_order)] == ["a", "b", "e", "c", "d"]


def test_doing_text() -> None:
    m = MemberView(name="a", node_id="a", role="", state="alive", action="build", target="i-match",
                   phase="tests", progress=40, note="going well", last_seen=0.0)  # fmt: skip
    assert feed._doing_text(m) == "build i-match · tests 40% — going well"
