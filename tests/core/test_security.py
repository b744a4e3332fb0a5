"""Mesh credentials: CA files, leaf certificates, join tokens (no network: see tests/integration/test_tls)."""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh import security
from mesh.errors import AuthError, InvalidInput

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
REPO = Path(__file__).resolve().parents[2]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _verify_leaf(ca: security.MeshCA, creds: security.Credentials, mesh: str, when: dt.datetime) -> None:
    """Full chain + profile verification as a strict TLS peer would do it (server and client roles)."""
    leaf = x509.load_pem_x509_certificate(creds.cert_pem)
    store = verification.Store([ca.cert])
    builder = verification.PolicyBuilder().store(store).time(when)
    builder.build_server_verifier(x509.DNSName(security.server_name(mesh))).verify(leaf, [])
    builder.build_client_verifier().verify(leaf, [])


# --- files -------------------------------------------------------------------------------------------------


def test_ensure_creates_once_then_loads_the_same(tmp_path: Path) -> None:
    ca1, created1 = security.ensure_ca(tmp_path, "m1")
    ca2, created2 = security.ensure_ca(tmp_path, "m1")
    assert (created1, created2) == (True, False)
    assert ca1.fingerprint == ca2.fingerprint == security.load_ca(tmp_path, "m1").fingerprint
    assert security.has_credentials(tmp_path, "m1")
    assert not security.has_credentials(tmp_path, "m2")
    creds, created = security.ensure_credentials(tmp_path, "m1", "node-a")
    assert not created and creds.fingerprint == ca1.fingerprint and creds.node_id == "node-a"


def test_meshes_under_one_home_get_different_cas(tmp_path: Path) -> None:
    a, _ = security.ensure_ca(tmp_path, "a")
    b, _ = security.ensure_ca(tmp_path, "b")
    assert a.fingerprint != b.fingerprint


def test_files_are_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        security.ensure_ca(tmp_path, "m")
    finally:
        os.umask(old)
    cdir = security.credentials_dir(tmp_path, "m")
    assert cdir == tmp_path / "meshes" / "m" / "credentials"
    assert _mode(cdir) == 0o700
    assert _mode(cdir / "ca.key") == 0o600
    assert _mode(cdir / "ca.crt") == 0o600


def test_a_loose_key_file_is_refused(tmp_path: Path) -> None:
    security.ensure_ca(tmp_path, "m")
    os.chmod(security.credentials_dir(tmp_path, "m") / "ca.key", 0o644)
    with pytest.raises(AuthError, match="chmod 600"):
        security.load_ca(tmp_path, "m")


def test_missing_and_unreadable_credentials_are_auth_errors(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="meshctl init"):
        security.load_ca(tmp_path, "m")
    with pytest.raises(AuthError):
        security.join_token(tmp_path, "m")
    security.ensure_ca(tmp_path, "m")
    (security.credentials_dir(tmp_path, "m") / "ca.crt").write_bytes(b"not a certificate")
    with pytest.raises(AuthError, match="unreadable"):
        security.load_ca(tmp_path, "m")


def test_bad_mesh_name_and_node_id_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        security.ensure_ca(tmp_path, "../escape")
    ca, _ = security.ensure_ca(tmp_path, "m")
    with pytest.raises(InvalidInput):
        ca.issue("no spaces allowed")
    with pytest.raises(InvalidInput):
        ca.issue("x" * 65)


_CHILD = """
import sys
from pathlib import Path
from mesh.security import ensure_ca
print("ready", flush=True)
ca, created = ensure_ca(Path(sys.argv[1]), "race")
print(ca.fingerprint, created, flush=True)
"""


