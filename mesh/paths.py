"""Where a node keeps its state, and how a client finds running nodes.

<home>/meshes/<mesh>/nodes/<name>/     one directory per node (0700), never shared
    node.db        SQLite (WAL): identity, members ever seen, …
    node.lock      held (flock) while the node runs: a second process with this name fails at once
    node.json      pid, control socket, peer address — written when ready, removed on exit
    node.log       log of a detached node
    control.sock   control API (0600); if the path is too long for AF_UNIX, it lives in a short
                   per-user runtime dir and node.json says where
    hooks.sock     the hook wire (JSON lines for agent hooks, 0600; same placement rule as control.sock)
    hooks.json     what this session's agent has already been told (the hook wire's cursor)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from mesh import _json as json
from mesh._nodefile import (
    DEFAULT_MESH,
    RunningNode,
    find_node,
    is_locked,
    running_nodes,
)
from mesh._nodefile import default_home as _default_home

__all__ = [
    "DEFAULT_MESH",
    "NodeLock",
    "RunningNode",
    "control_socket_path",
    "default_home",
    "ensure_private_dir",
    "find_node",
    "hook_socket_path",
    "is_locked",
    "mesh_dir",
    "node_dir",
    "remove_node_file",
    "running_nodes",
    "short_private_dir",
    "write_node_file",
]

_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux; keep a margin


def default_home() -> Path:
    """Root of all local state: $MESH_HOME, else the platform's user data dir (mesh._nodefile)."""
    return Path(_default_home())


def mesh_dir(home: Path, mesh: str) -> Path:
    """Directory of one mesh's local state."""
    return home / "meshes" / mesh


def node_dir(home: Path, mesh: str, name: str) -> Path:
    """State directory of the node called `name` in `mesh`."""
    return mesh_dir(home, mesh) / "nodes" / name


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700 for the leaf (StorageError, one line, if it cannot be:
    a read-only home, a home that is a file)."""
    from mesh.storage import translating

    with translating(path, "create the directory"):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if stat.S_IMODE(path.stat().st_mode) != 0o700:
            os.chmod(path, 0o700)
        # A read-only file system lets a directory that exists pass the two calls above: ask it.
        if not os.access(path, os.W_OK):
            raise OSError(errno.EROFS if _read_only(path) else errno.EACCES, "not writable", str(path))
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def control_socket_path(state_dir: Path, name: str = "control.sock") -> Path:
    """A node's socket: in its state dir if the path fits AF_UNIX, else in a short private directory."""
    p = state_dir / name
    if len(str(p)) <= _SUN_PATH_MAX:
        return p
    import hashlib

    digest = hashlib.sha256(f"{state_dir}/{name}".encode()).hexdigest()[:16]
    return short_private_dir() / f"{digest}.sock"


def hook_socket_path(state_dir: Path) -> Path:
    """A node's hook-wire socket (placed like the control socket)."""
    return control_socket_path(state_dir, "hooks.sock")


def short_private_dir() -> Path:
    """A short directory only this user can use, for sockets whose natural path is too long for AF_UNIX.

    `$XDG_RUNTIME_DIR/session-mesh` or `$TMPDIR/session-mesh-<uid>`, but only if it is really ours: a real
    directory (not a symlink), owned by this uid, mode 0700. In a shared /tmp another user could create that
    name first (0777), then swap in a socket of their own and receive our clients' connections; such a
    directory is never used — a fresh private one (mkdtemp, 0700) is made instead, and node.json says where.
    """
    import tempfile

    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "session-mesh" if runtime else Path(tempfile.gettempdir()) / f"session-mesh-{uid}"
    # A socket name (16 hex + ".sock") must still fit below it; else fall back to /tmp itself.
    where = None if len(str(base)) <= _SUN_PATH_MAX - 40 else "/tmp"

    def fresh() -> Path:
        return Path(tempfile.mkdtemp(prefix=f"session-mesh-{uid}-", dir=where))

    if where is not None:
        return fresh()
    try:
        base.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return fresh()
    return base if _private_dir_ok(base, uid) else fresh()


def _private_dir_ok(path: Path, uid: int) -> bool:
    """True if `path` is a real directory owned by `uid` with no access for anyone else (fixed if ours)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        return False  # a symlink, a file, or someone else's: never trust it
    if st.st_mode & 0o077:
        try:
            os.chmod(path, 0o700)  # not a symlink (lstat above); /tmp's sticky bit stops a swap since
        except OSError:
            return False
        # Another user may have had access until now and left a socket or a link behind: start clean.
        return not any(path.iterdir())
    return True


class NodeLock:
    """An exclusive flock on node.lock, held for the node's life (released by the OS if it dies)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "node.lock"
        self._fd: int | None = None

    def acquire(self, patience: float = 2.0) -> bool:
        """Take the lock (False if another process holds it; StorageError if the file cannot be written).

        If it is busy although its recorded process is gone, a peer of this home holds it for a moment
        (answering for this dead node, see mesh._steward_store): wait up to ``patience`` s."""
        from mesh.storage import translating

        with translating(self.path, "lock"):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            deadline = time.monotonic() + patience
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pid = self.holder_pid()
                    if (pid is not None and pid_running(pid)) or time.monotonic() > deadline:
                        os.close(fd)
                        return False
                    time.sleep(0.02)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder_pid(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None


def pid_running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited. A zombie has exited (and closed its files, its lock
    among them): a detached node is reparented to PID 1, and where PID 1 reaps slowly (some container inits
    poll every few seconds) its zombie would otherwise look alive for that long."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True  # no /proc (or it just went): os.kill said it was there
    # "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ")".
    end = stat.rfind(b")")
    return stat[end + 2 : end + 3] not in (b"Z", b"X")


def write_node_file(state_dir: Path, info: RunningNode) -> None:
    """Publish a ready node's coordinates for clients (atomic rename)."""
    data = {
        "name": info.name,
        "mesh": info.mesh,
        "node_id": info.node_id,
        "pid": info.pid,
        "socket": str(info.socket),
        "address": info.address,
    }
    if info.hook_socket is not None:
        data["hook_socket"] = str(info.hook_socket)
    if info.watch_pid is not None:
        data["watch_pid"] = info.watch_pid
    from mesh.storage import translating

    tmp = state_dir / "node.json.tmp"
    with translating(state_dir / "node.json"):
        tmp.write_text(json.dumps(data))
        os.replace(tmp, state_dir / "node.json")


def remove_node_file(state_dir: Path) -> None:
    """Withdraw the node's coordinates (on exit)."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "node.json").unlink()
