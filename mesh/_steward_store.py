"""The durable files behind claims: a node's steward state, the home's epoch, the home's genesis right.

    <home>/meshes/<mesh>/
        genesis-home          this home created the mesh's credentials: it may create the first config
        epoch                 the highest steward epoch this home has seen (absent: it never saw one)
        genesis.lock          flock: which node of this home may create the first config
        nodes/<name>/steward.json   that node's durable steward state (written before the replies it backs)

Every write is atomic and durable: write a temporary file, fsync it, rename it over the old one, fsync the
directory. A file that exists but cannot be read is never taken for "nothing" (that would let an epoch or
a fencing token go backwards): the node refuses to start with one clear line
(``StateDamaged``; ``StorageError`` when it cannot be read at all).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from mesh.core.stewards import StewardState
from mesh.errors import StateDamaged, StorageError
from mesh.paths import mesh_dir

STEWARD_FILE = "steward.json"
EPOCH_FILE = "epoch"
GENESIS_MARK = "genesis-home"
GENESIS_LOCK = "genesis.lock"
IDENTITY_FILE = "node.db"  # made once per node id (mesh.store), never replaced


def write_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: write a temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk: do not leave the half-written file taking room
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # not every filesystem allows a directory fsync
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# ---- a node's steward state -------------------------------------------------------------------------------


def load_steward_state(state_dir: Path, node_id: str) -> StewardState | None:
    """This node's durable steward state (None if it never had one).

    Raises StateDamaged if the file is garbled, StorageError if it cannot be read."""
    path = state_dir / STEWARD_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(
            f"cannot read {path}: {e.strerror}; fix its permissions (never delete it)"
        ) from None
    try:
        d = json.loads(text)
        if not isinstance(d, dict) or not isinstance(d.get("state"), dict):
            raise ValueError("not a steward state file")
        if d.get("node_id") != node_id:
            raise ValueError(f"it belongs to node {d.get('node_id')!r}")
        return StewardState.from_json(json.dumps(d["state"]))
    except ValueError as e:
        raise StateDamaged(
            f"{path} is garbled ({e}); this node will not start on a guess: restore the file, or move the "
            f"node's directory aside and start it as a new node"
        ) from None


def save_steward_state(state_dir: Path, node_id: str, state: StewardState) -> None:
    """Write this node's steward state durably (before any reply that depends on it leaves)."""
    doc = {"node_id": node_id, "state": json.loads(state.to_json())}
    write_durably(state_dir / STEWARD_FILE, json.dumps(doc, sort_keys=True))


# ---- the home's epoch and genesis right -------------------------------------------------------------------


def read_home_epoch(home: Path, mesh: str) -> int | None:
    """The highest epoch this home has seen; None if it never saw a config.

    Raises StateDamaged if the file is garbled, StorageError if it cannot be read."""
    path = mesh_dir(home, mesh) / EPOCH_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e.strerror}") from None
    try:
        epoch = int(text.strip())
        if epoch < 1:
            raise ValueError
    except ValueError:
        raise StateDamaged(
            f"{path} is garbled ({text[:20]!r}); the node will not guess an epoch (fencing tokens must not "
            f"go backwards): write the highest epoch this mesh used into it"
        ) from None
    return epoch


def remember_home_epoch(home: Path, mesh: str, epoch: int) -> None:
    """Raise the home's epoch to ``epoch`` (never lowers it)."""
    current = read_home_epoch(home, mesh)
    if current is not None and current >= epoch:
        return
    d = mesh_dir(home, mesh)
    d.mkdir(parents=True, exist_ok=True)
    write_durably(d / EPOCH_FILE, f"{epoch}\n")


def mark_genesis_home(home: Path, mesh: str) -> None:
    """Record that this home created the mesh's credentials (so it may create the first steward config)."""
    d = mesh_dir(home, mesh)
    d.mkdir(parents=True, exist_ok=True)
    write_durably(
        d / GENESIS_MARK,
        "This home created the credentials of this mesh: the first steward config may be created here.\n",
    )


def unmark_genesis_home(home: Path, mesh: str) -> None:
    """Imported credentials: this home never creates the first config."""
    with contextlib.suppress(FileNotFoundError):
        (mesh_dir(home, mesh) / GENESIS_MARK).unlink()


