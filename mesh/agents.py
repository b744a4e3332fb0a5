"""Hook settings for coding agents: where each agent reads them, what we add, and merging without harm.

    claude-code  .claude/settings.json (project) / ~/.claude/settings.json (user)   timeouts in seconds
    codex        .codex/hooks.json (project)     / $CODEX_HOME/hooks.json (user)    timeouts in seconds
    gemini       .gemini/settings.json (project) / ~/.gemini/settings.json (user)   timeouts in ms

All three use one shape: {"hooks": {EVENT: [{"matcher": M, "hooks": [{"type": "command", ...}]}]}}.
Our entries are recognised by their command (it runs mesh/hook.py); everything else in the file is kept
as it is. Installing replaces our entries only where they differ (so installing twice changes nothing),
uninstalling removes only ours, and the first change to a file backs it up beside it (`.mesh-backup`).
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.core.validate import shown
from mesh.errors import ConfigError

AGENTS = ("claude-code", "codex", "gemini")
PIECES = ("start", "prompt", "pre", "post", "end")
BACKUP_SUFFIX = ".mesh-backup"
OURS = re.compile(r"(mesh[/\\]hook\.py|-m mesh\.hook)\b")


@dataclass(frozen=True, slots=True)
class EventSpec:
    piece: str  # canonical: start, prompt, pre, post, end
    event: str  # the agent's own event name
    matcher: str | None  # None: the event takes no matcher (or we want every occurrence)
    timeout: int  # in the agent's unit


SPECS: dict[str, tuple[EventSpec, ...]] = {
    "claude-code": (
        EventSpec("start", "SessionStart", None, 30),
        EventSpec("prompt", "UserPromptSubmit", None, 5),
        EventSpec("pre", "PreToolUse", "Edit|Write|MultiEdit|NotebookEdit", 5),
        EventSpec("post", "PostToolUse", "*", 5),
        EventSpec("end", "SessionEnd", None, 5),
    ),
    # Codex matches apply_patch under its own name and the aliases Edit/Write. It has no session-end
    # event: the node watches the agent's process (--watch-pid) and leaves when it exits.
    "codex": (
        EventSpec("start", "SessionStart", None, 30),
        EventSpec("prompt", "UserPromptSubmit", None, 5),
        EventSpec("pre", "PreToolUse", "apply_patch|Edit|Write", 5),
        EventSpec("post", "PostToolUse", "*", 5),
    ),
    "gemini": (
        EventSpec("start", "SessionStart", None, 30_000),
        EventSpec("prompt", "BeforeAgent", None, 5_000),
        EventSpec("pre", "BeforeTool", "write_file|replace", 5_000),
        EventSpec("post", "AfterTool", "*", 5_000),
        EventSpec("end", "SessionEnd", None, 5_000),
    ),
}

NOTES = {
    "claude-code": "Claude Code reads hooks when a session starts: restart running sessions (see /hooks).",
    "codex": "Codex runs a new or changed hook only after you trust it: open /hooks in codex once. (Codex "
    "versions from before hooks were on by default also need `[features] codex_hooks = true` in "
    "config.toml.)",
    "gemini": "Gemini CLI asks before running new project hooks; `/hooks disable session-mesh-pre` turns "
    "one off.",
}


def settings_path(agent: str, scope: str, project: Path, env: dict[str, str] | None = None) -> Path:
    """The file the agent reads its hooks from, for `scope` (project: under `project`; user: home)."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME") or Path.home())
    if agent == "claude-code":
        base = (
            project / ".claude"
            if scope == "project"
            else Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude")
        )
        return base / "settings.json"
    if agent == "codex":
        base = project / ".codex" if scope == "project" else Path(env.get("CODEX_HOME") or home / ".codex")
        return base / "hooks.json"
    if agent == "gemini":
        return (project if scope == "project" else home) / ".gemini" / "settings.json"
    raise ConfigError(f"unknown agent {shown(agent)}: use one of {', '.join(AGENTS)}")


def hook_command(agent: str, event: str, *, auto_claim: bool = False, python: str | None = None) -> str:
    """The command an agent runs for `event`: this Python, isolated and without site (fast start), on
    the hook script by absolute path (so it works from any directory)."""
    spec = importlib.util.find_spec("mesh.hook")
    assert spec is not None and spec.origin is not None
    parts = [python or sys.executable, "-I", "-S", spec.origin, agent, event]
    if auto_claim:
        parts.append("--auto-claim")
    return " ".join(shlex.quote(p) for p in parts)


def desired(
    agent: str, pieces: tuple[str, ...] = PIECES, *, auto_claim: bool = False
) -> dict[str, list[Any]]:
    """Our hook groups for `agent`, per event name."""
    out: dict[str, list[Any]] = {}
    for s in SPECS[agent]:
        if s.piece not in pieces:
            continue
        entry: dict[str, Any] = {"type": "command"}
        if agent == "gemini":
            entry["name"] = f"session-mesh-{s.piece}"  # `/hooks disable session-mesh-pre` in gemini
        entry["command"] = hook_command(agent, s.event, auto_claim=auto_claim and s.piece == "pre")
        entry["timeout"] = s.timeout
        group: dict[str, Any] = {}
        if s.matcher is not None:
            group["matcher"] = s.matcher
        group["hooks"] = [entry]
        out[s.event] = [group]
    return out


