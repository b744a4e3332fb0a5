"""How a node gets its leaf: its cached one (mesh._tls), or a new one issued by a short-lived child process,
so that `cryptography` (~12 MB RSS for the node's whole life) is never loaded into the node.

While the node is still single-threaded (a `meshctl up` node at start-up: no gRPC thread yet) the child is a
fork, which has the node's modules already and only imports `cryptography` (~0.04 CPU s); otherwise (an
embedding program with threads: a fork could inherit a lock another thread holds) it is a new interpreter
(`python -m mesh.security issue …`, ~0.11 CPU s). Both run the same `mesh.security.issue_leaf`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from mesh._tls import Credentials, check_ca_files, load_cached_leaf, remember_ca
from mesh.errors import AuthError, MeshError


def _issue_error(code: int, out: str, err: str) -> MeshError:
    """What the issuing child said went wrong, as the class it raised (see mesh.security._main)."""
    from mesh.core.errors import error_classes

    try:
        said = json.loads(out.strip().splitlines()[0])
        cls = error_classes()[said["error"]]
        e = cls.__new__(cls)
        MeshError.__init__(e, str(said["message"]))
        return e
    except (ValueError, KeyError, IndexError, TypeError):
        lines = (err or out).strip().splitlines()
        return AuthError(lines[-1] if lines else f"could not issue this node's certificate (exit {code})")


def node_credentials(home: Path, mesh: str, node_id: str, state_dir: Path) -> tuple[Credentials, bool]:
    """Its cached leaf, or a new one issued by a child process; returns (credentials, created_ca)."""
    check_ca_files(home, mesh)
    cached = load_cached_leaf(home, mesh, node_id, state_dir)
    if cached is not None:
        remember_ca(home, mesh, cached.ca_pem)
        return cached, False
    args = (home, mesh, node_id, state_dir)
    said = _issue_forked(*args) if _single_threaded() else _issue_spawned(*args)
    out: dict[str, Any] = json.loads(said)
    creds = load_cached_leaf(home, mesh, node_id, state_dir)
    if creds is None:
        raise AuthError("issued this node's certificate but could not load it back")
    remember_ca(home, mesh, creds.ca_pem)
    return creds, bool(out.get("created"))


def _single_threaded() -> bool:
    """Whether this process has one thread, native ones included (gRPC's, an embedder's): then a fork's
    child cannot inherit a lock held by another thread, and gRPC has no fork handlers to run."""
    try:
        return len(os.listdir("/proc/self/task")) == 1 and hasattr(os, "fork")
    except OSError:
        return False


def _issue_spawned(home: Path, mesh: str, node_id: str, state_dir: Path) -> str:
    """Issue in a new interpreter; the JSON line it wrote (its error raised as the class it names)."""
    cmd = [
        sys.executable, "-m", "mesh.security", "issue", f"--home={home}", f"--mesh={mesh}",
        f"--node-id={node_id}", f"--state-dir={state_dir}",  # "=" form: an id may start with "-"
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise _issue_error(r.returncode, r.stdout, r.stderr)
    return r.stdout


def _issue_forked(home: Path, mesh: str, node_id: str, state_dir: Path) -> str:
    """Issue in a forked child; the JSON line it wrote (as `_issue_spawned`). Blocks for its ~40 ms."""
    rfd, wfd = os.pipe()
    # Signals stay blocked across the fork: the child must not run the node's handlers (asyncio's wake-up
    # fd is the parent's) before it has put the default ones back.
    every = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, every)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected (it ends in os._exit)
            _child(wfd, rfd, old, home, mesh, node_id, state_dir)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    os.close(wfd)
    chunks = []
    with os.fdopen(rfd, "rb") as r:
        while chunk := r.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    said, code = b"".join(chunks).decode("utf-8", "replace"), os.waitstatus_to_exitcode(status)
    if code != 0:
        raise _issue_error(code, said, "")
    return said


def _child(wfd: int, rfd: int, mask: set[int | signal.Signals], home: Path, mesh: str, node_id: str,
           state_dir: Path) -> None:  # fmt: skip  # pragma: no cover
    """The forked child: issue, write the answer, and leave without running anything of the node's
    (os._exit: no atexit, no flush of the node's buffered output, no finalizers of its sqlite handles)."""
    code = 70
    try:
        os.close(rfd)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        logging.disable(logging.INFO)  # as in a spawned child: warnings only, not "created credentials"
        try:
            from mesh.security import issue_leaf

            said = issue_leaf(home, mesh, node_id, state_dir)
        except Exception as e:  # the node gets it as an AuthError, not a lost child
            said = {"error": "AuthError", "message": f"could not issue this node's certificate: {e!r}"}
        os.write(wfd, (json.dumps(said) + "\n").encode())
        code = 2 if "error" in said else 0
    finally:
        os._exit(code)
