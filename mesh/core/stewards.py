"""Steward configurations (epochs), the Paxos that chooses config e+1, the lease hand-off, durable state.

Stewards are NODE IDS (a steward restarted under the same node id is the same acceptor: it reloads its
durable state and sits out one D_A before it serves lease ballots again, PaxosLease's restart rule). Lease
owners stay ``node_id/incarnation``: a restarted proposer never inherits a lease.

Config e+1 may be ANY set (grow straight to the target, replace several at once). Its safety comes from a
hand-off instead of quorum intersection between epochs:

- config e+1 is chosen by single-decree Paxos among the stewards of e (durable acceptor state, written
  before the reply);
- a steward of e that accepts a value for e+1 refuses epoch-e lease ballots from then on ("fenced"), and
  its CfgAccepted carries a snapshot of its live accepted leases plus how long what it knows is
  incomplete: ``blackout`` for leases it FORGOT (restart quarantine; a dead steward answered for by a
  proxy), ``partial`` for older epochs' leases it never LEARNED (it adopted e without a hand-off, or its
  own hand-off still carries a blackout);
- the proposer merges the snapshots of the accepting majority (per resource the highest ballot, the
  longest exclusion, scaled by (1+rho)/(1-rho) for clock rates) with a blackout of
  max(max blackout, min partial), and installs the result on every steward of e+1 (``CfgInstall``);
- a steward of e+1 serves lease ballots only once it installed a snapshot for e+1 (and its blackout ran
  out), or one D_A after it adopted e+1 without one.

Why any epoch-e lease still believed is seen by every e+1 quorum: its holder's accept majority M and the
accepting majority Q of e+1 intersect in some steward s; s accepted the lease before it accepted e+1
(afterwards it refuses epoch-e ballots), so the snapshot s took at that accept holds the lease (or a
higher-ballot exclusion of the same resource) with at least the time the holder still believes it
(containment, D_P(1+rho) <= D_A(1-rho)). Every merged snapshot therefore excludes the resource for others
at least as long as the holder believes it, and every serving e+1 steward installed one, or waited D_A
after adopting e+1 (after every epoch-e lease had run out at its acceptors). A steward that cannot say
what it accepted (restarted, or a dead steward answered for by a proxy) reports a blackout of the time its
forgotten leases may still run, so the new stewards serve only after that: the MAXIMUM over the majority,
since an epoch-e lease may live on that steward alone within it. Leases of older epochs are different:
every steward of e that installed a hand-off for e knows all of them that can still be believed (or
carries the blackout that covers them), so ONE complete steward in the majority is enough: the MINIMUM of
``partial``. (Taking the maximum there too would let one slow steward chain blackouts through every
following change.) No exclusion ever needs more than D_A on any clock from any later moment
(containment), so every handed-over time is capped at D_A and quick successive changes never compound.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mesh.core.resources import slot_key
from mesh.core.values import field, replace, value


def node_of(identity: str) -> str:
    """The node id of an identity ``node_id/incarnation`` (a bare node id is its own node id)."""
    return identity.partition("/")[0]


@value
class StewardConfig:
    """The agreed steward (acceptor) set of one epoch: node ids."""

    epoch: int
    stewards: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.epoch < 1 or not self.stewards or len(set(self.stewards)) != len(self.stewards):
            raise ValueError(f"bad steward config {self!r}")
        if any(not s or "/" in s for s in self.stewards):
            raise ValueError(f"stewards are node ids: {self.stewards!r}")

    def majority(self) -> int:
        """How many stewards form a quorum."""
        return len(self.stewards) // 2 + 1


# ---- the hand-off --------------------------------------------------------------------------------------


@value
class SnapLease:
    """A live lease as an acceptor reports it in a hand-off; times are relative seconds."""

    resource: str
    owner: str
    owner_name: str
    epoch: int
    round: int
    lease_left: float
    claim_left: float


CONTESTED = "~contested/0"
"""The owner of a handed-over lease that two owners' snapshots disagreed on: nobody (no Release matches)."""


def contested(s: SnapLease) -> SnapLease:
    """``s`` as an exclusion nobody owns (see ``merge_snapshots``)."""
    return replace(s, owner=CONTESTED, owner_name="(contested)")


