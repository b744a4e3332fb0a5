"""mDNS discovery (python-zeroconf): announce this node, browse for peers of the same mesh.

Discovery only *proposes* candidates (node id, host:port); the membership layer decides. Liveness never comes
from mDNS (a SIGKILLed process stays in caches for minutes). TXT records carry nothing secret: node id, mesh
name and protocol version.

Interfaces default to 127.0.0.1, which discovers across processes on one host without multicasting on the
machine's real network.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from mesh.core import validate
from mesh.errors import InvalidInput

log = logging.getLogger("mesh.discovery")

SERVICE_TYPE = "_sessionmesh._tcp.local."

Candidate = Callable[[str, str], None]  # (node_id, "host:port")


class Discovery:
    """Registers `<node_id>._sessionmesh._tcp.local.` and reports peers of `mesh` to `on_candidate`."""

    def __init__(
        self,
        *,
        node_id: str,
        mesh: str,
        proto_version: int,
        host: str,
        port: int,
        interfaces: tuple[str, ...],
        on_candidate: Candidate,
    ) -> None:
        self.node_id = node_id
        self.mesh = mesh
        self.proto_version = proto_version
        self.host = host
        self.port = port
        self.interfaces = list(interfaces)
        self.on_candidate = on_candidate
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: set[str] = set()

    async def start(self) -> None:
        """Announce and start browsing."""
        self._azc = AsyncZeroconf(interfaces=self.interfaces, ip_version=IPVersion.V4Only)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self.node_id}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(self.host)],
            port=self.port,
            properties={"id": self.node_id, "mesh": self.mesh, "v": str(self.proto_version)},
            server=f"{self.node_id}.local.",
        )
        # Node ids are unique, so probing for a name conflict is unnecessary: cooperating_responders skips the
        # ~1.6 s probe and brings discovery down to a fraction of a second.
        await (await self._azc.async_register_service(self._info, cooperating_responders=True))
        self._browser = AsyncServiceBrowser(self._azc.zeroconf, [SERVICE_TYPE], handlers=[self._on_change])

    async def stop(self) -> None:
        """Withdraw the announcement (peers see it go at once) and stop browsing."""
        for t in list(self._tasks):
            t.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._azc is not None:
            if self._info is not None:
                try:
                    async with asyncio.timeout(2.0):
                        await self._azc.async_unregister_service(self._info)
                except Exception as e:  # best effort: peers also learn of our leave on the peer links
                    log.debug("mDNS unregister failed: %s", e)
            await self._azc.async_close()
        self._azc = self._browser = self._info = None

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change not in (ServiceStateChange.Added, ServiceStateChange.Updated):
            return
        if name.startswith(self.node_id + "."):
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, 3000):
            return
        props = {
            k.decode(errors="replace"): (v or b"").decode(errors="replace")
            for k, v in info.properties.items()
        }
        if props.get("mesh") != self.mesh or props.get("v") != str(self.proto_version):
            return
        node_id = props.get("id", "")
        addrs = info.parsed_addresses(IPVersion.V4Only)
        if not addrs or not info.port:
            return
        try:
            validate.ident(node_id, "node id")
        except InvalidInput:
            log.debug("ignoring mDNS record with a bad node id: %r", node_id)
            return
        address = f"{addrs[0]}:{info.port}"
        key = f"{node_id}@{address}"
        if key not in self._seen:
            self._seen.add(key)
            log.debug("mDNS candidate %s at %s", node_id, address)
        self.on_candidate(node_id, address)
