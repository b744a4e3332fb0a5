"""A node's own durable state: SQLite in WAL mode under its state dir. Never shared between nodes."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identity (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
    """The node's identity. (Members ever seen live in the mail store, which resolves names for sending.)"""

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

    def integrity_ok(self) -> bool:
        row = self.db.execute("PRAGMA integrity_check").fetchone()
        return bool(row and row[0] == "ok")