def merge_snapshots(
    snapshots: Sequence[Sequence[SnapLease]],
    blackouts: Sequence[float],
    partials: Sequence[float],
    stretch: float,
    cap: float,
    contest: bool = True,
) -> tuple[tuple[SnapLease, ...], float]:
    """One hand-off from an accepting majority's: per resource the highest ballot and longest exclusion.

    ``stretch`` = (1+rho)/(1-rho): the times were measured on other clocks and will run on others again;
    ``cap`` (D_A) bounds every time (see the module docstring). The blackout is max(blackouts, min(partials)).
    Two owners of one resource can appear (a stale accept beside the believed lease; a failed one-round
    claim's accepts at a minority, whose ballot can be the HIGHER one): the merge keeps the highest ballot
    with the longest time of any, owned by ``CONTESTED``, an owner nobody is. Its exclusion outlasts the
    believed lease; the believed holder cannot renew through it (a foreign lease) and stops at its own
    deadline; and no Release can clear it early (a Release clears only its sender's own lease, so the
    failed claimant's Release for its stale accept must not open the slot while the other still believes).
    """
    best: dict[str, SnapLease] = {}
    longest: dict[str, tuple[float, float]] = {}
    owners: dict[str, set[str]] = {}
    for snap in snapshots:
        for s in snap:
            key = slot_key(s.resource, s.owner)  # a shared path claim is one lease per owner
            b = best.get(key)
            if b is None or (s.epoch, s.round) > (b.epoch, b.round):
                best[key] = s
            lease, claim = longest.get(key, (0.0, 0.0))
            longest[key] = (max(lease, s.lease_left), max(claim, s.claim_left))
            owners.setdefault(key, set()).add(s.owner)
    out = tuple(
        replace(
            contested(best[r]) if contest and len(owners[r]) > 1 else best[r],
            lease_left=min(cap, longest[r][0] * stretch),
            claim_left=longest[r][1],
        )
        for r in sorted(best)
    )
    black = max(max(blackouts, default=0.0), min(partials, default=0.0))
    return out, min(cap, black * stretch)


def best_quorum(accepted: Sequence[CfgAccepted], majority: int) -> list[CfgAccepted] | None:
    """The subset (of at least ``majority``) whose hand-off has the shortest blackout; None if too few.

    Any majority of the stewards that accepted the chosen value is a valid source (each of them is fenced),
    so a steward still in its restart quarantine need not stall the new epoch when enough others answered.
    blackout(Q) = max(max blackout, min partial): for each bound on the blackouts, the best Q takes every
    steward within it (more members can only lower the minimum of partial).
    """
    if len(accepted) < majority:
        return None
    best: tuple[float, list[CfgAccepted]] | None = None
    for bound in sorted({a.blackout for a in accepted}):
        q = [a for a in accepted if a.blackout <= bound]
        if len(q) < majority:
            continue
        cost = max(bound, min(a.partial for a in q))
        if best is None or cost < best[0]:
            best = (cost, q)
    return best[1] if best else None


# ---- config Paxos messages (target epoch = the epoch being chosen) ---------------------------------------


@value
class CfgPrepare:
    """Phase 1a for config ``epoch`` (= current + 1)."""

    epoch: int
    round: int
    proposer: str


@value
class CfgPromise:
    """Phase 1b; ``accepted_round`` is -1 if this steward accepted no value for ``epoch`` yet."""

    epoch: int
    round: int
    proposer: str
    accepted_round: int
    accepted_stewards: tuple[str, ...]


@value
class CfgReject:
    """Refusal: wrong epoch, or a greater round promised."""

    epoch: int
    round: int
    proposer: str
    current_epoch: int
    promised_round: int


@value
class CfgAccept:
    """Phase 2a: accept ``stewards`` as config ``epoch``."""

    epoch: int
    round: int
    proposer: str
    stewards: tuple[str, ...]


@value
class CfgAccepted:
    """Phase 2b, with the hand-off: the acceptor's live leases, and for how long what it knows is
    incomplete: ``blackout`` (leases it forgot) and ``partial`` (older epochs' leases it never learned)."""

    epoch: int
    round: int
    proposer: str
    snapshot: tuple[SnapLease, ...] = ()
    blackout: float = 0.0
    partial: float = 0.0


@value
class CfgInstall:
    """A chosen config with the merged hand-off, sent to each of its stewards."""

    epoch: int
    stewards: tuple[str, ...]
    snapshot: tuple[SnapLease, ...] = ()
    blackout: float = 0.0


@value
class CfgInstalled:
    """A steward of ``epoch`` has its hand-off (the proposer stops resending CfgInstall to it)."""

    epoch: int


@value
class ConfigAnnounce:
    """A chosen config (also the gossip payload); adopting a newer epoch than one's own is always safe."""

    epoch: int
    stewards: tuple[str, ...]


CfgMsg = (
    CfgPrepare | CfgPromise | CfgReject | CfgAccept | CfgAccepted | CfgInstall | CfgInstalled | ConfigAnnounce
)


# ---- durable acceptor state ------------------------------------------------------------------------------


@value
class CfgVote:
    """A steward's Paxos acceptor state for choosing config ``epoch``."""

    epoch: int = 0
    promised_round: int = -1
    promised_by: str = ""
    accepted_round: int = -1
    accepted_stewards: tuple[str, ...] = ()


