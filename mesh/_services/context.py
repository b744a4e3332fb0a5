"""What a service (mail, claims, the ones to come) may use of its node, and what it offers the node.

    ServiceContext — lent by the runtime (mesh/_runtime/context.py implements it):
        who and where    me / identity, name, mesh, home (mesh-wide local state), state_dir (the node's own)
        time             clock (monotonic `now()`; wall time is `mesh.clock.wall`)
        peers            send(node_id or Identity, *msgs) / broadcast(*msgs): core messages, encoded by the
                         codec; linked(node_id); members: the member table, read-only
        membership       on_member(listener): every join, liveness and status change
        watchers         publish_event(event): a service's own event (a board change) to every `watch`
        work             spawn(coro, name): a task the node cancels when it stops
        its status       publish_status(field, value, delay): a field of this node's status, debounced
    PeerService — what a service that talks to peers implements: the message types it accepts (routed to
        `on_messages` by the runtime's link table) and the links coming and going.

Services import this module, never the runtime: the runtime builds them (the arrow points one way).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from mesh.clock import Clock
from mesh.core.identity import Identity
from mesh.core.membership import Member, MembershipEvent, PeerInfo
from mesh.views import WatchEvent

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
MemberListener = Callable[[MembershipEvent, Member | None], None]


class MemberTable(Protocol):
    """The member table, read-only (the Membership core satisfies it)."""

    @property
    def members(self) -> Mapping[str, Member]: ...

    def live(self) -> list[Member]: ...

    def holder_of_name(self, name: str) -> Member | None: ...


class ServiceContext(Protocol):
    """All a service may use of its node."""

    me: PeerInfo
    identity: Identity
    name: str
    mesh: str
    home: Path
    state_dir: Path
    clock: Clock
    spawn: Spawn

    @property
    def members(self) -> MemberTable: ...

    def linked(self, node_id: str) -> bool:
        """True while a live link to `node_id` is open."""
        ...

    def ensure_link(self, node_id: str) -> bool:
        """True while a live link to `node_id` is open; else a link is asked for (dialed on demand) and
        False: the service's `on_link_up` follows if it comes."""
        ...

    def send(self, to: str | Identity, *msgs: object, droppable: bool = False) -> bool:
        """Send core messages to `to` in one frame; False (nothing sent) when it has no live link.

        A node id reaches whatever incarnation of it is linked; an Identity only that incarnation.
        """
        ...

    def broadcast(self, *msgs: object, droppable: bool = False) -> None:
        """Send core messages to every live link, in one frame each."""
        ...

    def on_member(self, listener: MemberListener) -> None:
        """Call `listener` with every membership event (joins, liveness and status changes) and the member."""
        ...

    def publish_event(self, event: WatchEvent) -> None:
        """Hand `event` to every `watch` stream of this node."""
        ...

    def publish_status(
        self, field: str, value: Callable[[], Any], delay: float, most: float | None = None
    ) -> None:
        """Publish field `field` of this node's status as `value()` once quiet for `delay` s, at most `most` s
        after a burst's first change (None: `delay` after it; bursts coalesce either way)."""
        ...

    def refresh_views(self) -> None:
        """Something every member view shows changed (the steward set): watchers get them afresh."""
        ...

    def show_stewards(self, stewards: Callable[[], Collection[str]]) -> None:
        """Where member views learn which nodes (ids) are stewards."""
        ...

    def show_unread(self, unread: Callable[[], int]) -> None:
        """Where this node's own view learns its exact unread count."""
        ...


class PeerService(Protocol):
    """A service that talks to peers; the runtime's link table feeds it."""

    accepts: tuple[type, ...]
    """The peer message types (core dataclasses) routed to `on_messages`."""

    def on_link_up(self, peer: PeerInfo) -> None: ...

    def on_link_down(self, peer: PeerInfo) -> None: ...

    def on_messages(self, peer: PeerInfo, msgs: Sequence[object]) -> None: ...


def some_peers(ctx: ServiceContext, k: int) -> list[str]:
    """Up to `k` linked live peers (node ids) picked at random: the recipients of a periodic repeat
    (anti-entropy) that went to every peer before, which made an idle node's work grow with the mesh."""
    peers = [m.info.node_id for m in ctx.members.live() if not m.is_self and ctx.linked(m.info.node_id)]
    return random.sample(peers, min(k, len(peers)))
