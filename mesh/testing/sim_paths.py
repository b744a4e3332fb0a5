"""Path claims in the claims simulator: the workload's patterns, and the overlap check of its checker.

The patterns overlap in the ways that matter (a tree and a file in it, `src/a*.py` and `src/*b.py`, a glob
crossing directories) and are disjoint in ways a prefix rule gets wrong (`lib/*/x` and `lib/y/z/x`). A
claim takes one to three of them at once (one claim on their union: all or none), exclusive or shared.

The check: at no instant do two different owners believe they hold path claims whose patterns overlap
while one of them is exclusive; a violation names a path both patterns match (a witness).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Set

from mesh.core import globs
from mesh.core.resources import conflict, path_claim, path_resource

POOL = (
    "src/**",
    "src/app/**",
    "src/app/*.py",
    "src/*/x.py",
    "src/a*.py",
    "src/*b.py",
    "lib/*/x",
    "lib/y/z/x",
    "docs/**/*.md",
    "**/*.md",
)


def pick(rng: random.Random) -> str:
    """A path claim's resource: one to three patterns of the pool, exclusive or (sometimes) shared."""
    patterns = rng.sample(POOL, rng.choice((1, 1, 1, 2, 3)))
    return path_resource(patterns, shared=rng.random() < 0.3)


def overlapping_holders(live: Mapping[str, Set[str]]) -> str | None:
    """Two owners holding conflicting path claims at once, described with a witness path (None if none).

    ``live``: resource -> the owners that believe they hold it now.
    """
    paths = sorted(r for r in live if path_claim(r) is not None and live[r])
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            if not conflict(a, b):
                continue
            for x in sorted(live[a]):
                for y in sorted(live[b]):
                    if x != y:
                        pa, pb = path_claim(a), path_claim(b)
                        assert pa is not None and pb is not None
                        witness = globs.overlap_witness(pa.glob, pb.glob)
                        return f"overlapping holders: {x} holds {a} and {y} holds {b} (both match {witness})"
    return None
