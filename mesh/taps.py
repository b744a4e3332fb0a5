"""Taps: code installed from outside, before a node starts, that sees or filters what its runtime does.

Production installs none. The tests use them from their entry module (tests/integration/meshctl.py), then
run the real `meshctl`: a frame filter drops frames between the two sides of a partition; a gossip dial filter
leaves a member known by hearsay only (no link until one is needed); a reply loss loses
control answers after the node acted on them; a lease observer writes every acquire/renew/release/loss to a
history file for the claim-safety checker.
A tap is process-wide: every node this process starts afterwards consults it.
"""

from __future__ import annotations

from collections.abc import Callable

from mesh.core.values import value

FrameFilter = Callable[[str, str], bool]
"""(this node's name, the sending peer's name) -> True to drop the frame as if the network lost it."""

_frame_filters: list[FrameFilter] = []


def add_frame_filter(drop: FrameFilter) -> None:
    """Consult `drop` for every frame a peer sends to a node started after this call."""
    _frame_filters.append(drop)


def frame_filters() -> tuple[FrameFilter, ...]:
    """The filters installed so far (a runtime takes them when it is built)."""
    return tuple(_frame_filters)


GossipDialFilter = Callable[[str, str], bool]
"""(this node's name, a gossiped member's name) -> True to not dial it on that hint (it stays known by
hearsay, with no link of ours until a service asks for one: how tests make a member with no open link)."""

_gossip_dial_filters: list[GossipDialFilter] = []


def add_gossip_dial_filter(skip: GossipDialFilter) -> None:
    """Consult `skip` before every gossip dial of a node started after this call."""
    _gossip_dial_filters.append(skip)


def gossip_dial_filters() -> tuple[GossipDialFilter, ...]:
    """The filters installed so far (a dialer takes them when it is built)."""
    return tuple(_gossip_dial_filters)


@value
class LeaseNote:
    """Something happened to a lease a node holds, stamped with the node's monotonic clock (CLOCK_BOOTTIME,
    shared by every process of a host, so the notes of many nodes can be laid on one time line)."""

    ev: str  # acquired | renewed | released | lost
    node: str  # the node's name
    owner: str  # the node's identity "node_id/incarnation" (a restarted node is a new owner)
    resource: str
    token: int
    t: float  # when, on the node's clock
    until: float | None  # acquired/renewed: the node believes the lease until then (same clock)


LeaseObserver = Callable[[LeaseNote], None]
"""Called by the claims service of a node started after it was added, for every LeaseNote, in order."""

_lease_observers: list[LeaseObserver] = []


def add_lease_observer(observe: LeaseObserver) -> None:
    """Call `observe` with every LeaseNote of nodes started after this call."""
    _lease_observers.append(observe)


def lease_observers() -> tuple[LeaseObserver, ...]:
    """The observers installed so far (a claims service takes them when it is built)."""
    return tuple(_lease_observers)


ReplyLoss = Callable[[str], bool]
"""(control API method) -> True to lose this call's answer after the node carried the call out, as a
stream that breaks at that moment would ("Stream removed": the caller cannot know it was done)."""

_reply_losses: list[ReplyLoss] = []


def add_reply_loss(lose: ReplyLoss) -> None:
    """Consult `lose` after every control call of this process's node (see ReplyLoss)."""
    _reply_losses.append(lose)


def lose_reply(method: str) -> bool:
    """Whether a tap wants this call's answer lost."""
    return any(lose(method) for lose in _reply_losses)
