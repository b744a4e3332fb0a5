"""The claims service: the sans-IO ClaimsCore carried out on a ServiceContext.

    meshctl claim / node.claim() ──▶ ClaimsService.claim ──▶ core.claim ──Send──▶ ctx.send (one frame a peer)
    claims messages from peers ──▶ core.receive ──effects──▶ waiters, lease events, observers (taps),
                                   this node's status (held claims), config gossip (ctx.broadcast)
    one timer task ticks the core at its next deadline; steward upkeep runs on every membership change

Durable state (``mesh._steward_store``): this node's steward state (config, config-Paxos votes, the
reserved lease-ballot floor) is written before the replies it backs; the home's epoch file records that
this home has seen a config. Either one unreadable: the node refuses to start (StateDamaged).

Who the stewards are is kept up by the node itself (genesis, upkeep, proven-death recovery, the hand-off at
leave): ``mesh._services.stewardship``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from mesh import _steward_store as store
from mesh import taps
from mesh._services.context import ServiceContext
from mesh._services.stewardship import Stewardship
from mesh.clock import wall
from mesh.core.claim_types import CLAIM_MESSAGES, Wants
from mesh.core.claims import (
    ClaimsCore,
    ConfigAnnounce,
    ConfigChanged,
    Denied,
    Effect,
    Granted,
    LeaseConfig,
    Lost,
    Persist,
    Probed,
    Released,
    Renewed,
    Send,
    StewardConfig,
    Unavailable,
    Wake,
)
from mesh.core.errors import ClaimDenied, InvalidInput, MeshError, NoQuorum, StorageError
from mesh.core.identity import Identity
from mesh.core.membership import Member, MembershipEvent, PeerInfo, StatusChanged
from mesh.core.ratelimit import LogLimiter
from mesh.core.validate import MAX_TTL, check_ttl
from mesh.core.values import replace, value
from mesh.views import ClaimView, LeaseEvent

log = logging.getLogger("mesh.claims")

MANAGE_EVERY = 1.0
IDLE_WAKE = 5.0
FORMING_WAIT = 5.0  # a claim without --wait waits this long for a config / a hand-off
FAULT_LOG_EVERY = 60.0  # a storage fault that persists is logged again this often
CHECK_WITHIN = 0.4  # s: a pre-edit check asks the stewards this long, then says it cannot (hook budget 0.8 s)
WAIT_RETRY = (0.2, 0.4)  # a --wait claim retries this often (random) while another holds it; the stewards
# queue it (FIFO) and wake it at once when its turn comes, so this is only the fallback (a lost Free)
PUBLISH_DELAY = 0.05  # held claims reach the status record this soon after the last change (the answer first)
PUBLISH_MOST = 1.0  # ...and at most this long after a change while claims keep changing (a claim loop):
# each publish is a write on every link, and an answer that arrives meanwhile waits behind them (stop 22's
# 12-node bench: the 3 % of claims that met a publish took 5.2 ms at p50, the rest 1.9 ms)


@value(frozen=False, slots=True)
class _Held:
    token: int
    claim_ends: float  # local monotonic
    valid_until: float  # local monotonic: the holder's conservative belief (see valid_until())


def check_state(home: Path, mesh: str, state_dir: Path, node_id: str) -> Any:
    """Read this node's durable claims state; StorageError (one clear line) if any of it is unreadable."""
    store.read_home_epoch(home, mesh)
    return store.load_steward_state(state_dir, node_id)


