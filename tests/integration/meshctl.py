"""`meshctl` for tests: installs the test-only taps its environment asks for, then runs the real meshctl.

    MESH_TEST_FAULTS=FILE    drop frames between the groups of a partition file (mesh.testing.faults)

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
TEST_ENV = ("MESH_TEST_FAULTS",)


def install() -> None:
    path = os.environ.get("MESH_TEST_FAULTS")
    if path:
        taps.add_frame_filter(PartitionFile(path))


if __name__ == "__main__":
    install()
    sys.exit(main())
