"""Process and measurement helpers shared by benchmark sections (reference servers and mesh nodes alike)."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil  # type: ignore[import-untyped]  # no types-psutil in the venv (see report)

from bench.sections import SectionSkipped

LOOPBACK = "127.0.0.1"

# Every process started through `managed_process` until it is reaped; atexit kills what is left (a
# section that died half-way, an exception inside a finally), so no server outlives the benchmark.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on `host` right now (the usual bind-to-0 race applies; good enough on loopback)."""
    return free_ports(1, host)[0]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, host: str = LOOPBACK) -> list[int]:
    """`n` distinct ports free on `host` right now, from BELOW the kernel's ephemeral range.

    A port handed out by bind(0) lies in the ephemeral range, where every outgoing connection also takes
    its local port: between this check and the node's bind (nodes start one by one, and already-started
    ones dial the seeds meanwhile), or while a killed node is down before its restart on the same port, an
    outgoing connection of any process can take it and the node's start fails "address in use". Below the
    range, only another listener can, and a port is only handed out if nothing is bound to it.
    """
    rng = random.SystemRandom()
    hi = _ephemeral_low() - 1
    lo = max(1024, hi - 12000)
    out: list[int] = []
    while len(out) < n:
        port = rng.randint(lo, hi)
        if port in out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        out.append(port)
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile out of range: {p}")
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class LatencySummary:
    """p50 / p99 / mean / max of a latency sample, in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def summarize_s(samples_s: Sequence[float]) -> LatencySummary:
    """Summarise latencies given in seconds as milliseconds."""
    ms = [s * 1000 for s in samples_s]
    return LatencySummary(len(ms), percentile(ms, 50), percentile(ms, 99), sum(ms) / len(ms), max(ms))


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, *, interval_s: float = 0.02, what: str = "condition"
) -> float:
    """Poll `predicate` until true; returns the seconds waited; TimeoutError after `timeout_s`."""
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s:.1f} s")
        time.sleep(interval_s)


# PR_SET_PDEATHSIG is set by a tiny exec wrapper rather than a preexec_fn: a preexec_fn forces a real fork()
# (no vfork), and fork() in a process whose gRPC threads are busy makes gRPC print "fork_posix.cc ... skipping
# fork() handlers". The wrapper checks the parent is still the one that started it (no lost-race orphan).
_PDEATHSIG_PY = (
    "import ctypes,os,signal,sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"  # 1 = PR_SET_PDEATHSIG
    "os.getppid() == int(sys.argv[1]) or os._exit(137)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def _die_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` run so that the kernel SIGKILLs it when the benchmark dies, even without atexit."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None:  # util-linux: a C binary, no interpreter start-up
        return [setpriv, "--pdeathsig", "KILL", "--", *argv]
    return [sys.executable, "-I", "-S", "-c", _PDEATHSIG_PY, str(os.getpid()), *argv]


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # The group may still hold grandchildren even when the leader is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    _LIVE.pop(proc.pid, None)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE.values()):
        _kill_group(proc, grace_s=1.0)


@contextlib.contextmanager
def managed_process(
    argv: Sequence[str],
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    term_grace_s: float = 3.0,
    die_with_parent: bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv` in its own process group; on exit (normal or not) SIGTERM it, then SIGKILL the group.

    Output goes to `log_path` (else is discarded). Must be entered from the main thread when
    `die_with_parent` is set: PR_SET_PDEATHSIG fires when the *thread* that forked exits.
    """
    out: IO[bytes] | int = subprocess.DEVNULL
    log_file: IO[bytes] | None = None
    if log_path is not None:
        log_file = open(log_path, "ab")  # noqa: SIM115 — closed in finally below
        out = log_file
    try:
        proc = subprocess.Popen(
            _die_with_parent(argv) if die_with_parent else list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        _LIVE[proc.pid] = proc
        try:
            yield proc
        finally:
            _kill_group(proc, term_grace_s)
    finally:
        if log_file is not None:
            log_file.close()


def tail(path: Path, n_bytes: int = 2000) -> str:
    """The end of a log file (for error messages when a server fails to start)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<no log: {e}>"


def ensure_binary(binary: str, package: str, *, timeout_s: float = 600.0) -> str:
    """Path of `binary`; installs Debian `package` with apt-get (as root) if missing, else SectionSkipped."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0:
        raise SectionSkipped(f"{binary} not installed and not root (apt-get install -y {package})")
    if shutil.which("apt-get") is None:
        raise SectionSkipped(f"{binary} not installed and there is no apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", package]
    # Install first (fast when the package lists are fresh); update and retry only if that fails.
    attempts = (install, ["apt-get", "update"], install)
    last = ""
    for argv in attempts:
        try:
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise SectionSkipped(f"{' '.join(argv)} timed out after {timeout_s:.0f} s") from None
        last = (r.stderr or r.stdout).strip().splitlines()[-1:][0] if (r.stderr or r.stdout).strip() else ""
        found = shutil.which(binary)
        if found:
            return found
    raise SectionSkipped(f"could not install {package} with apt-get: {last or 'binary still missing'}")


@dataclass(frozen=True)
class Usage:
    """Memory and CPU of one process over a sampling interval."""

    pid: int
    rss_bytes: int
    pss_bytes: int | None
    """Proportional set size (shared pages split among sharers); None where /proc/PID/smaps is unreadable."""
    cpu_percent: float
    """Percent of ONE core over the interval (200 = two cores busy), children excluded."""


def sample_usage(pids: Iterable[int], interval_s: float) -> list[Usage]:
    """RSS, PSS and CPU% of each pid over `interval_s` (one sleep for all; vanished pids are left out)."""
    procs: list[tuple[psutil.Process, float]] = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            t = p.cpu_times()
            procs.append((p, t.user + t.system))
    start = time.monotonic()
    time.sleep(interval_s)
    elapsed = time.monotonic() - start
    out: list[Usage] = []
    for p, cpu0 in procs:
        try:
            t = p.cpu_times()
            cpu = (t.user + t.system - cpu0) / elapsed * 100
            try:
                full = p.memory_full_info()
                rss, pss = int(full.rss), int(getattr(full, "pss", 0)) or None
            except psutil.AccessDenied:
                rss, pss = int(p.memory_info().rss), None
        except psutil.Error:
            continue
        out.append(Usage(p.pid, rss, pss, cpu))
    return out


def meshctl() -> list[str]:
    """The installed console script next to this interpreter (what an agent runs), else the module."""
    script = Path(sys.executable).parent / "meshctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mesh.cli.main"]
