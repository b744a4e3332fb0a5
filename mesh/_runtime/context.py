"""`RuntimeContext`: the runtime's implementation of `mesh._services.context.ServiceContext`.

It lends a service exactly that: sends and broadcasts go through the link table (encoded by the codec),
members and status through the member hub. A service never sees a link, a frame or the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mesh._runtime.links import LinkTable
from mesh._runtime.members import MemberHub
from mesh._services.context import MemberListener, MemberTable, Spawn
from mesh._transport import codec
from mesh.clock import Clock
from mesh.core.identity import Identity
from mesh.core.membership import PeerInfo
from mesh.views import WatchEvent


class RuntimeContext:
    """What the runtime lends a service (a ServiceContext)."""

    def __init__(
        self,
        *,
        me: PeerInfo,
        mesh: str,
        home: Path,
        state_dir: Path,
        clock: Clock,
        spawn: Spawn,
        links: LinkTable,
        hub: MemberHub,
    ) -> None:
        self.me = me
        self.identity: Identity = me.identity
        self.name = me.name
        self.mesh = mesh
        self.home = home
        self.state_dir = state_dir
        self.clock = clock
        self.spawn = spawn
        self._links = links
        self._hub = hub

    @property
    def members(self) -> MemberTable:
        return self._hub.core

    def linked(self, node_id: str) -> bool:
        """True while a live link to `node_id` is open."""
        link = self._links.links.get(node_id)
        return link is not None and not link.closed.is_set()

    def ensure_link(self, node_id: str) -> bool:
        """True while a live link to `node_id` is open; else one is dialed (`LinkTable.ensure`) and False."""
        return self._links.ensure(node_id)

    def send(self, to: str | Identity, *msgs: object, droppable: bool = False) -> bool:
        """Send core messages to `to` in one frame; False (nothing sent) when it has no live link.

        A node id reaches whatever incarnation of it is linked; an Identity only that incarnation.
        Delivery is the service's business: a message to a peer without a link is not sent, but a link is
        asked for (`LinkTable.ensure`: a member known by hearsay is dialed on demand), and the service
        resends what is unacked once `on_link_up` says it came.
        """
        node_id = to.node_id if isinstance(to, Identity) else to
        if not self._links.ensure(node_id):
            return False
        link = self._links.links.get(node_id)
        if link is None or (isinstance(to, Identity) and link.peer.incarnation != to.incarnation):
            return False
        return self._links.send(node_id, codec.frame_of(msgs, link.columns), droppable)

    def broadcast(self, *msgs: object, droppable: bool = False) -> None:
        """Send core messages to every live link, in one frame each."""
        if self._links.links:  # alone, nothing to encode
            self._links.broadcast(codec.frame_of(msgs), droppable)

    def publish_status(
        self, field: str, value: Callable[[], Any], delay: float, most: float | None = None
    ) -> None:
        """Publish field `field` of this node's status as `value()` once quiet for `delay` s, at most `most` s
        after a burst's first change (None: `delay` after it)."""
        self._hub.schedule_status(field, value, delay, most)

    def refresh_views(self) -> None:
        """Something every member view shows changed (the steward set): watchers get them afresh."""
        self._hub.refresh()

    def show_stewards(self, stewards: Callable[[], Collection[str]]) -> None:
        """Where member views learn which nodes (ids) are stewards."""
        self._hub.stewards = stewards

    def on_member(self, listener: MemberListener) -> None:
        """Call `listener` with every membership event (joins, liveness and status changes) and the member."""
        self._hub.listeners.append(listener)

    def publish_event(self, event: WatchEvent) -> None:
        """Hand `event` to every `watch` stream of this node."""
        self._hub.publish_event(event)

    def show_unread(self, unread: Callable[[], int]) -> None:
        """Where this node's own view learns its exact unread count."""
        self._hub.own_unread = unread
