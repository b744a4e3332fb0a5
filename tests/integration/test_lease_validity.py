"""A holder through the API always knows when to stop: its lease ends on its own clock, node or no node.

The scenario of issue 14: five nodes, three stewards; a separate program holds `service/x` through
`mesh.connect("a")`; node `a` is SIGSTOPped (a laptop lid, a debugger) while the program keeps running; node
`e` claims the item and gets it once the stewards' leases ran out. The program must have stopped believing
before `e` was granted — from its own timer, since a stopped node says nothing.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from mesh.claim import Lease
from mesh.client import connect
from mesh.clock import BootClock
from tests.integration.harness import FAST, Mesh, free_ports, until

LEASE = 2.0
RHO = 0.01


def start(m: Mesh, names: list[str]) -> None:
    ports = free_ports(len(names))
    seeds = [a for p in ports for a in ("--peer", f"127.0.0.1:{p}")]
    for name, port in zip(names, ports, strict=True):
        m.up(name, "--no-mdns", "--port", str(port), *seeds, *FAST, "--lease", str(LEASE))


async def stewards(m: Mesh, name: str) -> int:
    async with await connect(name, mesh=m.name, home=m.home) as c:
        return len((await c.info()).stewards)


async def test_client_lease_lost_before_another_node_is_granted(mesh: Mesh, tmp_path: Path) -> None:
    names = ["a", "b", "c", "d", "e"]
    await asyncio.to_thread(start, mesh, names)
    for n in names:
        await asyncio.to_thread(until, lambda n=n: asyncio.run(stewards(mesh, n)) == 3, 30.0, 0.1,
                                f"3 stewards seen by {n}")  # fmt: skip
    clock = BootClock()
    a = await connect("a", mesh=mesh.name, home=mesh.home)
    e = await connect("e", mesh=mesh.name, home=mesh.home)
    try:
        lease = await a.claim("service", "x", ttl=600)
        assert lease.is_valid()
        # A renewal is confirmed and reported well before validity runs out (the slack is D_P*(2/3-rho)).
        first = lease.valid_until
        await asyncio.wait_for(_moved(lease, first), 10)

        lost_at: list[float] = []

        async def note_lost() -> None:
            await lease.lost.wait()
            lost_at.append(clock.now())

        watcher = asyncio.ensure_future(note_lost())
        mesh.signal("a", signal.SIGSTOP)
        stopped_at = clock.now()
        try:
            lease_e = await e.claim("service", "x", ttl=600, wait=60)
            # e's grant happened no earlier than e's winning Prepare was sent, which is its validity minus
            # D_P*(1-rho) (the client maps the node's instants only earlier, so this bound is safe).
            e_prepared = lease_e.valid_until - LEASE * (1 - RHO)
            await asyncio.wait_for(watcher, 5)
            assert lost_at, "the first holder's lease was never reported lost"
            # The belief of the first holder ended before the second holder's round even started...
            assert lease.valid_until < e_prepared, (lease.valid_until, e_prepared)
            # ...and its own timer said so although its node, stopped, said nothing at all.
            assert stopped_at < lease.valid_until <= lost_at[0]
            assert not lease.is_valid() and lease_e.is_valid()
            print(
                f"first holder's belief ended {e_prepared - lease.valid_until:.2f} s before the second "
                f"holder's round started; lost noticed {lost_at[0] - lease.valid_until:.3f} s after it ended"
            )
            await lease_e.release()
        finally:
            mesh.signal("a", signal.SIGCONT)
        await lease.release()
    finally:
        await a.close()
        await e.close()


async def _moved(lease: Lease, first: float) -> None:
    while lease.valid_until <= first:
        await asyncio.sleep(0.05)


async def test_a_release_that_is_not_the_handles_never_cuts_its_validity_short(mesh: Mesh) -> None:
    """Node-side lease handles: a Lease held through node `a` (another process) is ended by `meshctl release`
    on `a`, and by `meshctl down` of `a`, without anyone else being granted the item inside the validity
    the Lease was told; and while two Leases of `a` hold one item, one letting go leaves it held."""
    names = ["a", "b", "c", "d"]
    await asyncio.to_thread(start, mesh, names)
    for n in names:
        await asyncio.to_thread(until, lambda n=n: asyncio.run(stewards(mesh, n)) == 3, 30.0, 0.1,
                                f"3 stewards seen by {n}")  # fmt: skip
    a = await connect("a", mesh=mesh.name, home=mesh.home)
    c = await connect("c", mesh=mesh.name, home=mesh.home)
    try:
        # Two handles on one item: the first letting go leaves the second's lease held and renewed.
        one = await a.claim("job", "twice", ttl=600)
        two = await a.claim("job", "twice", ttl=600)
        assert one.token == two.token
        await one.release()
        await asyncio.wait_for(_moved(two, two.valid_until), 10)
        assert two.is_valid()
        held = {v.resource for v in await a.held()}
        assert "job/twice" in held
        await two.release()
        assert "job/twice" not in {v.resource for v in await a.held()}

        # A release that is not the handle's own: the handle hears it, and c waits out its validity.
        for item, cut in (("x", ("release", "service", "x")), ("y", ("down",))):
            lease = await a.claim("service", item, ttl=600)
            await asyncio.wait_for(_moved(lease, lease.valid_until), 10)
            await asyncio.to_thread(mesh.ctl, *cut, node="a")
            await asyncio.wait_for(lease.lost.wait(), 5)  # told at once (release), or by its timer (down)
            other = await c.claim("service", item, ttl=600, wait=60)
            c_prepared = other.valid_until - LEASE * (1 - RHO)
            assert lease.valid_until < c_prepared, (item, lease.valid_until, c_prepared)
            print(f"{' '.join(cut)}: c's round started {c_prepared - lease.valid_until:.2f} s after the "
                  f"handle's validity ended")  # fmt: skip
            await other.release()
    finally:
        await a.close()
        await c.close()
