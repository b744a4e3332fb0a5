"""mesh._nodefile finds running nodes with os calls and string paths (no pathlib in meshctl's hot verbs), and
answers as the pathlib code it replaced: paths spelled as `str(Path(...))`, the same nodes in the same
order as `sorted(home.glob("*/nodes/*/node.json"))` gave."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh import _nodefile


@given(st.text(alphabet="/.a~ b\\", max_size=12))
def test_normpath_is_pathlibs_spelling(text: str) -> None:
    assert _nodefile.normpath(text) == str(PurePosixPath(text))


@pytest.mark.parametrize("bad", [None, 7, ["a"], {"a": 1}])
def test_normpath_refuses_what_path_refuses(bad: object) -> None:
    with pytest.raises(TypeError):
        Path(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _nodefile.normpath(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("home", ["/tmp/h", "/tmp//h/", "~/x/./y", "rel/h", "~"])
def test_the_home_is_spelled_as_path_spelled_it(home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_HOME", home)
    assert _nodefile.default_home() == str(Path(home).expanduser())
    assert _nodefile.home_arg(home) == str(Path(home))


def node_at(sd: Path, name: str, held: list[int], mesh: str = "m", lock: bool = True) -> None:
    sd.mkdir(parents=True, mode=0o700)
    info = {"name": name, "mesh": mesh, "node_id": "x" * 16, "pid": os.getpid(),
            "socket": str(sd / "control.sock") + "/", "address": "127.0.0.1:1"}  # fmt: skip
    (sd / "node.json").write_text(json.dumps(info))
    fd = os.open(sd / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    if lock:
        fcntl.flock(fd, fcntl.LOCK_EX)
    held.append(fd)


def by_pathlib(home: Path, mesh: str | None) -> list[tuple[str, str, str]]:
    """What running_nodes answered when it was `sorted(root.glob(pattern))` (before mesh._nodefile)."""
    root = home / "meshes"
    if not root.is_dir():
        return []
    pattern = f"{mesh}/nodes/*/node.json" if mesh else "*/nodes/*/node.json"
    got = []
    for f in sorted(root.glob(pattern)):
        if _nodefile.is_locked(str(f.parent)):
            try:
                d = json.loads(f.read_text())
                got.append((d["name"], str(f.parent), str(Path(d["socket"]))))
            except (OSError, ValueError, KeyError, TypeError):
                pass
    return got


def test_the_scan_finds_what_the_glob_found(tmp_path: Path, held: list[int]) -> None:
    meshes = tmp_path / "meshes"
    for mesh, names in {"m": ["b", "a", ".hidden", "Z"], "k": ["a"], "z-last": ["q"]}.items():
        for n in names:
            node_at(meshes / mesh / "nodes" / n, n, held, mesh)
    node_at(meshes / "m" / "nodes" / "stopped", "stopped", held, lock=False)
    (meshes / "m" / "nodes" / "empty").mkdir()  # no node.json
    (meshes / "m" / "nodes" / "file").write_text("not a directory")
    (meshes / "no-nodes").mkdir()
    (meshes / "a-file").write_text("x")
    os.symlink(meshes / "k", meshes / "linked")  # a link to a mesh is followed, as the glob did
    (meshes / "m" / "nodes" / "damaged").mkdir()
    (meshes / "m" / "nodes" / "damaged" / "node.json").write_text("{")
    fd = os.open(meshes / "m" / "nodes" / "damaged" / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held.append(fd)
    for mesh in (None, "m", "k", "no-nodes", "absent"):
        got = [(n.name, n.state_dir, n.socket) for n in _nodefile.running_nodes(tmp_path, mesh)]
        assert got == by_pathlib(tmp_path, mesh), mesh
    assert len(_nodefile.running_nodes(tmp_path)) == 7  # the check can fail: it found them all
    assert _nodefile.running_nodes(tmp_path / "nowhere") == by_pathlib(tmp_path / "nowhere", None) == []
