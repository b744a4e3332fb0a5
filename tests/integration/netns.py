"""Throwaway Linux network namespaces joined by a bridge: several 'hosts' on one machine, for real mDNS.

Created and removed by the test itself (as root). Addresses are in 10.77.<k>.0/24 inside namespaces that only
this test creates, so nothing reaches the machine's real network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (None if they can)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = "smprobe" + uuid.uuid4().hex[:6]
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as e:
        return f"cannot create a network namespace: {e.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass(frozen=True)
class Host:
    ns: str
    ip: str

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]


@contextmanager
def hosts(n: int, subnet: int = 77) -> Iterator[list[Host]]:
    """n namespaces on one bridge, each with lo up and 10.<subnet>.0.<i+1>/24; always removed afterwards."""
    tag = uuid.uuid4().hex[:5]
    br = f"smbr{tag}"
    made: list[str] = []
    try:
        _ip("netns", "add", br)
        made.append(br)
        _ip("-n", br, "link", "add", "br0", "type", "bridge")
        _ip("-n", br, "link", "set", "br0", "up")
        out: list[Host] = []
        for i in range(n):
            ns = f"smh{tag}{i}"
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("link", "add", "v0", "netns", ns, "type", "veth", "peer", "name", f"b{i}", "netns", br)
            _ip("-n", br, "link", "set", f"b{i}", "master", "br0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "v0", "up", "multicast", "on")
            ip = f"10.{subnet}.0.{i + 1}"
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "v0")
            # Multicast for mDNS leaves through the veth.
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "v0")
            out.append(Host(ns=ns, ip=ip))
        yield out
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
