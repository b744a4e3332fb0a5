"""How a node gets its leaf: its cached one (mesh._tls), or a new one issued by a short-lived child process,
so that `cryptography` (~12 MB RSS for the node's whole life) is never loaded into the node.

While the node is still single-threaded (a `meshctl up` node at start-up: no gRPC thread yet) the child is a
fork, which has the node's modules already and only imports `cryptography` (~0.04 CPU s); otherwise (an
embedding program with threads: a fork could inherit a lock another thread holds) it is a new interpreter
(`python -m mesh.security issue …`, ~0.11 CPU s). Both run the same `mesh.security.issue_leaf`.

Nodes of one home that need a leaf at the same moment (a mesh of new sessions started together) share one
issuer: importing `cryptography` is nearly all of an issue (~185 M instructions, against ~4 M for each leaf
once it is loaded), and 48 nodes each forking a child to import it spent ~2.4 CPU s of a 2-core box while
the mesh formed (issue 15). A node asks through `<home>/meshes/<mesh>/leaf-requests/` (0700): it writes
`<node id>.want` (its state dir) and takes `.lock` (flock) if free. Whoever takes it forks the child; the
child answers its own node through the pipe, then (a grandchild, so the node is not kept waiting) issues the
leaf of every other `.want` whose node is starting (its node lock held, its state dir a node dir of this
mesh) into that node's state dir, answering each in `<node id>.done`, until no request is left, holding the
lock throughout. A node that finds the lock taken watches for its `.done`; when the lock is free and no
answer came (the issuer had finished, or died), it is the issuer itself. After LEAF_WAIT without either, it
issues its own without the queue, so a stuck issuer delays others by no more than that.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mesh._nodefile import is_locked
from mesh._tls import Credentials, check_ca_files, load_cached_leaf, remember_ca
from mesh.core import validate
from mesh.errors import AuthError, InvalidInput, MeshError
from mesh.paths import ensure_private_dir, mesh_dir

QUEUE_DIR = "leaf-requests"
LEAF_WAIT = 20.0  # s a node waits for another node's issuer before it issues its own leaf alone
POLL = 0.01  # s between two looks at the answer file / the lock while another node's issuer works
STALE_ANSWER = 600.0  # s after which an answer nobody took (its node died waiting) is removed


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
    said = _issue_shared(*args) if _single_threaded() else _issue_spawned(*args)
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


def _write_answer(path: Path, said: str) -> None:
    """An answer or request file, whole or not at all (written aside, renamed into place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, said.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _take_answer(path: Path) -> str | None:
    """The answer another node's issuer left for us (removed as it is taken), or None if there is none."""
    try:
        said = path.read_text()
    except FileNotFoundError:
        return None
    with contextlib.suppress(OSError):
        path.unlink()
    return said


def _issue_shared(home: Path, mesh: str, node_id: str, state_dir: Path) -> str:
    """Issue through the home's request queue (see the module docstring): by the issuer another node of this
    home runs now, or by our own forked child, which then serves the other requests; the JSON line."""
    try:
        queue = ensure_private_dir(mesh_dir(home, mesh) / QUEUE_DIR)
        want, done = queue / f"{node_id}.want", queue / f"{node_id}.done"
        done.unlink(missing_ok=True)  # an answer for an earlier life of this node, which died waiting
        _write_answer(want, json.dumps({"state_dir": str(state_dir)}))
        lock = os.open(queue / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except (OSError, MeshError):  # no queue (a read-only mesh dir?): this node issues its own, as before
        return _issue_forked(home, mesh, node_id, state_dir)
    try:
        deadline = time.monotonic() + LEAF_WAIT
        while True:
            said = _take_answer(done)
            if said is None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another node's issuer is at work: our answer may be coming
                    if time.monotonic() < deadline:
                        time.sleep(POLL)
                        continue
                    return _issue_forked(home, mesh, node_id, state_dir)
                # The lock is ours, so no issuer runs: it answered us just before it ended, or it never
                # saw our request (it had listed them already) and we issue ourselves, serving the others.
                said = _take_answer(done)
                if said is None:
                    return _issue_forked(home, mesh, node_id, state_dir, queue=queue, lock=lock)
            try:
                failed = "error" in json.loads(said)
            except ValueError:
                failed = True
            if failed:
                raise _issue_error(2, said, "")
            return said
    finally:
        with contextlib.suppress(OSError):
            want.unlink()
        os.close(lock)  # our child's issuer (a grandchild serving the others) keeps the lock until it ends


def _issue_forked(
    home: Path, mesh: str, node_id: str, state_dir: Path, *, queue: Path | None = None, lock: int = -1
) -> str:
    """Issue in a forked child; the JSON line it wrote (as `_issue_spawned`). Blocks for its ~40 ms.
    With `queue` (its `lock` held), the child serves the other nodes' requests after answering ours."""
    rfd, wfd = os.pipe()
    # Signals stay blocked across the fork: the child must not run the node's handlers (asyncio's wake-up
    # fd is the parent's) before it has put the default ones back.
    every = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, every)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected (it ends in os._exit)
            _child(wfd, rfd, old, home, mesh, node_id, state_dir, queue, lock)
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
           state_dir: Path, queue: Path | None, lock: int) -> None:  # fmt: skip  # pragma: no cover
    """The forked child: issue, write the answer, and leave without running anything of the node's
    (os._exit: no atexit, no flush of the node's buffered output, no finalizers of its sqlite handles).
    With a queue: then the other nodes' requests, in a grandchild if there are any."""
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
        os.close(wfd)  # the node reads its answer to the end now, and goes on
        if queue is not None and _requests(queue, node_id) and os.fork() == 0:
            # The grandchild: nothing of the node's stays open in it (its node lock, its stores), only the
            # queue's lock, held until every request is answered; the child ends now, so the node (which
            # waits for it) is not kept waiting for the others.
            os.closerange(3, lock)
            os.closerange(lock + 1, 1 << 16)
            _serve(queue, home, mesh, {node_id})
            code = 0
    finally:
        os._exit(code)


