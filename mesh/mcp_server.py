"""`meshctl mcp`: the mesh as a small MCP tool set (stdio), on the official `mcp` SDK (v2: MCPServer).

Tool definitions ride along on every turn of the agent, so there are few tools with short words: status,
set_status, claim, release, send, inbox, work (the shared task board) — seven.
The session's identity is its node's — never a token the agent must keep: $MESH_NODE, else the node that
watches this process's agent (its --watch-pid is one of our ancestors), else the only node running.
Every tool is a few calls of the one API (`MeshAPI`, here a `Client` of the session's node); path claims run
`mesh.pathclaims.claim_paths` over it, the same code the hook wire runs on the node, so path overlap is
decided one way for both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mcp.server import MCPServer

from mesh import pathclaims
from mesh.api import MeshAPI
from mesh.client import Client
from mesh.core.board import TaskRow
from mesh.core.validate import resource_name, split_resource
from mesh.errors import AmbiguousNode, ClaimDenied, InvalidInput, MeshError
from mesh.paths import RunningNode, default_home, find_node, running_nodes
from mesh.views import iso

INSTRUCTIONS = """\
Session mesh: you are one of several coding sessions working on this project at once; this server \
is your session's link to the others (identity comes from your session's node; there is nothing to \
log in to).
- Before a larger change, claim what you will touch: claim(paths=["src/app/**"]) for directories or \
files (relative to the project root), claim(items=["task/fix-login"]) for work items. A claim is \
granted to one session at a time; a denied claim names the holder and when it ends. Release when done.
- Edits under another session's path claim are refused by the hooks; ask the holder with send().
- set_status(action, target, phase, progress) tells the others what you are doing.
- inbox() shows messages sent to you (and marks them read); send(to, subject, body) writes to one \
session, or to everyone with to="*".
- status() shows every session: alive or not, what it does, what it claims.
- work() lists the open tasks on the team's board; work(take=ID) claims one (one session at a time), \
work(done=ID) finishes it, work(add="title") files a new one.
"""

MAX_LIST = 32
MAX_TASKS = 50  # a board listing is context the agent pays for: the first 50, highest priority first


class Session:
    """Finds this session's node (again, if it restarts) and keeps a client to it."""

    def __init__(self, home: Path | None = None, mesh: str | None = None, name: str | None = None) -> None:
        self.home = home or default_home()
        self.mesh = mesh
        self.name = name  # else $MESH_NODE, read at each call (the environment is the session's)
        self._node: RunningNode | None = None
        self._client: Client | None = None

    def find(self) -> RunningNode:
        name = self.name or os.environ.get("MESH_NODE") or None
        if name:
            return find_node(self.home, self.mesh, name)
        nodes = running_nodes(self.home, self.mesh)
        mine = [n for n in nodes if n.watch_pid is not None and n.watch_pid in _ancestors()]
        if len(mine) == 1:
            return mine[0]
        try:
            return find_node(self.home, self.mesh, None)
        except AmbiguousNode as e:
            raise AmbiguousNode(f"{e} (set MESH_NODE in this MCP server's environment)") from None

    async def client(self) -> tuple[RunningNode, MeshAPI]:
        node = self.find()
        if (
            self._client is None
            or self._node is None
            or (node.pid, node.name) != (self._node.pid, self._node.name)
        ):
            if self._client is not None:
                await self._client.close()
            self._node, self._client = node, Client(node)
        return node, self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _ancestors() -> set[int]:
    """Our parent, its parent, … (the agent is among them; Linux /proc, else just the parent)."""
    out, pid = set(), os.getppid()
    for _ in range(8):
        if pid <= 1 or pid in out:
            break
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            pid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _dump(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _items(items: list[str] | None) -> list[str]:
    items = list(items or [])
    if len(items) > MAX_LIST:
        raise InvalidInput(f"at most {MAX_LIST} items at once")
    out = []
    for it in items:
        t, _, n = it.partition("/")
        out.append(resource_name(t, n))
    return out


def _paths(paths: list[str] | None) -> list[str]:
    paths = list(paths or [])
    if len(paths) > MAX_LIST:
        raise InvalidInput(f"at most {MAX_LIST} paths at once")
    return paths


def build_server(session: Session | None = None) -> MCPServer:
    """The MCP server with the mesh's tools (`session` finds the node; tests pass their own)."""
    s = session or Session()
    server = MCPServer("session-mesh", instructions=INSTRUCTIONS)

    async def guarded(fn: Any) -> str:
        try:
            return _dump(await fn())
        except MeshError as e:
            return _dump({"error": str(e)})

    @server.tool(description="Every session: liveness, what it does, its claims, unread count.",
                 structured_output=False)  # fmt: skip
    async def status() -> str:
        async def go() -> Any:
            node, c = await s.client()
            out = []
            for m in await c.members():
                if m.state in ("dead", "left"):
                    continue
                out.append({k: v for k, v in {
                    "name": m.name, "me": m.is_self or None, "role": m.role, "state": m.state,
                    "action": m.action, "target": m.target, "phase": m.phase, "progress": m.progress or None,
                    "note": m.note, "claims": [f"{r} until {iso(x)}" for r, _, x in m.claims] or None,
                    "unread": m.unread or None,
                }.items() if v})  # fmt: skip
            return {"me": node.name, "sessions": out}

        return await guarded(go)

    @server.tool(description="Publish what this session does; omitted fields keep their value.",
                 structured_output=False)  # fmt: skip
    async def set_status(
        action: str | None = None,
        target: str | None = None,
        phase: str | None = None,
        progress: int | None = None,
        note: str | None = None,
    ) -> str:
        async def go() -> Any:
            _, c = await s.client()
            await c.heartbeat(action=action, target=target, phase=phase, progress=progress, note=note)
            return {"ok": True}

        return await guarded(go)

    @server.tool(
        description="Claim work items (TYPE/NAME) and/or paths (project-relative, 'dir/**' for a tree) "
        "for this session: all granted or none. Denied: who holds it and until when.",
        structured_output=False,
    )
    async def claim(
        items: list[str] | None = None, paths: list[str] | None = None, ttl_minutes: int = 60
    ) -> str:
        async def go() -> Any:
            res, pats = _items(items), _paths(paths)
            if not res and not pats:
                raise InvalidInput("give items or paths to claim")
            if not 0 < ttl_minutes <= 7 * 24 * 60:
                raise InvalidInput("ttl_minutes must be 1 to 10080")
            _, c = await s.client()
            got: list[dict[str, Any]] = []
            try:
                for r in res:
                    reply = await c.claim_once(r, ttl_minutes * 60.0, 0.0)
                    got.append({"claim": r, "token": reply.token, "until": iso(reply.expires_at)})
            except ClaimDenied as e:
                for g in got:
                    await c.release(*split_resource(g["claim"]))
                return {"granted": False, "holder": e.holder, "until": iso(e.expires_at), "why": str(e)}
            if pats:
                answer = await pathclaims.claim_paths(c, pats, ttl_minutes * 60.0)
                if not answer.get("granted"):
                    for g in got:
                        await c.release(*split_resource(g["claim"]))
                    conflict = answer.get("conflict") or {}
                    return {
                        "granted": False,
                        "holder": conflict.get("holder"),
                        "until": iso(conflict.get("expires_at")),
                        "why": conflict.get("reason"),
                    }
                got += [{"claim": x["resource"], "token": x["token"], "until": iso(x["expires_at"])}
                        for x in answer.get("claims", [])]  # fmt: skip
            return {"granted": True, "claims": got}

        return await guarded(go)

    @server.tool(description="Release claims this session holds (items TYPE/NAME, paths as claimed).",
                 structured_output=False)  # fmt: skip
    async def release(items: list[str] | None = None, paths: list[str] | None = None) -> str:
        async def go() -> Any:
            _, c = await s.client()
            n = 0
            for r in _items(items):
                n += await c.release(*split_resource(r))
            for r in [pathclaims.resource(p) for p in _paths(paths)]:
                n += await c.release(*split_resource(r))
            return {"released": n}

        return await guarded(go)

    @server.tool(description="Send a message to a session by name, or to=\"*\" for everyone. Durable.",
                 structured_output=False)  # fmt: skip
    async def send(to: str, subject: str, body: str) -> str:
        async def go() -> Any:
            _, c = await s.client()
            mid = await (c.broadcast(subject, body) if to == "*" else c.send(to, subject, body))
            return {"queued": mid.id}

        return await guarded(go)

    @server.tool(description="Messages to this session, oldest first; returned ones are marked read.",
                 structured_output=False)  # fmt: skip
    async def inbox(unread_only: bool = True, limit: int = 10) -> str:
        async def go() -> Any:
            _, c = await s.client()
            msgs = [m async for m in c.messages(unread=unread_only, limit=max(1, min(limit, 100)))]
            unread_ids = [m.id for m in msgs if not m.read]
            if unread_ids:
                await c.mark_read(unread_ids)
            return [
                {"id": m.id, "from": m.from_name, "subject": m.subject, "body": m.body,
                 "sent": iso(m.sent_at), "all": m.broadcast or None, "reply_to": m.in_reply_to or None}
                for m in msgs
            ]  # fmt: skip

        return await guarded(go)

    @server.tool(
        description="The team's task board. No arguments: open tasks by priority. add=TITLE files one; "
        "take=ID claims it for this session; done=ID finishes it.",
        structured_output=False,
    )
    async def work(
        add: str | None = None, priority: str = "P2", take: str | None = None, done: str | None = None
    ) -> str:
        async def go() -> Any:
            if sum(x is not None for x in (add, take, done)) > 1:
                raise InvalidInput("give one of add, take or done")
            _, c = await s.client()
            if add is not None:
                return {"added": _task(await c.task_add(add, priority=priority))}
            if take is not None:
                try:
                    got = await c.task_claim(take)
                except ClaimDenied as e:
                    return {"granted": False, "holder": e.holder, "until": iso(e.expires_at), "why": str(e)}
                return {"granted": True, "task": take, "token": got.token, "until": iso(got.expires_at)}
            if done is not None:
                return {"done": _task(await c.task_done(done))}
            view = await c.board(done=False)
            return [_task(t) for t in view.tasks()][:MAX_TASKS]

        return await guarded(go)

    _trim_schemas(server)
    return server


def _task(t: TaskRow) -> dict[str, Any]:
    """A task in few words: what an agent needs to pick one (the CLI's `board --json` has the rest)."""
    return {k: v for k, v in {
        "id": t.short_id, "title": t.title, "priority": t.priority.value, "state": t.state.value,
        "holder": t.holder or None, "until": iso(t.until) if t.holder else None,
        "milestone": t.milestone_title or None, "role": t.role or None,
    }.items() if v}  # fmt: skip


def _trim_schemas(server: MCPServer) -> None:
    """Drop pydantic's per-property titles: they repeat the property names on every turn, for nothing."""
    for tool in server._tool_manager.list_tools():
        _drop_titles(tool.parameters)


def _drop_titles(schema: Any) -> None:
    if isinstance(schema, dict):
        schema.pop("title", None)
        for v in schema.values():
            _drop_titles(v)
    elif isinstance(schema, list):
        for v in schema:
            _drop_titles(v)


async def serve_stdio(home: Path | None = None, mesh: str | None = None) -> None:
    """Serve MCP on stdin/stdout until the client closes it."""
    session = Session(home, mesh)
    try:
        await build_server(session).run_stdio_async()
    finally:
        await session.close()
