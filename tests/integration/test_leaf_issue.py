"""A node's leaf is issued outside its address space: by a forked child while the node is single-threaded
(what `meshctl up` is at start-up), by a new interpreter when it has threads (an embedding program). Either
way the leaf is the same kind of certificate, `cryptography` never enters the node, and an error the issuer
raised reaches the node as the same class."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesh.security import create_ca, ensure_ca
from tests.integration.harness import Mesh

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


def _openssl_mapped(pid: int) -> set[str]:
    """The stdlib's OpenSSL extension modules (`_ssl`, `_hashlib`) mapped into a running process."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {ln.rsplit("/", 1)[-1] for ln in lines if re.search(r"/_(ssl|hashlib)\.cpython", ln)}


def test_a_node_process_never_loads_the_stdlib_openssl(tmp_path: Path) -> None:
    """`meshctl up` keeps the stdlib's OpenSSL out (~4.5 MB RSS; its TLS is gRPC's): a fresh home (the CA
    created by the issuing child), a restart on its cached leaf; a CA pair with no record of having been
    proven is proven once through `ssl` (then loaded in that node) and recorded for every later start."""
    import _ssl

    if not getattr(_ssl, "__file__", None):
        pytest.skip("this Python has _ssl built in: there is no module file to look for")
    m = Mesh(home=tmp_path / "home")
    try:
        a = m.up("a", "--no-mdns")
        assert _openssl_mapped(a.pid) == set()
        m.ctl("down", node="a")
        assert _openssl_mapped(m.restart("a").pid) == set()
        m.ctl("down", node="a")
        (tmp_path / "home" / "meshes" / m.name / "ca.pair.sha256").unlink()
        assert "_ssl" in " ".join(_openssl_mapped(m.restart("a").pid))  # the slow path ran (can fail)
        m.ctl("down", node="a")
        assert _openssl_mapped(m.restart("a").pid) == set()
    finally:
        m.cleanup()


# A starting node: its lock held (as NodeRuntime.start holds it before the leaf), then node_credentials;
# reports whether this process forked an issuing child itself.
STARTER = """
import json, sys
from pathlib import Path
import mesh._leaf as t
from mesh.paths import NodeLock
home, mesh, node_id, state = sys.argv[1:5]
forked = []
real = t._issue_forked
t._issue_forked = lambda *a, **kw: forked.append(1) or real(*a, **kw)
Path(state).mkdir(mode=0o700, parents=True, exist_ok=True)
lock = NodeLock(Path(state))
assert lock.acquire()
creds, created = t.node_credentials(Path(home), mesh, node_id, Path(state))
print(json.dumps({"created": created, "cn": creds.node_id, "forked": bool(forked),
                  "cryptography": any(m.startswith("cryptography") for m in sys.modules)}))
"""


def test_nodes_starting_together_share_one_issuer(tmp_path: Path) -> None:
    """New nodes of one home that need leaves at once: one of them forks the issuer, which answers every
    other request (no CA yet: it creates it), so `cryptography` is loaded once, not once per node."""
    import fcntl

    from cryptography import x509

    home, n = tmp_path / "home", 5
    queue = home / "meshes" / "m" / "leaf-requests"
    queue.mkdir(parents=True, mode=0o700)
    nodes = home / "meshes" / "m" / "nodes"
    ids = [f"node-{i}" for i in range(n)]
    with open(queue / ".lock", "a") as held:  # an issuer at work: every starter's request waits for it
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, str(home), "m", node_id, str(nodes / node_id)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for node_id in ids
        ]
        deadline = time.monotonic() + 30
        while len(list(queue.glob("*.want"))) < n:  # every request is in: now the "issuer" ends
            if time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                raise AssertionError("the starters did not ask")
            time.sleep(0.01)
    said = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=60)
        finally:
            p.kill()
        assert p.returncode == 0, err
        said.append(json.loads(out))
    assert [s["cn"] for s in said] == ids
    assert sum(s["forked"] for s in said) == 1, said  # one issuer served all five (the check can fail)
    assert sum(s["created"] for s in said) == 1, said  # the issuer created the CA; nobody else did
    assert not any(s["cryptography"] for s in said)
    ca = ensure_ca(home, "m")[0]
    for node_id in ids:
        cert = (home / "meshes" / "m" / "nodes" / node_id / "tls" / "leaf.crt").read_bytes()
        x509.load_pem_x509_certificate(cert).verify_directly_issued_by(ca.cert)
    assert list(queue.glob("*.want")) == [] and list(queue.glob("*.done")) == []


def test_a_request_whose_node_is_gone_is_not_answered(tmp_path: Path) -> None:
    """A request left by a node that died waiting (its lock free) gets no leaf; the node asking now does."""
    home = tmp_path / "home"
    queue = home / "meshes" / "m" / "leaf-requests"
    queue.mkdir(parents=True, mode=0o700)
    gone = home / "meshes" / "m" / "nodes" / "gone"
    gone.mkdir(parents=True, mode=0o700)
    (queue / "node-gone.want").write_text(json.dumps({"state_dir": str(gone)}))
    state = home / "meshes" / "m" / "nodes" / "n1"
    r = subprocess.run([sys.executable, "-c", STARTER, str(home), "m", "node-1", str(state)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["cn"] == "node-1"
    deadline = time.monotonic() + 30
    while (queue / "node-gone.want").exists():  # the issuer's grandchild removes it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not (gone / "tls").exists() and not (queue / "node-gone.done").exists()
