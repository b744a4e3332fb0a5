"""What a node keeps for `meshctl stats`: liveness transitions, claim holds and refusals it saw (SQLite).

The figures themselves are computed by `mesh.core.stats` from these rows; this module only keeps them,
for `KEEP` (30 days), so a window like `--since 7d` reaches back across restarts. Times are wall-clock
unix seconds (history spans restarts; the monotonic clock does not).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from mesh import storage
from mesh.core.resources import is_shared

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mesh.core.stats import Hold, Refusal  # loaded by the queries: a node that only records needs neither

__all__ = ["KEEP", "StatsLog"]

KEEP = 30 * 24 * 3600.0
"""Seconds of history kept (the last liveness state of each session is kept whatever its age)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS liveness (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS liveness_name ON liveness (name, seq);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY, resource TEXT NOT NULL, holder TEXT NOT NULL, token INTEGER NOT NULL,
    start REAL NOT NULL, end REAL
);
CREATE INDEX IF NOT EXISTS holds_open ON holds (holder) WHERE end IS NULL;
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, resource TEXT NOT NULL, claimant TEXT NOT NULL
);
"""


class StatsLog:
    """One node's record of what `stats` needs. Not thread-safe (the runtime's loop is its one user).

    Every method leaves with the error tree's storage errors (`mesh.storage.guarded`).
    """

    holds = "this node's history for meshctl stats (liveness, claim holds, refusals)"
    aside = "starts an empty history (figures for the past are lost to this node)"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db, _ = storage.open_db(
            self.path, schema=_SCHEMA, holds=self.holds, aside=self.aside, pragmas=("synchronous=NORMAL",)
        )

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return storage.transaction(self._db)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ writes

    @storage.guarded
    def transition(self, at: float, name: str, state: str) -> None:
        """Session `name` became `state` (alive, suspect, dead, left) at `at`."""
        self._db.execute("INSERT INTO liveness (at, name, state) VALUES (?, ?, ?)", (at, name, state))

    @storage.guarded
    def last_state(self, name: str) -> tuple[float, str] | None:
        row = self._db.execute(
            "SELECT at, state FROM liveness WHERE name = ? ORDER BY seq DESC LIMIT 1", (name,)
        ).fetchone()
        return None if row is None else (float(row[0]), str(row[1]))

    @storage.guarded
    def open_holds(self, holder: str) -> dict[tuple[str, int], int]:
        """(resource, token) -> row id of the holds of `holder` not yet ended."""
        rows = self._db.execute(
            "SELECT resource, token, id FROM holds WHERE holder = ? AND end IS NULL", (holder,)
        )
        return {(r, int(t)): int(i) for r, t, i in rows}

    @storage.guarded
    def start_hold(self, resource: str, holder: str, token: int, at: float) -> None:
        self._db.execute(
            "INSERT INTO holds (resource, holder, token, start) VALUES (?, ?, ?, ?)",
            (resource, holder, token, at),
        )

    @storage.guarded
    def end_holds(self, ids: list[int], at: float) -> None:
        """End these holds at `at` (never before they started)."""
        self._db.executemany("UPDATE holds SET end = max(start, ?) WHERE id = ?", [(at, i) for i in ids])

    @storage.guarded
    def refusal(self, at: float, resource: str, claimant: str) -> None:
        self._db.execute(
            "INSERT INTO refusals (at, resource, claimant) VALUES (?, ?, ?)", (at, resource, claimant)
        )

    @storage.guarded
    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @storage.guarded
    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @storage.guarded
    def prune(self, before: float) -> None:
        """Forget history older than `before` (each session's latest liveness state stays)."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM liveness WHERE at < ? AND seq NOT IN "
                "(SELECT max(seq) FROM liveness GROUP BY name)",
                (before,),
            )
            db.execute("DELETE FROM holds WHERE end IS NOT NULL AND end < ?", (before,))
            db.execute("DELETE FROM refusals WHERE at < ?", (before,))

    # ------------------------------------------------------------------ reads

    @storage.guarded
    def transitions(self, since: float) -> dict[str, list[tuple[float, str]]]:
        """Per session: its state at `since` (its last transition before), then every transition after."""
        out: dict[str, list[tuple[float, str]]] = {}
        rows = self._db.execute(
            "SELECT name, at, state FROM liveness WHERE at >= ? OR seq IN "
            "(SELECT max(seq) FROM liveness WHERE at < ? GROUP BY name) ORDER BY seq",
            (since, since),
        )
        for name, at, state in rows:
            out.setdefault(name, []).append((float(at), state))
        return out

    @storage.guarded
    def holds_between(self, since: float, until: float) -> list[Hold]:
        """Holds that overlap [since, until] (one still running ends at `until`)."""
        from mesh.core.stats import Hold

        rows = self._db.execute(
            "SELECT resource, holder, token, start, coalesce(end, ?) FROM holds "
            "WHERE start <= ? AND (end IS NULL OR end >= ?)",
            (until, until, since),
        )
        return [Hold(r, h, float(s), float(e), not is_shared(r), int(t)) for r, h, t, s, e in rows]

    @storage.guarded
    def refusals(self, since: float, until: float) -> list[Refusal]:
        from mesh.core.stats import Refusal

        rows = self._db.execute(
            "SELECT resource, claimant, at FROM refusals WHERE at BETWEEN ? AND ?", (since, until)
        )
        return [Refusal(r, c, float(a)) for r, c, a in rows]
