"""`meshctl` for tests: installs the test-only taps its environment asks for, then runs the real meshctl.

    MESH_TEST_FAULTS=FILE           drop frames between the groups of a partition file (mesh.testing.faults)
    MESH_CLAIM_HISTORY=DIR          append every acquire/renew/release/loss of each node to
                                    DIR/NAME-INCARNATION.jsonl (JSON lines stamped with the node's
                                    CLOCK_BOOTTIME, which every process of the host shares) for
                                    tests/integration/claims_checker.py
    MESH_TEST_LOSE_REPLY=METHOD:N   lose the answers of the node's first N control calls METHOD, after the
                                    node carried them out (a stream broken at the worst moment); several
                                    as METHOD:N,METHOD:N
    MESH_TEST_NO_GOSSIP_DIAL=NAME,...  the node does not dial these members on gossip (it knows them by
                                    hearsay only, with no link until a service needs one)
    MESH_TEST_WATCHERS=K            the node watches its K ring predecessors (default 3; 0: it watches nobody,
                                    so it links no member for the ring either)
    MESH_TEST_OLD_WIRE=1            the node's hook wire has no `api` op, as a node older than meshctl's
                                    WireClient (it answers "unknown op")
    MESH_TEST_OLD_SEND_STREAM=1     the node's SendStream reads no columns (SendBatch.columns), as a node
                                    older than them: it sees a columnar batch as one of no items

The harness starts nodes with `python -m tests.integration.meshctl up ... --detach` when a test sets one of
these; `up --detach` starts the node's own process through this same module, so the taps are in the node.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from mesh import taps
from mesh.cli.main import main
from mesh.testing.faults import PartitionFile

MESHCTL_ENTRY = True  # `up --detach` re-runs this module for the node process


class HistoryWriter:
    """A lease observer: each node's notes, one JSON line each, to a file of its own (line-buffered, so a
    SIGKILLed node's history is complete up to its death)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, IO[str]] = {}

    def __call__(self, n: taps.LeaseNote) -> None:
        f = self._files.get(n.owner)
        if f is None:
            incarnation = n.owner.partition("/")[2]
            f = self._files[n.owner] = open(  # noqa: SIM115 - open for the node's life
                self.directory / f"{n.node}-{incarnation}.jsonl", "a", buffering=1
            )
        rec = {"ev": n.ev, "node": n.node, "id": n.owner, "resource": n.resource, "token": n.token, "t": n.t,
               "until": n.until}  # fmt: skip
        f.write(json.dumps(rec) + "\n")


class LoseReplies:
    """Loses the answers of the first `n` calls of `method` (several: `METHOD:N,METHOD:N`)."""

    def __init__(self, spec: str) -> None:
        self.left: dict[str, int] = {}
        for part in spec.split(","):
            method, _, n = part.partition(":")
            self.left[method] = int(n or 1)

    def __call__(self, method: str) -> bool:
        if self.left.get(method, 0) <= 0:
            return False
        self.left[method] -= 1
        return True


def install() -> None:
    path = os.environ.get("MESH_TEST_FAULTS")
    if path:
        taps.add_frame_filter(PartitionFile(path))
    history = os.environ.get("MESH_CLAIM_HISTORY")
    if history:
        taps.add_lease_observer(HistoryWriter(Path(history)))
    lose = os.environ.get("MESH_TEST_LOSE_REPLY")
    if lose:
        taps.add_reply_loss(LoseReplies(lose))
    no_dial = os.environ.get("MESH_TEST_NO_GOSSIP_DIAL")
    if no_dial:
        names = frozenset(no_dial.split(","))
        taps.add_gossip_dial_filter(lambda _me, peer: peer in names)
    watchers = os.environ.get("MESH_TEST_WATCHERS")
    if watchers:
        from mesh.config import NodeConfig
        from mesh.core.values import replace

        timing = NodeConfig.timing.fget
        assert timing is not None
        NodeConfig.timing = property(lambda cfg: replace(timing(cfg), watchers=int(watchers)))  # type: ignore[method-assign,assignment]
    if os.environ.get("MESH_TEST_OLD_WIRE"):
        from mesh._transport.hookwire import HookWire

        made = HookWire.__init__

        def without_api(self: HookWire, *args: Any, **kwargs: Any) -> None:
            made(self, *args, **kwargs)
            del self._ops["api"]

        HookWire.__init__ = without_api  # type: ignore[method-assign]
    if os.environ.get("MESH_TEST_OLD_SEND_STREAM"):
        from mesh._transport.control import ControlServicer

        batch_of = ControlServicer._send_batch

        async def without_columns(self: ControlServicer, batch: Any) -> Any:
            batch.ClearField("columns")  # an unknown field to an older node: skipped as it decodes
            return await batch_of(self, batch)

        ControlServicer._send_batch = without_columns  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    sys.exit(main())
