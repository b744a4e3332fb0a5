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
from tests.integration.harness import FAST, Mesh, until
from tests.integration.nemesis import free_ports

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
