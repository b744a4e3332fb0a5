"""`MeshAPI`: the one typed API of a session's node. Every face stands on it.

    Node (embedded, mesh/node.py) ─┐
                                   ├── implement MeshAPI: same names, signatures, defaults, return types
    Client (mesh.connect()) ───────┘    (tests/arch/test_api.py compares them)
    control socket (mesh/_transport/control.py) serves a MeshAPI (the node's own Node) to Clients
    meshctl, and the faces to come (agent hooks, MCP, the web page), use only MeshAPI

Verbs are coroutines; streams (`watch`, `messages`, `lease_events`) are async iterators; what they return
is in `mesh.views` (and the core's message and status records). Errors are `mesh.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from mesh.claim import PendingClaim
from mesh.core.board import BoardView, MilestoneRow, TaskRow
from mesh.core.errors import MeshError
from mesh.core.mailbox import InboxMessage, OutboxEntry, SendColumns, SendItem
from mesh.core.status import StatusRecord
from mesh.views import ClaimView, LeaseEvent, MailCounts, MemberView, MeshStats, NodeInfo, Sent, WatchEvent

__all__ = ["BatchSender", "MeshAPI"]


@runtime_checkable
class MeshAPI(Protocol):
    """What a session can do with its node, embedded or over the node's control socket."""

    # ------------------------------------------------------------------ the node and the mesh

    async def info(self) -> NodeInfo:
        """Who the node is, where it lives, and the steward set it has adopted."""
        ...

    async def members(self) -> list[MemberView]:
        """Every member the node knows (itself first), with liveness and status."""
        ...

    async def heartbeat(
        self,
        action: str | None = None,
        target: str | None = None,
        phase: str | None = None,
        progress: int | None = None,
        note: str | None = None,
        role: str | None = None,
    ) -> StatusRecord:
        """Publish this session's status to every peer (unset fields keep their value); the new record."""
        ...

    def watch(self, snapshot: bool = True) -> AsyncIterator[WatchEvent]:
        """Joins, liveness changes, status updates and board changes as they happen (after every member as a
        snapshot): `MemberEvent`s and `BoardEvent`s."""
        ...

    async def shutdown(self, reason: str = "meshctl down") -> None:
        """Ask the node to leave the mesh gracefully (peers see `left` at once)."""
        ...

    # ------------------------------------------------------------------ claims

    def claim(self, type: str, name: str, *, ttl: float = 3600.0, wait: float = 0.0) -> PendingClaim:
        """Claim TYPE/NAME: `async with api.claim(...) as lease` or `lease = await api.claim(...)`.

        Raises ClaimDenied (holder, expires_at) if another session holds it after `wait` seconds of trying,
        NoQuorum if not enough stewards can be reached to decide. The node renews the lease while it lives.
        """
        ...

    async def claim_once(
        self, resource: str, ttl: float = 3600.0, wait: float = 0.0, *, handle: bool = False
    ) -> ClaimView:
        """Claim TYPE/NAME without a lease handle: the node holds and renews it until `ttl` or a release.

        For tools that exit right after (meshctl claim). Raises as `claim` does. `handle=True` is what
        `claim()` builds its Lease on: the node counts the handle until it releases with `handle=True`.
        """
        ...

    async def release(self, type: str, name: str, *, handle: bool = False) -> bool:
        """Release a claim this node holds; False if it held none.

        While a Lease (`claim()`, in any process) holds the item through this node, a release that is not
        that Lease's own (`handle=False`) ends it without cutting its told validity short: the Lease hears
        `lost`, and nobody else is granted the item until that validity has passed."""
        ...

    async def claims(self) -> list[ClaimView]:
        """Every live claim in the mesh, by item."""
        ...

    async def held(self) -> list[ClaimView]:
        """The claims this node holds now, by item (exact; `claims()` shows them once published)."""
        ...

    async def check_path(self, path: str) -> ClaimView | None:
        """Who else holds an exclusive path claim whose pattern matches `path` (a project-relative file),
        asked of the stewards (exact, not the published views); None when nobody does."""
        ...

    def lease_events(self, resource: str) -> AsyncIterator[LeaseEvent]:
        """Events of a lease this node holds: `held` first, `renewed`…, then `lost` or `released`."""
        ...

    async def recover_stewards(self) -> NodeInfo:
        """Last resort: make this node the only steward of a new epoch (see README for the risk)."""
        ...

    # ------------------------------------------------------------------ messages

    async def send(
        self, to: str, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> Sent:
        """Queue a message to session `to` durably (delivery continues in the background).

        Raises UnknownRecipient if no session of that name was ever seen in this mesh; a known session that
        is offline gets it when it returns (within the retention window, 7 days). `key` (1-64 characters
        from A-Z a-z 0-9 _ -) makes the send idempotent: a repeat with the same key answers the first one's
        `Sent` and queues nothing (a Client makes one per send, and retries once with it when the call
        fails without saying whether the node queued the message).
        """
        ...

    async def broadcast(
        self, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> Sent:
        """Queue a message to every member known now, offline ones included (`key` as for `send`)."""
        ...

    def messages(
        self,
        unread: bool = False,
        follow: bool = False,
        from_name: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> AsyncIterator[InboxMessage]:
        """The inbox, oldest first (the newest `limit`, 1-10,000; default: all of it, read page by page);
        with `follow`, new ones as they come.

        With `after` (a message's `local_seq`), the first `limit` messages after it instead: a reader that
        keeps its place pages forward without missing any.
        """
        ...

    async def mark_read(self, ids: list[str] | None = None) -> int:
        """Mark messages read (all unread if `ids` is None); read receipts travel back to the senders."""
        ...

    async def outbox(
        self, state: str | None = None, to: str | None = None, limit: int | None = None
    ) -> list[OutboxEntry]:
        """What this node sent, with each entry's delivery state (queued, delivered, read, expired): the
        newest `limit` entries (1-10,000; default 10,000), oldest first."""
        ...

    async def counts(self) -> MailCounts:
        """Unread messages in the inbox, and sent messages still queued."""
        ...

    # ------------------------------------------------------------------ the task board

    async def task_add(
        self,
        title: str,
        priority: str = "P2",
        milestone: str = "",
        role: str = "",
        note: str = "",
        step: str = "",
    ) -> TaskRow:
        """File a task on the mesh's board (durable here when this returns; every node gets it)."""
        ...

    async def task_edit(
        self,
        task: str,
        title: str | None = None,
        priority: str | None = None,
        milestone: str | None = None,
        role: str | None = None,
        note: str | None = None,
        step: str | None = None,
    ) -> TaskRow:
        """Change fields of a task (None keeps a field; "" clears milestone, role, note or step)."""
        ...

    async def task_claim(self, task: str, ttl: float = 3600.0, wait: float = 0.0) -> ClaimView:
        """Claim an open task: a claim of type ``task`` on its id (one holder, a fencing token).

        Raises ClaimDenied if another session holds it, as `claim_once` does."""
        ...

    async def task_done(self, task: str) -> TaskRow:
        """Mark a task done (this node's claim on it, if any, is released)."""
        ...

    async def task_drop(self, task: str) -> TaskRow:
        """Drop a task (it stays as a tombstone; `task_reopen` brings it back)."""
        ...

    async def task_reopen(self, task: str) -> TaskRow:
        """Make a done or dropped task open again."""
        ...

    async def board(
        self,
        priorities: Sequence[str] | None = None,
        mine: bool = False,
        role: str | None = None,
        milestone: str | None = None,
        done: bool = True,
        dropped: bool = False,
    ) -> BoardView:
        """The board: tasks by priority with their state (claimed by whom until when) and the milestones.

        `mine`: only tasks this session has claimed; `done` / `dropped`: whether those tasks appear."""
        ...

    async def milestone_add(self, title: str, steps: Sequence[str] = (), note: str = "") -> MilestoneRow:
        """Add a milestone with its steps."""
        ...

    async def milestone_show(self, milestone: str) -> MilestoneRow:
        """One milestone with its steps and progress (computed from its tasks)."""
        ...

    async def stats(self, since: float = 86400.0) -> MeshStats:
        """The success metrics over the last `since` seconds, as this node saw them."""
        ...


@runtime_checkable
class BatchSender(Protocol):
    """A MeshAPI that also queues a batch of sends in one go (the embedded `Node`): the control socket's
    SendStream hands it each batch whole. Not a verb of the API: clients send one at a time."""

    async def send_many(
        self, items: Sequence[SendItem] | SendColumns, *, key: str | None = None
    ) -> list[Sent | MeshError]:
        """One answer, or that item's error, per item, in order; `key`: the batch's idempotency key."""
        ...

    async def send_batch(
        self, items: Sequence[SendItem] | SendColumns, *, key: str | None = None
    ) -> list[Sent | MeshError] | tuple[list[str], tuple[str, ...]]:
        """`send_many`, or (the ids in order, the names) when every item went to the same names and all were
        queued now (the common batch, answered without a Sent per item)."""
        ...

    def sent_in_batch(self, key: str, index: int) -> Sent | None:
        """What item `index` of the batch sent with `key` was queued as, if it was."""
        ...
