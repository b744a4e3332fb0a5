"""TLS credentials as the node runtime uses them, without the `cryptography` package.

Issuing and checking certificates (mesh.security) needs `cryptography`, which costs a node ~12 MB of memory
(RSS) for its whole life. A running node only needs PEM bytes for gRPC, so this module holds what it uses,
and a node reuses its cached leaf (in its private state dir) until a third of its life is left; a new leaf
is issued outside the node's address space (mesh._leaf).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.core import validate
from mesh.core.values import value
from mesh.errors import AuthError, InvalidInput
from mesh.paths import mesh_dir
from mesh.storage import translating

if TYPE_CHECKING:
    # Not at run time: the certificate child (mesh.security issue) imports this module, and grpc would be
    # most of its start-up.
    import grpc

log = logging.getLogger("mesh")

SAN_SUFFIX = "sessionmesh.invalid"
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
LEAF_DIR = "tls"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def credentials_dir(home: Path, mesh: str) -> Path:
    """Directory holding a mesh's CA: `<home>/meshes/<mesh>/credentials`."""
    return mesh_dir(home, validate.name(mesh, "mesh name")) / "credentials"


def server_name(mesh: str) -> str:
    """The DNS name every leaf of `mesh` carries and every client verifies (TLS target name override)."""
    label = mesh.lower()
    if not _DNS_LABEL.fullmatch(label):
        # Mesh names allow '_' and '.' and 64 characters; a DNS label does not. The CA is what
        # authenticates, so a hashed label only has to be stable, not readable.
        label = "h-" + hashlib.sha256(mesh.encode()).hexdigest()[:24]
    return f"{label}.{SAN_SUFFIX}"


