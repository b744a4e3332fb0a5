"""The mail service: the durable mailbox (mesh.mailstore) carried over the peer links, on a ServiceContext.

    send / broadcast ──▶ one SQLite transaction per burst (group commit) ──▶ pump each recipient's link
    link up ──▶ SendWindow from the store's floor: resend everything unacked, oldest first (the recipient
                dedupes), plus read receipts not yet confirmed
    MailBatch ──▶ store_incoming (persist first) ──▶ followers (inbox --follow) ──▶ MailAck back (held up
                to ACK_DELAY: one cumulative ack for a burst; at once after ACK_AT_ONCE messages)
    MailAck ──▶ mark delivered (only ever on an ack) ──▶ pump more (window)
    ReadReceipt / ReceiptAck ──▶ sender's outbox shows `read` / receipt no longer resent

A message is `queued` until the recipient's node acknowledges it after writing it to its own inbox, so
"delivered" is never claimed for a node that is dead or unreachable; it waits (7 days by default).

A full disk (StorageError from the store) stops nothing but what needs the disk: a batch that cannot be
stored is not acked (its sender keeps it queued and resends it: the link and the node stay up), a send that
cannot be queued fails with StorageFull, and each kind of fault is logged once, then once a minute. When there
is room again the next resend is stored: the node recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from operator import itemgetter
from typing import Any

from mesh._services.context import ServiceContext
from mesh.clock import wall
from mesh.core import mailbox as mb
from mesh.core import validate
from mesh.core.errors import InvalidInput, LimitExceeded, MeshError, StorageError, UnknownRecipient
from mesh.core.membership import Liveness, LivenessChanged, Member, MemberJoined, MembershipEvent, PeerInfo
from mesh.core.ratelimit import LogLimiter
from mesh.mailstore import KeyedBatch, MailStore

log = logging.getLogger("mesh.mail")

EXPIRE_EVERY = 60.0
PRUNE_EVERY = 3600.0
MAX_FOLLOWERS = 64
UNREAD_DEBOUNCE = 0.5  # a burst of messages is one status update, not thousands
UNREAD_MOST = 2.0
"""Seconds at most between a change of the unread count and its publication while mail keeps arriving (a lone
message's is published UNREAD_DEBOUNCE after it). Every publication is a status frame to each peer and a
wake-up, a decode and a member update at each: at one every UNREAD_DEBOUNCE, a 12-node mesh busy with
broadcasts spent about a tenth of its nodes' CPU on them, the same cores its deliveries wait for."""
MAX_RECIPIENTS_KEPT = 1024  # names whose Recipient is reused by the next send to them
FAULT_LOG_EVERY = 60.0  # a storage fault that persists is logged again this often
ACK_DELAY = 0.05
"""Seconds a recipient may hold an ack back (acks are cumulative: one then says what several would). An ack
costs a write here and a wake-up, a decode and a transaction at the sender; sent at once, it landed just when
the message was handed to followers and competed with them for the CPU (a broadcast's 11 acks with the next
broadcast, at a few ms). Held this long, one ack stands for every message of a burst. Only `delivered` in the
sender's outbox waits for it (RESEND_AFTER is 40 times longer); a node leaving sends what it owes first."""
EVERYONE_FOR = 60.0
"""Seconds a broadcast's recipient list (the member directory) is reused before it is read again. Recording a
member (joined, linked, gone) clears it at once: this bounds only how late one leaves it after RETENTION."""
ACK_AT_ONCE = mb.BATCH_MAX
"""Messages stored since the last ack that make the next one go at once (under load: an ack a full batch, well
inside the sender's window)."""


def _answer(out: mb.Outgoing, queued: tuple[str, list[str] | None]) -> tuple[str, Sequence[str]]:
    # A repeat of a key answers what the first send answered (its recipients, which a broadcast fixed then);
    # the store says so in the same transaction, so a fresh send costs no second look-up.
    mid, first_names = queued
    if first_names is not None:
        return mid, first_names
    rs = out.recipients
    return mid, (rs[0].name,) if len(rs) == 1 else tuple(r.name for r in rs)


_Queued = tuple[str, list[str] | None]
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_TUPLE = {tuple}


_Sink = asyncio.Future[Any]
"""Who waits for a queued entry: a lone send's own future, or its send_many's (one for the whole group)."""


def _take_part(
    batch: list[tuple[mb.Outgoing | KeyedBatch, _Sink]],
) -> tuple[list[tuple[mb.Outgoing | KeyedBatch, _Sink]], list[tuple[mb.Outgoing | KeyedBatch, _Sink]]]:
    """The first entries of `batch` holding at most SEND_MAX sends (at least one entry), and the rest."""
    n = 0
    total = 0
    for o, _ in batch:
        weight = len(o.items) if isinstance(o, KeyedBatch) else 1
        if n and total + weight > mb.SEND_MAX:
            break
        total += weight
        n += 1
    return batch[:n], batch[n:]


def _settle(sink: _Sink, got: Any) -> None:
    """An entry's answer (or error) to whoever waits for it."""
    if sink.done():  # the sender was cancelled
        return
    elif isinstance(got, BaseException):
        sink.set_exception(got)
    else:
        sink.set_result(got)


class MailService:
    """A node's mailbox: durable outbox and inbox, delivery over the links, followers of new mail."""

    accepts: tuple[type, ...] = (mb.MailBatch, mb.MailAck, mb.ReadReceipt, mb.ReceiptAck)
    page: int = mb.INBOX_PAGE_MAX
    """Rows per store query when the whole inbox is read."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.me = ctx.me.node_id
        self.store = MailStore(
            ctx.state_dir / "mail.db", node_id=self.me, name=ctx.name, background_checkpoints=True
        )
        self._checkpointing = False
        self.windows: dict[str, mb.SendWindow] = {}
        # (a send or a group of them, who waits for it): this turn's group commit
        self._batch: list[tuple[mb.Outgoing | KeyedBatch, _Sink]] = []
        self._flush_scheduled = False
        self._followers: list[asyncio.Queue[mb.InboxMessage | None]] = []
        self._wake = asyncio.Event()
        self._next_expire = 0.0
        self._next_prune = 0.0
        self._acks: dict[tuple[str, str], mb.MailAck] = {}  # (peer, stream) -> its highest ack this turn
        self._acks_scheduled = False
        # (peer, stream) -> (the ack owed, messages it covers): sent within ACK_DELAY
        self._owed: dict[tuple[str, str], tuple[mb.MailAck, int]] = {}
        self._owed_timer: asyncio.TimerHandle | None = None
        self._timer_due = float("inf")  # when the timer wakes by itself (clock.now()); inf until it runs
        self._faults = LogLimiter(burst=1, every=FAULT_LOG_EVERY)
        self._faulty = False  # a storage fault was logged and nothing was stored since
        self._everyone_cache: tuple[list[mb.Recipient], float] | None = None  # (recipients, until: wall)
        self._recipients: dict[
            str, mb.Recipient
        ] = {}  # name -> its last Recipient (one object, not one a send)
        # name -> the last direct send to it that `outgoing` accepted: the next one to the same Recipient is
        # `outgoing_again` of it (its name and node were checked then; a gather of node.send checked them
        # three times a message)
        self._accepted: dict[str, mb.Outgoing] = {}
        ctx.show_unread(self.store.unread_count)
        ctx.on_member(self._on_member)

    def start(self) -> None:
        self.ctx.spawn(self._timer(), "mail-timer")

    def close(self) -> None:
        if self._owed_timer is not None:
            self._owed_timer.cancel()
        for q in self._followers:
            q.put_nowait(None)
        for _, sink in self._batch:
            _settle(sink, InvalidInput("the node stopped before the message was queued"))
        self._batch.clear()
        self.store.close()

    # ------------------------------------------------------------------ members and links

    def _fault(self, doing: str, e: StorageError) -> None:
        """A storage fault: logged once, then once a minute per kind while it lasts (never per message)."""
        self._faulty = True
        key = f"{doing}:{type(e).__name__}"
        if self._faults.allow(key, self.ctx.clock.now()):
            log.warning("mail: cannot %s: %s (said again once a minute while it lasts)", doing, e)

    def _checkpoint_soon(self) -> None:
        """Checkpoint the WAL in a worker thread when enough was committed (never inside a commit on the loop:
        its syncs were the delivery tail; see mesh.mailstore)."""
        if self._checkpointing or not self.store.checkpoint_due():
            return
        self._checkpointing = True
        fut = asyncio.get_running_loop().run_in_executor(None, self.store.checkpoint)
        fut.add_done_callback(self._checkpointed)

    def _checkpointed(self, fut: asyncio.Future[tuple[int, int]]) -> None:
        self._checkpointing = False
        e = fut.exception() if not fut.cancelled() else None
        if isinstance(e, StorageError):
            self._fault("checkpoint the mailbox's log", e)
        elif e is not None:
            log.warning("mail: checkpoint failed: %r", e)

    def _stored(self) -> None:
        self._checkpoint_soon()
        if self._faulty:
            self._faulty = False
            log.warning("mail: storing again (the storage fault has cleared)")

    def _remember(self, node_id: str, name: str) -> None:
        self._everyone_cache = None  # a newcomer (or a new name) is in the next broadcast
        try:
            self.store.remember_member(node_id, name, wall())
        except StorageError as e:  # the directory catches up at the member's next join or link
            self._fault("record a member", e)

    def _on_member(self, ev: MembershipEvent, m: Member | None) -> None:
        """The name -> node directory, for sending to nodes that are away (last seen, for retention)."""
        if m is None:
            return
        if isinstance(ev, MemberJoined) or (
            isinstance(ev, LivenessChanged) and ev.current in (Liveness.DEAD, Liveness.LEFT)
        ):
            self._remember(m.info.node_id, m.info.name)

    def on_link_up(self, peer: PeerInfo) -> None:
        self._remember(peer.node_id, peer.name)
        self.windows[peer.node_id] = mb.SendWindow(
            peer.node_id, self.store.floor(peer.node_id), now=self.ctx.clock.now()
        )
        self._pump(peer.node_id)
        rc = self.store.receipts_for(peer.node_id)
        if rc is not None:
            self.ctx.send(peer.node_id, rc)

    def on_link_down(self, peer: PeerInfo) -> None:
        self.windows.pop(peer.node_id, None)
        self.store.drop_tail(peer.node_id)
        # Acks held for it are void (sent later they would dial it): on the next link the sender resends what
        # is unacked from its floor, and that resend is acked.
        for key in [k for k in self._owed if k[0] == peer.node_id]:
            del self._owed[key]

    def _pump(self, peer: str) -> None:
        """Send what the window allows, oldest unacked first."""
        w = self.windows.get(peer)
        if not self.ctx.ensure_link(peer) or w is None:  # no link: one is dialed, and its link-up pumps
            return
        now = self.ctx.clock.now()
        while (want := w.want()) is not None:
            batch = self.store.pending_for(peer, *want)
            if batch is None:
                break
            self.ctx.send(peer, batch)
            w.on_sent(batch, now)
        # The timer is woken only when this window's resend deadline comes before the timer's own wake-up
        # (once per burst, not once per pump: a woken timer walks every window).
        deadline = w.next_deadline()
        if deadline is not None and deadline < self._timer_due:
            self._timer_due = deadline
            self._wake.set()

    # ------------------------------------------------------------------ frames from peers

    def on_messages(self, sender: PeerInfo, msgs: Sequence[object]) -> None:
        """Mail frames from a peer, in frame order: a batch, then acks, receipts, receipt acks."""
        peer = sender.node_id
        w_now = wall()
        last_ack = {m.stream: m for m in msgs if isinstance(m, mb.MailAck)}
        run: list[mb.MailBatch] = []  # consecutive batches: stored in one transaction
        for msg in msgs:
            if isinstance(msg, mb.MailBatch):
                try:
                    run.append(mb.check_batch(msg, peer_node=peer, self_node=self.me))
                except MeshError:
                    self._store_batches(sender, run, w_now)  # what came before it is good
                    raise
                continue
            if run:
                self._store_batches(sender, run, w_now)
                run = []
            # Acks are cumulative: of several in one delivery (a batch of frames), the last one per stream
            # says what the others said; those are checked, not applied (one transaction, not one each).
            if (
                isinstance(msg, mb.MailAck)
                and (last := last_ack[msg.stream]) is not msg
                and mb.check_ack(msg, peer_node=peer, self_node=self.me).upto <= last.upto
            ):
                continue
            try:
                self._on_message(peer, msg, w_now)
            except StorageError as e:
                # Nothing of it was stored, so nothing is acknowledged: the sender keeps it and sends it
                # again (a batch after RESEND_AFTER, a receipt on the next link). The link stays up.
                self._fault(f"store {type(msg).__name__} from {sender.name}", e)
        self._store_batches(sender, run, w_now)

    def _store_batches(self, sender: PeerInfo, batches: list[mb.MailBatch], w_now: float) -> None:
        """Store (checked) batches that came together in one transaction, then owe their acks (`_owe`:
        cumulative per stream, sent at once for a full batch, else within ACK_DELAY)."""
        if not batches:
            return
        try:
            # persisted before we ack; InboxMessages only for followers
            got = self.store.store_incoming_many(batches, w_now, messages=bool(self._followers))
        except StorageError as e:
            # Nothing of it was stored, so nothing is acknowledged: the sender keeps it and sends it again
            # after RESEND_AFTER. The link stays up.
            self._fault(f"store MailBatch from {sender.name}", e)
            return
        self._stored()
        # Followers first: woken before the link's writer, they see the message without waiting behind the
        # ack's write (both only after the commit).
        fresh = False
        # Per stream the highest ack of these batches and the messages it covers: one ack owed for the lot
        # (owed per batch, a run of full batches sent an ack each, every one but the last said for nothing)
        acks: dict[str, tuple[mb.MailAck, int]] = {}
        for batch, (new, ack, stored) in zip(batches, got, strict=True):
            for m in new:
                for q in self._followers:
                    q.put_nowait(m)
            fresh = fresh or stored > 0
            known = acks.get(ack.stream)
            if known is None:
                acks[ack.stream] = (ack, len(batch.messages))
            else:
                acks[ack.stream] = (
                    ack if ack.upto >= known[0].upto else known[0],
                    known[1] + len(batch.messages),
                )
        for ack, covers in acks.values():
            self._owe(sender.node_id, ack, covers)
        if fresh:
            self._publish_unread()

    def _on_message(self, peer: str, msg: object, w_now: float) -> None:
        if isinstance(msg, mb.MailAck):
            ack = mb.check_ack(msg, peer_node=peer, self_node=self.me)
            # Applied at the end of this loop turn with the acks other links delivered in it: one
            # transaction for a broadcast's acks, not one per recipient (cumulative: the highest one wins).
            known = self._acks.get((peer, ack.stream))
            if known is None or known.upto < ack.upto:
                self._acks[peer, ack.stream] = ack
            if not self._acks_scheduled:
                self._acks_scheduled = True
                asyncio.get_running_loop().call_soon(self._apply_acks)
        elif isinstance(msg, mb.ReadReceipt):
            rc = mb.check_receipt(msg, peer_node=peer, self_node=self.me)
            self.ctx.send(peer, self.store.apply_receipt(rc, w_now))
        elif isinstance(msg, mb.ReceiptAck):
            self.store.confirm_receipts(mb.check_receipt_ack(msg, peer_node=peer, self_node=self.me))

    def _owe(self, peer: str, ack: mb.MailAck, covers: int) -> None:
        """An ack for a stored batch: sent at once when it covers ACK_AT_ONCE messages, else within ACK_DELAY
        (with the ones owed after it: the highest says it for all). Never before the commit (we are after it);
        one lost with a link is no loss: the sender resends on the next link and the resend is acked."""
        key = (peer, ack.stream)
        owed = self._owed.pop(key, None)
        if owed is not None:
            covers += owed[1]
            if owed[0].upto > ack.upto:
                ack = owed[0]
        if covers >= ACK_AT_ONCE:
            self.ctx.send(peer, ack)
            return
        self._owed[key] = (ack, covers)
        if self._owed_timer is None:
            self._owed_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self._send_owed)

    def send_owed_acks(self) -> None:
        """Send every ack held back now (the node is about to leave: its links close after these frames)."""
        if self._owed_timer is not None:
            self._owed_timer.cancel()
        self._send_owed()

    def _send_owed(self) -> None:
        self._owed_timer = None
        owed, self._owed = self._owed, {}
        for (peer, _), (ack, _) in owed.items():
            self.ctx.send(peer, ack)

    def _apply_acks(self) -> None:
        self._acks_scheduled = False
        acks, self._acks = self._acks, {}
        if not acks:
            return
        try:
            self.store.mark_delivered_many(list(acks.values()), wall())
        except StorageError as e:  # not stored: the windows do not move, a resend is acked again
            self._fault("store acks", e)
            return
        self._checkpoint_soon()
        now = self.ctx.clock.now()
        for (peer, _), ack in acks.items():
            w = self.windows.get(peer)
            if w is not None and w.on_ack(ack, now):
                self._pump(peer)

    def _publish_unread(self) -> None:
        self.ctx.publish_status("unread", self.store.unread_count, UNREAD_DEBOUNCE, UNREAD_MOST)

    # ------------------------------------------------------------------ API

    def resolve(self, name: str) -> mb.Recipient:
        """A session name -> the node it is (a live member first, else the last node seen with that name)."""
        live = self.ctx.members.holder_of_name(name)
        node = live.info.node_id if live is not None else self.store.lookup_name(name)
        if node is None:
            raise UnknownRecipient(
                f"no session named {name!r} has been seen in mesh {self.ctx.mesh!r} "
                "(see `meshctl status`; names are case-sensitive)"
            )
        known = self._recipients.get(name)
        if known is not None and known.node_id == node:
            return known
        if len(self._recipients) >= MAX_RECIPIENTS_KEPT:
            self._recipients.clear()
        known = self._recipients[name] = mb.Recipient(node, name)
        return known

    def send(
        self, to: str, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> asyncio.Future[tuple[str, Sequence[str]]]:
        """Queue a direct message durably: checked now (raises), queued with this turn's group commit; the
        future's answer is (id, [recipient name]). A future, not a coroutine: Node.send awaits it itself."""
        return self._enqueue_one(self._direct(to, subject, body, reply_to, key))

    def broadcast(
        self, subject: str, body: str, reply_to: str | None = None, *, key: str | None = None
    ) -> asyncio.Future[tuple[str, Sequence[str]]]:
        """Queue a message to every member known now (offline ones too), as `send`: (id, names)."""
        return self._enqueue_one(self._everyone(subject, body, reply_to, key))

    async def send_batch(
        self, items: Sequence[mb.SendItem] | mb.SendColumns, key: str | None = None
    ) -> list[tuple[str, Sequence[str]] | MeshError] | tuple[list[str], tuple[str, ...]]:
        """Queue many sends at once (a SendStream's batch): one answer or error per item, in order; every
        valid one joins this turn's group commit (one future for them all, no task per item).

        `items`: SendItems, or the same as SendColumns (a columnar SendBatch's, read straight off its
        columns: no object per send before its Outgoing).

        `key`: the batch's idempotency key (see MailStore's KeyedBatch): one record for the batch, none per
        item; a repeat of the batch answers what its first try queued and queues only the rest.

        Answered as (ids, names) when every send went to one name and all were queued now (the common
        batch: no answer tuple per send; the control socket answers it as a run), else per item."""
        if key:
            validate.ident(key, "send key")
        cols = items if isinstance(items, mb.SendColumns) else mb.columns_of(items)
        one = self._to_one(cols)
        if one is not None:
            run = not isinstance(one[0], MeshError)  # all Outgoings to one Recipient, or all its one error
            return await self._send_group(one, key or "", mb.batch_digest(cols) if key else "", run)
        outs: list[mb.Outgoing | MeshError] = []
        add = outs.append
        # Each distinct recipient name is checked and looked up once per call (a batch is mostly to one).
        rcpts: dict[str, mb.Recipient | MeshError] = {}
        made: dict[str, mb.Outgoing] = {}  # name -> a send to it that `outgoing` accepted in this call
        again = mb.outgoing_again
        for to, subject, body, reply, ikey in zip(
            cols.to, cols.subjects, cols.bodies, cols.reply_tos, cols.keys, strict=True
        ):
            try:
                if to is None:
                    add(self._everyone(subject, body, reply, ikey))
                    continue
                first = made.get(to)
                if first is not None:  # its recipient was checked with the first send to it
                    add(again(first, subject, body, in_reply_to=reply, key=ikey))
                    continue
                rcpt = rcpts.get(to)
                if rcpt is None:
                    try:
                        rcpt = rcpts[to] = self._recipient(to)
                    except MeshError as e:
                        rcpt = rcpts[to] = e
                if isinstance(rcpt, MeshError):
                    add(rcpt)
                    continue
                out = mb.outgoing([rcpt], subject, body, sender_node=self.me, in_reply_to=reply, key=ikey)
                made[to] = out
                add(out)
            except MeshError as e:
                add(e)
        if key:
            return await self._send_group(outs, key, mb.batch_digest(cols))
        if len(outs) <= mb.SEND_MAX:
            return await self._send_group(outs, "", "")
        # More than one transaction may hold: a group each SEND_MAX, all joining this turn's group commit.
        parts = await asyncio.gather(
            *(self._send_group(outs[i : i + mb.SEND_MAX], "", "") for i in range(0, len(outs), mb.SEND_MAX))
        )
        return [a for part in parts for a in part]  # type: ignore[misc]  # not `run`: lists only

    def _to_one(self, cols: mb.SendColumns) -> list[mb.Outgoing | MeshError] | None:
        """The common batch (every send to one name, no reply ids or keys of their own, at most SEND_MAX) as
        Outgoings, its texts checked a column at a time (`outgoing_many`); None for any other batch, or one
        with a text that may be refused (then `send_many` checks each and says which)."""
        n = len(cols)
        to = cols.to[0] if n else None
        if not (
            1 < n <= mb.SEND_MAX
            and to.__class__ is str
            and cols.to.count(to) == n
            and not any(cols.reply_tos)
            and not any(cols.keys)
        ):
            return None
        assert to is not None
        try:
            rcpt = self._recipient(to)
        except MeshError as e:  # every send's answer, as send_many's loop answers each
            return [e] * n
        try:
            first = mb.outgoing([rcpt], cols.subjects[0], cols.bodies[0], sender_node=self.me)
        except MeshError:  # its text, or this node itself: send_many's loop answers each send
            return None
        made = mb.outgoing_many(first, cols.subjects, cols.bodies)
        return None if made is None else list(made)

    async def _send_group(
        self, outs: list[mb.Outgoing | MeshError], key: str, digest: str, run: bool = False
    ) -> list[tuple[str, Sequence[str]] | MeshError] | tuple[list[str], tuple[str, ...]]:
        """`send_many`'s sends as one entry of the group commit (a KeyedBatch: under the batch's key, or
        with none, "": then recorded nowhere), not one entry, one answer and one settling per send. `run`:
        every one of `outs` is an Outgoing to the same Recipient (`_to_one` made them); when all of them
        were queued now, the answer is (their ids, the names) (`send_batch`)."""
        sends = tuple(outs) if run else tuple(None if isinstance(o, MeshError) else o for o in outs)
        batch = KeyedBatch(key, digest, sends)  # type: ignore[arg-type]  # run: no MeshError in outs
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((batch, fut))
        self._flush_soon(asyncio.get_running_loop())
        try:
            got: list[_Queued | MeshError | None] = await fut
        except MeshError as e:
            if key:  # the whole batch refused (its key was used for another, or a fault): each item says so
                return [e] * len(outs)
            # a fault: each send that was to be queued says so; a send refused at its check keeps its error
            return [o if isinstance(o, MeshError) else e for o in outs]
        # A run all of it queued now (the common case): its ids by a C loop, one names tuple for all.
        if run and set(map(type, got)) == _TUPLE and not any(map(_SECOND, got)):  # type: ignore[arg-type]
            rs = outs[0].recipients  # type: ignore[union-attr]  # run: an Outgoing
            return list(map(_FIRST, got)), (rs[0].name,)  # type: ignore[arg-type]
        answers: list[tuple[str, Sequence[str]] | MeshError] = []
        add = answers.append
        last: tuple[mb.Recipient, ...] = ()
        names: tuple[str, ...] = ()
        for o, g in zip(outs, got, strict=True):
            if g.__class__ is tuple and g[1] is None and o.__class__ is mb.Outgoing:  # queued now (the common
                rs = o.recipients  # case: `_answer` inlined; a batch's sends to one name share its names)
                if rs is not last:
                    last = rs
                    names = (rs[0].name,) if len(rs) == 1 else tuple(r.name for r in rs)
                add((g[0], names))
            elif g is None:  # not queued, now or by a first try of this batch: its own error
                add(o if isinstance(o, MeshError) else InvalidInput("not queued"))
            elif isinstance(g, MeshError):
                add(g)
            elif g[1] is not None or isinstance(o, MeshError):  # queued by the first try
                add((g[0], g[1] or []))
            else:
                add(_answer(o, g))
        return answers

    def sent_in_batch(self, key: str, index: int) -> tuple[str, list[str]] | None:
        """What item `index` of the batch keyed `key` was queued as, if it was (for a unary retry of it)."""
        return self.store.sent_in_batch(key, index)

    def _recipient(self, to: str) -> mb.Recipient:
        validate.name(to, "recipient")
        return self.resolve(to)

    def _direct(self, to: str, subject: str, body: str, reply_to: str | None, key: str | None) -> mb.Outgoing:
        """A direct send to `to`, checked (`outgoing`); to a name and node an earlier send to it was accepted
        for, `outgoing_again` of that send (the same checks of its text, reply id and key; its recipient,
        unchanged, not again)."""
        first = self._accepted.get(to) if to.__class__ is str else None  # not str: refused below
        if first is not None and self.resolve(to) is first.recipients[0]:
            return mb.outgoing_again(first, subject, body, in_reply_to=reply_to or None, key=key)
        rcpt = self._recipient(to)
        out = mb.outgoing([rcpt], subject, body, sender_node=self.me, in_reply_to=reply_to or None, key=key)
        if len(self._accepted) >= MAX_RECIPIENTS_KEPT:
            self._accepted.clear()
        self._accepted[to] = out
        return out

    def _everyone(self, subject: str, body: str, reply_to: str | None, key: str | None) -> mb.Outgoing:
        rcpts = self._members_now()
        return mb.outgoing(
            rcpts, subject, body, sender_node=self.me, in_reply_to=reply_to or None, broadcast=True, key=key
        )

    def _members_now(self) -> list[mb.Recipient]:
        """Every member seen within RETENTION but this node: a broadcast's recipients. Read from the store
        once and reused (a broadcast read the whole directory each time) until a member is recorded
        (`_remember`: every join, link and departure) or EVERYONE_FOR has passed."""
        now = wall()
        cached = self._everyone_cache
        if cached is not None and now < cached[1]:
            return cached[0]
        seen = self.store.members(seen_since=now - mb.RETENTION)
        rcpts = [mb.Recipient(x.node_id, x.name) for x in seen if x.node_id != self.me]
        self._everyone_cache = (rcpts, now + EVERYONE_FOR)
        return rcpts

    def _enqueue_one(self, out: mb.Outgoing) -> asyncio.Future[tuple[str, Sequence[str]]]:
        """Add a lone send to this turn's group commit (a gather of node.send: one each): a future of its
        answer (`_answer`'s). A send_many's sends are one entry (`_send_group`).

        Group commit without a timer: the sends that arrive in one loop turn (a SendBatch's items, a
        gather) share one SQLite transaction, flushed at the end of that turn. An idle node commits a
        lone send at once; under load the batches grow by themselves, because what arrives while a
        commit (and the frames it pumps) runs piles up for the next turn. Waiting on a timer for more
        (the old 1 ms) cost every one-at-a-time sender a millisecond, and end to end (bench/messages.py)
        the larger transactions it made were no faster."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[str, Sequence[str]]] = loop.create_future()
        self._batch.append((out, fut))
        self._flush_soon(loop)
        return fut

    def _flush_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._batch:
            part, self._batch = _take_part(self._batch)
            try:
                ids = self.store.enqueue_group([o for o, _ in part], wall(), keep=self.windows)
            except StorageError as e:  # nothing of this part was queued: each sender is told why
                self._fault("queue a message", e)
                for _, sink in part:
                    _settle(sink, e)
                continue
            except Exception as e:  # a bad message fails alone, not its neighbours
                if len(part) == 1:
                    _settle(part[0][1], e)
                    continue
                self._batch = part[1:] + self._batch
                part = part[:1]
                try:
                    ids = self.store.enqueue_group([part[0][0]], wall())
                except Exception as e1:
                    _settle(part[0][1], e1)
                    continue
            self._stored()
            peers: set[str] = set()
            for o, _ in part:
                if isinstance(o, KeyedBatch):
                    last: tuple[mb.Recipient, ...] = ()
                    for x in o.items:
                        # a batch's sends to one name share its recipients (`outgoing_again`): seen once
                        if x is not None and x.recipients is not last:
                            last = x.recipients
                            peers.update(r.node_id for r in last)
                elif len(o.recipients) == 1:  # a direct send: no generator per message
                    peers.add(o.recipients[0].node_id)
                else:
                    peers.update(r.node_id for r in o.recipients)
            try:
                # Frames first, answers second: the link's writer then runs before the senders resume, so a
                # message leaves for its recipient without waiting behind the answers' writes.
                for p in peers:
                    self._pump(p)
            finally:  # queued (committed) whatever the pump met: every sender is answered
                for (o, sink), got in zip(part, ids, strict=True):
                    # a lone send's future has its answer; a group's, the store's answers for its sends
                    if isinstance(o, mb.Outgoing) and isinstance(got, tuple):
                        _settle(sink, _answer(o, got))
                    else:
                        _settle(sink, got)

    def inbox(
        self, unread: bool = False, from_name: str | None = None, limit: int = 100, after: int | None = None
    ) -> list[mb.InboxMessage]:
        """One page of the inbox (see MailStore.inbox)."""
        return self.store.inbox(unread=unread, from_name=from_name or None, after=after, limit=limit)

    def follow(self) -> asyncio.Queue[mb.InboxMessage | None]:
        """A queue of messages as they arrive (None when the node stops); `unfollow` it when done."""
        if len(self._followers) >= MAX_FOLLOWERS:
            raise LimitExceeded(f"too many inbox followers (at most {MAX_FOLLOWERS})")
        q: asyncio.Queue[mb.InboxMessage | None] = asyncio.Queue()
        self._followers.append(q)
        return q

    def unfollow(self, q: asyncio.Queue[mb.InboxMessage | None]) -> None:
        with contextlib.suppress(ValueError):
            self._followers.remove(q)

    async def messages(
        self,
        unread: bool = False,
        follow: bool = False,
        from_name: str | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> AsyncIterator[mb.InboxMessage]:
        """The inbox (oldest first; the newest `limit`, or the first `limit` after local_seq `after`), then —
        with follow — new messages as they arrive."""
        if limit is not None:
            validate.page_limit(limit, most=mb.INBOX_PAGE_MAX)
        q = self.follow() if follow else None
        try:
            last = after or 0
            if limit is not None:
                for msg in self.inbox(unread=unread, from_name=from_name, limit=limit, after=after):
                    last = max(last, msg.local_seq)
                    yield msg
            else:  # all of it, a page at a time (never the newest 10,000 without a word)
                while True:
                    page = self.inbox(unread=unread, from_name=from_name, limit=self.page, after=last)
                    for msg in page:
                        last = max(last, msg.local_seq)
                        yield msg
                    if len(page) < self.page:
                        break
            while q is not None:
                got = await q.get()
                if got is None:
                    return
                if got.local_seq > last and (not from_name or got.from_name == from_name):
                    yield got
        finally:
            if q is not None:
                self.unfollow(q)

    def mark_read(self, ids: list[str] | None) -> int:
        """Mark messages read (all unread when `ids` is None); read receipts go back to their senders."""
        if ids is None:
            ids = [m.id for m in self.store.inbox(unread=True, limit=mb.INBOX_PAGE_MAX)]
        if len(ids) > mb.RECEIPT_MAX:
            raise LimitExceeded(f"mark at most {mb.RECEIPT_MAX} messages at once")
        receipts = self.store.mark_read(ids, wall())
        for rc in receipts:
            self.ctx.send(rc.sender_node, rc)  # no link: it is resent when the sender is back
        self._publish_unread()
        return sum(len(rc.ids) for rc in receipts) if receipts else 0

    def outbox(
        self, state: str | None = None, to: str | None = None, limit: int | None = None
    ) -> list[mb.OutboxEntry]:
        st = None
        if state:
            try:
                st = mb.OutState(state)
            except ValueError:
                raise InvalidInput(
                    f"state must be one of queued, delivered, read, expired; not {state!r}"
                ) from None
        return self.store.outbox(state=st, to_name=to or None, limit=limit or mb.INBOX_PAGE_MAX)

    def counts(self) -> tuple[int, int]:
        """(unread in the inbox, queued outbox entries)."""
        return self.store.unread_count(), self.store.queued_count()

    # ------------------------------------------------------------------ timers

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_expire:
            self._next_expire = now + EXPIRE_EVERY
            expired = self.store.expire(wall())
            if expired:
                log.warning("%d message(s) expired undelivered after the retention window", len(expired))
                for peer, w in self.windows.items():
                    w.on_floor(self.store.floor(peer))
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            self.store.prune(wall())

    async def _timer(self) -> None:
        while True:
            now = self.ctx.clock.now()
            for peer, w in list(self.windows.items()):
                if w.on_timer(now):
                    self._pump(peer)
            try:
                self._housekeeping(now)
            except StorageError as e:  # tried again at the next round; the timer itself carries on
                self._fault("expire or prune the outbox", e)
            deadlines = [d for w in self.windows.values() if (d := w.next_deadline()) is not None]
            # Idle, this wakes only for expiry; a send or an ack sets _wake.
            timeout = min([EXPIRE_EVERY, *(max(0.0, d - now) for d in deadlines)])
            self._timer_due = now + timeout
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
