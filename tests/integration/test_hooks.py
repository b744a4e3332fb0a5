"""Agent hooks driven exactly as the agents drive them, against real nodes.

`meshctl hooks install` writes the agent's settings file; each test reads the commands back from that file
and runs them the way the agent does (`sh -c COMMAND`, the documented event JSON on stdin, the agent's
environment variables), then parses stdout as the agent parses it. The sessions' nodes are the ones the
SessionStart hooks start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mesh import limits
from tests.integration.harness import Mesh, until, wait_pid_gone

# The agent's name for each canonical piece.
EVENT = {
    "claude-code": {"start": "SessionStart", "prompt": "UserPromptSubmit", "pre": "PreToolUse",
                    "post": "PostToolUse", "end": "SessionEnd"},
    "codex": {"start": "SessionStart", "prompt": "UserPromptSubmit", "pre": "PreToolUse",
              "post": "PostToolUse"},
    "gemini": {"start": "SessionStart", "prompt": "BeforeAgent", "pre": "BeforeTool", "post": "AfterTool",
               "end": "SessionEnd"},
}  # fmt: skip
SETTINGS = {
    "claude-code": ".claude/settings.json",
    "codex": ".codex/hooks.json",
    "gemini": ".gemini/settings.json",
}


def install(mesh: Mesh, agent: str, project: Path, *extra: str) -> dict[str, str]:
    """Install the hooks with meshctl; return {agent event name: installed command}."""
    mesh.ctl("hooks", "install", "--agent", agent, "--dir", str(project), *extra)
    settings = json.loads((project / SETTINGS[agent]).read_text())
    commands = {}
    for event, groups in settings["hooks"].items():
        for g in groups:
            for h in g["hooks"]:
                commands[event] = h["command"]
    return commands


@dataclass
class Verdict:
    """The hook's answer, read as the agent reads it."""

    code: int
    stdout: str
    stderr: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def denied(self) -> bool:
        if self.code == 2:
            return True
        hso = self.data.get("hookSpecificOutput") or {}
        return hso.get("permissionDecision") == "deny" or self.data.get("decision") in ("deny", "block")

    @property
    def reason(self) -> str:
        if self.code == 2:
            return self.stderr
        hso = self.data.get("hookSpecificOutput") or {}
        return str(hso.get("permissionDecisionReason") or self.data.get("reason") or "")

    @property
    def context(self) -> str:
        return str((self.data.get("hookSpecificOutput") or {}).get("additionalContext") or "")


