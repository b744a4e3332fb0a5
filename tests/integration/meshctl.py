"""`meshctl` for tests: installs the test-only taps its environment asks for, then runs the real meshctl.

    MESH_TEST_FAULTS=FILE           drop frames between the groups of a partition file (mesh.testing.faults)
    MESH_TEST_LOSE_REPLY=METHOD:N   lose the answers of the node's first N control calls METHOD, after the
                                    node carried them out (a stream broken at the worst moment); several
                                    as METHOD:N,METHOD:N

The harness starts nodes with `python -m tests.integration.meshctl up ... --detach` when a test sets one of
these; `up --detach` starts the node's own process through this same module, so the taps are in the node.
"""

from __future__ import annotations

import os
import sys

from mesh import taps
from mesh.cli.main import main
from mesh.testing.faults import PartitionFile

MESHCTL_ENTRY = True  # `up --detach` re-runs this module for the node process
TEST_ENV = ("MESH_TEST_FAULTS", "MESH_TEST_LOSE_REPLY")


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
    lose = os.environ.get("MESH_TEST_LOSE_REPLY")
    if lose:
        taps.add_reply_loss(LoseReplies(lose))


if __name__ == "__main__":
    install()
    sys.exit(main())
