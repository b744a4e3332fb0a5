"""Agent hooks for Claude Code, Codex CLI and Gemini CLI: the process each hook event runs.

    <python> -I -S /path/to/mesh/hook.py AGENT EVENT [--auto-claim]      (what `meshctl hooks install` writes)
    python3 -m mesh.hook AGENT EVENT                                     (the same, by module)

The agent writes the event as JSON on stdin; this answers on stdout in that agent's documented shape and
always exits 0 (a deny is a JSON decision, never a crash). It imports the standard library only — no
gRPC, no protobuf, nothing from the rest of `mesh` — and talks to the session's node over the hook wire
(JSON lines on the node's private unix socket). If the node is missing or does not answer within
DEADLINE, the hook allows and says why once per session (a marker file), never on every call.

What each event does (canonical names; the agents' own names are in EVENTS):
    start   make sure this session has a node (`meshctl up --detach --watch-pid AGENT_PID`, named from the
            project dir and the agent's session id, or $MESH_NODE), then add the digest to the context
    prompt  add what is new since the last time (messages, claims by others); nothing when nothing is
    pre     before an edit: deny if another live session holds a claim on an overlapping path, naming it;
            with --auto-claim (or MESH_HOOK_AUTOCLAIM=1) claim the path for this session, else allow
    post    heartbeat (action/target from the tool; the node coalesces to one update per few seconds) and
            add new messages, if any
    end     release this session's claims and leave (lease expiry and --watch-pid are the backstops)
MESH_HOOKS_OFF=pre,post (any of start, prompt, pre, post, end) turns pieces off without reinstalling.
"""

from __future__ import annotations

# The hook's whole life is on the agent's clock: import what every run needs, and only that. `_socket` is
# the C module under `socket` (whose Python layer pulls in enum, selectors, …); hashlib and subprocess are
# imported where they are used (a note, the node's start).
import _socket
import json
import os
import sys
import time

TYPE_CHECKING = False  # typing itself costs a few ms at every hook run; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

AGENTS = ("claude-code", "codex", "gemini")
EVENTS: dict[str, dict[str, str]] = {
    "claude-code": {
        "SessionStart": "start",
        "UserPromptSubmit": "prompt",
        "PreToolUse": "pre",
        "PostToolUse": "post",
        "SessionEnd": "end",
    },
    # Codex has no session-end event: the node's --watch-pid of the agent is what releases there.
    "codex": {
        "SessionStart": "start",
        "UserPromptSubmit": "prompt",
        "PreToolUse": "pre",
        "PostToolUse": "post",
    },
    "gemini": {
        "SessionStart": "start",
        "BeforeAgent": "prompt",
        "BeforeTool": "pre",
        "AfterTool": "post",
        "SessionEnd": "end",
    },
}
EDIT_TOOLS = {
    "claude-code": ("Edit", "Write", "MultiEdit", "NotebookEdit"),
    "codex": ("apply_patch",),
    "gemini": ("write_file", "replace"),
}
ROLE = {"claude-code": "claude-code", "codex": "codex", "gemini": "gemini"}
PROJECT_ENV = {"claude-code": "CLAUDE_PROJECT_DIR", "gemini": "GEMINI_PROJECT_DIR", "codex": ""}

DEADLINE = 0.8  # s: a tool hook's whole conversation with the node (the agent must get "allow" within 1 s)
START_TIMEOUT = 20.0  # s: starting the node at session start (that event may take a few seconds)
STDIN_MAX = 32 * 1024 * 1024  # a Write's tool_input carries the whole file
ANSWER_MAX = 1024 * 1024
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "busybox"})
_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class WireError(Exception):
    """The node could not be asked (missing, not answering, or it refused)."""


# ---------------------------------------------------------------------- where things are


def default_home(env: dict[str, str]) -> str:
    """$MESH_HOME, else the platform's user data dir — the same place `mesh.paths.default_home` uses."""
    if env.get("MESH_HOME"):
        return os.path.expanduser(env["MESH_HOME"])
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "session-mesh")
    if sys.platform.startswith("win"):
        base = env.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, "session-mesh")
    base = env.get("XDG_DATA_HOME", "").strip() or os.path.join(home, ".local", "share")
    return os.path.join(base, "session-mesh")


def project_dir(agent: str, event: dict[str, Any], env: dict[str, str]) -> str:
    """The project root the agent works in: its project-dir variable, else the event's cwd."""
    var = PROJECT_ENV.get(agent, "")
    d = env.get(var, "") if var else ""
    cwd = event.get("cwd")
    return os.path.realpath(d or (cwd if isinstance(cwd, str) and cwd else os.getcwd()))