@value
class Credentials:
    """One node's TLS identity in one mesh: the mesh CA certificate plus a leaf issued for this node."""

    mesh: str
    node_id: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    fingerprint: str
    """Short SHA-256 fingerprint of the mesh CA certificate: show it in logs/status (not secret)."""
    not_after: dt.datetime
    """When the leaf expires (UTC)."""
    not_before: dt.datetime

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server side of mutual TLS: present our leaf and require a client leaf of the same CA."""
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)], root_certificates=self.ca_pem, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client side of mutual TLS: trust only the mesh CA and present our leaf."""
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )

    def channel_options(self) -> list[tuple[str, str]]:
        """Channel options to add: peers are dialled by IP, so verify the mesh's fixed name instead."""
        return [("grpc.ssl_target_name_override", server_name(self.mesh))]

    def peer_identity(self, context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
        """The authenticated peer's node id, if its certificate is for this mesh (see `peer_identity`)."""
        return peer_identity(context, self.mesh)

    def ca_sha256(self) -> bytes:
        """SHA-256 of the mesh CA certificate's DER (what a local link's Hello proves instead of a chain)."""
        return pem_sha256(self.ca_pem)

    def renewal_due(self, now: dt.datetime | None = None) -> bool:
        """Whether less than a third of the leaf's life remains (re-issue, then rebuild server/channels)."""
        now = now or _utcnow()
        return now >= self.not_after - (self.not_after - self.not_before) / 3


def pem_sha256(pem: bytes) -> bytes:
    """SHA-256 of the first certificate's DER in `pem` (base64 between the armour lines: no `ssl` needed)."""
    import binascii  # base64.b64decode is this, and `base64` would stay in a node's memory for it (issue 15)

    body = pem.split(b"-----BEGIN CERTIFICATE-----", 1)[-1].split(b"-----END CERTIFICATE-----", 1)[0]
    return hashlib.sha256(binascii.a2b_base64(b"".join(body.split()))).digest()


def peer_identity(context: grpc.aio.ServicerContext[Any, Any], mesh: str | None = None) -> str | None:
    """The node id in the TLS-authenticated peer's certificate, or None (plaintext, no cert, bad id).

    With `mesh`, the certificate must also carry that mesh's name (defence in depth: the handshake has
    already proved it was issued by our CA).
    """
    auth = context.auth_context()
    if b"ssl" not in [bytes(v) for v in auth.get("transport_security_type", [])]:
        return None
    if mesh is not None and server_name(mesh).encode() not in [
        bytes(v) for v in auth.get("x509_subject_alternative_name", [])
    ]:
        return None
    names = list(auth.get("x509_common_name", []))
    if len(names) != 1:
        return None
    try:
        return validate.ident(bytes(names[0]).decode("ascii"), "node id")
    except (UnicodeDecodeError, InvalidInput):
        return None


# What BoringSSL says (in the RPC's details) -> what it means for a mesh peer, most specific first.
_REFUSALS = (
    ("certificate has expired", "certificate expired (or clocks disagree)"),
    ("certificate is not yet valid", "certificate not yet valid (clocks disagree)"),
    ("unable to get local issuer certificate", "certificate not issued by this mesh's CA"),
    ("certificate signature failure", "certificate not issued by this mesh's CA"),
    ("self-signed certificate", "certificate not issued by this mesh's CA"),
    ("Hostname Verification Check failed", "certificate is for another mesh name"),
    ("CERTIFICATE_VERIFY_FAILED", "certificate rejected"),
    ("Tls handshake failed", "TLS handshake failed"),
)


def handshake_refusal(err: grpc.RpcError) -> str | None:
    """If a dial failed in the TLS handshake, a short reason to log once per peer address; else None.

    Only the dialling side learns why (the accepting side's failure stays inside gRPC's C core), and a
    plaintext or non-gRPC listener gives no reason, just a closed socket (None here).
    """
    import grpc

    code = err.code() if callable(getattr(err, "code", None)) else None
    details = err.details() if callable(getattr(err, "details", None)) else None
    if code != grpc.StatusCode.UNAVAILABLE or not isinstance(details, str):
        return None
    for needle, reason in _REFUSALS:
        if needle in details:
            return reason
    return None


# --- the node's cached leaf -------------------------------------------------------------------------------


def load_cached_leaf(home: Path, mesh: str, node_id: str, state_dir: Path) -> Credentials | None:
    """This node's cached credentials, if they are for this CA and node, intact, and not due for renewal.

    Anything damaged (unreadable, not JSON, a list, absurd times, a certificate or key that does not parse
    or does not match) is treated as no cache: a fresh leaf is issued instead of failing later in gRPC with
    a misleading "failed to bind".
    """
    d = state_dir / LEAF_DIR
    try:
        meta = json.loads((d / "leaf.json").read_text())
        cert, key = (d / "leaf.crt").read_bytes(), (d / "leaf.key").read_bytes()
        ca_pem = (credentials_dir(home, mesh) / "ca.crt").read_bytes()
    except (OSError, ValueError, RecursionError):  # deep nesting is a RecursionError in json
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("ca_sha256") != hashlib.sha256(ca_pem).hexdigest() or meta.get("node_id") != node_id:
        return None
    try:
        creds = Credentials(
            mesh=mesh,
            node_id=node_id,
            ca_pem=ca_pem,
            cert_pem=cert,
            key_pem=key,
            fingerprint=str(meta["fingerprint"]),
            not_after=dt.datetime.fromtimestamp(float(meta["not_after"]), dt.UTC),
            not_before=dt.datetime.fromtimestamp(float(meta["not_before"]), dt.UTC),
        )
    except (KeyError, ValueError, TypeError, OverflowError, OSError):
        return None
    if creds.not_after <= creds.not_before or creds.renewal_due():
        return None
    # The issuing child wrote this pair and its digest: the same bytes are the same matching pair. A cache
    # from before the digest was recorded is checked the slow way once (it is re-issued on renewal).
    if "pair_sha256" in meta:
        return creds if meta["pair_sha256"] == pair_digest(cert, key) else None
    return creds if _pair_ok(d / "leaf.crt", d / "leaf.key") else None


def pair_digest(cert_pem: bytes, key_pem: bytes) -> str:
    """SHA-256 of a certificate and key as stored: a pair once proven to match is known by it afterwards."""
    h = hashlib.sha256(cert_pem)
    h.update(b"\0")
    h.update(key_pem)
    return h.hexdigest()


def _pair_ok(cert: Path, key: Path) -> bool:
    """A PEM certificate and the private key that belongs to it (checked by the stdlib, no cryptography).

    Only where no recorded digest vouches for the pair: `ssl` loads OpenSSL into the process for good
    (~4.5 MB RSS per node, see mesh.cli.main's `_lean_node`), and a node needs it for nothing else.
    """
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError):
        return False
    return True


