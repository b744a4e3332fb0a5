"""Steward configurations (epochs) and the single-decree Paxos that chooses config e+1 among stewards of e.

Rules (DESIGN "Reconfiguration"):
- one change at a time: config e+1 adds or removes exactly one steward of config e, so any majority
  of e and any majority of e+1 intersect;
- a steward that accepts a value for e+1 refuses epoch-e lease ballots from then on;
- a steward of e (e >= 2) refuses to take part in choosing e+1 until max D_A has passed since it adopted
  e, so leases granted in epoch e-1 have expired before e+1 (which need not intersect e-1) exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StewardConfig:
    """The agreed steward (acceptor) set of one epoch."""

    epoch: int
    stewards: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.epoch < 1 or not self.stewards or len(set(self.stewards)) != len(self.stewards):
            raise ValueError(f"bad steward config {self!r}")


def one_change(old: Sequence[str], new: Sequence[str]) -> bool:
    """True if ``new`` adds or removes exactly one steward of ``old`` (and is not empty)."""
    return bool(new) and len(set(old) ^ set(new)) == 1 and len(set(new)) == len(new)


def target_size(node_count: int) -> int:
    """How many stewards a mesh of ``node_count`` nodes should have: 3, or 5 once it has >= 7 nodes."""
    return 5 if node_count >= 7 else min(3, max(1, node_count))


def pick_next_change(
    current: Sequence[str], live: Sequence[tuple[str, float, str]], dead: Sequence[str] = ()
) -> tuple[str, ...] | None:
    """The next single change toward a healthy steward set, or None if it is healthy.

    ``live`` lists live nodes as ``(identity, started_at, host)``; ``dead`` lists identities declared dead.
    Dead stewards are removed first; then the set grows (oldest live node, preferring a host not yet
    represented) or shrinks (youngest steward) toward ``target_size``.
    """
    cur = list(current)
    for d in dead:
        if d in cur and len(cur) > 1:
            cur.remove(d)
            return tuple(cur)
    want = target_size(len(live))
    if len(cur) < want:
        hosts = {h for i, _, h in live if i in cur}
        cands = sorted((i for i in live if i[0] not in cur), key=lambda c: (c[2] in hosts, c[1], c[0]))
        if cands:
            return (*cur, cands[0][0])
    if len(cur) > want:
        age = {i: t for i, t, _ in live}
        youngest = max(cur, key=lambda s: (age.get(s, float("inf")), s))
        cur.remove(youngest)
        return tuple(cur)
    return None


# ---- config Paxos messages (target epoch = the epoch being chosen) ---------------------------------------


@dataclass(frozen=True)
class CfgPrepare:
    """Phase 1a for config ``epoch`` (= current + 1)."""

    epoch: int
    round: int
    proposer: str


@dataclass(frozen=True)
class CfgPromise:
    """Phase 1b; ``accepted_round`` is -1 if this steward accepted no value for ``epoch`` yet."""

    epoch: int
    round: int
    proposer: str
    accepted_round: int
    accepted_stewards: tuple[str, ...]


@dataclass(frozen=True)
class CfgReject:
    """Refusal: wrong epoch, a greater round promised, or the post-adoption gap has ``wait`` s to run."""

    epoch: int
    round: int
    proposer: str
    current_epoch: int
    promised_round: int
    wait: float


@dataclass(frozen=True)
class CfgAccept:
    """Phase 2a: accept ``stewards`` as config ``epoch``."""

    epoch: int
    round: int
    proposer: str
    stewards: tuple[str, ...]


@dataclass(frozen=True)
class CfgAccepted:
    """Phase 2b."""

    epoch: int
    round: int
    proposer: str


@dataclass(frozen=True)
class ConfigAnnounce:
    """A chosen config (also the gossip payload); adopting a newer epoch than one's own is always safe."""

    epoch: int
    stewards: tuple[str, ...]


CfgMsg = CfgPrepare | CfgPromise | CfgReject | CfgAccept | CfgAccepted | ConfigAnnounce


@dataclass
class CfgAcceptorState:
    """This steward's Paxos acceptor state for choosing ``epoch``."""

    epoch: int
    promised_round: int = -1
    promised_by: str = ""
    accepted_round: int = -1
    accepted_stewards: tuple[str, ...] = ()
    accepted_at: float = 0.0


@dataclass
class CfgProposal:
    """An in-flight reconfiguration run by this node."""

    epoch: int
    target: tuple[str, ...]
    voters: frozenset[str]
    give_up_at: float
    round: int = -1
    phase: str = "idle"  # idle | prepare | accept
    timeout_at: float = 0.0
    retry_at: float | None = None
    value: tuple[str, ...] = ()
    promised: set[str] | None = None
    best: tuple[int, tuple[str, ...]] = (-1, ())
    accepted: set[str] | None = None
    refused: set[str] | None = None
