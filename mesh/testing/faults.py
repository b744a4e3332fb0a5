"""Fault injection for real node processes: a partition file, consulted per peer frame (a `mesh.taps` filter).

The file holds one group of node names per line (names separated by spaces); a node drops every frame from
a peer that the file puts in another group (heartbeats, gossip and claims alike), so writing the same file
for every node cuts the links both ways without closing them. Nodes the file does not name are unaffected;
an empty or missing file heals. Installed from outside (tests/integration/meshctl.py), never by the node.
"""

from __future__ import annotations

import os
import time


class PartitionFile:
    """A frame filter: which peers' frames to drop, re-read when the file changes (at most every 50 ms)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._checked = 0.0
        self._mtime: int | None = None
        self._group: dict[str, int] = {}

    def __call__(self, me: str, peer: str) -> bool:
        """True when `peer` and `me` are in different groups of the partition file."""
        now = time.monotonic()
        if now - self._checked >= 0.05:
            self._checked = now
            self._reload()
        mine, theirs = self._group.get(me), self._group.get(peer)
        return mine is not None and theirs is not None and mine != theirs

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            self._mtime, self._group = None, {}
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            with open(self.path) as f:
                lines = f.read().splitlines()
        except OSError:
            return
        self._group = {name: i for i, line in enumerate(lines) for name in line.split()}
