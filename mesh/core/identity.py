"""`Identity`: one life of one node, the node's stable id and this process's incarnation.

Claims messages and steward sets name identities as "NODE_ID/INCARNATION" strings (that is their wire and
ballot form); everywhere else code holds an Identity and converts at that edge with `str()` / `parse()`.
"""

from __future__ import annotations

from mesh.core.errors import ProtocolError
from mesh.core.values import value


@value(order=True)
class Identity:
    """A node id and an incarnation: a restarted process is the same node, but a new identity."""

    node_id: str
    incarnation: str

    def __str__(self) -> str:
        return f"{self.node_id}/{self.incarnation}"

    @classmethod
    def parse(cls, text: str) -> Identity:
        """ "NODE_ID/INCARNATION" -> Identity (ProtocolError if it is not one: identities come from peers)."""
        node_id, sep, incarnation = text.partition("/")
        if not sep or not node_id or not incarnation or "/" in incarnation:
            raise ProtocolError(f"not a node identity: {text[:80]!r}")
        return cls(node_id, incarnation)

    @staticmethod
    def node_of(text: str) -> str:
        """The node id of an identity string (lenient: a bare node id is returned as it is)."""
        return text.partition("/")[0]
