"""Path claims in the claims simulator: the workload's patterns, and the overlap check of its checker.

The patterns overlap in the ways that matter (a tree and a file in it, `src/a*.py` and `src/*b.py`, a glob
crossing directories) and are disjoint in ways a prefix rule gets wrong (`lib/*/x` and `lib/y/z/x`). A
claim takes one to three of them at once (one claim on their union: all or none), exclusive or shared.

Pre-edit checks (``probe``): a node asks the stewards whether another session holds an exclusive claim on
a pattern matching a file (``ClaimsCore.probe``). Several callers may wait on one node's check of a file,
as the claims service's do; each is told the answer. An answer "nobody" is checked against the beliefs for
each caller: no other identity may have held such a claim from when THAT caller asked until the answer
(whichever round the core answered with: one sent before a later caller asked must not answer it).

The check: at no instant do two different owners believe they hold path claims whose patterns overlap
while one of them is exclusive; a violation names a path both patterns match (a witness).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Set
from typing import Any

from mesh.core import globs
from mesh.core.resources import PATH, SHARED_PATH, conflict, literal, path_claim, path_resource

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


FILES = ("src/app/x.py", "src/ab.py", "src/b.py", "src/app/models.py", "lib/y/z/x", "lib/q/x", "docs/a.md",
         "README.md")  # fmt: skip
"""Files the workload's pre-edit checks ask about: each matched by some patterns of the pool, not others."""


def probe(rng: random.Random) -> tuple[str, str]:
    """A pre-edit check: a file, and the resource its probe asks under (the prober's own shared slot)."""
    file = rng.choice(FILES)
    return file, probe_resource(file)


def probe_resource(file: str) -> str:
    """The resource a pre-edit check of ``file`` asks under (the prober's own shared slot of that file)."""
    return f"{SHARED_PATH}/{literal(file)}"


def holder_of(
    beliefs: Mapping[str, Mapping[str, Any]], file: str, asker: str, since: float, now: float
) -> str | None:
    """Another identity that believed it held an exclusive claim on a pattern matching ``file`` from
    ``since`` (or earlier) until ``now``, described; None if none did. ``beliefs``: resource -> identity ->
    the simulator's belief (``since``: true grant time; ``node.true(until)``: true end)."""
    for res, bs in sorted(beliefs.items()):
        pc = path_claim(res) if res.startswith(PATH + "/") else None
        if pc is None or not globs.matches(pc.glob, file):
            continue
        for ident, b in sorted(bs.items()):
            if ident != asker and b.since <= since and b.node.true(b.until) > now:
                return f"{ident} held {res} since {b.since:.3f}"
    return None


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