def _is_ours(hook: Any) -> bool:
    return (
        isinstance(hook, dict) and isinstance(hook.get("command"), str) and bool(OURS.search(hook["command"]))
    )


def _ours_only(groups: list[Any]) -> list[Any]:
    """The groups of an event reduced to our entries (a group holding none of ours drops out)."""
    out = []
    for g in groups:
        if isinstance(g, dict) and isinstance(g.get("hooks"), list):
            mine = [h for h in g["hooks"] if _is_ours(h)]
            if mine:
                out.append({**g, "hooks": mine})
    return out


def _without_ours(groups: list[Any]) -> list[Any]:
    """The groups of an event without our entries (a group that held only ours drops out)."""
    out = []
    for g in groups:
        if isinstance(g, dict) and isinstance(g.get("hooks"), list):
            rest = [h for h in g["hooks"] if not _is_ours(h)]
            if rest:
                out.append({**g, "hooks": rest})
            elif not g["hooks"] or len(rest) == len(g["hooks"]):
                out.append(g)
        else:
            out.append(g)
    return out


def _hooks_table(settings: dict[str, Any], path: Path) -> dict[str, Any]:
    hooks = settings.get("hooks", {})
    if not isinstance(hooks, dict):
        raise ConfigError(f"{path}: 'hooks' is not an object; fix it by hand first")
    for event, groups in hooks.items():
        if not isinstance(groups, list) and event in _all_events():
            raise ConfigError(f"{path}: hooks.{event} is not a list; fix it by hand first")
    return hooks


def _all_events() -> set[str]:
    return {s.event for specs in SPECS.values() for s in specs}


def merged(settings: dict[str, Any], want: dict[str, list[Any]], path: Path) -> dict[str, Any]:
    """`settings` with our hooks as `want` says (ours elsewhere removed); other hooks untouched."""
    new = copy.deepcopy(settings)
    hooks = _hooks_table(new, path)
    for event in list(hooks):
        groups = hooks[event]
        if event in want or not isinstance(groups, list):
            continue
        if _ours_only(groups):  # a piece no longer wanted
            rest = _without_ours(groups)
            if rest:
                hooks[event] = rest
            else:
                del hooks[event]
    for event, groups in want.items():
        current = hooks.get(event, [])
        if _ours_only(current) == groups:
            continue  # already exactly ours: leave the file as it is
        hooks[event] = _without_ours(current) + groups
    new["hooks"] = hooks
    return new


def removed(settings: dict[str, Any], path: Path) -> dict[str, Any]:
    """`settings` without our hooks (an event or table we emptied goes too)."""
    new = copy.deepcopy(settings)
    if "hooks" not in new:
        return new
    hooks = _hooks_table(new, path)
    for event in list(hooks):
        groups = hooks[event]
        if isinstance(groups, list) and _ours_only(groups):
            rest = _without_ours(groups)
            if rest:
                hooks[event] = rest
            else:
                del hooks[event]
    if not hooks and settings.get("hooks"):
        del new["hooks"]
    return new


def read_settings(path: Path) -> tuple[str, dict[str, Any]]:
    """(text, parsed) of a settings file; a missing file is empty settings."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return "", {}
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    if not text.strip():
        return text, {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not plain JSON ({e.msg} at line {e.lineno}); nothing changed") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object; nothing changed")
    return text, data


def render(settings: dict[str, Any]) -> str:
    return json.dumps(settings, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True, slots=True)
class Change:
    """What an install or uninstall does to one file."""

    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"{self.path} (now)",
                tofile=f"{self.path} (after)",
            )
        )


def plan(agent: str, path: Path, *, install: bool, pieces: tuple[str, ...] = PIECES,
         auto_claim: bool = False) -> Change:  # fmt: skip
    """The change install/uninstall would make (nothing written)."""
    before, settings = read_settings(path)
    if install:
        after_data = merged(settings, desired(agent, pieces, auto_claim=auto_claim), path)
    else:
        after_data = removed(settings, path)
    if after_data == settings:
        return Change(path, before, before)  # semantically the same: never rewrite (or reformat) the file
    return Change(path, before, render(after_data))


def apply(change: Change) -> Path | None:
    """Write the change; the first change to an existing file backs it up first. Returns the backup path."""
    if not change.changed:
        return None
    backup: Path | None = None
    change.path.parent.mkdir(parents=True, exist_ok=True)
    if change.path.exists():
        backup = change.path.with_name(change.path.name + BACKUP_SUFFIX)
        if backup.exists():
            backup = None  # backed up once already: that is the pristine copy
        else:
            shutil.copy2(change.path, backup)
    tmp = change.path.with_name(change.path.name + ".mesh-tmp")
    tmp.write_text(change.after)
    if change.path.exists():
        shutil.copymode(change.path, tmp)
    os.replace(tmp, change.path)
    return backup
