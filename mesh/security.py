"""Mesh credentials: one CA per mesh, short-lived node certificates, join tokens, mutual TLS for gRPC.

Threat model (what the README's "Security" section summarises):
- The secret of a mesh is its CA key. Holding it *is* membership: every member node holds it (a node issues
  its own certificate at every start), so a member node is fully trusted — it can impersonate any other
  member, issue certificates and hand out join tokens. We protect the mesh from non-members, not from members.
- Protected: a process without the CA key (another user's mesh, a rogue node on the LAN, a mesh of the same
  name with other credentials, a plaintext client) cannot complete the TLS handshake, so it can neither read,
  inject, vote nor appear in status. Traffic between nodes is encrypted (TLS 1.3 on gRPC's BoringSSL).
- Not protected: anyone who can read `<home>/meshes/<mesh>/credentials/` (same uid or root) or who is given
  the join token. The token is the CA key: pass it like a password (ssh, a password manager), never in a
  ticket or a chat.
- Revocation is rotation: `rotate()` (`meshctl init --rotate`) makes a new CA; nodes must restart to use it,
  and other machines need the new join token. Nodes still on the old CA can no longer talk to rotated ones
  (each side refuses the other's chain). There are no CRLs: since any member can mint certificates, a CRL of
  leaf serials would revoke nothing an attacker holding the CA key could not re-issue; only replacing the CA
  removes a member. Meshes are small and their operator restarts all nodes anyway, so rotation is cheap.
- Leaf certificates live 30 days and their keys never touch the disk; a node issues a fresh one at each
  start, and `Credentials.renewal_due()` tells a long-lived node when to re-issue. An expired leaf or a
  foreign or expired CA fails the handshake.
- Every leaf carries the same DNS SAN `<mesh-label>.sessionmesh.invalid` (peers are dialled by IP, so
  clients override the TLS target name with it) and the node id as its subject CN, which the server reads
  back with `peer_identity()`. The per-mesh SAN also stops a CA imported under another mesh name from
  being accepted by that mesh's peers.

Layout: `<home>/meshes/<mesh>/credentials/` (0700) holds `ca.crt`, `ca.key` (both 0600) and `.lock`
(flock: writers exclusive, readers shared, so two processes never create two CAs nor read a torn pair).
`<home>/meshes/<mesh>/ca.pair.sha256` records the SHA-256 of the CA pair last proven to match (and a node's
`leaf.json` its leaf pair's, `pair_sha256`), so a node start with the same bytes need not load OpenSSL to
prove it again; changed files no longer match their record and are proven again.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh._tls import (
    Credentials,
    credentials_dir,
    handshake_refusal,
    peer_identity,
    remember_ca_pair,
    server_name,
    store_leaf,
)
from mesh.core import validate
from mesh.errors import AuthError, InvalidInput, MeshError
from mesh.storage import oserror, translating

__all__ = [
    "CA_VALIDITY",
    "LEAF_VALIDITY",
    "TOKEN_PREFIX",
    "Credentials",
    "MeshCA",
    "create_ca",
    "credentials_dir",
    "decode_token",
    "encode_token",
    "ensure_ca",
    "ensure_credentials",
    "handshake_refusal",
    "has_credentials",
    "import_token",
    "issue_leaf",
    "join_token",
    "load_ca",
    "load_credentials",
    "peer_identity",
    "rotate",
    "server_name",
]

log = logging.getLogger("mesh")

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=30)
# Certificates start this far in the past so a peer whose clock runs behind ours still accepts them.
CLOCK_SLACK = dt.timedelta(hours=1)
TOKEN_PREFIX = "smesh1:"
TOKEN_MAX = 16_384  # a real token is ~1.3 kB; anything far larger is not one
_CA_CERT = "ca.crt"
_CA_KEY = "ca.key"
_LOCK = ".lock"
_ORG = "session mesh"
_CHECKSUM_BYTES = 8


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


@dataclass(frozen=True)
class MeshCA:
    """A mesh's certificate authority (certificate and private key): the mesh secret."""

    mesh: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def fingerprint(self) -> str:
        """Short SHA-256 fingerprint of the CA certificate (not secret)."""
        return _fingerprint(self.cert)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA private key, PKCS#8 PEM, unencrypted (protected by file mode; see the module docstring)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def issue(
        self, node_id: str, *, now: dt.datetime | None = None, validity: dt.timedelta = LEAF_VALIDITY
    ) -> Credentials:
        """Issue a fresh leaf (new key, kept in memory only) for `node_id`, valid for `validity`."""
        validate.ident(node_id, "node id")
        now = now or _utcnow()
        if now >= self.cert.not_valid_after_utc:
            raise AuthError(
                f"the CA of mesh {self.mesh!r} expired on {self.cert.not_valid_after_utc:%Y-%m-%d}; "
                f"run 'meshctl init --rotate --mesh {self.mesh}' and redistribute the join token"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        not_before = now - CLOCK_SLACK
        not_after = min(now + validity, self.cert.not_valid_after_utc)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.mesh),
                        x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            # Every node is both a server (peers dial it) and a client (it dials peers).
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(server_name(self.mesh))]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return Credentials(
            mesh=self.mesh,
            node_id=node_id,
            ca_pem=self.cert_pem,
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            fingerprint=self.fingerprint,
            not_after=not_after,
            not_before=not_before,
        )