def session_id(event: dict[str, Any], env: dict[str, str]) -> str:
    sid = event.get("session_id")
    if isinstance(sid, str) and sid:
        return sid
    return env.get("GEMINI_SESSION_ID", "")


def node_name(agent: str, event: dict[str, Any], env: dict[str, str]) -> str:
    """$MESH_NODE, else `<project>-<first 8 of the session id>`: stable for the session (a resumed
    session gets the same name, so the same node id and inbox back), distinct between sessions."""
    if env.get("MESH_NODE"):
        return env["MESH_NODE"]
    base = _slug(os.path.basename(project_dir(agent, event, env))).strip("-._")[:40]
    sid = "".join(c for c in session_id(event, env) if c.isascii() and c.isalnum())[:8]
    if not sid:
        import hashlib

        sid = hashlib.sha256(session_id(event, env).encode()).hexdigest()[:8]
    return f"{base or 'session'}-{sid}"


def _slug(text: str) -> str:
    """Runs of characters a node name cannot hold become one '-'."""
    out: list[str] = []
    for c in text:
        if c in _NAME_OK:
            out.append(c)
        elif not out or out[-1] != "-":
            out.append("-")
    return "".join(out)


def node_file(home: str, mesh: str, name: str) -> str:
    return os.path.join(home, "meshes", mesh, "nodes", name, "node.json")


def hook_socket(home: str, mesh: str, name: str) -> str | None:
    """The node's hook-wire socket from its node.json (None: no such node running)."""
    try:
        with open(node_file(home, mesh, name)) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    s = d.get("hook_socket") if isinstance(d, dict) else None
    return s if isinstance(s, str) and s else None


def agent_pid(env: dict[str, str]) -> int:
    """The agent's process: our parent, skipping the shell the agent ran this command through."""
    if env.get("MESH_AGENT_PID", "").isdigit():
        return int(env["MESH_AGENT_PID"])
    pid = os.getppid()
    for _ in range(4):
        comm, ppid = _proc_stat(pid)
        if comm is None or comm not in SHELLS or ppid <= 1:
            break
        pid = ppid
    return pid


def _proc_stat(pid: int) -> tuple[str | None, int]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None, 0
    # comm is in parentheses and may itself contain spaces or parentheses: split at the last ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    return comm, int(fields[1]) if len(fields) > 1 else 0


# ---------------------------------------------------------------------- the wire


