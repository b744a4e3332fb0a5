"""What the claims core's parts share: the lease timing, the effects a core hands its runtime, and the bounds.

Effects are carried out IN ORDER; ``Persist`` must be durable before any later effect of the same list
(see ``mesh.core.claims`` for the whole contract).
"""

from __future__ import annotations

from mesh.core import lease, stewards
from mesh.core.errors import ConfigError
from mesh.core.lease import LeaseMsg
from mesh.core.mutants import Mutants
from mesh.core.stewards import CfgMsg, StewardConfig, StewardState
from mesh.core.values import value

ClaimMsg = LeaseMsg | CfgMsg
CLAIM_MESSAGES: tuple[type, ...] = (
    lease.Prepare,
    lease.Promise,
    lease.PrepareReject,
    lease.Propose,
    lease.Accepted,
    lease.AcceptReject,
    lease.Release,
    lease.Free,
    stewards.CfgPrepare,
    stewards.CfgPromise,
    stewards.CfgReject,
    stewards.CfgAccept,
    stewards.CfgAccepted,
    stewards.CfgInstall,
    stewards.CfgInstalled,
    stewards.ConfigAnnounce,
)
"""Every message type a ClaimsCore receives (what the claims service takes from its peers)."""
NO_MUTANTS = Mutants()
CONFIG_RESOURCE = "@config"
"""``Unavailable.resource`` used when a reconfiguration gives up."""
FLOOR_CHUNK = 1 << 16
"""Lease rounds reserved per write of the durable ballot floor (one fsync per this many promises)."""
SNAPSHOT_MAX = 2000
"""Leases one steward reports in a hand-off; beyond it the hand-off carries a blackout instead."""


