"""`mesh.paths.pid_running`: a process that has exited is not running, even as a zombie nobody reaped."""

from __future__ import annotations

import os
import subprocess
import time

from mesh.paths import pid_running


def _state(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    end = stat.rfind(b")")
    return stat[end + 2 : end + 3]


def test_a_live_process_is_running_and_an_unreaped_one_that_exited_is_not() -> None:
    live = subprocess.Popen(["sleep", "60"])
    done = subprocess.Popen(["true"])
    try:
        assert pid_running(live.pid)
        # Not reaped (no wait yet): the exited child stays a zombie, which os.kill(pid, 0) still finds.
        deadline = time.monotonic() + 30
        while _state(done.pid) != b"Z":
            assert time.monotonic() < deadline, "the child never exited"
            os.sched_yield()
        os.kill(done.pid, 0)  # still there for signals...
        assert not pid_running(done.pid)  # ...but it has exited
    finally:
        live.kill()
        live.wait()
        done.wait()
    assert not pid_running(done.pid)  # reaped: gone altogether