def create_ca(mesh: str, *, now: dt.datetime | None = None, validity: dt.timedelta = CA_VALIDITY) -> MeshCA:
    """Make a new mesh CA in memory (EC P-256, self-signed, `validity` long); nothing is written."""
    validate.name(mesh, "mesh name")
    now = now or _utcnow()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, mesh),
            # The random suffix tells a rotated CA from its predecessor in `openssl x509 -text`.
            x509.NameAttribute(NameOID.COMMON_NAME, f"session mesh CA {os.urandom(4).hex()}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SLACK)
        .not_valid_after(now + validity)
        # path_length=0: the CA signs leaves only, never an intermediate.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return MeshCA(mesh=mesh, cert=cert, key=key)


def _check_ca(mesh: str, cert: x509.Certificate, key: Any, now: dt.datetime, where: str) -> MeshCA:
    """Check that (cert, key) form a usable CA; raise InvalidInput saying what is wrong with `where`."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInput(f"{where}: the CA key is not an EC P-256 key")
    if cert.public_key() != key.public_key():
        raise InvalidInput(f"{where}: the CA key does not match the CA certificate")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound as e:
        raise InvalidInput(f"{where}: not a session-mesh CA certificate") from e
    if not bc.ca:
        raise InvalidInput(f"{where}: the certificate is not a CA")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise InvalidInput(f"{where}: the CA certificate is not validly self-signed") from e
    if now >= cert.not_valid_after_utc:
        raise InvalidInput(
            f"{where}: the CA expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
            "rotate it ('meshctl init --rotate')"
        )
    return MeshCA(mesh=mesh, cert=cert, key=key)


# --- files ------------------------------------------------------------------------------------------------


def _private_dir(path: Path) -> Path:
    with translating(path, "create the directory"):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
    if st.st_uid != os.getuid():
        raise AuthError(
            f"{path} belongs to another user (uid {st.st_uid}); refusing to keep a mesh secret there"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        with translating(path, "protect"):
            os.chmod(path, 0o700)
    return path


@contextlib.contextmanager
def _locked(cdir: Path, exclusive: bool) -> Iterator[None]:
    """Writers hold `.lock` exclusively, readers shared. A reader opens it read-only: reading the mesh's
    credentials (join-token) works on a read-only home; with no lock file at all, no writer ever ran there,
    and a home where none can be created is read-only (no writer can run there either)."""
    lock = cdir / _LOCK
    fd: int | None = None
    with translating(lock, "lock"):
        if not exclusive:
            try:
                fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                try:
                    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                except OSError as e:
                    if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                        raise
        else:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing drops the flock


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is ignored when a stale tmp file already exists
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _store(cdir: Path, ca: MeshCA) -> None:
    # Writers hold the exclusive lock, so readers (shared lock) never see the new key with the old cert.
    with translating(cdir / _CA_KEY):
        _write_private(cdir / _CA_KEY, ca.key_pem)
        _write_private(cdir / _CA_CERT, ca.cert_pem)
    remember_ca_pair(cdir, ca.cert_pem, ca.key_pem)
    with contextlib.suppress(OSError):  # make the renames durable; not every filesystem allows a dir fsync
        dfd = os.open(cdir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _exists(cdir: Path) -> bool:
    return (cdir / _CA_CERT).is_file() and (cdir / _CA_KEY).is_file()


def _read(cdir: Path, mesh: str, now: dt.datetime) -> MeshCA:
    key_path = cdir / _CA_KEY
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
        if mode & 0o077:
            raise AuthError(f"{key_path} is readable by others (mode {mode:o}); run 'chmod 600 {key_path}'")
        cert_pem, key_pem = (cdir / _CA_CERT).read_bytes(), key_path.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except FileNotFoundError as e:
        raise AuthError(
            f"no credentials for mesh {mesh!r} in {cdir}; run 'meshctl init --mesh {mesh}'"
        ) from e
    except OSError as e:
        raise oserror(e, None, "read") from e
    except (ValueError, TypeError) as e:
        raise AuthError(
            f"the credentials in {cdir} are unreadable ({e}); restore them or 'meshctl init --force'"
        ) from e
    try:
        ca = _check_ca(mesh, cert, key, now, str(cdir))
    except InvalidInput as e:
        raise AuthError(str(e)) from e
    remember_ca_pair(cdir, cert_pem, key_pem)  # matching (checked above): node starts need not load OpenSSL
    return ca


def has_credentials(home: Path, mesh: str) -> bool:
    """Whether `mesh` has a CA under `home`."""
    return _exists(credentials_dir(home, mesh))


def load_ca(home: Path, mesh: str, *, now: dt.datetime | None = None) -> MeshCA:
    """Read a mesh's CA; AuthError if it is missing, unreadable, too open, or expired."""
    cdir = credentials_dir(home, mesh)
    if not cdir.is_dir():
        raise AuthError(f"no credentials for mesh {mesh!r} under {home}; run 'meshctl init --mesh {mesh}'")
    with _locked(cdir, exclusive=False):
        return _read(cdir, mesh, now or _utcnow())


def ensure_ca(home: Path, mesh: str, *, now: dt.datetime | None = None) -> tuple[MeshCA, bool]:
    """Load the mesh CA, creating it if absent; returns (ca, created). Safe across processes."""
    cdir = _private_dir(credentials_dir(home, mesh))
    now = now or _utcnow()
    with _locked(cdir, exclusive=True):
        if _exists(cdir):
            return _read(cdir, mesh, now), False
        ca = create_ca(mesh, now=now)
        _store(cdir, ca)
        from mesh._steward_store import mark_genesis_home

        mark_genesis_home(home, mesh)  # only the creating home may ever create the first steward config
    log.info("created credentials for mesh %r (CA %s) in %s", mesh, ca.fingerprint, cdir)
    return ca, True


def ensure_credentials(
    home: Path, mesh: str, node_id: str, *, now: dt.datetime | None = None
) -> tuple[Credentials, bool]:
    """A fresh leaf for `node_id`, creating the mesh CA on first use; returns (credentials, created)."""
    ca, created = ensure_ca(home, mesh, now=now)
    return ca.issue(node_id, now=now), created


def load_credentials(home: Path, mesh: str, node_id: str, *, now: dt.datetime | None = None) -> Credentials:
    """This node's credentials from an existing mesh CA (AuthError if there is none)."""
    return load_ca(home, mesh, now=now).issue(node_id, now=now)


def rotate(home: Path, mesh: str, *, now: dt.datetime | None = None) -> MeshCA:
    """Replace the mesh CA with a new one (revocation). Running nodes keep the old one until restarted."""
    cdir = _private_dir(credentials_dir(home, mesh))
    ca = create_ca(mesh, now=now)
    with _locked(cdir, exclusive=True):
        if not _exists(cdir):  # nothing to rotate: this creates the mesh here
            from mesh._steward_store import mark_genesis_home

            mark_genesis_home(home, mesh)
        _store(cdir, ca)
    log.info("rotated credentials for mesh %r: new CA %s", mesh, ca.fingerprint)
    return ca


# --- join tokens -----------------------------------------------------------------------------------------


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str, what: str) -> bytes:
    try:
        # validate=True: the default silently drops characters outside the alphabet.
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput(f"join token is corrupt: bad {what} encoding") from e


