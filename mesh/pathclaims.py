"""Path claims as the hooks use them: claims of type `path` whose name is a project-relative path.

Interim rule (until the exact glob overlap lands in `mesh/core/globs.py`): a claim on `src/app` covers
`src/app` itself and everything under `src/app/`; two path claims overlap when one covers the other. A
pattern may end in `/**` (the directory and everything under it) — any other wildcard is refused, because
this rule could not decide it. Everything that decides overlap goes through `overlaps()`: swap its body for
the glob core and the hooks, the hook wire and the MCP server follow.

`claim_paths` claims patterns through any `MeshAPI` (the node's own `Node` for the hook wire, a `Client` for
the MCP server), so both decide a path claim the same way.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from mesh import briefing
from mesh.clock import wall
from mesh.core.validate import resource_name, shown, split_resource
from mesh.errors import ClaimDenied, InvalidInput
from mesh.views import ClaimView, MemberView

if TYPE_CHECKING:
    from mesh.api import MeshAPI

PATH_TYPE = "path"
_WILDCARDS = frozenset("*?[]{}!")


def overlaps(a: str, b: str) -> bool:
    """Whether path claims `a` and `b` (project-relative, normalised) can cover a common path."""
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def normalise(path: str) -> str:
    """A project-relative path in its one spelling: `/`-separated, no `.`/`..`, no leading or trailing `/`.

    Raises InvalidInput for a path that leaves the project (`..`) or is absolute.
    """
    if not path or "\x00" in path:
        raise InvalidInput("a path must not be empty or contain NUL")
    if path.startswith("/"):
        raise InvalidInput(f"path {shown(path)} must be relative to the project root")
    norm = posixpath.normpath(path)
    if norm == "." or norm == ".." or norm.startswith("../"):
        raise InvalidInput(f"path {shown(path)} is outside the project")
    return norm


def claim_name(pattern: str) -> str:
    """The claim item name for a path pattern: `src/app/**` -> `src/app`, `src/x.py` -> `src/x.py`.

    Validated as a claim name (so it travels as any item does); wildcards other than a trailing `/**` are
    refused until the glob core decides overlap exactly.
    """
    p = pattern.strip()
    if p.endswith("/**"):
        p = p[:-3]
    elif p == "**":
        raise InvalidInput("claiming the whole project ('**') is not allowed; claim a directory")
    if any(c in _WILDCARDS for c in p):
        raise InvalidInput(
            f"path pattern {pattern!r}: only a trailing '/**' is supported for now (claim a file or a "
            "directory, e.g. 'src/app/**')"
        )
    name = normalise(p)
    resource_name(PATH_TYPE, name)  # the item-name charset: paths with spaces etc. cannot be claimed
    return name


def resource(pattern: str) -> str:
    """`path/NAME` for a pattern (see claim_name)."""
    return f"{PATH_TYPE}/{claim_name(pattern)}"


def path_conflict(members: list[MemberView], path: str) -> briefing.ClaimNote | None:
    """The live claim of another session whose path overlaps `path` (normalised), if any."""
    for c in briefing.live_claims(members, others_only=True):
        type_, _, name = c.resource.partition("/")
        if type_ == PATH_TYPE and overlaps(name, path):
            return c
    return None


async def claim_paths(api: MeshAPI, patterns: list[str], ttl: float) -> dict[str, Any]:
    """Claim path patterns for this session: all granted, or none (what was granted here is released).

    SWAP: until acceptors refuse overlapping path leases and the claims protocol takes several items at
    once, overlap with other sessions' claims is checked against the live status views first (a claim
    granted a moment ago elsewhere may not be visible yet), then each path is claimed as an item of type
    `path` (exact name). Replace this body with one multi-item path claim when that lands.
    """
    names = [claim_name(p) for p in patterns]
    members = await api.members()
    for name in names:
        c = path_conflict(members, name)
        if c is not None:
            return {"granted": False, "conflict": conflict_json(c, name)}
    granted: list[ClaimView] = []
    try:
        for name in names:
            granted.append(await api.claim_once(f"{PATH_TYPE}/{name}", ttl, 0.0))
    except ClaimDenied as e:
        await _give_back(api, granted)
        return {
            "granted": False,
            "conflict": {"holder": e.holder, "resource": "", "path": "", "expires_at": e.expires_at or 0.0,
                         "reason": str(e)},
        }  # fmt: skip
    except BaseException:
        await _give_back(api, granted)
        raise
    return {
        "granted": True,
        "claims": [{"resource": g.resource, "token": g.token, "expires_at": g.expires_at} for g in granted],
    }


async def _give_back(api: MeshAPI, granted: list[ClaimView]) -> None:
    for g in granted:
        await api.release(*split_resource(g.resource))


def conflict_json(c: briefing.ClaimNote, path: str) -> dict[str, Any]:
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
        "reason": briefing.refusal(c, path, wall()),
    }
