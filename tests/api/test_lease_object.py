"""The Lease object a holder gets: validity on the holder's own clock, lost without a word from the node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from mesh.claim import Lease
from mesh.testing.clock import ManualClock
from mesh.views import LeaseEvent


def LeaseUpdate(kind: str, valid_until: float = 0.0, node_now: float = 0.0) -> LeaseEvent:
    """A lease event of the lease under test (the API's one LeaseEvent; this file predates it)."""
    return LeaseEvent(kind, "service/x", 7, valid_until, node_now)


class Feed:
    """Lease updates the test pushes, as a node's stream would deliver them."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[LeaseEvent | None] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[LeaseEvent]:
        while True:
            u = await self.q.get()
            if u is None:
                return
            yield u


def make(clock: ManualClock, valid_until: float, feed: Feed | None = None, offset: float = 0.0):
    released: list[str] = []

    async def release() -> None:
        released.append("x")

    lease = Lease(
        "service/x", 7, 0.0, release, feed.__aiter__() if feed else None,
        valid_until=valid_until, clock=clock, offset=offset,
    )  # fmt: skip
    return lease, released


async def test_valid_until_the_instant_then_lost_on_first_look() -> None:
    clock = ManualClock(100.0)
    lease, released = make(clock, valid_until=110.0)
    assert lease.is_valid() and lease.valid_until == 110.0 and lease.remaining() == 10.0
    clock.set(109.999)
    assert lease.is_valid() and not lease.lost.is_set()
    # The process was paused past valid_until: the very first look says lost, before any timer ran.
    clock.set(110.0)
    assert lease.lost.is_set() and not lease.is_valid() and lease.remaining() == 0.0
    await asyncio.wait_for(lease.lost.wait(), 5)
    await lease.release()
    assert released == ["x"]


async def test_the_timer_sets_lost_with_no_word_from_the_node() -> None:
    clock = ManualClock(0.0)
    feed = Feed()  # a node that says nothing (paused): no updates ever arrive
    lease, released = make(clock, valid_until=5.0, feed=feed)
    waiter = asyncio.ensure_future(lease.lost.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.set(5.5)
    await asyncio.wait_for(waiter, 5)  # the lease's own timer notices (it re-reads the clock)
    # and gives the lease back to the node, so nobody keeps renewing work nobody does
    for _ in range(100):
        if released:
            break
        await asyncio.sleep(0.01)
    assert released == ["x"]
    assert lease.released and not lease.is_valid()
    await lease.release()  # idempotent
    assert released == ["x"]


async def test_renewals_move_validity_forward_never_back() -> None:
    clock = ManualClock(0.0)
    feed = Feed()
    lease, _ = make(clock, valid_until=10.0, feed=feed)
    await feed.q.put(LeaseUpdate("renewed", 13.0, 3.0))
    await feed.q.put(LeaseUpdate("renewed", 12.0, 3.1))  # an older report arriving late
    for _ in range(100):
        if lease.valid_until == 13.0:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    assert lease.valid_until == 13.0
    clock.set(12.5)
    assert lease.is_valid()
    await lease.release()


async def test_offset_maps_node_instants_earlier_only() -> None:
    clock = ManualClock(0.0)
    feed = Feed()
    lease, _ = make(clock, valid_until=10.0, feed=feed, offset=-0.25)
    assert lease.valid_until == 9.75
    await feed.q.put(LeaseUpdate("renewed", 20.0, 10.0))
    for _ in range(100):
        if lease.valid_until == 19.75:
            break
        await asyncio.sleep(0.01)
    assert lease.valid_until == 19.75
    await lease.release()


async def test_node_saying_lost_or_released_elsewhere_ends_the_lease() -> None:
    for kind in ("lost", "released"):
        clock = ManualClock(0.0)
        feed = Feed()
        lease, _ = make(clock, valid_until=100.0, feed=feed)
        await feed.q.put(LeaseUpdate(kind))
        await asyncio.wait_for(lease.lost.wait(), 5)
        assert not lease.is_valid()
        await lease.release()


async def test_released_lease_is_not_reported_lost() -> None:
    clock = ManualClock(0.0)
    lease, released = make(clock, valid_until=10.0)
    await lease.release()
    clock.set(20.0)
    assert not lease.lost.is_set() and not lease.is_valid() and released == ["x"]


async def test_events_of_another_grant_never_extend_this_lease() -> None:
    """The node's event stream follows the item: if it already holds a NEWER grant of it (token 8) when this
    lease's stream starts, that validity must not extend this lease (token 7): this lease is over."""
    clock = ManualClock(0.0)
    feed = Feed()
    lease, _ = make(clock, valid_until=10.0, feed=feed)
    await feed.q.put(LeaseEvent("held", "service/x", 8, 50.0, 1.0))
    await asyncio.wait_for(lease.lost.wait(), 5)
    assert lease.valid_until == 10.0 and not lease.is_valid()
    await lease.release()


async def test_release_waits_for_a_give_back_in_flight() -> None:
    """A lease lost on its timer is given back to the node; `release()` must not return before that give-back
    has finished, or a claim made right after could reach the node first and be released by it."""
    clock = ManualClock(0.0)
    gate = asyncio.Event()
    calls: list[str] = []

    async def slow_release() -> None:
        calls.append("start")
        await gate.wait()
        calls.append("done")

    lease = Lease("service/x", 7, 0.0, slow_release, None, valid_until=1.0, clock=clock)
    clock.set(2.0)
    await asyncio.wait_for(lease.lost.wait(), 5)
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.01)
    assert calls == ["start"]  # the timer gave it back; the node has not answered yet
    releasing = asyncio.ensure_future(lease.release())
    await asyncio.sleep(0.05)
    assert not releasing.done()
    gate.set()
    await asyncio.wait_for(releasing, 5)
    assert calls == ["start", "done"]  # one give-back only, and release() returned after it


async def test_node_saying_it_does_not_hold_it_ends_the_lease_at_once() -> None:
    from mesh.errors import MeshError

    async def refusing() -> AsyncIterator[LeaseEvent]:
        raise MeshError("this node does not hold service/x")
        yield  # pragma: no cover

    async def release() -> None:
        return None

    clock = ManualClock(0.0)
    lease = Lease("service/x", 7, 0.0, release, refusing(), valid_until=100.0, clock=clock)
    await asyncio.wait_for(lease.lost.wait(), 5)
    assert not lease.is_valid()
    await lease.release()


async def test_node_going_away_leaves_the_lease_to_its_timer() -> None:
    from mesh.errors import NodeUnavailable

    async def gone() -> AsyncIterator[LeaseEvent]:
        raise NodeUnavailable("node gone")
        yield  # pragma: no cover

    async def release() -> None:
        return None

    clock = ManualClock(0.0)
    lease = Lease("service/x", 7, 0.0, release, gone(), valid_until=10.0, clock=clock)
    await asyncio.sleep(0.05)
    assert lease.is_valid()  # still certainly held: the protocol guarantees it until valid_until
    clock.set(10.0)
    assert not lease.is_valid()
    await lease.release()