def test_concurrent_ensure_from_processes_yields_one_ca(tmp_path: Path) -> None:
    # Hold the writers' lock so every child is parked on it, then let them all go at once.
    cdir = tmp_path / "meshes" / "race" / "credentials"
    cdir.mkdir(parents=True, mode=0o700)
    fd = os.open(cdir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
    finally:
        os.close(fd)
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        fp, created = out.split()
        results.append((fp, created == "True"))
    assert len({fp for fp, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert security.load_ca(tmp_path, "race").fingerprint == results[0][0]


# --- certificates ------------------------------------------------------------------------------------------


def test_leaf_profile_verifies_as_server_and_client(tmp_path: Path) -> None:
    ca, _ = security.ensure_ca(tmp_path, "m", now=NOW)
    creds = ca.issue("node-1", now=NOW)
    leaf = x509.load_pem_x509_certificate(creds.cert_pem)
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "node-1"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["m.sessionmesh.invalid"]
    assert creds.not_after == NOW + security.LEAF_VALIDITY
    assert creds.not_before < NOW  # slack for peers whose clocks run behind
    assert creds.channel_options() == [("grpc.ssl_target_name_override", "m.sessionmesh.invalid")]
    _verify_leaf(ca, creds, "m", NOW)
    # The leaf key is the node's own, never the CA's.
    assert creds.key_pem != ca.key_pem


def test_leaf_of_another_ca_fails_verification(tmp_path: Path) -> None:
    ours = security.create_ca("m", now=NOW)
    rogue = security.create_ca("m", now=NOW)  # same mesh name, other secret
    with pytest.raises(verification.VerificationError):
        _verify_leaf(ours, rogue.issue("node-1", now=NOW), "m", NOW)


def test_leaf_for_another_mesh_name_fails_server_verification(tmp_path: Path) -> None:
    ca = security.create_ca("m", now=NOW)
    with pytest.raises(verification.VerificationError):
        _verify_leaf(ca, ca.issue("node-1", now=NOW), "other", NOW)


def test_expired_leaf_fails_and_renewal_is_due_before_expiry(tmp_path: Path) -> None:
    ca = security.create_ca("m", now=NOW)
    creds = ca.issue("node-1", now=NOW)
    assert not creds.renewal_due(NOW + dt.timedelta(days=1))
    assert creds.renewal_due(NOW + dt.timedelta(days=25))
    with pytest.raises(verification.VerificationError):
        _verify_leaf(ca, creds, "m", NOW + security.LEAF_VALIDITY + dt.timedelta(seconds=1))


def test_leaf_never_outlives_its_ca_and_an_expired_ca_is_refused(tmp_path: Path) -> None:
    ca = security.create_ca("m", now=NOW, validity=dt.timedelta(days=2))
    assert ca.issue("n", now=NOW).not_after == ca.cert.not_valid_after_utc
    with pytest.raises(AuthError, match="expired"):
        ca.issue("n", now=NOW + dt.timedelta(days=3))
    security.ensure_ca(tmp_path, "m")  # make the directory, then plant the short-lived CA
    cdir = security.credentials_dir(tmp_path, "m")
    (cdir / "ca.key").write_bytes(ca.key_pem)
    (cdir / "ca.crt").write_bytes(ca.cert_pem)
    with pytest.raises(AuthError, match="expired"):
        security.load_ca(tmp_path, "m", now=NOW + dt.timedelta(days=3))


def test_rotate_replaces_the_ca_and_old_leaves_stop_verifying(tmp_path: Path) -> None:
    old, _ = security.ensure_ca(tmp_path, "m")
    old_leaf = old.issue("node-1", now=NOW)
    new = security.rotate(tmp_path, "m")
    assert new.fingerprint != old.fingerprint
    assert security.load_ca(tmp_path, "m").fingerprint == new.fingerprint
    with pytest.raises(verification.VerificationError):
        _verify_leaf(new, old_leaf, "m", NOW)


@pytest.mark.parametrize(
    ("mesh", "readable"),
    [("default", True), ("My-Mesh", True), ("a_b", False), ("a.b", False), ("x" * 64, False), ("-", False)],
)
def test_server_name_is_always_a_valid_dns_name(mesh: str, readable: bool) -> None:
    name = security.server_name(mesh)
    label, _, suffix = name.partition(".")
    assert suffix == "sessionmesh.invalid"
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label)
    assert (label == mesh.lower()) is readable


# --- join tokens -------------------------------------------------------------------------------------------


def test_token_round_trip_to_another_home(tmp_path: Path) -> None:
    ca, _ = security.ensure_ca(tmp_path / "a", "team")
    token = security.join_token(tmp_path / "a", "team")
    assert token.startswith("smesh1:") and "\n" not in token and len(token) < 2000
    got, changed = security.import_token(tmp_path / "b", token)
    assert changed and got.mesh == "team" and got.fingerprint == ca.fingerprint
    assert security.load_ca(tmp_path / "b", "team").fingerprint == ca.fingerprint
    assert _mode(security.credentials_dir(tmp_path / "b", "team") / "ca.key") == 0o600
    # Importing the same token again is a no-op, also from a file and with line wraps pasted in.
    f = tmp_path / "token.txt"
    f.write_text("\n".join(token[i : i + 60] for i in range(0, len(token), 60)) + "\n")
    again, changed = security.import_token(tmp_path / "b", f, "team")
    assert not changed and again.fingerprint == ca.fingerprint
    assert not security.import_token(tmp_path / "b", str(f))[1]


def test_import_refuses_a_mesh_name_mismatch(tmp_path: Path) -> None:
    security.ensure_ca(tmp_path / "a", "team")
    token = security.join_token(tmp_path / "a", "team")
    with pytest.raises(InvalidInput, match="for mesh 'team'"):
        security.import_token(tmp_path / "b", token, "other")
    assert not security.has_credentials(tmp_path / "b", "other")


def test_import_over_different_credentials_needs_force(tmp_path: Path) -> None:
    security.ensure_ca(tmp_path / "a", "team")
    mine, _ = security.ensure_ca(tmp_path / "b", "team")
    token = security.join_token(tmp_path / "a", "team")
    with pytest.raises(InvalidInput, match="--force"):
        security.import_token(tmp_path / "b", token)
    assert security.load_ca(tmp_path / "b", "team").fingerprint == mine.fingerprint
    theirs, changed = security.import_token(tmp_path / "b", token, force=True)
    assert changed and security.load_ca(tmp_path / "b", "team").fingerprint == theirs.fingerprint


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(payload: bytes) -> str:
    """A token with a correct checksum around an arbitrary payload (tests the checks behind the checksum)."""
    return f"smesh1:{_b64(payload)}.{_b64(hashlib.sha256(payload).digest()[:8])}"


def _payload(ca: security.MeshCA, **over: object) -> bytes:
    d: dict[str, object] = {"v": 1, "mesh": ca.mesh, "cert": ca.cert_pem.decode(), "key": ca.key_pem.decode()}
    d.update(over)
    return json.dumps(d).encode()


def _bad_tokens() -> list[tuple[str, str]]:
    ca = security.create_ca("team")
    other = security.create_ca("team")
    good = security.encode_token(ca)
    body = good[len("smesh1:") :]
    mid = len(good) // 2
    flipped = good[:mid] + ("A" if good[mid] != "A" else "B") + good[mid + 1 :]
    p384 = ec.generate_private_key(ec.SECP384R1())
    p384_pem = security.MeshCA("team", ca.cert, p384).key_pem.decode()
    leaf = ca.issue("n1")
    expired = security.create_ca("team", now=NOW - dt.timedelta(days=10), validity=dt.timedelta(days=1))
    return [
        ("", "join token"),
        ("smesh1:", "truncated"),
        ("smesh1:" + body.replace(".", ""), "truncated"),
        ("hello", "join token"),
        ("smesh2:" + body, "version"),
        (good[:-20], "corrupt"),
        (good[: len(good) // 2], "corrupt"),
        (flipped, "corrupt"),
        ("smesh1:" + body.replace(".", ".!!"), "corrupt"),
        ("smesh1:" + "A" * 20000, "too long"),
        (_forge(b"not json"), "not JSON"),
        (_forge(b"[1, 2]"), "version"),
        (_forge(_payload(ca, v=2)), "version"),
        (_forge(_payload(ca, key=None)), "missing"),
        (_forge(_payload(ca, mesh="../x")), "mesh name"),
        (
            _forge(_payload(ca, cert="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")),
            "unreadable",
        ),
        (_forge(_payload(ca, key=other.key_pem.decode())), "does not match"),
        (_forge(_payload(ca, key=p384_pem)), "P-256"),
        (_forge(_payload(ca, cert=leaf.cert_pem.decode(), key=leaf.key_pem.decode())), "not a CA"),
        (_forge(_payload(expired)), "expired"),
    ]


@pytest.mark.parametrize(("token", "why"), _bad_tokens())
def test_malformed_or_corrupt_tokens_are_rejected_clearly(tmp_path: Path, token: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        security.import_token(tmp_path, token) if token.startswith("smesh") else security.decode_token(token)
    assert not (tmp_path / "meshes").exists() or not any((tmp_path / "meshes").rglob("ca.key"))


def test_a_missing_file_is_neither_token_nor_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="neither"):
        security.import_token(tmp_path, tmp_path / "nope.txt")


_GOOD = security.encode_token(security.create_ca("fuzz"))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(_GOOD) - 1), st.characters(codec="ascii"), st.booleans())
def test_any_single_edit_of_a_token_is_rejected_or_harmless(pos: int, ch: str, delete: bool) -> None:
    mutated = _GOOD[:pos] + ("" if delete else ch) + _GOOD[pos + 1 :]
    try:
        ca = security.decode_token(mutated)
    except InvalidInput:
        return
    # Only edits the decoder ignores (whitespace, or base64 bits dropped as padding) may pass, and then
    # the result must be exactly the original CA.
    assert ca.fingerprint == security.decode_token(_GOOD).fingerprint


# --- meshctl init / join-token ----------------------------------------------------------------------------


def _meshctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from mesh.cli.main import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_init_join_token_and_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_MESH", raising=False)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    rc, out, _ = _meshctl(capsys, "init", "--home", a, "--mesh", "team", "--json")
    created = json.loads(out)
    assert rc == 0 and created["action"] == "created" and created["mesh"] == "team"
    rc, out, _ = _meshctl(capsys, "init", "--home", a, "--mesh", "team", "--json")
    again = json.loads(out)
    assert rc == 0 and again["action"] == "exists" and again["fingerprint"] == created["fingerprint"]
    rc, token, _ = _meshctl(capsys, "join-token", "--home", a, "--mesh", "team")
    assert rc == 0 and token.startswith("smesh1:")
    # No --mesh on the joining machine: the token names the mesh.
    rc, out, _ = _meshctl(capsys, "init", "--home", b, "--from", token.strip(), "--json")
    assert rc == 0 and json.loads(out)["fingerprint"] == created["fingerprint"]
    rc, _, err = _meshctl(capsys, "init", "--home", b, "--mesh", "other", "--from", token.strip())
    assert rc == 2 and "for mesh 'team'" in err
    rc, _, err = _meshctl(capsys, "init", "--home", b, "--from", token.strip()[:-30])
    assert rc == 2 and "corrupt" in err and err.count("\n") == 1
    rc, out, _ = _meshctl(capsys, "init", "--home", a, "--mesh", "team", "--rotate", "--json")
    assert rc == 0 and json.loads(out)["action"] == "rotated"
    assert security.load_ca(Path(a), "team").fingerprint != created["fingerprint"]


def test_cli_join_token_without_credentials_fails_and_out_file_is_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _meshctl(capsys, "join-token", "--home", str(tmp_path), "--mesh", "none")
    assert rc == 2 and out == "" and "meshctl init" in err
    security.ensure_ca(tmp_path, "m")
    rc, _, _ = _meshctl(
        capsys, "join-token", "--home", str(tmp_path), "--mesh", "m", "--out", str(tmp_path / "t")
    )
    assert rc == 0 and _mode(tmp_path / "t") == 0o600
    assert security.decode_token((tmp_path / "t").read_text()).mesh == "m"