def encode_token(ca: MeshCA) -> str:
    """`smesh1:<base64url JSON {v, mesh, cert, key}>.<base64url checksum>`: one line, the mesh secret."""
    payload = json.dumps(
        {"v": 1, "mesh": ca.mesh, "cert": ca.cert_pem.decode(), "key": ca.key_pem.decode()},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    checksum = hashlib.sha256(payload).digest()[:_CHECKSUM_BYTES]
    return f"{TOKEN_PREFIX}{_b64e(payload)}.{_b64e(checksum)}"


def decode_token(token: str, *, now: dt.datetime | None = None) -> MeshCA:
    """Parse and check a join token; InvalidInput saying what is wrong if it is malformed or corrupt."""
    # Terminals and mail wrap long lines: whitespace anywhere in a pasted token is not part of it.
    token = "".join(token.split())
    if len(token) > TOKEN_MAX:
        raise InvalidInput(f"join token is too long ({len(token)} characters)")
    if re.match(r"smesh\d+:", token) and not token.startswith(TOKEN_PREFIX):
        raise InvalidInput("join token from another session-mesh version; use one version on both machines")
    if not token.startswith(TOKEN_PREFIX):
        raise InvalidInput(f"not a session-mesh join token (it should start with {TOKEN_PREFIX!r})")
    body, sep, sum_text = token[len(TOKEN_PREFIX) :].rpartition(".")
    if not sep or not body:
        raise InvalidInput("join token is truncated or corrupt (no checksum part): copy it again, whole")
    payload = _b64d(body, "payload")
    checksum = _b64d(sum_text, "checksum")
    if not hmac.compare_digest(checksum, hashlib.sha256(payload).digest()[:_CHECKSUM_BYTES]):
        raise InvalidInput("join token is corrupt (checksum mismatch): copy it again, whole")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput("join token is corrupt: payload is not JSON") from e
    if not isinstance(data, dict) or data.get("v") != 1:
        raise InvalidInput("join token has an unknown version; upgrade session-mesh on this machine")
    mesh, cert_pem, key_pem = data.get("mesh"), data.get("cert"), data.get("key")
    if not (isinstance(mesh, str) and isinstance(cert_pem, str) and isinstance(key_pem, str)):
        raise InvalidInput("join token is missing its mesh name, certificate or key")
    validate.name(mesh, "mesh name in the join token")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"join token holds an unreadable certificate or key ({e})") from e
    return _check_ca(mesh, cert, key, now or _utcnow(), "join token")


