"""The hook wire: JSON lines on a second private unix socket, so agent hooks never load gRPC.

Agent hooks run as a new process on every tool call; importing grpc alone costs more than the whole hook
may take. So the node also serves this tiny protocol, which a standard-library client (`mesh/hook.py`)
speaks:

    client ──{"op": "check", "path": "src/app/x.py"}\\n──▶ node
    client ◀──{"ok": true, "conflict": null}\\n────────── node      (or {"error": "…"})

One request per line, answers in order, any number per connection. Lines are bounded
(limits.HOOK_LINE_MAX), every field is validated, a bad request gets `{"error": …}` (the connection
stays open, except after an oversized line). The socket is 0600 next to control.sock; node.json says where.
It is bound when the node starts (mesh._transport.faces); this module loads at its first connection.
Like the control socket, it is a face of the node's one API: every op is a few `MeshAPI` calls on the
node's own `Node` (path claims through `mesh.pathclaims`, the same code the MCP server and meshctl run).

Ops (all answers carry "ok": true unless they are an error):
    info                                   → name, mesh, node_id
    digest   {mark}                        → text: the session-start digest (≤ 1 KB); with mark (default)
                                             the messages shown count as delivered to the agent
    new                                    → text: messages and claims by others new since the last
                                             digest/new ("" when nothing is); advances the cursor
    check    {path}                        → conflict: another session's live exclusive claim on a pattern
                                             matching path (asked of the stewards), or null
    heartbeat {action,target,phase,progress,note} → published: false when coalesced (see limits)
    claim    {paths | files, ttl, shared}  → granted, claims | conflict: one claim on the patterns (or on
                                             exactly these files; files this session's own exclusive claims
                                             cover already are skipped), all or none
    release  {paths} | {all: true}         → released: count
    delivered {ids}                        → marked: messages marked delivered (read) and passed
    leave    {reason}                      → releases every claim, then the node leaves (down)
    api      {verb, args}                  → result: one MeshAPI call for `meshctl`'s hot verbs (see below);
                                             for `messages` (a stream) item lines, then end

The `api` op is how `meshctl status`, `claim`, `release`, `heartbeat` and `send` reach the node without
loading gRPC (mesh/wireclient.py): `verb` is one of API_VERBS, `args` its keyword arguments (checked here
by type, then by the node's API as every face's are); the value comes back as `mesh._transport.wirecodec`
encodes it, and a MeshError as {"error", "class"} (plus holder and expires_at for ClaimDenied), so the
client raises the same class a gRPC client would. Only a process of the node's own uid is served
(SO_PEERCRED), on top of the socket's 0600 in the node's 0700 state dir.

The cursor ("what the agent has already been told") lives in the node's state dir (hooks.json), so a
restarted hook process, or a restarted node under the same name, never repeats a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mesh import briefing, limits, pathclaims
from mesh._transport import wirecodec
from mesh.api import MeshAPI
from mesh.clock import wall
from mesh.core import globs, validate
from mesh.core.mailbox import InboxMessage
from mesh.core.resources import literal, path_claim
from mesh.core.validate import split_resource
from mesh.core.values import field, value
from mesh.errors import InvalidInput, MeshError
from mesh.storage import translating
from mesh.views import NodeInfo

log = logging.getLogger("mesh.hooks")

STATE_FILE = "hooks.json"
SEEN_MAX = 512  # claim grants remembered as "already told" (older ones are long gone anyway)
NEWS_NOTES_MAX = 10  # messages per `new` answer; the rest come next time (still in order)
DIGEST_NOTES_MAX = 3
DEFAULT_TTL = 3600.0
WATCH_AFTER = 0.005  # s: a waiting request's connection is watched for a hang-up from this long on


# ---------------------------------------------------------------------- the cursor


@value(frozen=False)
class _Cursor:
    """What this session's agent has been told: inbox position and claim grants already reported."""

    path: Path
    seq: int = 0
    seen: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> _Cursor:
        try:
            d = json.loads(path.read_text())
            seq = d.get("seq", 0) if isinstance(d, dict) else None
            seen = d.get("seen", []) if isinstance(d, dict) else None
            if (
                isinstance(seq, int)
                and not isinstance(seq, bool)
                and 0 <= seq < 2**63  # a local_seq: SQLite's integer range
                and isinstance(seen, list)
                and all(isinstance(s, str) for s in seen)
            ):
                return cls(path, seq, seen[-SEEN_MAX:])
            log.warning("ignored a malformed %s", path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, RecursionError) as e:  # deep nesting is a RecursionError in json
            log.warning("ignored an unreadable %s: %s", path, str(e)[:200])
        return cls(path)

    def save(self) -> None:
        """Write the cursor (StorageError, answered to the hook as one line, if the disk refuses)."""
        tmp = self.path.with_suffix(".tmp")
        with translating(self.path):
            tmp.write_text(json.dumps({"seq": self.seq, "seen": self.seen[-SEEN_MAX:]}))
            os.replace(tmp, self.path)


