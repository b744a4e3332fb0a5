"""Deliberately broken variants of the claims protocol, switchable for tests only (all off by default).

The simulator is only trusted if it finds a safety violation with each of these switched on.
"""

from __future__ import annotations

from mesh.core.values import fields, value


@value
class Mutants:
    """Test-only switches; production code must always use ``Mutants()``."""

    deadline_at_quorum: bool = False
    """Start the proposer's lease deadline when the accept quorum arrives instead of when Prepare was sent."""
    quorum_by_messages: bool = False
    """Count promise/accept messages instead of distinct acceptor ids (duplicates form a quorum)."""
    release_unmatched: bool = False
    """An acceptor clears its lease on Release from the owner whatever the ballot (not exact owner+ballot)."""
    no_renewal_qualifier: bool = False
    """Treat any reported lease owned by this proposer as open, on any attempt and for any ballot."""
    no_lease_handoff: bool = False
    """Stewards of a new epoch serve at once: no snapshot of the old stewards' leases, no blackout."""
    majority_of_seen: bool = False
    """Count a quorum over the stewards this proposer has heard from lately, not the agreed steward set."""
    genesis_anywhere: bool = False
    """Any home's genesis lock holder may create the first config, not only the home that created the mesh."""
    path_exact_only: bool = False
    """Acceptors check path claims for conflicts only by exact name (one slot per pattern), not by overlap:
    so overlapping patterns such as ``src/**`` and ``src/app/*.py`` can be held exclusively at once."""
    no_ballot_floor: bool = False
    """A restarted steward forgets which lease ballots it promised (no durable floor): PaxosLease's diskless
    acceptor, whose restart rule keeps leases exclusive but lets fencing tokens go backwards."""

    fast_no_lease_check: bool = False
    """An acceptor takes a fast (single-round) Propose whenever its number is the highest it has seen, without
    checking for a live lease in the slot: a fresh claim then overwrites the holder's lease."""

    handoff_highest_owner: bool = False
    """A hand-off that finds two owners' leases on one resource keeps the highest ballot's OWNER (not an
    exclusion nobody owns): a failed one-round claim's stale accept, higher than the believed lease, is
    then cleared by its owner's Release while the other still believes."""

    open_any_promise: bool = False
    """A Prepare goes on to its Propose once ANY steward of its promise majority reported the slot open,
    ignoring the others' reports of a live lease (the real rule: a MAJORITY of promises that report nothing
    live against it): a claim then overwrites a lease its holder still believes."""

    short_acceptor_lease: bool = False
    """Acceptors exclude others for D_P only (D_A = D_P: no rho stretch, no margin), below containment
    ``D_P(1+rho) <= D_A(1-rho)``: an acceptor on a fast clock lets a lease go while its holder on a slow clock
    still believes it."""

    probe_late_answers: bool = False
    """A pre-edit check (``Leasing.probe``) counts its stewards' answers however late they come, not only
    within ``LeaseConfig.probe_window`` of its round's send: a round slower than the containment slack can
    answer "nobody" while a holder renewing through other stewards held throughout."""

    probe_joins_old_round: bool = False
    """A pre-edit check asked while a probe of the same resource is under way joins that round instead of
    sending a fresh one (its answer says it was sent at the last question it joined): the older round, sent
    before this question, can answer "nobody" about a holder granted between its send and the question."""

    probe_sent_at_answer: bool = False
    """A probe's answer says its round was sent when the answer came (``Probed.sent`` = the answer's time,
    not the round's send): the caller then settles with it the questions asked while the round was out,
    which it may answer "nobody" about a holder granted after its send (the rule: a round answers only the
    questions asked at or before its send; older rounds keep running for the questions they do answer)."""

    fifo_head_window_forever: bool = False
    """A free item's reservation for its head waiter never runs out: a head that died blocks the item for
    good (a liveness bug, not a safety one: caught by the scripted dead-head scenario of the simulator)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every mutant switch name."""
        return fields(cls)

    @classmethod
    def only(cls, name: str) -> Mutants:
        """A Mutants value with exactly ``name`` switched on."""
        if name not in cls.names():
            raise ValueError(f"unknown mutant {name!r}; known: {', '.join(cls.names())}")
        return cls(**{name: True})

    def any(self) -> bool:
        """True if any switch is on."""
        return any(getattr(self, n) for n in self.names())
