"""mDNS across 'hosts': nodes in separate network namespaces (veth + bridge) find each other by multicast."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration import netns
from tests.integration.harness import FAST, MESHCTL, Mesh, Proc, until

pytestmark = pytest.mark.netns

_reason = netns.unavailable_reason()


@pytest.mark.skipif(_reason is not None, reason=f"network namespaces unavailable: {_reason}")
def test_nodes_in_different_namespaces_discover_each_other(mesh: Mesh) -> None:
    names = ["h1", "h2", "h3"]
    with netns.hosts(len(names)) as hosts:
        try:
            for name, host in zip(names, hosts, strict=True):
                # Each node binds its peer API and mDNS to its own namespace's address; no --peer seeds.
                cmd = host.cmd(
                    *MESHCTL,
                    "up",
                    "--name",
                    name,
                    "--detach",
                    "--json",
                    "--bind",
                    host.ip,
                    "--mdns-interface",
                    host.ip,
                    *FAST,
                )
                r = subprocess.run(cmd, env=mesh.env(), capture_output=True, text=True, timeout=30)
                assert r.returncode == 0, r.stderr
                info = json.loads(r.stdout)
                mesh.nodes[name] = Proc(name, info["pid"], info["address"], info["node_id"], mesh.home)
                assert info["address"] == f"{host.ip}:{info['address'].rsplit(':', 1)[1]}"

            def everyone_sees_everyone() -> bool:
                return all(
                    {n for n, s in mesh.states(node).items() if s == "alive"} == set(names) for node in names
                )

            until(everyone_sees_everyone, timeout=20, what="all three namespaces discover each other")
            st = mesh.status("h1")
            assert {st[n]["address"].split(":")[0] for n in names} == {h.ip for h in hosts}
        finally:
            mesh.cleanup()
            mesh.nodes.clear()
