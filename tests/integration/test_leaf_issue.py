"""A node's leaf is issued outside its address space: by a forked child while the node is single-threaded
(what `meshctl up` is at start-up), by a new interpreter when it has threads (an embedding program). Either
way the leaf is the same kind of certificate, `cryptography` never enters the node, and an error the issuer
raised reaches the node as the same class."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.security import create_ca, ensure_ca

# Runs node_credentials in a fresh process (with a thread that blocks, or none) and reports what happened.
SCRIPT = """
import json, sys, threading
from pathlib import Path
import mesh._leaf as t
home, mesh, node_id, state, threaded = sys.argv[1:6]
spawned = []
real = t._issue_spawned
t._issue_spawned = lambda *a: spawned.append(1) or real(*a)
stop = threading.Event()
if threaded == "1":
    threading.Thread(target=stop.wait, daemon=True).start()
Path(state).mkdir(mode=0o700, exist_ok=True)
try:
    creds, created = t.node_credentials(Path(home), mesh, node_id, Path(state))
    out = {"created": created, "cn_ok": creds.node_id == node_id, "pem": creds.cert_pem.decode()}
except Exception as e:
    out = {"error": type(e).__name__, "message": str(e)}
stop.set()
out |= {"spawned": bool(spawned), "cryptography": any(m.startswith("cryptography") for m in sys.modules)}
print(json.dumps(out))
"""


def issue(tmp_path: Path, node_id: str, *, threaded: bool, mesh: str = "m") -> dict[str, object]:
    home, state = tmp_path / "home", tmp_path / f"state-{node_id}"
    home.mkdir(exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home), mesh, node_id, str(state), "1" if threaded else "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "fork" not in r.stderr, r.stderr  # no gRPC fork warning, no Python fork DeprecationWarning
    said: dict[str, object] = json.loads(r.stdout)
    return said


@pytest.mark.parametrize("threaded", [False, True], ids=["forked", "spawned"])
def test_a_fresh_identity_gets_a_leaf_without_cryptography_in_the_node(
    tmp_path: Path, threaded: bool
) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    first = issue(tmp_path, "node-1", threaded=threaded)
    assert first["spawned"] is threaded  # the path under test was taken (the check can fail)
    assert first["created"] is True and first["cn_ok"] is True, first
    assert first["cryptography"] is False
    again = issue(tmp_path, "node-2", threaded=threaded)
    assert again["created"] is False and again["cryptography"] is False, again
    ca = ensure_ca(tmp_path / "home", "m")[0]
    for said, node_id in ((first, "node-1"), (again, "node-2")):
        cert = x509.load_pem_x509_certificate(str(said["pem"]).encode())
        cert.verify_directly_issued_by(ca.cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node_id


@pytest.mark.parametrize("threaded", [False, True], ids=["forked", "spawned"])
def test_an_issuer_error_reaches_the_node_as_its_class(tmp_path: Path, threaded: bool) -> None:
    home = tmp_path / "home"
    ensure_ca(home, "m")  # the directory and lock as a real mesh has them
    old = create_ca("m", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=20), validity=dt.timedelta(days=10))
    cdir = home / "meshes" / "m" / "credentials"
    (cdir / "ca.crt").write_bytes(old.cert_pem)
    (cdir / "ca.key").write_bytes(old.key_pem)
    said = issue(tmp_path, "node-1", threaded=threaded)
    assert said["error"] == "AuthError" and "expired" in str(said["message"]), said
    assert said["spawned"] is threaded and said["cryptography"] is False