def _notes(msgs: list[InboxMessage]) -> list[briefing.Note]:
    return [briefing.Note(m.id, m.from_name, m.subject, m.body, m.broadcast) for m in msgs]


# ---------------------------------------------------------------------- the server


class HookWire:
    """Serves the hook wire for one node, on that node's MeshAPI (`me` is who the node is)."""

    def __init__(self, api: MeshAPI, me: NodeInfo, path: Path) -> None:
        self.api = api
        self.me = me
        self.path = path
        self.cursor = _Cursor.load(Path(me.state_dir) / STATE_FILE)
        self._conns: set[asyncio.Task[Any]] = set()
        self._publishing: set[asyncio.Task[Any]] = set()  # coalesced heartbeats on their way
        self._last_beat = -1e9
        self._pending_beat: dict[str, Any] | None = None
        self._beat_timer: asyncio.TimerHandle | None = None
        self._ops: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "info": self._info,
            "digest": self._digest,
            "new": self._new,
            "check": self._check,
            "heartbeat": self._heartbeat,
            "claim": self._claim,
            "release": self._release,
            "delivered": self._delivered,
            "leave": self._leave,
            "api": self._api,
        }

    async def close(self) -> None:
        if self._beat_timer is not None:
            self._beat_timer.cancel()
        for t in [*self._conns, *self._publishing]:
            t.cancel()
        for t in [*self._conns, *self._publishing]:
            with contextlib.suppress(BaseException):
                await t

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection to the end (the socket is mesh._transport.faces')."""
        task = asyncio.current_task()
        if len(self._conns) >= limits.HOOK_MAX_CONNECTIONS:
            writer.close()
            return
        assert task is not None
        if not _same_uid(writer):
            log.warning("hook wire: refused a connection from another user")
            writer.close()
            return
        self._conns.add(task)
        try:
            while True:
                try:
                    async with asyncio.timeout(limits.HOOK_IDLE_TIMEOUT):
                        line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._send(writer, {"error": f"request longer than {limits.HOOK_LINE_MAX} bytes"})
                    return
                except TimeoutError:
                    return
                if not line:
                    return
                if b'"messages"' in line and (stream := _stream_request(line)) is not None:
                    await self._stream(reader, writer, stream)
                    return  # a stream has its connection to itself
                req = _parsed(line)  # once: a claim's line was parsed twice (does it wait? then its answer)
                if not _waits(req):
                    await self._send(writer, await self.handle(req))
                    continue
                answer = await self._watched(reader, req)
                if answer is None:
                    return
                await self._send(writer, answer)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: dict[str, Any]
    ) -> None:
        """A stream verb (`messages`): its items as lines until it ends or the client leaves (EOF, or anything
        it sends: a stream takes no more requests)."""
        try:
            args = req.get("args", {})
            if not isinstance(args, dict):
                raise InvalidInput("args must be an object")
            wirecodec.check_args(req["verb"], args)
            items = self.api.messages(**args)
        except MeshError as e:
            await self._send(writer, wirecodec.error_to_wire(e))
            return

        async def pump() -> None:
            try:
                async for m in items:
                    writer.write(
                        b'{"ok":true,"item":'
                        + json.dumps(wirecodec.encode(m), separators=(",", ":")).encode()
                        + b"}\n"
                    )
                    await writer.drain()
                answer: dict[str, Any] = {"ok": True, "end": True}
            except MeshError as e:
                answer = wirecodec.error_to_wire(e)
            await self._send(writer, answer)

        work = asyncio.ensure_future(pump())
        await _watch_peer(reader, work)
        if not work.cancelled():
            work.exception()  # retrieved: a client that left in the middle of a write is no fault of ours

    async def _watched(self, reader: asyncio.StreamReader, req: dict[str, Any]) -> dict[str, Any] | None:
        """Answer a request that may wait (a claim with `wait`) while watching its connection: if the client
        goes away meanwhile (Ctrl-C, killed), or sends anything before the answer, the request is cancelled
        — as gRPC cancels a call whose client is gone — and None is returned (the connection closes).

        The request runs in this connection's own task, and the watch starts only after WATCH_AFTER: most
        such claims are granted at once (`mesh.connect` asks every claim with a `wait`), and a task for the
        request plus a pending read per claim was most of the wire's own cost for them. A client gone
        within WATCH_AFTER is noticed then; its request is cancelled in this task (never twice: see below).
        """
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        watch = _HangUp(reader, me)
        timer = loop.call_later(WATCH_AFTER, watch.start)
        try:
            answer = await self.handle(req)
        except asyncio.CancelledError:
            # Ours (the client left) ends the request only; any other (the wire closing) goes on up.
            if not watch.peer_left or me.uncancel() > 0:
                raise
            return None
        finally:
            timer.cancel()
            await watch.stop()
        # Answered at the same moment the peer spoke or left: the answer still stands, but is not sent.
        return None if watch.peer_left else answer

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
        await writer.drain()

    async def handle_line(self, line: bytes) -> dict[str, Any]:
        """One request line → one answer (never raises for bad input)."""
        return await self.handle(_parsed(line))

    async def handle(self, req: Any) -> dict[str, Any]:
        """One request (a line's JSON; None if it was not JSON) → one answer (never raises for bad input)."""
        if not isinstance(req, dict):
            return {"error": "not a JSON object"}
        op = req.get("op")
        handler = self._ops.get(op) if isinstance(op, str) else None
        if handler is None:
            return {"error": f"unknown op {str(op)[:40]!r}; ops: {', '.join(sorted(self._ops))}"}
        try:
            return {"ok": True} | await handler(req)
        except MeshError as e:
            return wirecodec.error_to_wire(e)
        except Exception:
            log.exception("hook wire: %s failed", op)
            return {"error": f"{op} failed inside the node (see its log)"}

    # ------------------------------------------------------------------ ops

    async def _info(self, req: dict[str, Any]) -> dict[str, Any]:
        me = self.me
        return {"name": me.name, "mesh": me.mesh, "node_id": me.node_id}

    async def _digest(self, req: dict[str, Any]) -> dict[str, Any]:
        mark = _bool(req, "mark", True)
        api, me = self.api, self.me
        members = await api.members()
        shown = [m async for m in api.messages(unread=True, limit=DIGEST_NOTES_MAX)]
        total = (await api.counts()).unread
        text = briefing.digest(me.name, me.mesh, members, _notes(shown), total, wall())
        if mark:
            # Everything up to now counts as told: the digest listed the unread (or their count) and the
            # claims; what arrives later is news for the next prompt.
            newest = [m async for m in api.messages(limit=1)]
            self.cursor.seq = max(self.cursor.seq, newest[-1].local_seq if newest else 0)
            self.cursor.seen = [c.key for c in briefing.live_claims(members, others_only=True)]
            self.cursor.save()
            await self._mark_read([m.id for m in shown])
        return {"text": text, "name": me.name, "shown": [m.id for m in shown]}

    async def _new(self, req: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        msgs = [m async for m in api.messages(after=self.cursor.seq, limit=NEWS_NOTES_MAX)]
        fresh = [m for m in msgs if not m.read]  # read elsewhere (meshctl read): the agent saw it
        members = await api.members()
        seen = set(self.cursor.seen)
        claims = [c for c in briefing.live_claims(members, others_only=True) if c.key not in seen]
        if msgs or claims:
            # Advance before answering: a message is handed out at most once, even if this hook dies
            # before printing it (it stays in the inbox, unread, and the digest counts it).
            self.cursor.seq = max(m.local_seq for m in msgs) if msgs else self.cursor.seq
            self.cursor.seen.extend(c.key for c in claims)
            self.cursor.seen = self.cursor.seen[-SEEN_MAX:]
            self.cursor.save()
            await self._mark_read([m.id for m in fresh])
        text = briefing.news(_notes(fresh), claims, wall())
        return {"text": text, "ids": [m.id for m in fresh]}

    async def _check(self, req: dict[str, Any]) -> dict[str, Any]:
        path = pathclaims.normalise(_path(req.get("path")))
        c = await pathclaims.check(self.api, path)
        return {"conflict": pathclaims.conflict_json(c, path) if c is not None else None}

    async def _heartbeat(self, req: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        for f in ("action", "target", "phase"):
            if f in req:
                changes[f] = validate.text(_str(req, f), f)
        if "note" in req:
            changes["note"] = validate.text(_str(req, "note"), "note", validate.NOTE_MAX)
        if "progress" in req:
            changes["progress"] = validate.progress(req["progress"])
        if not changes:
            return {"published": False}
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - self._last_beat >= limits.HOOK_HEARTBEAT_EVERY and self._beat_timer is None:
            self._last_beat = now
            await self.api.heartbeat(**changes)
            return {"published": True}
        # Within the interval: keep the newest, publish it when the interval ends (one fan-out, not many).
        self._pending_beat = (self._pending_beat or {}) | changes
        if self._beat_timer is None:
            self._beat_timer = loop.call_at(self._last_beat + limits.HOOK_HEARTBEAT_EVERY, self._flush_beat)
        return {"published": False}

    def _flush_beat(self) -> None:
        self._beat_timer = None
        pending, self._pending_beat = self._pending_beat, None
        if pending:
            self._last_beat = asyncio.get_running_loop().time()
            task = asyncio.get_running_loop().create_task(self._publish(pending))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _publish(self, changes: dict[str, Any]) -> None:
        with contextlib.suppress(MeshError):
            await self.api.heartbeat(**changes)

    async def _claim(self, req: dict[str, Any]) -> dict[str, Any]:
        ttl = validate.check_ttl(req.get("ttl", DEFAULT_TTL))
        shared = _bool(req, "shared", False)
        if "files" in req:
            files = [pathclaims.normalise(f) for f in _paths(req, "files")]
            mine = [c for c in await self.api.held() if (pc := path_claim(c.resource)) and pc.exclusive]
            files = [f for f in files if not any(globs.matches(c.name, f) for c in mine)]
            if not files:
                return {"granted": True, "claims": []}  # this session's own claims cover them already
            patterns = [literal(f) for f in files]
        else:
            patterns = _paths(req)
        return await pathclaims.claim_paths(self.api, patterns, ttl, shared=shared)

    async def _release(self, req: dict[str, Any]) -> dict[str, Any]:
        if _bool(req, "all", False):
            resources = [c.resource for c in await self.api.held()]
        else:
            return {"released": await pathclaims.release_paths(self.api, _paths(req))}
        return {"released": await self._release_all(resources)}

    async def _delivered(self, req: dict[str, Any]) -> dict[str, Any]:
        ids = req.get("ids")
        if not isinstance(ids, list) or not ids or len(ids) > 100 or not all(isinstance(i, str) for i in ids):
            raise InvalidInput("ids must be a list of 1-100 message ids")
        for i in ids:
            validate.text(i, "message id", 64)
        return {"marked": await self._mark_read(list(ids))}

    async def _leave(self, req: dict[str, Any]) -> dict[str, Any]:
        reason = validate.text(_str(req, "reason", "session ended"), "reason") or "session ended"
        released = await self._release_all([c.resource for c in await self.api.held()])
        await self.api.shutdown(reason)
        return {"released": released}

    async def _api(self, req: dict[str, Any]) -> dict[str, Any]:
        verb, args = req.get("verb"), req.get("args", {})
        if not isinstance(verb, str) or verb not in wirecodec.API_VERBS:
            raise InvalidInput(f"verb must be one of {', '.join(sorted(wirecodec.API_VERBS))}")
        if not isinstance(args, dict):
            raise InvalidInput("args must be an object")
        if verb in wirecodec.STREAM_VERBS:  # only as a connection's first request (see serve)
            raise InvalidInput(f"{verb} is a stream: ask for it first on a connection of its own")
        wirecodec.check_args(verb, args)
        result = await getattr(self.api, verb)(**args)
        return {"result": wirecodec.encode(result)}

    # ------------------------------------------------------------------ helpers over the API

    async def _release_all(self, resources: list[str]) -> int:
        released = 0
        for r in resources:
            released += await self.api.release(*split_resource(r))
        return released

    async def _mark_read(self, ids: list[str]) -> int:
        return await self.api.mark_read(ids) if ids else 0


def _parsed(line: bytes) -> Any:
    """A request line's JSON, or None if it is not JSON."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # deep nesting is a RecursionError in json
        return None


def _waits(req: Any) -> bool:
    """Whether a request is one that may wait long (an `api` claim with a `wait`)."""
    try:
        wait = req["args"]["wait"] if req.get("op") == "api" and req.get("verb") == "claim_once" else 0
    except (KeyError, TypeError, AttributeError):
        return False
    return isinstance(wait, (int, float)) and wait > 0


async def _watch_peer(reader: asyncio.StreamReader, work: asyncio.Future[Any]) -> bool:
    """Run `work` while watching its connection; cancel it if the client sends anything or goes away (as gRPC
    cancels a call whose client is gone). True if the client did. Both are over on return: a StreamReader
    refuses a second waiter, so a read still pending would break the connection's next readline()."""
    peer = asyncio.ensure_future(reader.read(1))
    try:
        await asyncio.wait((work, peer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        peer_spoke = peer.done()
        for t in (work, peer):
            t.cancel()
        await asyncio.wait((work, peer))
    if not peer.cancelled():
        peer.exception()  # retrieved: a reset connection is how a client leaves
    return peer_spoke


class _HangUp:
    """Watches a connection whose task is busy with a request: if the client sends anything or goes away
    (either ends the request), `peer_left` is set and the task is cancelled (once). `stop()` ends the watch:
    its read is over on return (a StreamReader refuses a second waiter: a read left pending would break the
    connection's next readline())."""

    def __init__(self, reader: asyncio.StreamReader, task: asyncio.Task[Any]) -> None:
        self._reader = reader
        self._task = task
        self._watcher: asyncio.Task[None] | None = None
        self.peer_left = False

    def start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        with contextlib.suppress(Exception):  # a reset connection is how a client leaves
            await self._reader.read(1)
        self.peer_left = True
        self._task.cancel()

    async def stop(self) -> None:
        w = self._watcher
        if w is None:
            return
        if not w.done():
            w.cancel()
            await asyncio.wait((w,))
        if not w.cancelled():
            w.exception()  # retrieved (there is none: a failed read counts as the client leaving)


def _stream_request(line: bytes) -> dict[str, Any] | None:
    """The request, if the line asks the `api` op for a stream verb."""
    try:
        req = json.loads(line)
    except ValueError:
        return None
    if isinstance(req, dict) and req.get("op") == "api" and req.get("verb") in wirecodec.STREAM_VERBS:
        return req
    return None


def _same_uid(writer: asyncio.StreamWriter) -> bool:
    """Whether the peer process runs as this node's user (Linux SO_PEERCRED; elsewhere the socket's 0600
    in a 0700 directory is the check)."""
    import socket
    import struct

    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _str(req: dict[str, Any], key: str, default: str = "") -> str:
    v = req.get(key, default)
    if not isinstance(v, str):
        raise InvalidInput(f"{key} must be a string")
    return v


def _bool(req: dict[str, Any], key: str, default: bool) -> bool:
    v = req.get(key, default)
    if not isinstance(v, bool):
        raise InvalidInput(f"{key} must be true or false")
    return v


def _path(v: Any) -> str:
    if not isinstance(v, str) or not v or len(v) > limits.HOOK_PATH_MAX:
        raise InvalidInput(f"a path must be a string of 1-{limits.HOOK_PATH_MAX} characters")
    return v


def _paths(req: dict[str, Any], key: str = "paths") -> list[str]:
    v = req.get(key)
    if not isinstance(v, list) or not v or len(v) > limits.HOOK_MAX_PATHS:
        raise InvalidInput(f"{key} must be a list of 1-{limits.HOOK_MAX_PATHS} paths")
    return [_path(p) for p in v]
