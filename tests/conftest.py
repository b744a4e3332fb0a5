"""Test-wide settings: property tests are deterministic (the same examples every run), so CI cannot flake;
tests' temporary directories live in RAM when the machine has room (see `_temp_root`)."""

from __future__ import annotations

import os
import tempfile

from hypothesis import settings

settings.register_profile("mesh", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("mesh")

SHM = "/dev/shm"
SHM_FREE = 2 << 30  # bytes free that /dev/shm must have to hold a run's temporary homes


def _temp_root() -> str | None:
    """Where tmp_path and tempfile put test files: MESH_TEST_TMP if it names a directory, the default temp
    directory if it says `disk`, else /dev/shm when it is writable and has SHM_FREE bytes free.

    Integration tests start real node processes whose SQLite stores fsync at every commit (a node's start
    creates four): on a virtual disk (ext4 on virtio, ~2.5 ms an fsync) that was ~30% of an integration
    file's wall time. What the tests check is what the nodes do with their files, which RAM-backed files do
    not change (a test cannot observe durability against power loss); the disk-full test mounts its own
    tmpfs as before. `MESH_TEST_TMP=disk` runs them on the disk."""
    want = os.environ.get("MESH_TEST_TMP", "")
    if want == "disk":
        return None
    if want:
        return want
    try:
        st = os.statvfs(SHM)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < SHM_FREE or not os.access(SHM, os.W_OK | os.X_OK):
        return None
    return SHM


# pytest's tmp_path root is tempfile.gettempdir(), read the first time a test asks for a tmp_path.
tempfile.tempdir = _temp_root() or tempfile.tempdir
