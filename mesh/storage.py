"""Local storage faults -> the error tree: the one translation of sqlite3 and OS errors, and the one way a
SQLite store is opened (created atomically; refused, never silently replaced, when it is damaged).

    ENOSPC, EDQUOT, SQLITE_FULL              -> StorageFull   free space (a running node recovers by itself)
    EROFS, SQLITE_READONLY                   -> StorageError  the file system is read-only
    EACCES, EPERM, SQLITE_PERM               -> StorageError  not permitted
    ENOTDIR, EISDIR, ENOENT, ...             -> StorageError  the path is not what it should be
    NOTADB, CORRUPT, empty, foreign schema   -> StateDamaged  restore it from a backup, or move it aside

Every store (`mesh.store`, `mesh.mailstore`) decorates its methods with `guarded` and opens its database with
`open_db`; every state or output file meshctl and the runtime write goes through `write_file`/`oserror`.

Which state is recreated silently and which is refused (README, "When something goes wrong"):
- a store that does not exist (first start, or moved aside by its owner) is created — atomically, under a
  temporary name renamed into place, so a crash or a full disk never leaves an empty store behind;
- a store that exists but is empty, not SQLite, fails SQLite's quick check, or lacks our tables' columns is
  refused with one line naming it and what to do: it held data (identity, messages) that must not vanish;
- caches (the leaf certificate) are re-issued; the CA is refused when damaged or gone (`mesh._tls`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from mesh.core.errors import MeshError, StateDamaged, StorageError, StorageFull

__all__ = ["Stored", "guarded", "open_db", "oserror", "sqlite_error", "translating", "write_file"]

P = ParamSpec("P")
T = TypeVar("T")

_FULL = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM}


def oserror(e: OSError, path: Path | str | None = None, doing: str = "write") -> StorageError:
    """An OSError on `path` as the StorageError saying what is wrong and what to do."""
    where = Path(path if path is not None else (e.filename or "?"))
    code = e.errno
    if code in _FULL:
        return StorageFull(f"cannot {doing} {where}: no space left on its disk; free some space there")
    if code == errno.EROFS:
        return StorageError(f"cannot {doing} {where}: it is on a read-only file system")
    if code in _DENIED:
        return StorageError(f"cannot {doing} {where}: permission denied")
    if code == errno.ENOTDIR:
        culprit = _not_a_directory(where)
        return StorageError(
            f"cannot {doing} {where}: {culprit} is not a directory (check --home / $MESH_HOME)"
        )
    if code == errno.EISDIR:
        return StorageError(f"cannot {doing} {where}: it is a directory; give a file name")
    if code == errno.ENOENT:
        return StorageError(f"cannot {doing} {where}: {where.parent} does not exist")
    return StorageError(f"cannot {doing} {where}: {e.strerror or e}")


def _not_a_directory(path: Path) -> Path:
    """The nearest ancestor of `path` that exists but is not a directory (what ENOTDIR is about)."""
    for p in (path, *path.parents):
        with contextlib.suppress(OSError):
            if p.exists() and not p.is_dir():
                return p
    return path


def sqlite_error(e: sqlite3.Error, path: Path, holds: str, aside: str) -> MeshError:
    """A sqlite3 error on the store at `path` (which holds `holds`; moving it aside means `aside`)."""
    name = str(getattr(e, "sqlite_errorname", "") or "")
    text = str(e)
    if name == "SQLITE_FULL" or "database or disk is full" in text:
        return StorageFull(f"cannot write {path}: no space left on its disk; free some space there")
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return StorageError(f"cannot write {path}: it is read-only (a read-only file system, or not ours)")
    if name.startswith("SQLITE_PERM") or name == "SQLITE_AUTH":
        return StorageError(f"cannot use {path}: permission denied")
    if (
        name in ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CORRUPT_INDEX", "SQLITE_CORRUPT_SEQUENCE")
        or "not a database" in text
        or "malformed" in text
    ):
        return damaged(path, f"damaged ({text})", holds, aside)
    if name.startswith("SQLITE_IOERR"):
        return StorageError(f"cannot use {path}: I/O error ({text}); check the disk")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return StorageError(f"cannot open {path}: {text} (is its directory writable?)")
    return StorageError(f"cannot use {path}: {text}")


def damaged(path: Path, what: str, holds: str, aside: str) -> StateDamaged:
    """The one-line refusal of a damaged store: which file, what it held, what to do."""
    what = " ".join(what.split())  # SQLite's own words may span lines; a refusal is one
    return StateDamaged(
        f"{path} is {what}; it holds {holds}: restore it from a backup, or move it aside "
        f"(mv {path} {path}.damaged) and start again, which {aside}"
    )


class Stored(Protocol):
    """A store `guarded` can translate for: where it lives and what it holds."""

    path: Path
    holds: str
    aside: str


S = TypeVar("S", bound=Stored)


def guarded(fn: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """Store method decorator: sqlite3 and OS errors leave it as the error tree's StorageError classes."""

    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise  # a constraint the caller maps itself (a peer reusing an id), or a bug: not the disk
        except sqlite3.Error as e:
            raise sqlite_error(e, self.path, self.holds, self.aside) from e
        except OSError as e:
            raise oserror(e, self.path) from e

    functools.update_wrapper(wrapper, fn)
    return wrapper


