"""The board service: this node's full replica of the task board (mesh.core.board), durable in its own
store (mesh.boardstore) and kept in step with every peer over the links (mesh.core.boardsync).

    local verb ──▶ Board applies it ──▶ BoardStore.save (one transaction for the edits of one moment: an
                   edit is durable when its verb returns) ──▶ Delta(ops) to every linked peer ──▶ watch events
    Delta from a peer ──▶ apply each op (idempotent, any order) ──▶ merge its context (last batch of an
                   answer) ──▶ one transaction: retained ops kept, obsolete ones deleted ──▶ watch events
    link up (the smaller node id) / peer alive again ──▶ SyncRequest(our context) ──▶ the peer answers with
                   what we lack
    SyncRequest ──▶ answer with `delta_batches(delta_for(theirs))`; ask back if they hold what we lack
    every 5 s ──▶ SyncDigest to a few peers picked at random (anti-entropy: an idle node's cost does not
                   grow with the mesh); a peer whose own digest differs asks (frames lost on a link that
                   stayed up are found this way)
    every hour ──▶ compact: tombstones older than the retention period (30 days) are forgotten

Remote operations are always applied (refusing some on some replicas would break convergence); what a
peer may send is bounded per link by limits.BOARD_* (rates, sizes), and a violation closes the link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mesh import limits
from mesh._services.context import ServiceContext, some_peers
from mesh.boardstore import BoardStore
from mesh.clock import wall
from mesh.core import board as bd
from mesh.core.boardsync import DIGEST_EVERY, SyncDigest, SyncRequest, context_digest, delta_batches, lacks
from mesh.core.errors import LimitExceeded, NodeUnavailable, StorageError
from mesh.core.membership import Liveness, LivenessChanged, Member, MembershipEvent, PeerInfo
from mesh.core.ratelimit import LogLimiter
from mesh.views import BoardEvent

log = logging.getLogger("mesh.board")

DIGEST_FANOUT = 3  # peers each digest round goes to (see send_digests)
COMPACT_EVERY = 3600.0
EVENTS_PER_BATCH = 20  # a batch that changes more is one "sync" event (a catch-up must not flood watchers)

Claims = Mapping[str, tuple[str, float]]
"""Task id -> (holder, until): the live claims of type `task`."""


class _Rate:
    """A token bucket: `rate` per second, at most `burst` saved up (what one link may send us)."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = float(burst), now

    def take(self, now: float, n: int = 1) -> bool:
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self._tokens < n:
            return False
        self._tokens -= n
        return True