class Wire:
    """One connection to the node's hook wire; every call shares one deadline."""

    def __init__(self, path: str, deadline: float) -> None:
        self.deadline = deadline
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._buf = b""
        try:
            self.sock.settimeout(self._left())
            self.sock.connect(path)
        except (OSError, ValueError) as e:
            self.sock.close()
            raise WireError(f"cannot reach the node ({e.__class__.__name__})") from None

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise WireError("the node did not answer in time")
        return left

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        try:
            self.sock.settimeout(self._left())
            self.sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            while b"\n" not in self._buf:
                self.sock.settimeout(self._left())
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise WireError("the node closed the connection")
                self._buf += chunk
                if len(self._buf) > ANSWER_MAX:
                    raise WireError("the node's answer is too long")
        except TimeoutError:
            raise WireError(f"the node did not answer within {DEADLINE:g} s") from None
        except OSError as e:
            raise WireError(f"the node connection failed ({e.__class__.__name__})") from None
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            raise WireError("the node's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise WireError("the node's answer is not an object")
        if "error" in answer:
            raise WireError(str(answer["error"]))
        return answer

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------- one hook run


class Hook:
    """One hook event of one agent session."""

    def __init__(
        self, agent: str, event_name: str, event: dict[str, Any], env: dict[str, str], auto_claim: bool
    ) -> None:
        self.agent = agent
        self.event_name = event_name
        self.event = event
        self.env = env
        self.auto_claim = auto_claim
        self.home = default_home(env)
        self.mesh = env.get("MESH_MESH") or "default"
        self.name = node_name(agent, event, env)
        self.root = project_dir(agent, event, env)
        self.started = time.monotonic()
        self.out: dict[str, Any] = {}

    # -------------------------------------------------------------- output in the agent's shape

    def context(self, text: str) -> None:
        """Add `text` to the model's context (all three agents read hookSpecificOutput.additionalContext)."""
        if text:
            self.out["hookSpecificOutput"] = {"hookEventName": self.event_name, "additionalContext": text}

    def deny(self, reason: str) -> None:
        if self.agent == "gemini":
            self.out = {"decision": "deny", "reason": reason}
        else:
            # Claude Code and Codex: exactly these keys (Codex rejects a deny that carries additionalContext).
            self.out = {
                "hookSpecificOutput": {
                    "hookEventName": self.event_name,
                    "permissionDecision": "deny",
                    "permissionDecisionReason": reason,
                }
            }

    def note_once(self, key: str, text: str) -> None:
        """Tell the person (systemMessage) why the mesh is not helping — once per session and reason."""
        import hashlib

        said = os.path.join(self.home, "hooks", "said")
        digest = hashlib.sha256(f"{self.agent}|{session_id(self.event, self.env)}|{key}".encode()).hexdigest()
        try:
            os.makedirs(said, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(said, digest[:24]), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            return
        except OSError:
            pass  # cannot remember: saying it again beats never saying it
        self.out["systemMessage"] = text

    # -------------------------------------------------------------- helpers

    def wire(self, deadline: float | None = None) -> Wire:
        path = hook_socket(self.home, self.mesh, self.name)
        if path is None:
            raise WireError(f"no node named {self.name!r} is running (mesh {self.mesh!r})")
        return Wire(path, deadline if deadline is not None else self.started + DEADLINE)

    def relative(self, path: str) -> str | None:
        """`path` relative to the project root, `/`-separated; None if it lies outside the project."""
        cwd = self.event.get("cwd") if isinstance(self.event.get("cwd"), str) else self.root
        full = os.path.realpath(os.path.join(cwd or self.root, path))
        rel = os.path.relpath(full, self.root)
        if rel == "." or rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
            return None
        return rel.replace(os.sep, "/")

    def edited_paths(self) -> list[str]:
        """Project-relative paths the pending tool call writes (empty: not an edit of ours)."""
        tool = self.event.get("tool_name")
        ti = self.event.get("tool_input")
        if tool not in EDIT_TOOLS[self.agent] or not isinstance(ti, dict):
            return []
        raw: list[str] = []
        if self.agent == "codex":
            cmd = ti.get("command")
            raw = patch_paths(cmd) if isinstance(cmd, str) else []
        else:
            p = ti.get("notebook_path") if tool == "NotebookEdit" else ti.get("file_path")
            raw = [p] if isinstance(p, str) and p else []
        out = []
        for p in raw:
            rel = self.relative(p)
            if rel is not None and rel not in out:
                out.append(rel)
        return out

    # -------------------------------------------------------------- the events

    def start(self) -> None:
        note = ""
        if hook_socket(self.home, self.mesh, self.name) is None or not self._answers():
            note = self._start_node()
        try:
            w = self.wire(time.monotonic() + 3.0)
            try:
                d = w.call("digest")
            finally:
                w.close()
            self.context(str(d.get("text", "")))
            self._export_env()
        except WireError as e:
            self.context(
                f"[session mesh] This session has no mesh node ({note or e}); other sessions' claims are not "
                f"checked. Start one: meshctl up --name {self.name} --detach"
            )

    def _answers(self) -> bool:
        try:
            w = self.wire(time.monotonic() + 1.0)
            try:
                w.call("info")
            finally:
                w.close()
            return True
        except WireError:
            return False

    def _start_node(self) -> str:
        import subprocess

        cmd = [sys.executable, "-m", "mesh.cli.main", "up", "--name", self.name, "--role", ROLE[self.agent],
               "--detach", "--watch-pid", str(agent_pid(self.env))]  # fmt: skip
        env = dict(self.env)
        env["MESH_HOME"] = self.home
        try:
            r = subprocess.run(
                cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=START_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"meshctl up failed: {e.__class__.__name__}"
        if r.returncode != 0:
            return (r.stderr.strip().splitlines() or [f"meshctl up exited {r.returncode}"])[-1][:300]
        return ""

    def _export_env(self) -> None:
        """Claude Code: make `meshctl` in the session's shell talk to this session's node."""
        path = self.env.get("CLAUDE_ENV_FILE") if self.agent == "claude-code" else None
        if not path:
            return
        lines = [f"export MESH_NODE={_sh(self.name)}"]
        for var in ("MESH_HOME", "MESH_MESH"):
            if self.env.get(var):
                lines.append(f"export {var}={_sh(self.env[var])}")
        try:
            with open(path, "a") as f:
                f.write("\n".join(lines) + "\n")
        except OSError:
            pass

    def prompt(self) -> None:
        w = self.wire()
        try:
            self.context(str(w.call("new").get("text", "")))
        finally:
            w.close()

    def pre(self) -> None:
        paths = self.edited_paths()
        if not paths:
            return
        w = self.wire()
        try:
            for p in paths:
                c = w.call("check", path=p).get("conflict")
                if isinstance(c, dict):
                    self.deny(str(c.get("reason") or f"{p} is claimed by {c.get('holder')}"))
                    return
            if self.auto_claim:
                r = w.call("claim", files=paths)
                if not r.get("granted"):
                    c = r.get("conflict") or {}
                    self.deny(str(c.get("reason") or f"{', '.join(paths)} is claimed by another session"))
        finally:
            w.close()

    def post(self) -> None:
        action, target = tool_activity(self.agent, self.event, self)
        w = self.wire()
        try:
            if action:
                w.call("heartbeat", action=action, target=target)
            self.context(str(w.call("new").get("text", "")))
        finally:
            w.close()

    def end(self) -> None:
        w = self.wire(time.monotonic() + 1.0)
        try:
            w.call("leave", reason=f"{self.agent} session ended")
        finally:
            w.close()

    def run(self, canonical: str) -> None:
        try:
            getattr(self, canonical)()
        except WireError as e:
            if canonical in ("pre", "post", "prompt"):
                self.note_once(
                    "wire",
                    f"session mesh: {e}; edits are not checked against other sessions' claims and new "
                    f"messages are not shown (start the node: meshctl up --name {self.name} --detach).",
                )


# ---------------------------------------------------------------------- what a tool call did


def patch_paths(patch: str) -> list[str]:
    """Files an apply_patch body touches (`*** Add/Update/Delete File: P`, `*** Move to: P`)."""
    out = []
    for line in patch.splitlines():
        for tag in ("*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: "):
            if line.startswith(tag):
                p = line[len(tag) :].strip()
                if p and p not in out:
                    out.append(p)
    return out


def _clean(text: str, limit: int = 128) -> str:
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text[:limit]


def tool_activity(agent: str, event: dict[str, Any], hook: Hook) -> tuple[str, str]:
    """(action, target) for a heartbeat from the tool just used."""
    tool = event.get("tool_name")
    ti = event.get("tool_input") if isinstance(event.get("tool_input"), dict) else {}
    if not isinstance(tool, str) or not tool:
        return "", ""
    assert isinstance(ti, dict)
    if tool in EDIT_TOOLS[agent]:
        paths = hook.edited_paths()
        return "edit", _clean(", ".join(paths))
    if tool in ("Bash", "run_shell_command", "shell", "exec_command", "local_shell"):
        cmd = ti.get("command")
        if isinstance(cmd, list):
            cmd = " ".join(str(c) for c in cmd)
        words = cmd.split() if isinstance(cmd, str) else []
        return "run", _clean(os.path.basename(words[0]) if words else "")
    if tool in (
        "Read",
        "read_file",
        "read_many_files",
        "Grep",
        "Glob",
        "grep_search",
        "glob",
        "search_file_content",
    ):
        p = ti.get("file_path") or ti.get("path") or ti.get("pattern") or ""
        rel = hook.relative(p) if isinstance(p, str) and p and tool in ("Read", "read_file") else None
        return "read", _clean(rel or (p if isinstance(p, str) else ""))
    return _clean(tool.lower(), 64), ""


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


# ---------------------------------------------------------------------- entry


def main(argv: list[str], stdin: Any, env: dict[str, str]) -> tuple[int, str]:
    """Run one hook; returns (exit code, stdout text). Never raises for anything the agent sends."""
    args = [a for a in argv if not a.startswith("--")]
    flags = {a for a in argv if a.startswith("--")}
    if len(args) != 2 or args[0] not in AGENTS:
        return 0, ""  # a miswritten command must not break the agent
    agent, event_name = args
    canonical = EVENTS[agent].get(event_name)
    off = {p.strip() for p in env.get("MESH_HOOKS_OFF", "").split(",")}
    if canonical is None or canonical in off or "all" in off:
        return 0, ""
    try:
        raw = stdin.buffer.read(STDIN_MAX + 1) if hasattr(stdin, "buffer") else stdin.read().encode()
        event = json.loads(raw) if raw and len(raw) <= STDIN_MAX else {}
    except (ValueError, OSError):
        event = {}
    if not isinstance(event, dict):
        event = {}
    auto = "--auto-claim" in flags or env.get("MESH_HOOK_AUTOCLAIM", "") in ("1", "true", "yes")
    hook = Hook(agent, event_name, event, env, auto)
    try:
        hook.run(canonical)
    except Exception as e:  # fail open: an allow with a word beats a broken agent
        hook.out = {}
        hook.note_once("bug", f"session mesh hook failed ({e.__class__.__name__}: {str(e)[:200]}); allowed.")
    return 0, (json.dumps(hook.out) + "\n") if hook.out else ""


if __name__ == "__main__":
    code, text = main(sys.argv[1:], sys.stdin, dict(os.environ))
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.exit(code)
