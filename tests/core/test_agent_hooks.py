"""Pure parts of the agent integration: settings merge, path rule, briefing texts, the hook's parsing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mesh import agents, briefing, hook
from mesh.errors import ConfigError
from mesh.views import MemberView

MESHCTL = [sys.executable, "-m", "mesh.cli.main"]

# ---------------------------------------------------------------------- settings merge


FOREIGN = {
    "permissions": {"allow": ["Bash(npm test)"]},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./guard.sh"}]}],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
    },
}


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")


@pytest.mark.parametrize("agent", agents.AGENTS)
def test_install_keeps_other_hooks_is_idempotent_and_uninstall_removes_only_ours(
    tmp_path: Path, agent: str
) -> None:
    path = agents.settings_path(agent, "project", tmp_path)
    write(path, FOREIGN)
    original = path.read_text()
    change = agents.plan(agent, path, install=True)
    assert change.changed and "+" in change.diff()
    assert path.read_text() == original  # planning writes nothing
    backup = agents.apply(change)
    assert backup is not None and backup.read_text() == original
    data = json.loads(path.read_text())
    assert data["permissions"] == FOREIGN["permissions"]
    assert data["hooks"]["Stop"] == FOREIGN["hooks"]["Stop"]
    pre = agents.SPECS[agent][2].event
    if pre == "PreToolUse":  # theirs first, ours after, both there
        assert data["hooks"]["PreToolUse"][0] == FOREIGN["hooks"]["PreToolUse"][0]
    commands = [h["command"] for gs in data["hooks"].values() for g in gs for h in g["hooks"]]
    assert sum("mesh/hook.py" in c for c in commands) == len(agents.SPECS[agent])
    # Installing again changes nothing (not even the formatting), and makes no second backup.
    installed = path.read_text()
    again = agents.plan(agent, path, install=True)
    assert not again.changed and again.diff() == ""
    assert agents.apply(again) is None and path.read_text() == installed
    # Uninstall leaves exactly what was there before (as data), and keeps the first backup.
    agents.apply(agents.plan(agent, path, install=False))
    assert json.loads(path.read_text()) == FOREIGN
    assert backup.read_text() == original
    assert not agents.plan(agent, path, install=False).changed


def test_install_updates_only_what_differs_and_pieces_can_be_left_out(tmp_path: Path) -> None:
    path = agents.settings_path("claude-code", "project", tmp_path)
    agents.apply(agents.plan("claude-code", path, install=True))
    only = agents.plan("claude-code", path, install=True, pieces=("start", "pre"), auto_claim=True)
    agents.apply(only)
    hooks = json.loads(path.read_text())["hooks"]
    assert sorted(hooks) == ["PreToolUse", "SessionStart"]
    assert hooks["PreToolUse"][0]["hooks"][0]["command"].endswith("PreToolUse --auto-claim")
    assert hooks["PreToolUse"][0]["matcher"] == "Edit|Write|MultiEdit|NotebookEdit"


def test_agent_formats() -> None:
    gem = agents.desired("gemini")
    assert gem["BeforeTool"][0]["matcher"] == "write_file|replace"
    assert gem["BeforeTool"][0]["hooks"][0]["name"] == "session-mesh-pre"
    assert gem["SessionStart"][0]["hooks"][0]["timeout"] == 30_000  # Gemini counts milliseconds
    codex = agents.desired("codex")
    assert "SessionEnd" not in codex and codex["PreToolUse"][0]["matcher"] == "apply_patch|Edit|Write"
    assert agents.desired("claude-code")["SessionStart"][0]["hooks"][0]["timeout"] == 30  # seconds


def test_settings_paths(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "h")}
    assert agents.settings_path("claude-code", "user", tmp_path, env) == tmp_path / "h/.claude/settings.json"
    assert agents.settings_path("codex", "user", tmp_path, env | {"CODEX_HOME": "/c"}) == Path(
        "/c/hooks.json"
    )
    assert agents.settings_path("gemini", "project", tmp_path, env) == tmp_path / ".gemini/settings.json"


@pytest.mark.parametrize("content", ["{not json", "[1]", '{"hooks": []}', '{"hooks": {"PreToolUse": {}}}'])
def test_bad_settings_file_is_refused_and_left_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(ConfigError):
        agents.plan("claude-code", path, install=True)
    r = subprocess.run(
        [*MESHCTL, "hooks", "install", "--agent", "claude-code", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert path.read_text() == content and not list(path.parent.glob("*.mesh-backup"))


def test_cli_dry_run_prints_a_diff_and_writes_nothing(tmp_path: Path) -> None:
    r = subprocess.run(
        [*MESHCTL, "hooks", "install", "--agent", "gemini", "--dir", str(tmp_path),
         "--dry-run"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("---") and '+    "BeforeTool": [' in r.stdout
    assert not (tmp_path / ".gemini").exists()


# ---------------------------------------------------------------------- briefing texts


def member(
    name: str, *, me: bool = False, state: str = "alive", claims: tuple = (), **kw: object
) -> MemberView:
    return MemberView(name=name, node_id=f"id-{name}", role=str(kw.get("role", "")), state=state,
                      action=str(kw.get("action", "")), target=str(kw.get("target", "")), phase="",
                      progress=0,
                      note="", last_seen=0.0, is_self=me, claims=claims)  # fmt: skip


def test_digest_stays_within_a_kilobyte() -> None:
    now = 1_800_000_000.0
    members = [member("me", me=True)] + [
        member(
            f"session-{i}", action="refactor", target="x" * 100, claims=((f"path/src/m{i}", i, now + 3600),)
        )
        for i in range(40)
    ]
    notes = [briefing.Note(f"s-{i}", "session-1", "subject", "body " * 200) for i in range(3)]
    text = briefing.digest("me", "default", members, notes, 9, now)
    assert len(text.encode()) <= briefing.DIGEST_BUDGET
    assert text.startswith("[session mesh] You are session 'me'") and "more lines" in text


def test_digest_and_news() -> None:
    now = 1_800_000_000.0
    a = member("a", action="build", target="api", claims=(("path/src/app", 7, now + 7200),))
    dead = member("d", state="dead", claims=(("path/lib", 3, now + 60),))
    text = briefing.digest("me", "m", [member("me", me=True), a, dead], [], 0, now)
    assert "- a: build api" in text and "path/src/app by a until" in text and "(in 2h00m)" in text
    assert " d" not in text.replace("mode", "")  # dead sessions and their claims are not shown
    assert briefing.news([], [], now) == ""
    n = briefing.news([briefing.Note("x-1", "a", "hi", "line\nbreak", True)], [], now)
    assert "from a (to all) [x-1] hi: line break" in n


# ---------------------------------------------------------------------- the hook process's own parsing


def test_patch_paths() -> None:
    patch = (
        "*** Begin Patch\n*** Update File: src/a.py\n@@\n-x\n+y\n*** Add File: docs/new.md\n+hi\n"
        "*** Update File: old.py\n*** Move to: new.py\n*** Delete File: gone.py\n*** End Patch\n"
    )
    assert hook.patch_paths(patch) == ["src/a.py", "docs/new.md", "old.py", "new.py", "gone.py"]


def test_node_names_are_stable_and_valid(tmp_path: Path) -> None:
    from mesh.core.validate import name as valid_name

    proj = tmp_path / "my project!"
    proj.mkdir()
    ev = {"session_id": "3f2a9c1b-aaaa-bbbb-cccc-000000000000", "cwd": str(proj)}
    n = hook.node_name("claude-code", ev, {"CLAUDE_PROJECT_DIR": str(proj)})
    assert n == "my-project-3f2a9c1b" and valid_name(n) == n
    assert hook.node_name("codex", ev, {"MESH_NODE": "mine"}) == "mine"
    assert hook.node_name("codex", {"session_id": "!!", "cwd": "/"}, {}).startswith("session-")


@pytest.mark.parametrize("xdg", [None, "/tmp/xdg-data"])
def test_default_home_matches_the_node_side(monkeypatch: pytest.MonkeyPatch, xdg: str | None) -> None:
    from mesh.paths import default_home

    monkeypatch.delenv("MESH_HOME", raising=False)
    if xdg:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)
    else:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    import os

    assert hook.default_home(dict(os.environ)) == str(default_home())


def test_events_and_switches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {"MESH_HOME": str(tmp_path), "MESH_HOOKS_OFF": "pre"}
    stdin = io.StringIO(
        json.dumps({"session_id": "s", "tool_name": "Edit", "tool_input": {"file_path": "/x"}})
    )
    assert hook.main(["claude-code", "PreToolUse"], stdin, env) == (0, "")  # switched off: not even a note
    assert hook.main(["claude-code", "Stop"], io.StringIO("{}"), {"MESH_HOME": str(tmp_path)}) == (0, "")
    assert hook.main(["nobody", "PreToolUse"], io.StringIO("{}"), {}) == (0, "")
    assert set(hook.EVENTS) == set(agents.AGENTS)
    for agent, specs in agents.SPECS.items():
        assert {s.event: s.piece for s in specs} == hook.EVENTS[agent]
