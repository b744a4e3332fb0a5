"""Path claims as the faces use them (meshctl, the hook wire, the MCP server), over any `MeshAPI`.

A path claim is a claim of type `path` (exclusive) or `path-shared` whose name is a glob pattern
(`mesh.core.globs`: anchored at the project root, `**` crosses directories). Several patterns claimed at
once are ONE claim on their brace union, so they are granted all or none, atomically. The stewards decide
conflicts exactly: two claims conflict iff some path matches both patterns and at least one is exclusive
(`mesh.core.resources`; acceptors refuse a lease that conflicts with a live one of another session, so two
exclusive holders of overlapping paths never hold at once, whatever fails). A pattern matches what it says:
`src/app` is that path only, `src/app/**` the directory and everything under it.

`check` answers the pre-edit question "does another session hold an exclusive claim on a pattern matching
this file?" from the stewards' own knowledge of live leases (`MeshAPI.check_path`), and only when no
steward majority answers from the published status views, which lag a moment.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh import briefing
from mesh.clock import wall
from mesh.core import globs
from mesh.core.errors import ClaimDenied, MeshError, NodeUnavailable, NoQuorum
from mesh.core.resources import PATH_TYPES, path_claim, path_resource
from mesh.core.validate import split_resource
from mesh.views import ClaimView, MemberView

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    from typing import Any

    from mesh.api import MeshAPI

__all__ = [
    "check",
    "claim_paths",
    "conflict_json",
    "denied_reason",
    "explain",
    "normalise",
    "release_paths",
    "resource",
]


def normalise(path: str) -> str:
    """A project-relative file path in its one spelling (InvalidField if absolute or outside)."""
    return globs.normalise_path(path)


def resource(patterns: Sequence[str], shared: bool = False) -> str:
    """The resource of one claim on these patterns (their union), validated and normalised."""
    return path_resource(list(patterns), shared)


async def claim_paths(
    api: MeshAPI, patterns: Sequence[str], ttl: float, *, shared: bool = False, wait: float = 0.0
) -> dict[str, Any]:
    """Claim path patterns for this session, all or none (one claim on their union).

    Answers `{"granted": true, "claims": [...]}` or `{"granted": false, "conflict": {...}}` naming the
    holder; PatternError for a malformed pattern, NoQuorum when the stewards cannot decide now.
    """
    res = resource(patterns, shared)
    try:
        c = await api.claim_once(res, ttl, wait)
    except ClaimDenied as e:
        note = await _note(api, e.holder, res, e.expires_at or 0.0)
        return {"granted": False, "conflict": conflict_json(note, res, denied_reason(e, note))}
    granted = {"resource": c.resource, "token": c.token, "expires_at": c.expires_at}
    return {"granted": True, "claims": [granted]}


async def release_paths(api: MeshAPI, patterns: Sequence[str]) -> int:
    """Release the path claims these patterns name: the claim on their union, and every held claim that
    has one of them among its alternatives (a claim on several patterns is released whole)."""
    wanted = {globs.normalise(p) for p in patterns}
    union = resource(patterns).partition("/")[2]
    released = 0
    for c in await api.held():
        pc = path_claim(c.resource)
        if pc is not None and (c.name == union or wanted & set(pc.glob.alternatives)):
            released += await api.release(*split_resource(c.resource))
    return released


async def check(api: MeshAPI, path: str) -> briefing.ClaimNote | None:
    """Another session's live exclusive claim on a pattern matching `path` (a project-relative file)."""
    path = normalise(path)
    try:
        found = await api.check_path(path)
    except (NoQuorum, NodeUnavailable):
        return _from_views(await api.members(), path)  # the stewards cannot say now: what was published
    if found is None:
        return None
    return await _note(api, found.holder, found.resource, found.expires_at, found)


def _from_views(members: list[MemberView], path: str) -> briefing.ClaimNote | None:
    for c in briefing.live_claims(members, others_only=True):
        pc = path_claim(c.resource) if c.resource.partition("/")[0] in PATH_TYPES else None
        if pc is not None and pc.exclusive and globs.matches(pc.glob, path):
            return c
    return None


async def _note(
    api: MeshAPI, holder: str, resource_: str, expires_at: float, view: ClaimView | None = None
) -> briefing.ClaimNote:
    """The holder's claim with what the holder says it does (from its published status)."""
    try:
        who = next((m for m in await api.members() if m.name == holder), None)
    except MeshError:
        who = None
    return briefing.ClaimNote(
        resource_, holder, view.holder_node if view else (who.node_id if who else ""),
        view.token if view else 0, expires_at,
        who.action if who else "", who.target if who else "", who.phase if who else "",
    )  # fmt: skip


async def explain(api: MeshAPI, e: ClaimDenied) -> str:
    """A refused claim's message, with what its holder says it does."""
    return denied_reason(e, await _note(api, e.holder, "", e.expires_at or 0.0))


def denied_reason(e: ClaimDenied, holder: briefing.ClaimNote) -> str:
    doing = briefing.doing(holder.action, holder.target, holder.phase)
    return f"{e} (it is doing: {doing})"


def conflict_json(c: briefing.ClaimNote, path: str, reason: str = "") -> dict[str, Any]:
    """A refused path claim or edit, as the hook wire and the MCP server answer it."""
    return {
        "holder": c.holder,
        "holder_node": c.holder_node,
        "resource": c.resource,
        "token": c.token,
        "expires_at": c.expires_at,
        "action": c.action,
        "target": c.target,
        "phase": c.phase,
        "path": path,
        "reason": reason or briefing.refusal(c, path, wall()),
    }
