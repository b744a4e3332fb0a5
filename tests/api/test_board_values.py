"""The board's values across the control socket and on the CLI: what a Client rebuilds is what the Node
handed out, a 10,000-task board travels in chunks under the message limit, and the texts say what they
must."""

from __future__ import annotations

import time

from mesh import limits
from mesh._transport import api_codec
from mesh.cli import board_cmds
from mesh.core.board import Board, BoardView, Priority, RowState
from mesh.views import (
    BoardEvent,
    ClaimOverlap,
    MemberView,
    MeshStats,
    MilestoneDone,
    SessionUptime,
    role_table,
)

T0 = 1_700_000_000_000


def sample() -> tuple[Board, BoardView]:
    b = Board("0aaaaaaa")
    ms = b.add_milestone(T0, "Ship 1.0 — ünïcødé 😀", steps=["design", "build"], note="why\nand how")
    t1 = b.add_task(T0 + 1, "fix | the flaky test", priority="P0", milestone=ms.id, step="2", role="dev")
    b.add_task(T0 + 2, "write the tour", priority="P1", role="docs", note="README first")
    t3 = b.add_task(T0 + 3, "old idea", priority="P3")
    b.done(T0 + 4, t1.id)
    b.drop(T0 + 5, t3.id)
    t4 = b.add_task(T0 + 6, "claimed one", priority="P2")
    return b, b.view({t4.id: ("session-2", time.time() + 3600)}, include_dropped=True)


def test_a_board_survives_the_socket_as_it_was() -> None:
    _, view = sample()
    assert api_codec.board_from_chunks(api_codec.board_to_chunks(view)) == view
    for row in view.tasks():
        assert api_codec.task_row_from_pb(api_codec.task_row_to_pb(row)) == row
    for m in view.milestones:
        assert api_codec.milestone_from_pb(api_codec.milestone_to_pb(m)) == m
    empty = Board("0bbbbbbb").view()
    assert api_codec.board_from_chunks(api_codec.board_to_chunks(empty)) == empty


def test_ten_thousand_tasks_travel_in_chunks_under_the_limit() -> None:
    b = Board("0aaaaaaa")
    for k in range(10_000):
        b.add_task(
            T0 + k, ("é" * 150) if k % 7 == 0 else f"task {k}", priority=f"P{k % 4}", note="n" * (k % 2000)
        )
    view = b.view()
    chunks = list(api_codec.board_to_chunks(view))
    assert len(chunks) > 1
    assert all(c.ByteSize() < limits.MAX_MESSAGE_BYTES for c in chunks)
    back = api_codec.board_from_chunks(chunks)
    assert list(back.tasks()) == list(view.tasks())


def test_stats_and_board_events_survive_the_socket() -> None:
    s = MeshStats(
        since=1.0, until=2.0, refused=3, refused_by_item=(("task/x", 3),),
        overlaps=(ClaimOverlap("service/a", "s1", "s2", 1.2, 1.5),), replies=4, reply_p50=1.5, reply_p90=None,
        by_reply=3, by_read=1, unanswered=2, within_target=0.75, uptime=(SessionUptime("s1", 9.0, 10.0),),
        tasks_done=(MilestoneDone("", "", 2),),
    )  # fmt: skip
    assert api_codec.stats_from_pb(api_codec.stats_to_pb(s)) == s
    ev = BoardEvent("task.add", "task", "0aaaaaaa-1", "0aaa-1", "t", "open", True, 1.5, 1)
    assert api_codec.event_from_pb(api_codec.event_to_pb(ev)) == ev
    assert ev.kind == "board" and ev.to_json()["entity"] == "task"


def member(name: str, role: str, state: str) -> MemberView:
    return MemberView(name, "id-" + name, role, state, "", "", "", 0, "", 0.0)


def test_the_role_table_names_roles_without_a_live_session() -> None:
    _, view = sample()
    rows = role_table(
        [member("a", "dev", "alive"), member("b", "docs", "dead"), member("c", "dev", "suspect")],
        view.tasks(),
    )
    got = {r.role: r.to_json() for r in rows}
    assert got["dev"] == {
        "role": "dev", "live": ["a"], "away": ["c"], "covered": True, "open_tasks": 0, "claimed_tasks": 0
    }  # fmt: skip
    assert got["docs"]["covered"] is False and got["docs"]["open_tasks"] == 1 and got["docs"]["away"] == ["b"]


def test_board_texts() -> None:
    _, view = sample()
    rows = {r.title: r for r in view.tasks()}
    claimed = rows["claimed one"]
    assert claimed.state is RowState.CLAIMED and claimed.priority is Priority.P2
    assert board_cmds.state_text(claimed).startswith("claimed by session-2 until ")
    line = board_cmds.task_line(rows["fix | the flaky test"]).split("\t")
    assert line[0] == "P0" and line[2] == "done" and line[4].startswith("Ship 1.0")
    md = "\n".join(board_cmds.board_markdown(view))
    assert "### P0" in md and "fix \\| the flaky test" in md and "old idea" not in md  # dropped: not shown
    m = view.milestones[0]
    text = "\n".join(board_cmds.milestone_markdown(m, [rows["fix | the flaky test"]]))
    assert (
        "- [ ] 1. design (0/0)" in text and "- [x] 2. build (1/1)" in text and "1/1 tasks done (100%)" in text
    )


def test_stats_text_says_the_targets() -> None:
    s = MeshStats(1.0, 86401.0, 2, (("task/x", 2),), (), 0, None, None, 0, 0, 0, None, (), ())
    text = "\n".join(board_cmds.stats_text(s, "a"))
    assert "over the last 24h" in text and "2 collision(s) refused; 0 overlap(s) (target 0)" in text
    assert "target > 90%" in text and "none in the window" in text
