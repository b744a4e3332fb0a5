"""A node's own durable state: SQLite in WAL mode under its state dir. Never shared between nodes."""

from __future__ import annotations

import binascii
import os
from pathlib import Path

from mesh import storage
from mesh.core import validate
from mesh.core.errors import InvalidInput

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identity (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def new_id() -> str:
    """A fresh random id (node id or incarnation): 16 url-safe characters, ~95 bits, starting alphanumeric.

    (An id starting with "-" would read as an option on any command line it is passed on.)
    """
    while True:
        # secrets.token_urlsafe(12), spelled without `secrets` (and the `base64` and `random` it loads, which
        # would stay in every node's memory for this one call at start: issue 15)
        ident = binascii.b2a_base64(os.urandom(12), newline=False).decode().translate(_URL_SAFE)
        if ident[0].isalnum():
            return ident


_URL_SAFE = str.maketrans("+/", "-_")


class Store:
    """The node's identity. (Members ever seen live in the mail store, which resolves names for sending.)

    Created with its id at once, so an existing node.db without one is damaged, never silently re-made (a
    new id is a new node to every peer: mail queued for the old one would wait for nobody).
    """

    holds = "this node's identity (its node id)"
    aside = "gives this node a new id (move mail.db aside too: it belongs to the old one)"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db, created = storage.open_db(
            path, schema=_SCHEMA, holds=self.holds, aside=self.aside, pragmas=("synchronous=NORMAL",)
        )
        try:
            self._id = self._load_id(created)
        except BaseException:
            self.db.close()
            raise

    @storage.guarded
    def _load_id(self, created: bool) -> str:
        row = self.db.execute("SELECT value FROM identity WHERE key='node_id'").fetchone()
        if row is None:
            if not created:
                raise storage.damaged(self.path, "missing this node's id", self.holds, self.aside)
            nid = new_id()
            self.db.execute("INSERT INTO identity(key, value) VALUES('node_id', ?)", (nid,))
            return nid
        try:
            return validate.ident(row[0], "node id")
        except InvalidInput:
            raise storage.damaged(self.path, "holding a malformed node id", self.holds, self.aside) from None

    def close(self) -> None:
        self.db.close()

    def node_id(self) -> str:
        """This node's stable id (made when the store was created)."""
        return self._id

    @storage.guarded
    def integrity_ok(self) -> bool:
        row = self.db.execute("PRAGMA integrity_check").fetchone()
        return bool(row and row[0] == "ok")