@value
class StewardState:
    """What a node must never forget as an acceptor; written (atomically, fsynced) before any reply it backs.

    ``floor``: lease ballots up to this number may have been promised or accepted. It is reserved ahead
    in chunks, so it is written rarely; a restarted acceptor promises nothing at or below it, so fencing
    tokens never go backwards across its restarts.
    """

    config: StewardConfig | None = None
    vote: CfgVote = field(default_factory=CfgVote)
    floor: tuple[int, int] = (0, 0)
    clean: bool = False
    """Written at a graceful stop when this acceptor held no live lease and knew its epoch's hand-off:
    the next start needs no quarantine (it forgets nothing that matters; the floor covers its promises).
    Cleared durably at that start, before it serves."""

    def to_json(self) -> str:
        """A stable JSON text of this state."""
        d: dict[str, Any] = {"v": 1, "floor": list(self.floor), "clean": self.clean}
        if self.config is not None:
            d["config"] = {"epoch": self.config.epoch, "stewards": list(self.config.stewards)}
        v = self.vote
        d["vote"] = {
            "epoch": v.epoch,
            "promised_round": v.promised_round,
            "promised_by": v.promised_by,
            "accepted_round": v.accepted_round,
            "accepted_stewards": list(v.accepted_stewards),
        }
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StewardState:
        """Parse ``to_json``'s text; ValueError if it is not exactly that shape."""
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or d.get("v") != 1:
                raise ValueError("unknown version")
            fl = d["floor"]
            floor = (_int(fl[0]), _int(fl[1]))
            clean = d.get("clean", False)
            if not isinstance(clean, bool):
                raise TypeError("clean")
            config = None
            if "config" in d:
                c = d["config"]
                config = StewardConfig(_int(c["epoch"]), tuple(_str(s) for s in c["stewards"]))
            v = d["vote"]
            vote = CfgVote(
                epoch=_int(v["epoch"]),
                promised_round=_int(v["promised_round"]),
                promised_by=_str(v["promised_by"]),
                accepted_round=_int(v["accepted_round"]),
                accepted_stewards=tuple(_str(s) for s in v["accepted_stewards"]),
            )
        except (KeyError, IndexError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"garbled steward state: {e!r}") from None
        if len(fl) != 2 or min(floor) < 0:
            raise ValueError("garbled steward state: floor")
        return cls(config=config, vote=vote, floor=floor, clean=clean)


def _int(x: object) -> int:
    if not isinstance(x, int) or isinstance(x, bool):
        raise TypeError(f"not an integer: {x!r}")
    return x


def _str(x: object) -> str:
    if not isinstance(x, str):
        raise TypeError(f"not a string: {x!r}")
    return x


def cfg_acceptor_step(
    st: StewardState, node: str, m: CfgPrepare | CfgAccept
) -> tuple[StewardState, CfgPromise | CfgReject | CfgAccepted]:
    """The config acceptor ``node`` (state ``st``) handles ``m``: its new state and its reply.

    Pure, so the steward itself and a proxy holding a dead steward's lock run the very same rule over
    the very same durable state. The caller persists the new state (if changed) BEFORE sending the reply,
    and fills in the hand-off of a CfgAccepted.
    """
    cur = st.config
    cur_epoch = cur.epoch if cur else 0
    vote = st.vote if st.vote.epoch == m.epoch else CfgVote(epoch=m.epoch)
    if cur is None or node not in cur.stewards or m.epoch != cur.epoch + 1:
        return st, CfgReject(m.epoch, m.round, m.proposer, cur_epoch, -1)
    if isinstance(m, CfgPrepare):
        if m.round <= vote.promised_round:
            return st, CfgReject(m.epoch, m.round, m.proposer, cur_epoch, vote.promised_round)
        vote = replace(vote, promised_round=m.round, promised_by=m.proposer)
        reply: CfgPromise | CfgAccepted = CfgPromise(
            m.epoch, m.round, m.proposer, vote.accepted_round, vote.accepted_stewards
        )
        return replace(st, vote=vote), reply
    exact = m.round == vote.promised_round and m.proposer == vote.promised_by
    if not (exact or m.round > vote.promised_round):
        return st, CfgReject(m.epoch, m.round, m.proposer, cur_epoch, vote.promised_round)
    try:
        StewardConfig(m.epoch, m.stewards)
    except ValueError:
        return st, CfgReject(m.epoch, m.round, m.proposer, cur_epoch, vote.promised_round)
    vote = replace(
        vote,
        promised_round=m.round,
        promised_by=m.proposer,
        accepted_round=m.round,
        accepted_stewards=m.stewards,
    )
    return replace(st, vote=vote), CfgAccepted(m.epoch, m.round, m.proposer)


def proxy_step(
    st: StewardState, node: str, m: CfgPrepare | CfgAccept, current: StewardConfig, blackout: float
) -> tuple[StewardState, CfgPromise | CfgReject | CfgAccepted]:
    """A proxy (holding dead steward ``node``'s lock) answers for it as a CONFIG acceptor.

    The dead steward may have died before learning ``current``; adopting a newer config on its behalf is
    what it would have done. Its lease state died with it, so an accept carries a blackout (one D_A from
    now: every lease it accepted was accepted before it died, i.e. before now).
    """
    if current.epoch > (st.config.epoch if st.config else 0):
        st = replace(st, config=current)
    st, reply = cfg_acceptor_step(st, node, m)
    if isinstance(reply, CfgAccepted):
        reply = replace(reply, blackout=blackout)
    return st, reply


@value(frozen=False)
class CfgProposal:
    """An in-flight reconfiguration run by this node (votes are tallied by steward node id)."""

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
    accepted: dict[str, CfgAccepted] | None = None
    refused: set[str] | None = None
    finalize_at: float | None = None  # a majority accepted; waiting briefly for a cleaner hand-off
