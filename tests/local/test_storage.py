"""mesh.storage: real sqlite3 and OS faults on real files become the error tree's classes, one line each,
and a store that exists but is not sound is refused, left exactly as it was found."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from mesh import storage
from mesh.errors import StateDamaged, StorageError, StorageFull

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT NOT NULL);"


def _open(path: Path) -> tuple[sqlite3.Connection, bool]:
    return storage.open_db(path, schema=SCHEMA, holds="test data", aside="loses it")


def test_a_new_store_is_created_whole_and_then_reopened(tmp_path: Path) -> None:
    db, created = _open(tmp_path / "s.db")
    assert created and db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("INSERT INTO t VALUES ('a', 'b')")
    db.close()
    assert not list(tmp_path.glob(".s.db.new*"))  # made under a temporary name, renamed into place
    db, created = _open(tmp_path / "s.db")
    assert not created and db.execute("SELECT v FROM t").fetchone() == ("b",)
    db.close()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty (0 bytes)"),
        (b"not a database at all" * 200, "damaged"),
    ],
)
def test_a_store_that_is_not_sound_is_refused_untouched(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(content)
    with pytest.raises(StateDamaged) as info:
        _open(path)
    msg = str(info.value)
    assert words in msg and "\n" not in msg and "mv " in msg and "test data" in msg
    assert path.read_bytes() == content


def test_a_foreign_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x INTEGER)")
    before = path.read_bytes()
    with pytest.raises(StateDamaged, match="table t differs"):
        _open(path)
    assert path.read_bytes() == before


def test_os_faults_say_what_is_wrong(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert isinstance(storage.oserror(OSError(errno.ENOSPC, "full"), f), StorageFull)
    e = storage.oserror(OSError(errno.EROFS, "ro"), f)
    assert type(e) is StorageError and "read-only" in str(e)
    with pytest.raises(StorageError, match="is not a directory"):
        with storage.translating(f / "sub"):
            os.mkdir(f / "sub")
    with pytest.raises(StorageError, match="it is a directory"):
        storage.write_file(tmp_path, "text")
    with pytest.raises(StorageError, match="does not exist"):
        storage.write_file(tmp_path / "no" / "where", "text")


def test_sqlite_full_is_storage_full(tmp_path: Path) -> None:
    """A real SQLITE_FULL: a database capped at its current size (max_page_count) cannot grow."""
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("CREATE TABLE t (v TEXT)")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as info:
        db.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    err = storage.sqlite_error(info.value, tmp_path / "s.db", "test data", "loses it")
    assert isinstance(err, StorageFull) and "no space left" in str(err)
    db.close()


def test_the_board_and_stats_stores_refuse_damage_and_say_what_they_hold(tmp_path: Path) -> None:
    from mesh.boardstore import BoardStore
    from mesh.statslog import StatsLog

    for path, make, holds in (
        (tmp_path / "board.db", BoardStore, "task board"),
        (tmp_path / "stats.db", StatsLog, "meshctl stats"),
    ):
        path.write_bytes(b"garbage " * 600)
        with pytest.raises(StateDamaged) as info:
            make(path)
        assert holds in str(info.value) and "\n" not in str(info.value)
        assert path.read_bytes() == b"garbage " * 600


def test_a_board_store_without_its_header_or_with_an_unreadable_op_is_damaged(tmp_path: Path) -> None:
    from mesh.boardstore import BoardStore

    path = tmp_path / "board.db"
    BoardStore(path, entropy=b"12345").close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO ops VALUES ('x', 1, '{not json')")
    store = BoardStore(path)
    with pytest.raises(StateDamaged, match="cannot read"):
        store.load()
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta")
    with pytest.raises(StateDamaged, match="missing its board header"):
        BoardStore(path)


def test_a_full_disk_under_the_board_store_is_storage_full(tmp_path: Path) -> None:
    from mesh.boardstore import BoardStore
    from mesh.core.board import Context

    store = BoardStore(tmp_path / "board.db", entropy=b"12345")
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageFull):
        store.remember_replica("r" * 50_000, "b", 1.0)
    assert store.load().context() == Context()  # nothing of the failed call was kept
    store.close()
