"""Leave when the session's own process exits (`--watch-pid`): a pidfd where the OS has one, else polling."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from mesh._services.context import Spawn
from mesh.core.errors import ConfigError

log = logging.getLogger("mesh")

POLL_EVERY = 0.5


def watch_pid(pid: int, on_exit: Callable[[str], None], spawn: Spawn) -> None:
    """Call `on_exit(reason)` once process `pid` has exited (ConfigError now if there is no such process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ConfigError(f"--watch-pid {pid}: no such process") from None
    except PermissionError:
        pass
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        spawn(_poll(pid, on_exit), "watch-pid")
        return
    loop = asyncio.get_running_loop()

    def exited() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        log.info("watched process %d exited; leaving", pid)
        on_exit(f"session process {pid} exited")

    loop.add_reader(fd, exited)


async def _poll(pid: int, on_exit: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(POLL_EVERY)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            on_exit(f"session process {pid} exited")
            return
        except PermissionError:
            pass
