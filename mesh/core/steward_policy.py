"""Which steward set the mesh should have, and who acts on it (pure rules, table-tested).

Config changes hand the live leases over (``mesh.core.stewards``), so a change may add and remove any
number of stewards at once: the set goes straight to its target. Even-sized sets are fragile ({A, B}
needs both, {A, B, C, D} needs three), so the rule never proposes one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from mesh.core.values import value


@value
class Candidate:
    """A live node that could be a steward (``node`` is its node id)."""

    node: str
    started_at: float
    host: str


def target_size(live_nodes: int, most: int = 5) -> int:
    """3 stewards (5 once the mesh has at least 7 live nodes); 1 in a mesh of one or two; never more than
    ``most`` (rounded down to odd): fewer stewards make claims cheaper, more survive more losses."""
    want = 5 if live_nodes >= 7 else 3 if live_nodes >= 3 else 1
    return max(1, min(want, most if most % 2 else most - 1))


def next_config(
    current: Sequence[str], live: Sequence[Candidate], gone: Collection[str], most: int = 5
) -> tuple[str, ...] | None:
    """The steward set to move to now (any number of changes at once), or None if ``current`` is right.

    ``live``: live nodes (stewards included); ``gone``: stewards to replace (left, dead long enough, or
    proven dead). Other stewards that are not live right now (suspect, freshly dead) are kept unless the
    set is over its target, and then dropped before anyone else. Live stewards are never dropped just
    because the mesh got smaller (it keeps its odd set), only to avoid an even size.
    """
    by_id = {c.node: c for c in live}
    if not by_id:
        return None
    keep = [s for s in current if s not in gone]
    hosts = {by_id[s].host for s in keep if s in by_id}
    # Oldest first, preferring a host that has no steward yet (a LAN mesh survives losing one machine).
    spares = sorted(
        (c for c in live if c.node not in keep), key=lambda c: (c.host in hosts, c.started_at, c.node)
    )
    want = target_size(len(by_id), most)
    while len(keep) < want and spares:
        keep.append(spares.pop(0).node)

    def droppable() -> list[str]:
        # Stewards not live now first, then live ones youngest first.
        away = [s for s in keep if s not in by_id]
        here = sorted((s for s in keep if s in by_id), key=lambda s: (-by_id[s].started_at, s))
        return away + here

    while len(keep) > want and any(s not in by_id for s in keep):
        keep.remove(droppable()[0])
    if len(keep) % 2 == 0:
        if spares:
            keep.append(spares.pop(0).node)
        else:
            keep.remove(droppable()[0])
    if not keep or set(keep) == set(current):
        return None
    return tuple(keep)


def can_decide(current: Sequence[str], voters: Collection[str]) -> bool:
    """Whether ``voters`` (live stewards, dead ones a proxy answers for) are a majority of ``current``."""
    return len(set(current) & set(voters)) > len(current) // 2


def upkeep_leader(current: Sequence[str], live: Sequence[Candidate]) -> str | None:
    """Who runs steward upkeep: the oldest live steward, else (no steward alive) the oldest live node."""
    stewards = [c for c in live if c.node in current]
    pool = stewards or list(live)
    if not pool:
        return None
    return min(pool, key=lambda c: (c.started_at, c.node)).node


def formation(live: Sequence[Candidate], me: str, limit: int = 3) -> tuple[str, ...]:
    """The first config: this node and up to ``limit - 1`` more of the nodes it sees, oldest first.

    Never an even size (a pair would stall if either left): one or three.
    """
    others = sorted((c for c in live if c.node != me), key=lambda c: (c.started_at, c.node))
    chosen = [me, *(c.node for c in others[: limit - 1])]
    if len(chosen) % 2 == 0:
        chosen.pop()
    return tuple(chosen)
