"""meshctl's renderers, on a fixed-width console (reproducible output)."""

from __future__ import annotations

import io
import time

from mesh.cli import output
from mesh.views import MemberView


def member(name: str, **kw: object) -> MemberView:
    base: dict[str, object] = dict(
        name=name,
        node_id="n-" + name,
        role="",
        state="alive",
        action="",
        target="",
        phase="",
        progress=0,
        note="",
        last_seen=time.time(),
    )
    base.update(kw)
    return MemberView(**base)  # type: ignore[arg-type]


def test_status_table_has_every_column_in_place() -> None:
    ms = [
        member(
            "s1",
            is_self=True,
            steward=True,
            action="build",
            target="i-match",
            phase="tests",
            progress=40,
            claims=(("service/i-match", 7, time.time() + 60),),
        ),
        member("s2", state="dead", note="gone"),
    ]
    buf = io.StringIO()
    output.console(file=buf, width=200).print(output.members_table(ms))
    lines = [ln for ln in buf.getvalue().splitlines() if "s1" in ln or "s2" in ln]
    row1 = [c.strip() for c in lines[0].split("│")[1:-1]]
    assert row1 == [
        "s1 * (steward)",
        "",
        "alive",
        "build",
        "i-match",
        "tests",
        "40%",
        "",
        "service/i-match",
        "",
        "now",
    ]
    row2 = [c.strip() for c in lines[1].split("│")[1:-1]]
    assert row2[2] == "dead" and row2[7] == "gone" and row2[8] == ""


def test_plain_rows_and_state_markdown() -> None:
    ms = [member("s1", claims=(("task/t1", 3, time.time() + 60),), progress=5, action="x")]
    buf = io.StringIO()
    output.plain_members(ms, buf)
    assert buf.getvalue().split("\t")[:3] == ["s1", "", "alive"] and "task/t1" in buf.getvalue()
    md = output.state_markdown(ms, "s1", "m")
    assert "| s1 |" in md and "`task/t1`" in md and "## Claims" in md