class ClaimsService:
    """A node's claims: proposer for its own, acceptor when it is a steward, config gossip, steward upkeep."""

    accepts: tuple[type, ...] = (*CLAIM_MESSAGES, Wants)

    def __init__(self, ctx: ServiceContext, lease: LeaseConfig, bootstrap: bool = False) -> None:
        self.ctx = ctx
        self.me: Identity = ctx.identity
        self.node_id = ctx.identity.node_id
        self.lease = lease
        self.home, self.mesh = ctx.home, ctx.mesh
        durable = check_state(self.home, self.mesh, ctx.state_dir, self.node_id)
        self._started = ctx.clock.now()
        self.core = ClaimsCore(
            str(self.me), ctx.name, lease, random.Random(), state=durable, now=self._started
        )
        if durable is not None and durable.clean:
            # A clean stop is good for ONE start: cleared durably before this node serves anything.
            store.save_steward_state(ctx.state_dir, self.node_id, self.core.durable)
        if durable is not None and durable.config is not None:
            log.info("steward config epoch %d from this node's state", durable.config.epoch)
        self._stored = self.core.durable  # what is on disk (the core's view may not run ahead of it)
        self._faults = LogLimiter(burst=1, every=FAULT_LOG_EVERY)
        self.held: dict[str, _Held] = {}
        self._waiters: dict[str, list[asyncio.Future[Effect]]] = {}
        self._waiters_woken = False  # a claim's waiter was answered during this apply()
        self._turns: dict[
            str, asyncio.Event
        ] = {}  # waiting claims by item: set when a steward says "your turn"
        # Pre-edit checks waiting, per resource: (when asked, on the core's clock; the caller's future). A
        # core answer settles those asked at or before its round's send (``Probed.sent``), the rest wait on.
        self._probes: dict[str, list[tuple[float, asyncio.Future[Probed]]]] = {}
        self._config_waiters: list[asyncio.Future[None]] = []
        self._lease_watchers: dict[str, list[asyncio.Queue[LeaseEvent | None]]] = {}
        # API lease handles (`claim()`'s Lease, any process) holding each item through this node: the node
        # keeps an item while one remains, and a release that is not theirs never cuts their validity short.
        self._handles: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._timer_at = math.inf  # (clock) when the timer task looks next: apply() wakes it only sooner
        self._sleep: asyncio.Timeout | None = None  # the timer task's sleep, while it sleeps (apply moves it)
        self._manage_soon = False
        self._last_manage = 0.0
        self._observers = taps.lease_observers()
        ctx.show_stewards(lambda: cfg.stewards if (cfg := self.core.config) else ())
        ctx.on_member(self._on_member)
        self.stewards = Stewardship(ctx, self.core, lease, bootstrap, self.apply, self.name_of)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.stewards.ready()
        cfg = self.core.config
        if cfg is not None:
            self._config_changed(cfg)
        self.ctx.spawn(self._timer(), "claims-timer")

    async def release_all(self) -> None:
        """On leave: release every held claim (peers stop waiting at once); hand off stewardship if needed.

        An item an API lease handle holds is abandoned instead (no Release to the stewards): the handle's
        process may go on acting until the validity it was told, so the item must stay taken until the
        acceptors' lease runs out after it."""
        now = self.ctx.clock.now()
        for resource, h in list(self.held.items()):
            self.apply(self.core.release(resource, now, tell=not self._cut_short(resource, h, now)))
        self._wake.set()
        await self.stewards.hand_off()
        state = self.core.clean_stop(self.ctx.clock.now())
        if state is not None:
            with contextlib.suppress(OSError):
                store.save_steward_state(self.ctx.state_dir, self.node_id, state)

    def _observe(self, ev: str, resource: str, token: int, until: float | None = None) -> None:
        if self._observers:
            note = taps.LeaseNote(
                ev, self.ctx.name, str(self.me), resource, token, self.ctx.clock.now(), until
            )
            for observe in self._observers:
                observe(note)

    def close(self) -> None:
        for qs in self._lease_watchers.values():
            for q in qs:
                q.put_nowait(None)
        self.stewards.close()

    # ------------------------------------------------------------------ effects

    def apply(self, effects: list[Effect], *, answer_first: bool = False) -> None:
        """Carry out the core's effects in order; sends to one peer ride in one frame.

        `answer_first`: the sends leave once the current task step is over (a release: its caller's answer
        leaves first). A frame to a link whose writer is idle leaves at once, a write each, and a release's
        Release to every steward would otherwise sit in front of its answer."""
        outbox: dict[str, list[object]] = {}
        status_changed = False
        unstored = False
        for e in effects:
            if isinstance(e, Send):
                if not self.stewards.proxied(e):
                    outbox.setdefault(e.to, []).append(e.msg)
            elif isinstance(e, Persist):
                # Durable BEFORE anything that follows leaves (the frames below are sent after the loop).
                try:
                    store.save_steward_state(self.ctx.state_dir, self.node_id, e.state)
                    self._stored = e.state
                except OSError as err:
                    # A steward must not answer what it cannot remember: this batch's replies stay
                    # unsent (the protocol takes that as lost messages) and the core decides on from what
                    # is on disk. The node and its links carry on; it answers again once there is room.
                    unstored = True
                    self.core.persist_failed(self._stored)
                    if self._faults.allow("steward-state", self.ctx.clock.now()):
                        log.error("steward state not written (%s); not answering as a steward until it is",
                                  err)  # fmt: skip
            elif isinstance(e, Granted):
                slot = self.core.held(self.ctx.clock.now()).get(e.resource)
                ends = slot.claim_ends if slot else e.until
                valid = self.valid_until(e.until)
                self.held[e.resource] = _Held(e.token, ends, valid)
                # Debug, not info: a line per grant and release (stderr, a formatted time) is a measurable
                # share of a claim's few milliseconds; `meshctl held`, watchers and lease taps show holdings.
                log.debug("acquired %s token=%d", e.resource, e.token)
                self._observe("acquired", e.resource, e.token, e.until)
                self._resolve(e.resource, e)
                self._lease_event(LeaseEvent("held", e.resource, e.token, valid))
                status_changed = True
            elif isinstance(e, Renewed):
                valid = self.valid_until(e.until)
                h = self.held.get(e.resource)
                if h is not None:
                    h.valid_until = max(h.valid_until, valid)
                self._observe("renewed", e.resource, e.token, e.until)
                self._lease_event(LeaseEvent("renewed", e.resource, e.token, valid))
            elif isinstance(e, Lost):
                self.held.pop(e.resource, None)
                self._handles.pop(e.resource, None)
                log.warning("lost %s token=%d (could not renew in time)", e.resource, e.token)
                self._observe("lost", e.resource, e.token)
                self._lease_event(LeaseEvent("lost", e.resource, e.token), final=True)
                status_changed = True
            elif isinstance(e, Released):
                self.held.pop(e.resource, None)
                self._handles.pop(e.resource, None)
                log.debug("released %s token=%d", e.resource, e.token)
                self._observe("released", e.resource, e.token)
                self._lease_event(LeaseEvent("released", e.resource, e.token), final=True)
                status_changed = True
            elif isinstance(e, Probed):
                self._settle(e)
            elif isinstance(e, Denied | Unavailable):
                self._resolve(e.resource, e)
                if isinstance(e, Unavailable) and e.resource.startswith("@"):
                    log.info("steward change not made: %s", e.reason)
            elif isinstance(e, ConfigChanged):
                self._config_changed(e.config)
            elif isinstance(e, Wake):
                turn = self._turns.get(e.resource)
                if turn is not None:
                    turn.set()
        if unstored:
            outbox.clear()
        if answer_first and outbox:
            asyncio.get_running_loop().call_soon(self._send_out, outbox)
        else:
            self._send_out(outbox)
        if status_changed:
            self.ctx.publish_status("claims", lambda: tuple(self.held_view()), PUBLISH_DELAY, PUBLISH_MOST)
        woken, self._waiters_woken = self._waiters_woken, False
        # The timer task is woken only when these effects moved the core's next deadline before the time it
        # will look anyway (or upkeep is due): a pass per claim, reply and release was a task switch, a tick
        # and an upkeep check each (a quarter of a claimant's work per claim), mostly finding nothing due.
        if not self._manage_soon:
            deadline = self.core.next_deadline()
            if deadline is None or deadline >= self._timer_at:
                return
            if self._sleep is not None and self._move_sleep(deadline):
                return
        if woken:
            # A claim's answer is on its way: let its task reply first, the timer's pass comes right after.
            asyncio.get_running_loop().call_soon(self._wake.set)
        else:
            self._wake.set()

    def _send_out(self, outbox: dict[str, list[object]]) -> None:
        for to, msgs in outbox.items():
            # A bare node id (a steward) reaches whatever incarnation of it runs; an identity only that one.
            # A message that reaches nobody is lost, which the protocol tolerates (the attempt times out).
            self.ctx.send(Identity.parse(to) if "/" in to else to, *msgs)

    def _move_sleep(self, deadline: float) -> bool:
        """Bring the sleeping timer task's next pass forward to `deadline` (True), rather than wake it now
        to find nothing due and sleep again: a claim's attempt timeout moved the deadline on every claim, and
        that pass ran on the claimant while its Proposes were out (the second steward waited for the CPU).
        False when the sleep is already over (its pass is coming; then it is woken as before)."""
        sleep = self._sleep
        if sleep is None or sleep.expired():
            return False
        loop = asyncio.get_running_loop()
        try:
            sleep.reschedule(loop.time() + max(0.0, deadline - self.ctx.clock.now()))
        except RuntimeError:  # not sleeping under it any more
            return False
        self._timer_at = deadline
        return True

    def valid_until(self, until: float) -> float:
        """The holder's conservative validity for a core deadline ``until`` = t_prepare_sent + D_P.

        valid_until = t_prepare_sent + D_P * (1 - rho): the core's own belief, shortened by the clock-rate
        bound, so that an API holder acting on it stops a little before the node itself would.
        """
        return until - self.lease.rho * self.lease.lease

    def _settle(self, e: Probed) -> None:
        """A probe round's answer settles every check of its resource asked at or before the round was sent;
        a check asked later waits for a round sent after it (a holder granted in between may be missing)."""
        waiting = self._probes.get(e.resource, [])
        left = [(asked, fut) for asked, fut in waiting if asked > e.sent and not fut.done()]
        for asked, fut in waiting:
            if asked <= e.sent and not fut.done():
                fut.set_result(e)
        if left:
            self._probes[e.resource] = left
        else:
            self._probes.pop(e.resource, None)

    def _resolve(self, resource: str, e: Effect) -> None:
        for fut in self._waiters.pop(resource, []):
            if not fut.done():
                fut.set_result(e)
                self._waiters_woken = True

    def _lease_event(self, ev: LeaseEvent, final: bool = False) -> None:
        for q in self._lease_watchers.get(ev.resource, []):
            q.put_nowait(ev)
            if final:
                q.put_nowait(None)
        if final:
            self._lease_watchers.pop(ev.resource, None)

    def _config_changed(self, cfg: StewardConfig) -> None:
        names = [self.name_of(s) for s in cfg.stewards]
        log.info("steward config epoch %d: %s", cfg.epoch, ", ".join(names))
        try:
            store.remember_home_epoch(self.home, self.mesh, cfg.epoch)
        except (OSError, StorageError) as e:
            log.warning("could not record epoch %d in this home: %s", cfg.epoch, e)
        self.ctx.broadcast(ConfigAnnounce(cfg.epoch, cfg.stewards))
        for fut in self._config_waiters:
            if not fut.done():
                fut.set_result(None)
        self._config_waiters.clear()
        self._manage_soon = True
        self.ctx.refresh_views()

    # ------------------------------------------------------------------ peer side

    def on_link_up(self, peer: PeerInfo) -> None:
        cfg = self.core.config
        if cfg is not None:
            self.ctx.send(peer.node_id, ConfigAnnounce(cfg.epoch, cfg.stewards))

    def on_link_down(self, peer: PeerInfo) -> None:
        pass  # the protocol needs nothing: messages to a peer without a link are lost, attempts time out

    def on_messages(self, peer: PeerInfo, msgs: Sequence[object]) -> None:
        """Claims messages from a peer; the sender identity is the link's, never what a message says."""
        sender = str(peer.identity)
        now = self.ctx.clock.now()
        effects: list[Effect] = []
        for m in msgs:
            if isinstance(m, Wants):
                # Older peers' "I wait for it" hints (they made a releaser pause before re-claiming): the
                # stewards' FIFO queue does that now (a releaser that re-claims is refused during the head
                # waiter's turn and queued behind it).
                continue
            else:
                effects += self.core.receive(sender, m, now)  # type: ignore[arg-type]  # one of CLAIM_MESSAGES
        self.apply(effects)

    def _on_member(self, ev: MembershipEvent, m: Member | None) -> None:
        """A node joined, died, left or came back: run upkeep now, not at the next periodic pass (a status
        change alone changes nothing upkeep looks at)."""
        if isinstance(ev, StatusChanged):
            return
        self._manage_soon = True
        self._wake.set()

    # ------------------------------------------------------------------ timers

    async def _timer(self) -> None:
        while True:
            now = self.ctx.clock.now()
            self.apply(self.core.tick(now))
            # Upkeep matters before the first config and on stewards; an idle non-steward sleeps longer.
            cfg = self.core.config
            every = MANAGE_EVERY if cfg is None or self.stewards.concerned(cfg) else IDLE_WAKE
            if self._manage_soon or now - self._last_manage >= every:
                self._manage_soon = False
                self._last_manage = now
                self.stewards.manage(now)
            deadline = self.core.next_deadline()
            now = self.ctx.clock.now()
            timeout = every if deadline is None else min(every, max(0.0, deadline - now))
            if cfg is None:
                timeout = min(timeout, 0.1)  # forming: look again soon
            self._timer_at = now + timeout
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that races the
            # timeout, which left this loop running after stop().
            try:
                async with asyncio.timeout(timeout) as self._sleep:
                    await self._wake.wait()
            except TimeoutError:
                pass
            finally:
                self._sleep = None

    # ------------------------------------------------------------------ API

    def name_of(self, identity: str) -> str:
        """Session name of an identity or node id, if it is a member we know."""
        node_id = Identity.node_of(identity)
        if node_id == self.node_id:
            return self.ctx.name
        mem = self.ctx.members.members.get(node_id)
        return mem.info.name if mem is not None else "?" + node_id[:8]

    async def _await_config(self, budget: float) -> bool:
        if self.core.config is not None:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._config_waiters.append(fut)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await fut
        return self.core.config is not None

    async def claim(self, resource: str, ttl: float, wait: float, *, handle: bool = False) -> ClaimView:
        """Claim `resource` for at most `ttl` s; with `wait`, keep trying while someone else holds it.

        `handle`: the claim is for an API lease handle (`claim()`), counted until that handle releases.

        While the mesh forms (no config yet) or new stewards take over, the claim waits for them, up to
        `wait` or FORMING_WAIT when no `wait` is given.
        """
        check_ttl(ttl)
        if not 0 <= wait <= MAX_TTL:
            raise InvalidInput(f"wait must be 0 to 7 days, not {wait!r} s")
        start = self.ctx.clock.now()
        patience_forming = wait if wait > 0 else FORMING_WAIT
        if not await self._await_config(patience_forming):
            raise NoQuorum(f"cannot decide {resource} now: {self.stewards.note()}")
        deadline = start + wait
        forming_deadline = start + patience_forming
        patience = self.lease.claim_patience + 2 * self.lease.attempt_timeout + 1.0
        turn = self._turns.setdefault(resource, asyncio.Event()) if wait > 0 else None
        try:
            return await self._claim_loop(resource, ttl, wait, handle, deadline, forming_deadline, patience,
                                          turn, start)  # fmt: skip
        finally:
            if turn is not None and self._turns.get(resource) is turn:
                del self._turns[resource]

    async def _claim_loop(
        self,
        resource: str,
        ttl: float,
        wait: float,
        handle: bool,
        deadline: float,
        forming_deadline: float,
        patience: float,
        turn: asyncio.Event | None,
        since: float,
    ) -> ClaimView:
        loop = asyncio.get_running_loop()
        while True:
            fut: asyncio.Future[Effect] = loop.create_future()
            self._waiters.setdefault(resource, []).append(fut)
            if turn is not None:
                turn.clear()  # a Wake from now on (during this attempt too) cuts the next pause short
            self.apply(self.core.claim(resource, ttl, self.ctx.clock.now(), wait=wait > 0, since=since))
            try:
                async with asyncio.timeout(patience):
                    e = await fut  # (a cancelled waiter is skipped when the answer comes)
            except TimeoutError:
                e = Unavailable(resource, "no answer from the stewards")
            now = self.ctx.clock.now()
            if isinstance(e, Granted):
                h = self.held.get(resource)
                if handle and h is not None:
                    self._handles[resource] = self._handles.get(resource, 0) + 1
                ends = h.claim_ends if h else now + ttl
                valid = h.valid_until if h else self.valid_until(e.until)
                exp, me = wall() + (ends - now), str(self.me)
                return ClaimView(resource, self.ctx.name, self.node_id, e.token, exp, valid, now, me)
            if isinstance(e, Unavailable) and now < forming_deadline and not e.resource.startswith("@"):
                # New stewards take over (restarted ones sit out their quarantine: they said for how long),
                # or a steward just died and is being replaced: a claim rides that out, within its budget.
                pause = min(e.wait, 0.5) if e.wait > 0 else random.uniform(0.05, 0.2)
                if now + pause < forming_deadline:
                    await asyncio.sleep(pause)
                    continue
            if now >= deadline:
                if isinstance(e, Denied):
                    exp = wall() + e.remaining if e.remaining else 0.0
                    node = Identity.node_of(e.holder)
                    held = (
                        f"{resource} conflicts with {e.conflict}, held"
                        if e.conflict
                        else f"{resource} is held"
                    )
                    raise ClaimDenied(
                        f"{held} by {e.holder_name or node}" + (f" until {_clock(exp)}" if exp else ""),
                        holder=e.holder_name or node,
                        expires_at=exp or None,
                        holder_id=e.holder,
                    )
                reason = e.reason if isinstance(e, Unavailable) else "no answer"
                note = self.stewards.note()
                raise NoQuorum(f"cannot decide {resource} now: {reason}" + (f"; {note}" if note else ""))
            # Someone holds it (or the stewards are busy): try again when a steward says it is our turn
            # (FIFO), or soon anyway.
            pause = min(max(0.0, deadline - now), random.uniform(*WAIT_RETRY))
            if turn is None:
                await asyncio.sleep(pause)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await turn.wait()

    async def check(self, resource: str, within: float = CHECK_WITHIN) -> ClaimView | None:
        """Who else holds a claim that conflicts with `resource`, asked of the stewards (None: nobody).

        NoQuorum when no steward majority answers within `within` s (or there is no config yet): the
        pre-edit hook must answer at once, so this never waits for the mesh to form. The question promises
        nothing at the stewards (`Prepare.probe`): it may name a resource this node claims itself (a check
        of a file asks under `path-shared/FILE`, the name of a `--shared` claim on that file).

        Checks of one resource asked while a round is out each get a fresh round, and every round keeps
        running: a caller is answered by the first round sent at or after it asked (`Probed.sent`), so a
        steady stream of checks cannot keep the first caller waiting.
        """
        if self.core.config is None:
            raise NoQuorum(f"cannot check {resource} now: {self.stewards.note() or 'no steward config yet'}")
        fut: asyncio.Future[Probed] = asyncio.get_running_loop().create_future()
        asked = self.ctx.clock.now()
        self._probes.setdefault(resource, []).append((asked, fut))
        self.apply(self.core.probe(resource, asked))
        try:
            async with asyncio.timeout(within):
                p = await asyncio.shield(fut)
        except TimeoutError:
            p = Probed(resource, asked, unavailable=f"no steward majority answered within {within:g}s")
        finally:
            fut.cancel()  # (a no-op once answered) the next answer drops it from the waiting
        if p.denied is None:
            if p.unavailable:
                note = self.stewards.note()
                raise NoQuorum(
                    f"cannot check {resource} now: {p.unavailable}" + (f"; {note}" if note else "")
                )
            return None
        d = p.denied
        exp = wall() + d.remaining if d.remaining else 0.0
        node = Identity.node_of(d.holder)
        return ClaimView(d.conflict or d.resource, d.holder_name, node, d.token, exp, holder_id=d.holder)

    def release(self, resource: str, *, handle: bool = False) -> int | None:
        """Release a held claim; returns its token (None if this node did not hold it).

        `handle`: an API lease handle lets go. While another handle of this node holds the item the node
        keeps it (and renews it). A release that is not the last handle's — `meshctl release`, another
        client — while a handle's told validity runs is an abandon: renewals stop and the handles hear
        "released", but the stewards are not told, so nobody else is granted the item before every validity
        this node reported has passed (the acceptors' lease outlives it by construction).
        """
        h = self.held.get(resource)
        now = self.ctx.clock.now()
        if h is not None and handle:
            left = self._handles.get(resource, 0) - 1
            if left > 0:
                self._handles[resource] = left
                return h.token
            self._handles.pop(resource, None)
        tell = h is None or not self._cut_short(resource, h, now)
        self.apply(self.core.release(resource, now, tell=tell), answer_first=True)
        return h.token if h else None

    def _cut_short(self, resource: str, h: _Held, now: float) -> bool:
        """Would releasing `resource` at the stewards now cut an API handle's told validity short?"""
        return self._handles.get(resource, 0) > 0 and now < h.valid_until

    def held_view(self) -> list[tuple[str, int, float]]:
        """(resource, token, ends at wall) for every claim held: what this node's status record publishes."""
        now, w = self.ctx.clock.now(), wall()
        return [(r, h.token, w + (h.claim_ends - now)) for r, h in sorted(self.held.items())]

    def held_claims(self) -> list[ClaimView]:
        """The claims this node holds now, by item, as the API shows them."""
        me = str(self.me)
        return [ClaimView(r, self.ctx.name, self.node_id, t, x, holder_id=me) for r, t, x in self.held_view()]

    async def watch_lease(self, resource: str) -> AsyncIterator[LeaseEvent]:
        """Events of a held lease until it is lost or released."""
        h = self.held.get(resource)
        if h is None:
            raise MeshError(f"this node does not hold {resource}")
        q: asyncio.Queue[LeaseEvent | None] = asyncio.Queue()
        self._lease_watchers.setdefault(resource, []).append(q)
        yield LeaseEvent("held", resource, h.token, h.valid_until, self.ctx.clock.now())
        while True:
            ev = await q.get()
            if ev is None:
                return
            yield replace(ev, node_now=self.ctx.clock.now())  # the node's clock as the event leaves

    def steward_note(self) -> str:
        """The steward situation in one line for status/stewards/claim errors ("" when all is well)."""
        return self.stewards.note()

    async def recover(self) -> StewardConfig:
        """Make this node the only steward of a new epoch, after waiting out any lease the old set granted."""
        return await self.stewards.recover()


def _clock(t: float) -> str:
    import time

    return time.strftime("%H:%M:%S", time.localtime(t))