@value
class LeaseConfig:
    """Claims timing; a 0.0 field means "derive from the others" as DESIGN.md prescribes."""

    lease: float = 10.0
    """D_P: how long a holder believes a grant/renewal lasts, counted from when its Prepare was SENT."""
    rho: float = 0.01
    """Largest clock-rate error between any node and true time (clock rates lie in [1-rho, 1+rho])."""
    renew_every: float = 0.0
    """Start a renewal this long after the last successful attempt started (default D_P/3)."""
    acceptor_lease: float = 0.0
    """D_A: how long an acceptor excludes others after accepting (default (D_P+1)(1+rho)/(1-rho)).

    Safety needs only containment, D_P(1+rho) <= D_A(1-rho) (``validate``): the holder's deadline counts
    from when its Prepare (or one-round Propose) was SENT, an acceptor's exclusion from its accept, later, so
    no message delay enters the inequality. The 1 s is a margin on top; the value is not rounded (it was
    ceil()'d up to whole seconds: 12 s, not 11.2 s, for D_P = 10 s, which only made a dead holder's items
    come back later; every use, the wire's ``lease`` included, is a float)."""
    attempt_timeout: float = 0.0
    """One ballot's time to reach quorum before it is abandoned (default min(2, D_P/4))."""
    backoff_max: float = 0.0
    """Upper bound of the random backoff after a ballot is outvoted (default attempt_timeout)."""
    claim_patience: float = 0.0
    """How long a claim keeps retrying against contention before Unavailable (default 4 attempt timeouts)."""
    config_patience: float = 30.0
    """How long a reconfiguration keeps retrying before Unavailable(resource="@config")."""
    forget_after: float = 0.0
    """Acceptors forget an idle resource this long after its lease expired (default 10 D_A)."""
    max_stewards: int = 5
    """The steward set grows to at most this many (odd) members (``steward_policy.target_size``)."""
    single_round: bool = True
    """A fresh claim first tries one round (a fast Propose, no Prepare: ``mesh.core.lease``); refused, it
    falls back to the classic two. Off: two rounds always (the node's MESH_ONE_ROUND_CLAIMS=0)."""
    thrifty: bool = True
    """A one-round claim asks a bare majority of the stewards first (this node, then those that answered it
    fastest): fewer writes and answers on the claimant's loop (5 stewards: 3, not 5). The others get the same
    Propose once one refuses or the majority is slow (``Leasing._hedge``: a few of its usual answer times, at
    most ``thrifty_wait``); a message not sent yet is a message late: nothing the protocol does not tolerate
    already."""
    thrifty_wait: float = 0.0
    """The longest a thrifty one-round claim waits for its majority before asking the rest (default
    min(0.05 s, attempt_timeout / 4); the wait while no answer time is known yet)."""

    def __post_init__(self) -> None:
        def put(name: str, value: float) -> None:
            if getattr(self, name) == 0.0:
                object.__setattr__(self, name, value)

        put("renew_every", self.lease / 3)
        if 0 <= self.rho < 1:
            put("acceptor_lease", (self.lease + 1) * (1 + self.rho) / (1 - self.rho))
        put("attempt_timeout", min(2.0, self.lease / 4))
        put("backoff_max", self.attempt_timeout)
        put("thrifty_wait", min(0.05, self.attempt_timeout / 4))
        put("claim_patience", 4 * self.attempt_timeout)
        put("forget_after", 10 * self.acceptor_lease)

    @property
    def stretch(self) -> float:
        """(1+rho)/(1-rho): a duration measured on one clock, made safe to run on any other."""
        return (1 + self.rho) / (1 - self.rho)

    @property
    def probe_window(self) -> float:
        """How long after sending a probe round (the pre-edit check) its answers may still count, on the
        prober's clock: the containment slack D_A(1-rho)/(1+rho) - D_P (1 s by default, whatever D_P).

        Why: a steward of a holder's accept majority keeps that lease live at least D_A/(1+rho) true seconds
        after its accept, which came after the holder's send; the holder believes it at most D_P/(1-rho)
        true seconds after that send. So a steward of that majority reports the lease to any question that
        reaches it from when the holder was granted until at least the slack (true time) after the holder
        stopped believing that grant. A round whose answers all come within the slack of its send therefore
        says "nobody" only if nobody held when it was sent: a holder of then is still believed or still in
        its slack when the last answer comes, and the stewards of its accept majority that answered cannot
        all have missed it. A slower round can miss a holder that held from before the send to after the
        last answer: its first grant ran out at the stewards that answered late, and its renewal (granted by
        others, before its deadline) reached the early ones only after they answered (``slow_probe`` in
        mesh.testing.sim). Claims do not need this: a grant's deadline is counted from its own send, and a
        claim's promises are followed by accepts, whose ballot numbers order it against the holder's.
        """
        return max(0.0, self.acceptor_lease * (1 - self.rho) / (1 + self.rho) - self.lease)

    def validate(self) -> LeaseConfig:
        """Raise ConfigError unless the values are consistent (containment included); return self."""
        if not self.lease > 0:
            raise ConfigError("lease (D_P) must be > 0")
        if not 0 <= self.rho < 1:
            raise ConfigError("rho must be in [0, 1)")
        if self.lease * (1 + self.rho) > self.acceptor_lease * (1 - self.rho):
            raise ConfigError("containment violated: need D_P*(1+rho) <= D_A*(1-rho)")
        if not 0 < self.renew_every < self.lease:
            raise ConfigError("renew_every must be in (0, D_P)")
        if not 0 < self.attempt_timeout < self.lease:
            raise ConfigError("attempt_timeout must be in (0, D_P)")
        if self.renew_every + self.attempt_timeout >= self.lease:
            raise ConfigError("renew_every + attempt_timeout must be < D_P (a renewal must fit)")
        if not 0 < self.thrifty_wait < self.attempt_timeout:
            raise ConfigError("thrifty_wait must be in (0, attempt_timeout)")
        for name in ("backoff_max", "claim_patience", "config_patience", "forget_after"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0")
        return self

    @classmethod
    def fast(cls) -> LeaseConfig:
        """Short timings for tests and the simulator (D_P = 2 s, D_A = 3.06 s)."""
        return cls(lease=2.0, config_patience=10.0)


# ---- effects ---------------------------------------------------------------------------------------------


@value
class Send:
    """Deliver ``msg`` to ``to`` (an identity, or a steward's node id)."""

    to: str
    msg: ClaimMsg


@value
class Persist:
    """Write this node's steward state durably BEFORE carrying out the effects that follow."""

    state: StewardState


@value
class Granted:
    """The claim is held; act on it with ``token`` until local time ``until`` (renewals extend it)."""

    resource: str
    token: int
    until: float


@value
class Renewed:
    """The held lease was renewed; the token is unchanged; believe it until local time ``until``."""

    resource: str
    token: int
    until: float


@value
class Denied:
    """Another identity holds it; ``remaining`` is its claim's remaining max life in seconds, if known.

    ``conflict``: the resource the holder holds when it is another one (a path claim whose pattern overlaps);
    ``token``: the holder's fencing token, when known.
    """

    resource: str
    holder: str
    holder_name: str
    remaining: float | None
    conflict: str = ""
    token: int = 0


@value
class Lost:
    """The lease could not be renewed before its deadline: stop acting on the resource now."""

    resource: str
    token: int


@value
class Released:
    """The lease was given up (by ``release`` or because the claim's max life ended)."""

    resource: str
    token: int


@value
class Unavailable:
    """No steward quorum answered in time (or contention did not settle); the caller may retry.

    ``wait`` > 0: the stewards answered that they do not serve yet (a hand-off or restart) and will in
    about that many seconds.
    """

    resource: str
    reason: str
    wait: float = 0.0


@value
class ConfigChanged:
    """This node adopted a newer steward config: gossip it to every peer."""

    config: StewardConfig


@value
class Probed:
    """The answer to ``probe``: ``denied`` names a live claim of another owner that conflicts with
    ``resource`` (None: a steward majority knows of none); ``unavailable`` says why no majority answered.

    ``sent``: when the round that answers was sent (local time, like ``now``). It answers every question
    about ``resource`` asked at or before then, and no later one: a holder granted after the send may be
    missing from it (the caller settles its waiting questions by this time, ``mesh._services.claims``)."""

    resource: str
    sent: float
    denied: Denied | None = None
    unavailable: str = ""


@value
class Wake:
    """A steward says ``resource`` is free and this node's waiting claim is next: try again now."""

    resource: str


Effect = (
    Send
    | Persist
    | Granted
    | Renewed
    | Denied
    | Lost
    | Released
    | Unavailable
    | ConfigChanged
    | Probed
    | Wake
)


@value
class HeldLease:
    """A lease this node believes it holds (local times)."""

    token: int
    until: float
    claim_ends: float


@value
class Wants:
    """A hint between claims services, not a core message: the sender waits for these items (it was denied
    them because the receiver holds them), so the holder yields a moment before re-claiming one it just
    released."""

    resources: tuple[str, ...]