@contextlib.contextmanager
def translating(path: Path | str, doing: str = "write") -> Iterator[None]:
    """OS errors inside the block become the StorageError saying what is wrong with `path`."""
    try:
        yield
    except OSError as e:
        raise oserror(e, path, doing) from e


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction. IMMEDIATE takes the write lock up front (no lock upgrade mid-transaction);
    COMMIT is inside the guarded part; when SQLite has rolled back already (a full disk, an I/O error), the
    original error leaves, not the ROLLBACK's "no transaction is active"."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


def write_file(path: Path, data: str | bytes, *, mode: int = 0o600) -> None:
    """Write an output file (meshctl --out): StorageError saying why, in one line, if it cannot be."""
    raw = data.encode() if isinstance(data, str) else data
    with translating(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def open_db(
    path: Path,
    *,
    schema: str,
    holds: str,
    aside: str,
    pragmas: tuple[str, ...] = (),
    quick_check: bool = True,
    older: tuple[str, ...] = (),
    upgrade: Callable[[sqlite3.Connection], None] | None = None,
) -> tuple[sqlite3.Connection, bool]:
    """Open the SQLite store at `path` (WAL), creating it with `schema` if it does not exist; returns the
    connection and whether it was created now (an existing store that holds none of its data is damaged:
    the caller checks).

    Created under a temporary name and renamed into place, so a crash or a full disk mid-creation never
    leaves an empty store that would later pass for a damaged one. An existing store is refused
    (StateDamaged) if it is empty, not SQLite, fails `PRAGMA quick_check`, or lacks a table or column of
    `schema` — continuing would silently start over on data it held.

    A store of an older layout: a table may also carry the columns it has in one of the `older` schemas, and
    `upgrade(db)` (the caller's migration) runs on an existing store before `schema`'s additive pass (whose
    indexes may name columns only the new layout has).
    """
    created = False
    try:
        if not path.exists():
            _create(path, schema)
            created = True
        if path.stat().st_size == 0:
            raise damaged(path, "empty (0 bytes)", holds, aside)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise sqlite_error(e, path, holds, aside) from e
    except OSError as e:
        raise oserror(e, path, "open") from e
    try:
        # Checked before anything is written (even the WAL switch rewrites the header): a refused store is
        # left exactly as it was found. A store made just now, from this very schema, by `_create` (under
        # a temporary name, renamed into place by this process, in a directory only its node's lock holder
        # writes) has nothing to check and no table to add: a node's first start skips the checks and the
        # second run of the schema (three SQLite passes over it per store, four stores per node: a
        # measurable part of a fresh node's start-up when a mesh of new nodes forms at once, issue 15).
        if not created:
            if quick_check:
                row = db.execute("PRAGMA quick_check(1)").fetchone()
                if not row or row[0] != "ok":
                    said = str(row[0] if row else "?")[:120]
                    raise damaged(path, f"damaged (quick check: {said})", holds, aside)
            _check_schema(db, schema, path, holds, aside, older)
        db.execute("PRAGMA journal_mode=WAL")
        for p in pragmas:
            db.execute(f"PRAGMA {p}")
        if not created:
            if upgrade is not None:
                upgrade(db)
            # Tables added since the store was made (an additive change keeps the schema version).
            db.executescript(schema)
    except sqlite3.Error as e:
        db.close()
        raise sqlite_error(e, path, holds, aside) from e
    except BaseException:
        db.close()
        raise
    return db, created


def _create(path: Path, schema: str) -> None:
    tmp = path.with_name(f".{path.name}.new")
    for stale in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
        stale.unlink(missing_ok=True)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
    finally:
        db.close()  # checkpoints: everything is in the main file before the rename
    # A log left by a store that is gone belongs to it, not to the new one: SQLite would replay it.
    for old in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        old.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


_EXPECTED: dict[str, dict[str, list[tuple[str, str]]]] = {}


def _columns(db: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    return [(str(r[1]), str(r[2]).upper()) for r in db.execute(f"PRAGMA table_info({table})")]


def _layout(schema: str) -> dict[str, list[tuple[str, str]]]:
    """Per table of `schema`, its (column, type) list."""
    want = _EXPECTED.get(schema)
    if want is None:
        ref = sqlite3.connect(":memory:")
        try:
            ref.executescript(schema)
            tables = [r[0] for r in ref.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            want = _EXPECTED[schema] = {t: _columns(ref, t) for t in tables}
        finally:
            ref.close()
    return want


def _check_schema(
    db: sqlite3.Connection, schema: str, path: Path, holds: str, aside: str, older: tuple[str, ...] = ()
) -> None:
    """Every table of `schema` that the store has carries `schema`'s columns, or those of an `older` layout
    of it (a table it lacks is added)."""
    olds = [_layout(o) for o in older]
    for table, cols in _layout(schema).items():
        have = _columns(db, table)
        if have and have != cols and all(have != o.get(table) for o in olds):
            raise damaged(path, f"not a store of this version (table {table} differs)", holds, aside)
