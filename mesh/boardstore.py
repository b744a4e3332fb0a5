"""Durable board replica of one node: its operations, context and forgotten tombstones in SQLite (WAL).

The merge rules live in `mesh.core.board` (read its docstring); this module makes a replica's state
durable. `save` is one transaction: when it returns, the operations and the context are on disk (a WAL
commit with ``synchronous=NORMAL`` survives any process crash, SIGKILL included), so a local edit may be
reported done and sent at once. Only *retained* operations are kept (superseded ones are deleted as the
core reports them obsolete); the context says which operation ids the replica has incorporated, kept or
not, which is what anti-entropy needs.

The replica id is made when the store is created and kept with it: a node that loses its store starts a
new replica, so its new operations never collide with old ones its peers have seen.

Not thread-safe: the runtime's loop is its one user.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from mesh import storage
from mesh.core.board import (
    Board,
    Context,
    Op,
    context_from_dict,
    context_to_dict,
    new_replica_id,
    op_from_dict,
    op_to_dict,
)
from mesh.core.errors import ConfigError, MeshError, StorageError

__all__ = ["SCHEMA_VERSION", "BoardStore"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ops (
    origin TEXT NOT NULL, seq INTEGER NOT NULL, op TEXT NOT NULL, PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS purged (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replicas (
    replica TEXT PRIMARY KEY, name TEXT NOT NULL, seen REAL NOT NULL
) WITHOUT ROWID;
"""


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class BoardStore:
    """The SQLite home of one node's board replica.

    Every method leaves with the error tree's storage errors (`mesh.storage.guarded`): StorageFull when the
    disk is full (nothing of that call was stored), StateDamaged when the file is.
    """

    holds = "this node's copy of the task board"
    aside = "starts an empty copy that refills from the peers (edits only this node had are lost)"

    def __init__(
        self,
        path: str | Path,
        *,
        entropy: bytes | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        """Open (or create) the store at `path`; `entropy` (5+ random bytes) names a new replica."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self._db, created = storage.open_db(
            self.path,
            schema=_SCHEMA,
            holds=self.holds,
            aside=self.aside,
            pragmas=(f"synchronous={synchronous}",),
        )
        try:
            self._open(created, entropy)
        except BaseException:
            self._db.close()
            raise

    @storage.guarded
    def _open(self, created: bool, entropy: bytes | None) -> None:
        with self._tx():
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                if not created:  # an existing store with no replica in it was damaged, not never made
                    raise storage.damaged(self.path, "missing its board header", self.holds, self.aside)
                replica = new_replica_id(entropy if entropy is not None else os.urandom(5))
                meta = {
                    "schema": str(SCHEMA_VERSION),
                    "replica": replica,
                    "context": _dumps(context_to_dict(Context())),
                }
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
            if not all(isinstance(meta.get(k), str) for k in ("schema", "replica", "context")):
                raise storage.damaged(self.path, "missing part of its board header", self.holds, self.aside)
            if meta["schema"] != str(SCHEMA_VERSION):
                raise storage.damaged(
                    self.path, f"a board of schema {meta['schema'][:20]!r}, not {SCHEMA_VERSION}",
                    self.holds, self.aside,
                )  # fmt: skip
            self.replica: str = meta["replica"]

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return storage.transaction(self._db)

    def close(self) -> None:
        """Close the database (a clean close also checkpoints the WAL)."""
        self._db.close()

    @storage.guarded
    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check` result ("ok" when sound)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # ------------------------------------------------------------------ the replica

    @storage.guarded
    def load(self) -> Board:
        """The replica as it was last saved (every stored operation validated again)."""
        try:
            ops = [op_from_dict(json.loads(row[0])) for row in self._db.execute("SELECT op FROM ops")]
            (ctx_text,) = self._db.execute("SELECT value FROM meta WHERE key = 'context'").fetchone()
            purged = [str(row[0]) for row in self._db.execute("SELECT id FROM purged")]
            return Board.restore(self.replica, ops, context_from_dict(json.loads(ctx_text)), purged)
        except (MeshError, ValueError, KeyError, TypeError, AttributeError) as e:
            if isinstance(e, StorageError):
                raise
            raise storage.damaged(self.path, "holding a record it cannot read", self.holds, self.aside) from e

    @storage.guarded
    def save(self, ops: Iterable[Op], obsolete: Iterable[str], context: Context) -> None:
        """Keep `ops`, delete the operations `obsolete` names, record `context`: one transaction."""
        rows = [(op.origin, op.seq, _dumps(op_to_dict(op))) for op in ops]
        gone = [_split(oid) for oid in obsolete]
        with self._tx() as db:
            if rows:
                db.executemany("INSERT OR IGNORE INTO ops VALUES (?, ?, ?)", rows)
            if gone:
                db.executemany("DELETE FROM ops WHERE origin = ? AND seq = ?", gone)
            db.execute("UPDATE meta SET value = ? WHERE key = 'context'", (_dumps(context_to_dict(context)),))

    @storage.guarded
    def forget(self, gone: Iterable[str], purged: Iterable[str]) -> None:
        """After `Board.compact`: delete the operations it freed, remember the ids it forgot."""
        with self._tx() as db:
            db.executemany("DELETE FROM ops WHERE origin = ? AND seq = ?", [_split(oid) for oid in gone])
            db.executemany("INSERT OR IGNORE INTO purged VALUES (?)", [(eid,) for eid in purged])

    @storage.guarded
    def count(self) -> int:
        """Operations stored."""
        return int(self._db.execute("SELECT count(*) FROM ops").fetchone()[0])

    # ------------------------------------------------------------------ who the replicas are

    @storage.guarded
    def remember_replica(self, replica: str, name: str, wall: float) -> None:
        """Replica `replica` is the store of session `name` (seen at `wall`)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO replicas VALUES (?, ?, ?) ON CONFLICT (replica) DO UPDATE "
                "SET name = excluded.name, seen = excluded.seen",
                (replica, name, wall),
            )

    @storage.guarded
    def replica_names(self) -> dict[str, str]:
        """Replica id -> the session name last seen with it."""
        return dict(self._db.execute("SELECT replica, name FROM replicas"))


def _split(oid: str) -> tuple[str, int]:
    origin, _, seq = oid.rpartition("-")
    return origin, int(seq)
