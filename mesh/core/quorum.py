"""Pure quorum rules: a vote is decided by DISTINCT members of one agreed voter set, never by messages."""

from __future__ import annotations

import enum
from collections.abc import Set


class VoteResult(enum.Enum):
    """Outcome of counting votes so far."""

    WON = "won"
    PENDING = "pending"
    LOST = "lost"


def majority(n: int) -> int:
    """Smallest number of voters out of ``n`` that forms a majority (any two majorities intersect)."""
    if n < 0:
        raise ValueError("voter count must be >= 0")
    return n // 2 + 1


def tally(voters: Set[str], yes: Set[str], no: Set[str]) -> VoteResult:
    """Decide a vote from the distinct acceptor ids in ``yes``/``no`` that belong to ``voters``.

    Ids outside the voter set are ignored (a stranger cannot vote); an id in both sets counts as yes,
    since a voter that promised and later refused a higher ballot still promised this one.
    An empty voter set can never win.
    """
    y = len(yes & voters)
    n = len((no - yes) & voters)
    need = majority(len(voters))
    if voters and y >= need:
        return VoteResult.WON
    if n > len(voters) - need or not voters:
        return VoteResult.LOST
    return VoteResult.PENDING


def tally_messages(voter_count: int, yes_messages: int, no_messages: int) -> VoteResult:
    """The BROKEN rule (mutant ``quorum_by_messages``): count messages, so duplicates make a quorum."""
    need = majority(voter_count)
    if voter_count and yes_messages >= need:
        return VoteResult.WON
    if no_messages > voter_count - need or not voter_count:
        return VoteResult.LOST
    return VoteResult.PENDING
