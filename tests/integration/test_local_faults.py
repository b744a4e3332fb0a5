"""Local faults end in one clear line, never in a broken node (issue 10), on real processes and files."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from tests.integration.harness import Mesh


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to prepare a directory as another user")
def test_socket_directory_prepared_by_another_user_is_not_used(tmp_path: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir="/tmp", prefix="mt"))  # short, like a real $TMPDIR
    trap = tmp / f"session-mesh-{os.getuid()}"
    trap.mkdir()
    os.chown(trap, 65534, 65534)
    os.chmod(trap, 0o777)
    home = tmp_path / ("h" * 90)  # the control socket path is too long for AF_UNIX under this home
    m = Mesh(home=home)
    m.extra_env.update(TMPDIR=str(tmp))
    if os.environ.get("XDG_RUNTIME_DIR"):
        pytest.skip("XDG_RUNTIME_DIR is set for this test run; the $TMPDIR fallback is not taken")
    try:
        m.up("a", "--no-mdns")
        info = json.loads((next(home.glob("meshes/*/nodes/a/node.json"))).read_text())
        sock = Path(info["socket"])
        assert sock.parent != trap and not any(trap.iterdir())
        st = os.lstat(sock.parent)
        assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
        r = m.ctl("status", "--json", node="a")
        assert json.loads(r.stdout)[0]["name"] == "a"
    finally:
        m.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("verb", [("status",), ("down",)])
def test_mesh_option_is_a_name_not_a_glob(tmp_path: Path, verb: tuple[str, ...]) -> None:
    m = Mesh(home=tmp_path / "home")
    try:
        m.up("a", "--no-mdns")
        r = m.ctl(*verb, "--mesh", "*", check=False)
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1 and "mesh name" in r.stderr and "Traceback" not in r.stderr
        assert m.ctl("status", "--json", node="a").returncode == 0  # still running: nothing was stopped
    finally:
        m.cleanup()