def is_genesis_home(home: Path, mesh: str) -> bool:
    """Whether this home created the mesh's credentials."""
    return (mesh_dir(home, mesh) / GENESIS_MARK).is_file()


class GenesisLock:
    """flock on genesis.lock: at most one node of a home may create the first config (held for its life)."""

    def __init__(self, home: Path, mesh: str) -> None:
        self.path = mesh_dir(home, mesh) / GENESIS_LOCK
        self._fd: int | None = None

    def take(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


# ---- dead stewards of this home ---------------------------------------------------------------------------


_Read = tuple[str | None, StewardState | StorageError | None]  # a file's node id, and its state or error


class HomeStewardFiles:
    """This home's steward files, each read again only when it changed.

    Upkeep asks often while a mesh forms (every member event, every 0.1 s before the first config) and
    reading and parsing every node's file each time was a fifth of a forming node's Python CPU. A file is
    replaced by rename on every write (`write_durably`), so its inode, mtime and size tell a change. The
    node a directory belongs to changes only with its identity store (node.db, made once per node id), so
    `dirs` reads a node's file once per (directory, node.db) pair. A look costs two stats per node.
    """

    def __init__(self, home: Path, mesh: str) -> None:
        self.nodes = mesh_dir(home, mesh) / "nodes"
        self._states: dict[str, tuple[tuple[int, int, int], _Read]] = {}  # file -> (stat key, what it said)
        self._ids: dict[str, tuple[tuple[int, int], str | None]] = {}  # dir -> (inodes, node id it holds)

    def _files(self) -> list[tuple[str, int, str]]:
        """(directory, its inode, its steward file) for every node directory with one, by name."""
        try:
            entries = sorted(
                (e.name, e.path, e.inode()) for e in os.scandir(self.nodes) if e.is_dir(follow_symlinks=False)
            )
        except OSError:
            return []
        out = []
        for _, d, ino in entries:
            f = os.path.join(d, STEWARD_FILE)
            if os.path.isfile(f):
                out.append((d, ino, f))
        return out

    def dirs(self) -> dict[str, Path]:
        """node id -> state dir, for every node of this home that ever kept steward state."""
        out: dict[str, Path] = {}
        ids: dict[str, tuple[tuple[int, int], str | None]] = {}
        for d, ino, f in self._files():
            try:
                key = (ino, os.stat(os.path.join(d, IDENTITY_FILE)).st_ino)
            except OSError:
                key = (ino, 0)
            known = self._ids.get(d)
            if known is None or known[0] != key or known[1] is None:
                known = (key, _read_steward_file(Path(f))[0])
            ids[d] = known
            if known[1] is not None:
                out[known[1]] = Path(d)
        self._ids = ids
        return out

    def states(self) -> list[tuple[str, StewardState | StorageError]]:
        """(node id, its steward state or why it cannot be read) for every file that names its node."""
        out: list[tuple[str, StewardState | StorageError]] = []
        seen: dict[str, tuple[tuple[int, int, int], _Read]] = {}
        for _, _, f in self._files():
            try:
                st = os.stat(f)
            except OSError:
                continue
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._states.get(f)
            if cached is None or cached[0] != key:
                cached = (key, _read_steward_file(Path(f)))
            seen[f] = cached
            node_id, state = cached[1]
            if node_id is not None and state is not None:
                out.append((node_id, state))
        self._states = seen
        return out


def _read_steward_file(path: Path) -> _Read:
    """(the node id a steward file names, its state or the error reading it); (None, None) if unusable."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(d, dict) or not isinstance(d.get("node_id"), str):
        return None, None
    node_id = d["node_id"]
    try:
        return node_id, load_steward_state(path.parent, node_id)
    except StorageError as e:
        return node_id, e


@contextlib.contextmanager
def dead_node_lock(state_dir: Path) -> Iterator[bool]:
    """Take a node's node.lock if its process is gone (the OS frees a flock only then): True while held.

    Holding it is the proof of death AND exclusive access to the dead node's files (a restart of that node
    waits for it): the caller may act as that node's config acceptor for one read-decide-write step.
    """
    path = state_dir / "node.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def proven_dead(state_dir: Path) -> bool:
    """Whether the node of ``state_dir`` is provably not running (its node lock is free)."""
    with dead_node_lock(state_dir) as held:
        return held