def join_token(home: Path, mesh: str) -> str:
    """The join token of an existing mesh (AuthError if it has no credentials here)."""
    return encode_token(load_ca(home, mesh))


def _token_text(token_or_path: str | Path) -> str:
    text = str(token_or_path)
    if re.match(r"\s*smesh\d+:", text):
        return text
    path = Path(text).expanduser()
    try:
        is_file = len(text) <= 4096 and path.is_file()
    except OSError:  # e.g. a pasted token of another version is too long to be a file name
        is_file = False
    if not is_file:
        raise InvalidInput(f"{text[:40]!r} is neither a join token ({TOKEN_PREFIX}…) nor a readable file")
    if path.stat().st_size > TOKEN_MAX:
        raise InvalidInput(f"{path} is too large to be a join token")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read a join token from {path}: {e}") from e


def import_token(
    home: Path, token_or_path: str | Path, mesh: str | None = None, *, force: bool = False
) -> tuple[MeshCA, bool]:
    """Install a join token's CA under `home` (for its own mesh name); returns (ca, changed).

    `mesh`, if given, must equal the token's mesh name (peers verify it in the certificate). Existing,
    different credentials are only replaced with `force`; importing the same CA again changes nothing.
    """
    ca = decode_token(_token_text(token_or_path))
    if mesh is not None and mesh != ca.mesh:
        raise InvalidInput(f"the join token is for mesh {ca.mesh!r}, not {mesh!r}; use --mesh {ca.mesh}")
    cdir = _private_dir(credentials_dir(home, ca.mesh))
    with _locked(cdir, exclusive=True):
        if _exists(cdir):
            try:
                current: MeshCA | None = _read(cdir, ca.mesh, _utcnow())
            except AuthError:
                current = None  # unreadable or expired: replacing it needs force like any other
            if current is not None and current.fingerprint == ca.fingerprint:
                return ca, False
            if not force:
                shown = current.fingerprint if current else "unreadable"
                raise InvalidInput(
                    f"mesh {ca.mesh!r} already has other credentials here (CA {shown}); "
                    f"pass --force to replace them with the token's (CA {ca.fingerprint})"
                )
        _store(cdir, ca)
        from mesh._steward_store import unmark_genesis_home

        unmark_genesis_home(home, ca.mesh)  # an imported mesh was created elsewhere: never genesis here
    log.info("imported credentials for mesh %r (CA %s) into %s", ca.mesh, ca.fingerprint, cdir)
    return ca, True


# --- a node's leaf, issued outside the node's address space (see mesh._leaf) -----------------------------


def issue_leaf(home: Path, mesh: str, node_id: str, state_dir: Path) -> dict[str, Any]:
    """Issue a node's leaf (creating the mesh CA if needed) into its state dir; what the node reads back.

    `{"created": bool, "fingerprint": str}`, or `{"error": class name, "message": str}` for a MeshError,
    so that the node raises the same class (a full disk stays StorageFull, not "auth").
    """
    try:
        creds, created = ensure_credentials(home, mesh, node_id)
        with translating(state_dir / "tls"):
            store_leaf(creds, state_dir)
    except MeshError as e:
        return {"error": type(e).__name__, "message": str(e)}
    return {"created": created, "fingerprint": creds.fingerprint}


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m mesh.security")
    sub = ap.add_subparsers(dest="cmd", required=True)
    iss = sub.add_parser(
        "issue", help="issue a node's leaf (creating the mesh CA if needed) into its state dir"
    )
    iss.add_argument("--home", type=Path, required=True)
    iss.add_argument("--mesh", required=True)
    iss.add_argument("--node-id", required=True)
    iss.add_argument("--state-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    said = issue_leaf(args.home, args.mesh, args.node_id, args.state_dir)
    print(json.dumps(said))
    if "error" in said:
        print(said["message"], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
