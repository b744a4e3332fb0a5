"""The handshake of a peer link: the Hello this node sends, and the checks a peer's Hello must pass.

Both sides check the other's Hello (mesh, protocol, claims timing, identity, name); a refusal travels
back as a Reject (`Refusal`), a malformed Hello is the peer's ProtocolError. The name rule: a live member
keeps its name; a newcomer that finds its own name taken while still joining fails its start (NameTaken).
"""

from __future__ import annotations

from mesh._proto import mesh_pb2 as pb
from mesh._runtime.lifecycle import Lifecycle
from mesh._transport import codec
from mesh._transport.peer import frame
from mesh.config import PROTO_VERSION, NodeConfig
from mesh.core.errors import NameTaken, ProtocolError
from mesh.core.membership import Membership, PeerInfo
from mesh.core.status import StatusRecord


class Refusal(Exception):
    """A Hello this node refuses, with the Reject reason to send back."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Handshake:
    """Builds this node's Hello and checks peers' (it needs the member table for the name rule)."""

    def __init__(
        self,
        config: NodeConfig,
        me: PeerInfo,
        membership: Membership,
        life: Lifecycle,
        ca_sha256: bytes = b"",
    ) -> None:
        self.config = config
        self.ca_sha256 = ca_sha256
        """SHA-256 of the mesh CA certificate (DER); empty without TLS (then no local links either)."""
        self.me = me
        self.membership = membership
        self.life = life

    def hello(self, local: bool = False) -> pb.PeerFrame:
        """This node's Hello (with its current status record); on a local link, with the CA digest."""
        msg = pb.Hello(
            mesh=self.config.mesh,
            proto_version=PROTO_VERSION,
            node=codec.peer_to_pb(self.me),
            lease=self.config.lease,
            rho=self.config.rho,
            frame_batches=True,
            mail_columns=True,
        )
        if local:
            msg.ca_sha256 = self.ca_sha256
        if self.membership.status is not None:
            msg.status.CopyFrom(codec.status_to_pb(self.membership.status))
        return frame(hello=msg)

    def check(self, hello: pb.Hello, local: bool = False) -> tuple[PeerInfo, StatusRecord | None]:
        """Validate a peer's Hello; raises Refusal (to send back) or ProtocolError.

        On a local link (no TLS) the Hello must also prove the same mesh CA, as a certificate chain would."""
        cfg = self.config
        if hello.mesh != cfg.mesh:
            raise Refusal(pb.Reject.WRONG_MESH, f"this node is in mesh {cfg.mesh!r}")
        if local and (not self.ca_sha256 or hello.ca_sha256 != self.ca_sha256):
            raise Refusal(pb.Reject.WRONG_CA, f"this node's mesh {cfg.mesh!r} has another CA")
        if hello.proto_version != PROTO_VERSION:
            raise Refusal(
                pb.Reject.BAD_VERSION, f"protocol {PROTO_VERSION} expected, got {hello.proto_version}"
            )
        if hello.lease != cfg.lease or hello.rho != cfg.rho:
            raise Refusal(
                pb.Reject.TIMING_MISMATCH,
                f"claims timing differs: lease {hello.lease:g}s rho {hello.rho:g}, here "
                f"{cfg.lease:g}s rho {cfg.rho:g} (all nodes of a mesh need the same --lease)",
            )
        info = codec.peer_from_pb(hello.node)
        status = codec.status_from_pb(hello.status) if hello.HasField("status") else None
        if status is not None and (status.node_id != info.node_id or status.incarnation != info.incarnation):
            raise ProtocolError("hello status belongs to another node")
        if info.node_id == self.me.node_id:
            raise Refusal(pb.Reject.SELF, "dialed itself")
        holder = self.membership.holder_of_name(info.name)
        if holder is not None and holder.info.node_id != info.node_id:
            if holder.is_self and not self.life.ready.is_set():
                # We are the newcomer: the name belongs to the node that was here first.
                self.life.fail(NameTaken(f"name {info.name!r} is already taken by a live node in mesh "
                                         f"{cfg.mesh!r} (at {info.address})"))  # fmt: skip
            raise Refusal(
                pb.Reject.NAME_TAKEN, f"name {info.name!r} is taken by a live node ({holder.info.address})"
            )
        return info, status