class BoardService:
    """A node's board replica: local verbs, replication over the links, anti-entropy, compaction."""

    accepts: tuple[type, ...] = (bd.Delta, SyncRequest, SyncDigest)

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store = BoardStore(ctx.state_dir / "board.db")
        self.board = self.store.load()
        self._faults = LogLimiter(burst=1, every=60.0)
        self._budgets: dict[str, tuple[_Rate, _Rate]] = {}
        self._digest: tuple[bd.Context, bytes] | None = None
        # Peers asked for a delta whose answer has not ended yet: when we asked, operations received since.
        self._asking: dict[str, tuple[float, int]] = {}
        self._pending: list[tuple[bd.Applied, asyncio.Future[None]]] = []  # local edits not yet saved
        self._flush_scheduled = False
        ctx.on_member(self._on_member)
        # Said when the node starts (`start`), not here: a node that cannot bind its port after building its
        # services (the local-link listener comes first) says only that, in one line.
        self._kept = (len(self.board), self.store.count())

    @property
    def replica(self) -> str:
        return self.board.replica

    def start(self) -> None:
        log.info("board replica %s: %d task(s), %d operation(s) kept", self.board.replica, *self._kept)
        self.ctx.spawn(self._timer(), "board-timer")

    def close(self) -> None:
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(NodeUnavailable("the node stopped before the edit was saved"))
        self._pending.clear()
        self.store.close()

    # ------------------------------------------------------------------ local verbs

    async def edit(self, make: Callable[[bd.Board, int], bd.Op]) -> bd.Op:
        """Make one operation with a board verb, durable before this returns, then sent to every peer.

        `make(board, now_ms)` validates and applies it (raising leaves the board unchanged). Edits made in
        the same moment share one transaction (group commit); a failed commit (disk full) reloads the
        replica from its store, so nothing unsaved is shown or sent, and fails every edit that was in it.
        """
        op = make(self.board, int(wall() * 1000))
        applied = self.board.last_applied
        assert applied is not None and applied.op is op
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((applied, done))
        if not self._flush_scheduled:
            # The next loop turn: edits that arrived together (RPCs read in one turn, a gather) share it,
            # and one edit at a time waits for nothing (a wait for more would tax every sequential caller).
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        await done
        return op

    def _flush(self) -> None:
        """Save the pending local edits in one transaction, then send them and tell the watchers."""
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        gone = {oid for a, _ in batch for oid in a.obsolete}
        keep = [a.op for a, _ in batch if a.retained and a.op.id not in gone]
        try:
            self.store.save(keep, gone, self.board.context())
        except Exception as e:
            log.exception("could not save %d board edit(s); reloading the replica from its store", len(batch))
            self.board = self.store.load()
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for a, fut in batch:
            if not fut.done():
                fut.set_result(None)
            self._event(a.op, local=True)
        # Sent a loop turn later: the verbs' answers go first (they wait on no peer), the link writers after.
        asyncio.get_running_loop().call_soon(self._send, tuple(a.op for a, _ in batch))

    def _send(self, ops: tuple[bd.Op, ...]) -> None:
        for delta in delta_batches(bd.Delta(ops, None)):
            self.ctx.broadcast(bd.Delta(delta.ops, None))

    # ------------------------------------------------------------------ links and members

    def on_link_up(self, peer: PeerInfo) -> None:
        self._budgets[peer.node_id] = (
            _Rate(limits.BOARD_OP_RATE, limits.BOARD_OP_BURST, self.ctx.clock.now()),
            _Rate(limits.BOARD_SYNC_RATE, limits.BOARD_SYNC_BURST, self.ctx.clock.now()),
        )
        # One side asks (the smaller node id): the answer asks back if the asker holds what the answerer
        # lacks, so one request syncs both ways; both asking was two requests and two answers per link,
        # a good part of what a forming mesh sends.
        if self.ctx.me.node_id < peer.node_id:
            self._ask(peer.node_id)

    def on_link_down(self, peer: PeerInfo) -> None:
        self._budgets.pop(peer.node_id, None)
        self._asking.pop(peer.node_id, None)

    def _on_member(self, ev: MembershipEvent, m: Member | None) -> None:
        # A peer heard again after silence (a partition healed, a pause ended) may have missed our
        # frames, and we theirs, while the link stayed up: compare notes now rather than at the next digest.
        if (
            isinstance(ev, LivenessChanged)
            and ev.current is Liveness.ALIVE
            and ev.previous in (Liveness.SUSPECT, Liveness.DEAD)
            and m is not None
            and not m.is_self
        ):
            self._ask(m.info.node_id)

    def _ask(self, node_id: str) -> None:
        if self.ctx.send(node_id, SyncRequest(self.replica, self.board.context())):
            self._asking.setdefault(node_id, (self.ctx.clock.now(), 0))

    # ------------------------------------------------------------------ frames from peers

    def on_messages(self, peer: PeerInfo, msgs: Sequence[object]) -> None:
        """A delta (live ops, or a batch of an answer), and/or a sync request or digest, in that order."""
        budgets = self._budgets.get(peer.node_id)
        now = self.ctx.clock.now()
        for msg in msgs:
            if isinstance(msg, bd.Delta):
                if budgets is not None and not budgets[0].take(now, len(msg.ops)):
                    raise LimitExceeded(f"more than {limits.BOARD_OP_RATE:g} board operations/s on one link")
                self._receive(msg)
                asked = self._asking.get(peer.node_id)
                if asked is not None:
                    if msg.context is None:
                        self._asking[peer.node_id] = (asked[0], asked[1] + len(msg.ops))
                    else:  # the answer is complete: we hold everything the peer held when it answered
                        del self._asking[peer.node_id]
                        ms = (self.ctx.clock.now() - asked[0]) * 1000
                        log.info("board: in step with %s: %d operation(s) in %.1f ms", peer.name,
                                 asked[1] + len(msg.ops), ms)  # fmt: skip
            elif isinstance(msg, SyncRequest):
                if budgets is not None and not budgets[1].take(now):
                    raise LimitExceeded(f"more than {limits.BOARD_SYNC_RATE:g} board sync requests/s")
                self._answer(peer, msg)
            elif isinstance(msg, SyncDigest) and msg.digest != self._own_digest():
                self._ask(peer.node_id)

    def _receive(self, delta: bd.Delta) -> None:
        if self._pending:
            self._flush()  # the context saved below covers them: they must be on disk first
        board = self.board
        stored = board.context()  # what the store holds now (our own edits were flushed just above)
        keep: list[bd.Op] = []
        obsolete: list[str] = []
        changed: list[bd.Op] = []
        lost = False
        try:
            for op in delta.ops:
                applied = board.apply(op)  # a bad or conflicting op raises: the peer's protocol error
                if applied.new:
                    changed.append(op)
                    if applied.retained:
                        keep.append(op)
                    obsolete += applied.obsolete
            if delta.context is not None:
                board.apply_delta(bd.Delta((), delta.context))
        finally:
            # Whatever was applied is saved, even when a later op of the batch is refused: the saved
            # context must never claim an operation whose effect is not saved with it. An answer that
            # brought nothing new leaves the context as stored: no write (a forming mesh answers one sync per
            # link, nearly all of them "nothing new": one SQLite transaction per link for nothing).
            if changed or (delta.context is not None and board.context() != stored):
                gone = set(obsolete)
                try:
                    self.store.save([op for op in keep if op.id not in gone], gone, board.context())
                except StorageError as e:
                    # Nothing of this delta is kept, in memory either (the replica is what its store says):
                    # anti-entropy brings it again once the disk has room. Not the peer's fault: the link
                    # stays up.
                    self.board = self.store.load()
                    if self._faults.allow(type(e).__name__, self.ctx.clock.now()):
                        log.warning("board: cannot keep a peer's edits: %s (said again once a minute)", e)
                    lost = True
        if lost:
            return
        if len(changed) > EVENTS_PER_BATCH:
            self.ctx.publish_event(BoardEvent("sync", "", "", "", "", "", False, wall(), len(changed)))
        else:
            for op in changed:
                self._event(op, local=False)

    def _answer(self, peer: PeerInfo, req: SyncRequest) -> None:
        try:
            self.store.remember_replica(req.replica, peer.name, wall())
        except StorageError:
            pass  # only names a replica in `meshctl board` provenance; the answer matters more
        mine = self.board.context()
        for batch in delta_batches(self.board.delta_for(req.context)):
            self.ctx.send(peer.node_id, batch)
        if lacks(mine, req.context) and peer.node_id not in self._asking:
            self._ask(peer.node_id)  # (an answer already on its way brings it: asking twice is waste)

    def _own_digest(self) -> bytes:
        ctx = self.board.context()
        if self._digest is None or self._digest[0] != ctx:
            self._digest = (ctx, context_digest(ctx))
        return self._digest[1]

    # ------------------------------------------------------------------ reads

    def names(self) -> dict[str, str]:
        """Replica id -> session name, as far as this node has met them (itself included)."""
        out = self.store.replica_names()
        out[self.replica] = self.ctx.name
        return out

    def done_tasks(self) -> Iterable[tuple[str, str, int]]:
        return self.board.done_tasks()

    # ------------------------------------------------------------------ events and timers

    def _event(self, op: bd.Op, local: bool) -> None:
        target = op.target
        info = self.board.summary(target)
        kind, title, state = info if info is not None else ("", "", "")
        self.ctx.publish_event(
            BoardEvent(bd.op_kind(op), kind, target, self.board.short(target), title, state, local, wall())
        )

    async def _timer(self) -> None:
        next_compact = self.ctx.clock.now() + 60.0  # not during start-up
        while True:
            await asyncio.sleep(DIGEST_EVERY)
            self.send_digests(DIGEST_FANOUT)
            if self.ctx.clock.now() >= next_compact:
                next_compact = self.ctx.clock.now() + COMPACT_EVERY
                self.compact()

    def send_digests(self, fanout: int | None = None) -> None:
        """Our context's digest to `fanout` live peers at random, or to every linked peer (droppable: the
        next one comes in DIGEST_EVERY).

        A digest to everyone every round made an idle node's work grow with the mesh (one frame out and one
        in per peer per round). Random peers suffice: the pair that compares syncs both ways (the receiver
        asks, the answer asks back), so a node that missed a delta is reached within a round or two with
        high probability (with 3 of n peers each, a given node is picked by someone with p ~ 1 - e^-3).
        """
        digest = SyncDigest(self.replica, self._own_digest())
        if fanout is None:
            self.ctx.broadcast(digest, droppable=True)
            return
        for nid in some_peers(self.ctx, fanout):
            self.ctx.send(nid, digest, droppable=True)

    def compact(self, horizon_ms: int | None = None) -> int:
        """Forget tombstones older than the retention period; returns how many operations were freed."""
        if horizon_ms is None:
            horizon_ms = int(wall() * 1000) - bd.RETENTION_MS
        before = self.board.purged
        gone = self.board.compact(horizon_ms)
        purged = self.board.purged - before
        if gone or purged:
            try:
                self.store.forget(gone, purged)
            except Exception:  # kept on disk: they come back at the next start and are compacted again
                log.exception("board: could not forget compacted tombstones in the store")
            log.info("board: forgot %d tombstone(s), %d operation(s)", len(purged), len(gone))
        return len(gone)


def board_claims(claims: Iterable[Any]) -> dict[str, tuple[str, float]]:
    """Task id -> (holder, ends at) from claim views (`ClaimView`): those of type ``task``."""
    return {c.name: (c.holder, c.expires_at) for c in claims if c.type == "task"}