CA_MARK = "ca.sha256"
"""In the mesh's local dir: the SHA-256 of the CA this home's nodes ran with (to notice it vanishing)."""
CA_PAIR_MARK = "ca.pair.sha256"
"""In the mesh's local dir: `pair_digest` of the CA certificate and key last proven to match (by this check,
or by mesh.security loading or creating them): a node start with the same bytes need not prove it again."""


def remember_ca_pair(cdir: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Record a CA pair (in `cdir`, a `credentials_dir`) proven to match. Best effort: without the record
    the next node start proves it again."""
    mark = cdir.parent / CA_PAIR_MARK
    digest = pair_digest(cert_pem, key_pem)
    tmp = mark.with_name(f"{CA_PAIR_MARK}.{os.getpid()}.tmp")
    try:
        if mark.is_file() and mark.read_bytes() == digest.encode():
            return
        tmp.write_text(digest)
        os.replace(tmp, mark)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_ca_files(home: Path, mesh: str) -> None:
    """Refuse to start on credentials that are damaged, exposed, or gone after this home has used them.

    Missing credentials in a home whose nodes already ran in this mesh would silently create a NEW CA and
    cut this node off from every peer (and split the mesh): refuse and say how to restore them instead.
    """
    with translating(credentials_dir(home, mesh), "read"):
        _check_ca_files(home, mesh)


def _check_ca_files(home: Path, mesh: str) -> None:
    cdir = credentials_dir(home, mesh)
    crt, key = cdir / "ca.crt", cdir / "ca.key"
    mark = mesh_dir(home, mesh) / CA_MARK
    if not crt.is_file() or not key.is_file():
        if mark.is_file():
            raise AuthError(
                f"the credentials of mesh {mesh!r} are gone from {cdir} (this home used them before): "
                "restore them from a backup or import them again ('meshctl init --from TOKEN'); "
                "'meshctl init --force' starts a new CA that the other nodes will refuse"
            )
        return
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode & 0o077:
        raise AuthError(f"{key} is readable by others (mode {mode:o}); run 'chmod 600 {key}'")
    cert_pem, key_pem = crt.read_bytes(), key.read_bytes()
    try:
        proven = (cdir.parent / CA_PAIR_MARK).read_text() == pair_digest(cert_pem, key_pem)
    except (OSError, ValueError):
        proven = False
    if proven:
        return
    if _pair_ok(crt, key):
        remember_ca_pair(cdir, cert_pem, key_pem)
    else:
        raise AuthError(
            f"the mesh CA in {cdir} is damaged (ca.crt and ca.key do not load as a matching pair): restore "
            "them, or import them again with 'meshctl init --from TOKEN --force'"
        )


def remember_ca(home: Path, mesh: str, ca_pem: bytes) -> None:
    mark = mesh_dir(home, mesh) / CA_MARK
    digest = hashlib.sha256(ca_pem).hexdigest()
    try:
        old = mark.read_bytes().decode("ascii", errors="replace").strip()
    except OSError:
        old = ""
    if old == digest:
        return
    if old:
        log.warning(
            "the CA of mesh %r changed since this home last ran a node (init --rotate/--force?): nodes still "
            "on the old CA will refuse this one until they are given the new token",
            mesh,
        )
    tmp = mark.with_name(f"{CA_MARK}.{os.getpid()}.tmp")
    with translating(mark):
        tmp.write_text(digest)
        os.replace(tmp, mark)


def store_leaf(creds: Credentials, state_dir: Path) -> None:
    """Cache a freshly issued leaf (key 0600 in the node's private state dir)."""
    d = state_dir / LEAF_DIR
    d.mkdir(mode=0o700, exist_ok=True)
    for name, data in (("leaf.crt", creds.cert_pem), ("leaf.key", creds.key_pem)):
        tmp = d / (name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, d / name)
    meta = {
        "node_id": creds.node_id,
        "fingerprint": creds.fingerprint,
        "ca_sha256": hashlib.sha256(creds.ca_pem).hexdigest(),
        "pair_sha256": pair_digest(creds.cert_pem, creds.key_pem),
        "not_before": creds.not_before.timestamp(),
        "not_after": creds.not_after.timestamp(),
    }
    (d / "leaf.json").write_text(json.dumps(meta))
