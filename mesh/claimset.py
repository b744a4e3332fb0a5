"""`claim_all`: several claims for one session, all or none. Standard library only (no asyncio), so that
`meshctl claim` runs it without an event loop over the node's wire; `mesh.claim` re-exports it."""

from __future__ import annotations

import time

from mesh.core.errors import MeshError
from mesh.core.resources import PATH_TYPES
from mesh.core.validate import split_resource

TYPE_CHECKING = False  # `typing` costs meshctl's start-up ~3 ms: only mypy reads the imports below
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    from mesh.views import ClaimView

    class _ClaimOnce(Protocol):
        """The part of MeshAPI that `claim_all` is built on."""

        async def claim_once(
            self, resource: str, ttl: float = ..., wait: float = ..., *, handle: bool = ...
        ) -> ClaimView: ...

        async def release(self, type: str, name: str, *, handle: bool = ...) -> bool: ...


async def claim_all(
    api: _ClaimOnce, resources: Sequence[str], ttl: float, wait: float = 0.0
) -> list[ClaimView]:
    """Claim several resources for this session, all or none: every claim granted, or none held.

    They are claimed one by one in ONE canonical order (items sorted by name, path claims after them; a
    caller claims several paths as one claim on their union, see `mesh.pathclaims`), and on a refusal the
    ones granted so far are released and the refusal raised. Safety is each claim's own. Progress: a session
    waits (`wait`) only for the next claim in the order while holding earlier ones, so two sessions can never
    wait for each other in a circle (the one holding the later of two contested items waits for nothing the
    other holds); `wait` bounds the whole call.
    """
    order = sorted(dict.fromkeys(resources), key=lambda r: (r.partition("/")[0] in PATH_TYPES, r))
    deadline = time.monotonic() + wait
    granted: list[ClaimView] = []
    try:
        for r in order:
            granted.append(await api.claim_once(r, ttl, max(0.0, deadline - time.monotonic())))
    except BaseException:
        for g in granted:
            try:  # not contextlib.suppress: contextlib is ~1.5 ms of a `meshctl claim`
                await api.release(*split_resource(g.resource))
            except MeshError:
                pass
        raise
    return granted