def _requests(queue: Path, *skip: str) -> list[Path]:  # pragma: no cover - runs in the issuing child
    return sorted(p for p in queue.glob("*.want") if p.stem not in skip)


def _serve(queue: Path, home: Path, mesh: str, served: set[str]) -> None:  # pragma: no cover
    """Issue the leaf of every request in `queue` (until none is left) whose node is starting: its node lock
    held, its state dir one of this mesh's node dirs. A request whose node is gone is removed."""
    from mesh.security import issue_leaf

    nodes = (mesh_dir(home, mesh) / "nodes").resolve()
    now = time.time()
    for old in queue.glob("*.done"):
        try:
            if now - old.stat().st_mtime > STALE_ANSWER:
                old.unlink()
        except OSError:
            pass
    while wants := _requests(queue, *served):
        for want in wants:
            node_id = want.stem
            served.add(node_id)
            try:
                validate.ident(node_id, "node id")
                state_dir = Path(json.loads(want.read_text())["state_dir"])
                if state_dir.resolve().parent != nodes:
                    continue
            except (OSError, ValueError, KeyError, TypeError, InvalidInput):
                continue
            if not is_locked(state_dir):  # its node died waiting (or never started): nobody to answer
                want.unlink(missing_ok=True)
                continue
            try:
                said = issue_leaf(home, mesh, node_id, state_dir)
            except Exception as e:  # that node gets it as an AuthError, as from its own child
                said = {"error": "AuthError", "message": f"could not issue this node's certificate: {e!r}"}
            try:
                _write_answer(queue / f"{node_id}.done", json.dumps(said) + "\n")
            except OSError:
                pass  # that node issues its own once the lock is free