@dataclass
class Session:
    """One agent session in a project: its session id and how it runs its hooks."""

    mesh: Mesh
    agent: str
    project: Path
    commands: dict[str, str]
    sid: str = field(default_factory=lambda: str(uuid.uuid4()))
    env_file: Path | None = None

    @property
    def node(self) -> str:
        return f"{self.project.name}-{self.sid.replace('-', '')[:8]}"

    def env(self) -> dict[str, str]:
        env = self.mesh.env()
        if self.agent == "claude-code":
            env["CLAUDE_PROJECT_DIR"] = str(self.project)
            if self.env_file is not None:
                env["CLAUDE_ENV_FILE"] = str(self.env_file)
        elif self.agent == "gemini":
            env.update(GEMINI_PROJECT_DIR=str(self.project), GEMINI_CWD=str(self.project),
                       GEMINI_SESSION_ID=self.sid, CLAUDE_PROJECT_DIR=str(self.project))  # fmt: skip
        return env

    def payload(self, piece: str, **fields: Any) -> dict[str, Any]:
        event = EVENT[self.agent][piece]
        base: dict[str, Any] = {"session_id": self.sid, "cwd": str(self.project), "hook_event_name": event}
        if self.agent == "gemini":
            base |= {"transcript_path": "/tmp/t.json", "timestamp": "2026-11-30T12:00:00Z"}
        else:
            base |= {"transcript_path": "/tmp/t.jsonl", "permission_mode": "default"}
        if self.agent == "codex":
            base |= {"model": "gpt-5-codex", "turn_id": "turn-1"}
        return base | fields

    def run(self, piece: str, **fields: Any) -> Verdict:
        event = EVENT[self.agent][piece]
        self.mesh.homes.add(self.mesh.home)
        r = subprocess.run(
            ["sh", "-c", self.commands[event]],
            input=json.dumps(self.payload(piece, **fields)),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        v = Verdict(r.returncode, r.stdout, r.stderr)
        if r.stdout.strip():
            v.data = json.loads(r.stdout)  # all three agents parse stdout as one JSON object
        return v

    def edit(self, rel: str) -> Verdict:
        """The agent is about to write `rel` (its own edit tool, its own tool-input shape)."""
        path = str(self.project / rel)
        if self.agent == "claude-code":
            return self.run("pre", tool_name="Edit", tool_use_id="toolu_1",
                            tool_input={"file_path": path, "old_string": "a", "new_string": "b"})  # fmt: skip
        if self.agent == "codex":
            patch = f"*** Begin Patch\n*** Update File: {rel}\n@@\n-a\n+b\n*** End Patch\n"
            return self.run(
                "pre", tool_name="apply_patch", tool_use_id="call_1", tool_input={"command": patch}
            )
        return self.run("pre", tool_name="replace",
                        tool_input={"file_path": path, "old_string": "a", "new_string": "b"})  # fmt: skip

    def prompt(self) -> Verdict:
        return self.run("prompt", prompt="go on")


def claims_ready(mesh: Mesh, *nodes: str) -> None:
    """Wait until these nodes know the steward set (a claim before that is refused: no quorum yet)."""
    for n in nodes:
        until(lambda n=n: json.loads(mesh.ctl("stewards", "--json", node=n).stdout)["stewards"],
              what=f"{n} knows the stewards")  # fmt: skip


def claims_seen_by(mesh: Mesh, node: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(mesh.ctl("claims", "--json", node=node).stdout)
    return out


def node_running(mesh: Mesh, name: str) -> bool:
    return (mesh.home / "meshes" / mesh.name / "nodes" / name / "node.json").exists()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "shop"
    (p / "src" / "app").mkdir(parents=True)
    return p


@pytest.mark.parametrize("agent", ["claude-code", "codex", "gemini"])
def test_two_sessions_claim_deny_release_allow_message_once(mesh: Mesh, project: Path, agent: str) -> None:
    a = Session(mesh, "claude-code", project, install(mesh, "claude-code", project))
    b = Session(mesh, agent, project, a.commands if agent == "claude-code" else install(mesh, agent, project))
    a.env_file = project / "a.env"

    # Session start: each session gets its own node and a digest in its context.
    va = a.run("start", source="startup")
    assert va.code == 0 and va.context.startswith(f"[session mesh] You are session {a.node!r}")
    assert len(va.context.encode()) <= 1024
    assert f"export MESH_NODE='{a.node}'" in (project / "a.env").read_text()  # meshctl in A's shell
    vb = b.run("start", source="startup")
    assert vb.code == 0 and f"You are session {b.node!r}" in vb.context
    until(lambda: mesh.states(b.node).get(a.node) == "alive", what="B sees A")
    claims_ready(mesh, a.node, b.node)

    # A says what it does and claims the glob src/app/**/*.py: B's edit of a file under it is refused at
    # once (the pre-edit check asks the stewards, not the published views), naming A.
    mesh.ctl("heartbeat", "--action", "refactor", "--target", "app", node=a.node)
    until(lambda: mesh.status(b.node)[a.node]["action"] == "refactor", what="B sees what A does")
    mesh.ctl("claim", "path", "src/app/**/*.py", "--ttl", "2h", node=a.node)
    denied = b.edit("src/app/models.py")
    assert denied.code == 0 and denied.denied, denied
    assert a.node in denied.reason and "refactor app" in denied.reason and "until" in denied.reason
    assert b.edit("README.md").denied is False  # outside the claim
    assert b.edit("src/app/notes.txt").denied is False  # under src/app, but not matched by the glob
    assert a.edit("src/app/models.py").denied is False  # the holder itself may edit

    # A releases: B may edit (once the stewards have A's release: it travels beside B's question).
    mesh.ctl("release", "path", "src/app/**/*.py", node=a.node)

    def edit_allowed() -> Any:
        v = b.edit("src/app/models.py")
        return None if v.denied else v

    allowed = until(edit_allowed, what="B may edit")
    assert allowed.code == 0 and not allowed.denied and allowed.stdout == ""

    # A message to B is injected into B's next turn once, and never again.
    mesh.ctl("send", b.node, "schema", "I renamed User.email to User.mail", node=a.node)
    until(lambda: json.loads(mesh.ctl("inbox", "--json", node=b.node).stdout), what="B's node has it")
    first = b.prompt()
    assert "I renamed User.email to User.mail" in first.context and a.node in first.context
    again = b.prompt()
    assert again.code == 0 and again.stdout == ""  # nothing new: nothing at all
    assert b.run("post", tool_name="Read" if agent == "claude-code" else "read_file",
                 tool_input={"file_path": str(project / "x")}).stdout == ""  # fmt: skip

    # Session end releases and leaves (Codex has no such event: its node follows the agent's process).
    mesh.ctl("claim", "path", "docs/**", node=b.node)
    if agent != "codex":
        assert b.run("end", reason="prompt_input_exit" if agent == "claude-code" else "exit").code == 0
        until(lambda: not node_running(mesh, b.node), what="B's node left")
        until(lambda: mesh.states(a.node)[b.node] == "left", what="A sees B leave")
        until(lambda: not claims_seen_by(mesh, a.node), what="B's claim is gone")


def test_prompt_and_post_tool_carry_new_claims_and_heartbeats(mesh: Mesh, project: Path) -> None:
    commands = install(mesh, "claude-code", project)
    a, b = Session(mesh, "claude-code", project, commands), Session(mesh, "claude-code", project, commands)
    a.run("start", source="startup")
    b.run("start", source="startup")
    until(lambda: mesh.states(b.node).get(a.node) == "alive", what="B sees A")
    claims_ready(mesh, a.node, b.node)
    # After a tool call, the session's status says what it did (action/target from the tool and file).
    v = a.run("post", tool_name="Edit", tool_input={"file_path": str(project / "src/app/x.py")},
              tool_response={"success": True})  # fmt: skip
    assert v.code == 0
    until(lambda: (mesh.status(b.node)[a.node]["action"], mesh.status(b.node)[a.node]["target"])
          == ("edit", "src/app/x.py"), what="A's heartbeat reaches B")  # fmt: skip
    # A claim by another session is news once.
    mesh.ctl("claim", "path", "src/app/**", node=a.node)
    until(lambda: claims_seen_by(mesh, b.node), what="B sees the claim")
    news = b.prompt()
    assert f"{a.node} claimed path/src/app/**" in news.context
    assert b.prompt().stdout == ""


def test_auto_claim_claims_the_edited_path(mesh: Mesh, project: Path) -> None:
    commands = install(mesh, "claude-code", project, "--auto-claim")
    a, b = Session(mesh, "claude-code", project, commands), Session(mesh, "claude-code", project, commands)
    a.run("start", source="startup")
    b.run("start", source="startup")
    until(lambda: mesh.states(b.node).get(a.node) == "alive", what="B sees A")
    claims_ready(mesh, a.node, b.node)
    assert not a.edit("src/app/models.py").denied
    held = until(lambda: claims_seen_by(mesh, b.node), what="B sees A's automatic claim")
    assert (held[0]["type"], held[0]["name"], held[0]["holder"]) == ("path", "src/app/models.py", a.node)
    v = b.edit("src/app/models.py")
    assert v.denied and a.node in v.reason


def test_fail_open_when_the_node_is_missing_or_stopped(mesh: Mesh, project: Path) -> None:
    s = Session(mesh, "claude-code", project, install(mesh, "claude-code", project))
    # No node for this session: allowed, and the person is told why — once per session.
    first = s.edit("src/app/x.py")
    assert first.code == 0 and not first.denied
    assert "no node named" in first.data["systemMessage"]
    assert s.edit("src/app/x.py").stdout == "" and s.prompt().stdout == ""
    # A node that does not answer (SIGSTOP): allowed after the deadline, with the reason, once.
    s2 = Session(mesh, "claude-code", project, s.commands)
    s2.run("start", source="startup")
    pid = json.loads((mesh.home / "meshes" / mesh.name / "nodes" / s2.node / "node.json").read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        v = s2.edit("src/app/x.py")
        assert v.code == 0 and not v.denied
        assert "did not answer within 0.8 s" in v.data["systemMessage"]
        assert s2.edit("src/app/x.py").stdout == ""
    finally:
        os.kill(pid, signal.SIGCONT)


def test_garbage_from_the_agent_never_breaks_it(mesh: Mesh, project: Path) -> None:
    commands = install(mesh, "claude-code", project)
    for stdin in ("", "not json", "[1, 2]", '{"tool_input": "x"}', '{"session_id": 5}'):
        r = subprocess.run(["sh", "-c", commands["PreToolUse"]], input=stdin, env=mesh.env(),
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        assert r.returncode == 0 and r.stderr == ""
        assert r.stdout == "" or "hookSpecificOutput" not in json.loads(r.stdout)


def test_node_follows_the_agent_process(mesh: Mesh, project: Path) -> None:
    """SessionStart starts the node with --watch-pid of the agent (not of the shell it runs hooks in)."""
    commands = install(mesh, "codex", project)
    sid = str(uuid.uuid4())
    agent = (
        "import json, subprocess, sys, time\n"
        f"r = subprocess.run(['sh', '-c', {commands['SessionStart']!r}], capture_output=True, text=True,\n"
        f"    input=json.dumps({{'session_id': {sid!r}, 'cwd': {str(project)!r},"
        " 'hook_event_name': 'SessionStart',"
        " 'source': 'startup', 'model': 'm', 'permission_mode': 'default', 'transcript_path': None}))\n"
        "print(r.stdout, flush=True)\n"
        "sys.stdin.read()\n"  # the agent runs until we close its stdin
    )
    proc = subprocess.Popen([sys.executable, "-c", agent], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=mesh.env(), text=True)  # fmt: skip
    mesh.homes.add(mesh.home)
    try:
        assert proc.stdout is not None
        out = json.loads(proc.stdout.readline())
        name = f"{project.name}-{sid.replace('-', '')[:8]}"
        assert f"You are session {name!r}" in out["hookSpecificOutput"]["additionalContext"]
        info = json.loads((mesh.home / "meshes" / mesh.name / "nodes" / name / "node.json").read_text())
        assert info["watch_pid"] == proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    wait_pid_gone(info["pid"], timeout=15)
    until(lambda: not node_running(mesh, name), what="the node left after its agent exited")


def test_hook_wire_refuses_bad_requests_and_keeps_its_cursor_across_restarts(mesh: Mesh) -> None:
    import socket

    mesh.up("w", "--no-mdns")
    mesh.up("v", "--no-mdns", "--peer", mesh.nodes["w"].address)
    until(lambda: mesh.states("w").get("v") == "alive")
    info = json.loads((mesh.home / "meshes" / mesh.name / "nodes" / "w" / "node.json").read_text())
    path = info["hook_socket"]
    assert os.stat(path).st_mode & 0o777 == 0o600

    def ask(*lines: bytes) -> list[dict[str, Any]]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"".join(lines))
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return [json.loads(x) for x in data.splitlines()]

    bad = ask(b"[]\n", b"{bad\n", b'{"op": 3}\n', b'{"op": "check"}\n',
              b'{"op": "check", "path": "/etc/x"}\n',
              b'{"op": "check", "path": "../x"}\n', b'{"op": "heartbeat", "progress": 101}\n',
              b'{"op": "heartbeat", "action": "a\\u0000b"}\n', b'{"op": "claim", "paths": ["src/[a"]}\n',
              b'{"op": "claim", "paths": []}\n', b'{"op": "delivered", "ids": "x"}\n',
              b'{"op": "digest", "mark": "yes"}\n', b"[" * 100_000 + b"\n", b'{"op": "info"}\n')  # fmt: skip
    assert [("error" in a) for a in bad] == [True] * 13 + [False]  # deep nesting too (a RecursionError)
    assert "leaves the project" in bad[5]["error"] and "never closed" in bad[8]["error"]
    pad = b"x" * (limits.HOOK_LINE_MAX + 6_000)
    too_long = ask(b'{"op": "info", "pad": "' + pad + b'"}\n', b'{"op": "info"}\n')
    assert len(too_long) == 1 and "longer than" in too_long[0]["error"]  # and the connection closed
    assert ask(b'{"op": "info"}\n')[0]["name"] == "w"  # the node is fine

    # A message is told once; the cursor is in the node's state dir, so a restart does not repeat it.
    mesh.ctl("send", "w", "hello", "first", node="v")
    until(lambda: json.loads(mesh.ctl("inbox", "--json", node="w").stdout))
    assert "first" in ask(b'{"op": "new"}\n')[0]["text"]
    mesh.ctl("down", node="w")
    mesh.up("w", "--no-mdns", "--peer", mesh.nodes["v"].address)  # same home and name: same node id
    until(lambda: mesh.states("w").get("v") == "alive")
    assert ask(b'{"op": "new"}\n')[0]["text"] == ""
    mesh.ctl("send", "w", "hello", "second", node="v")
    until(lambda: len(json.loads(mesh.ctl("inbox", "--json", node="w").stdout)) == 2)
    text = ask(b'{"op": "new"}\n')[0]["text"]
    assert "second" in text and "first" not in text


def test_hook_process_imports_only_the_standard_library(mesh: Mesh, project: Path) -> None:
    commands = install(mesh, "claude-code", project)
    s = Session(mesh, "claude-code", project, commands)
    s.run("start", source="startup")
    event = json.dumps(s.payload("pre", tool_name="Edit", tool_input={"file_path": str(project / "a.py")}))
    r = subprocess.run(["sh", "-c", commands["PreToolUse"].replace(" -I -S ", " -I -S -X importtime ")],
                       input=event, env=s.env(), capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0 and r.stdout == ""  # allowed: nobody claims anything
    imported = {
        line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")
    }
    assert "_socket" in imported and "json" in imported  # the measurement saw the hook's imports
    heavy = {m for m in imported if m.split(".")[0] in ("grpc", "google", "mesh", "mcp", "pydantic", "rich")}
    assert heavy == set(), heavy
    # By module (python -m mesh.hook) only the package's two small files come along.
    mod = subprocess.run([sys.executable, "-X", "importtime", "-m", "mesh.hook", "claude-code", "PreToolUse"],
                         input=event, env=s.env(), capture_output=True, text=True, timeout=30)  # fmt: skip
    mods = {
        line.split("|")[-1].strip() for line in mod.stderr.splitlines() if line.startswith("import time:")
    }
    assert {m for m in mods if m.split(".")[0] in ("grpc", "google", "mcp", "rich")} == set()
    assert {m for m in mods if m.startswith("mesh")} <= {"mesh", "mesh._version", "mesh.hook"}
