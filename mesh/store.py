"""A node's own durable state: SQLite in WAL mode under its state dir. Never shared between nodes."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identity (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    node_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT '',
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS members_by_name ON members(name);
"""


def new_id() -> str:
    """A fresh random id (node id or incarnation): 16 url-safe characters, ~95 bits, starting alphanumeric.

    (An id starting with "-" would read as an option on any command line it is passed on.)
    """
    while True:
        ident = secrets.token_urlsafe(12)
        if ident[0].isalnum():
            return ident


class Store:
    """Identity and the members this node has ever seen (so a name can be resolved while its node is away)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def node_id(self) -> str:
        """This node's stable id, created on first use."""
        row = self.db.execute("SELECT value FROM identity WHERE key='node_id'").fetchone()
        if row:
            return str(row[0])
        nid = new_id()
        self.db.execute("INSERT INTO identity(key, value) VALUES('node_id', ?)", (nid,))
        return nid

    def remember(self, node_id: str, name: str, role: str, wall: float) -> None:
        """Record that `name` was seen as `node_id` at `wall`."""
        self.db.execute(
            "INSERT INTO members(node_id, name, role, last_seen) VALUES(?,?,?,?) "
            "ON CONFLICT(node_id) DO UPDATE SET name=excluded.name, role=excluded.role, "
            "last_seen=excluded.last_seen",
            (node_id, name, role, wall),
        )

    def lookup(self, name: str) -> list[tuple[str, float]]:
        """Node ids ever seen with `name`, newest first."""
        rows = self.db.execute(
            "SELECT node_id, last_seen FROM members WHERE name=? ORDER BY last_seen DESC", (name,)
        ).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def integrity_ok(self) -> bool:
        row = self.db.execute("PRAGMA integrity_check").fetchone()
        return bool(row and row[0] == "ok")
