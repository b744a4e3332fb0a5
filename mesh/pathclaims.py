"""Path claims as the hooks use them: claims of type `path` whose name is a project-relative path.

Interim rule (until the exact glob overlap lands in `mesh/core/globs.py`): a claim on `src/app` covers
`src/app` itself and everything under `src/app/`; two path claims overlap when one covers the other. A
pattern may end in `/**` (the directory and everything under it) — any other wildcard is refused, because
this rule could not decide it. Everything that decides overlap goes through `overlaps()`: swap its body for
the glob core and the hooks, the hook wire and the MCP server follow.
"""

from __future__ import annotations

import posixpath

from mesh.core.validate import resource_name
from mesh.errors import InvalidInput

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
        raise InvalidInput(f"path {path!r} must be relative to the project root")
    norm = posixpath.normpath(path)
    if norm == "." or norm == ".." or norm.startswith("../"):
        raise InvalidInput(f"path {path!r} is outside the project")
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
