"""The short socket directory is never one another local user could have prepared (issue 10: hijack)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh import paths
from mesh.errors import InvalidInput


@pytest.fixture
def tmpdir_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    short = Path(tempfile.mkdtemp(dir="/tmp", prefix="mt"))  # short, like a real $TMPDIR
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(short))
    yield short
    shutil.rmtree(short, ignore_errors=True)


def expected(tmp: Path) -> Path:
    return tmp / f"session-mesh-{os.getuid()}"


def private(p: Path) -> bool:
    st = os.lstat(p)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700


def test_created_private_and_reused(tmpdir_only: Path) -> None:
    d = paths.short_private_dir()
    assert d == expected(tmpdir_only) and private(d)
    assert paths.short_private_dir() == d


def test_our_own_loose_dir_is_tightened_when_empty(tmpdir_only: Path) -> None:
    d = expected(tmpdir_only)
    d.mkdir()
    os.chmod(d, 0o777)
    assert paths.short_private_dir() == d and private(d)


def test_loose_dir_with_something_inside_is_not_used(tmpdir_only: Path) -> None:
    d = expected(tmpdir_only)
    d.mkdir()
    os.chmod(d, 0o777)
    (d / "planted.sock").write_text("")
    got = paths.short_private_dir()
    assert got != d and private(got) and got.parent == tmpdir_only


def test_symlink_is_never_followed(tmpdir_only: Path) -> None:
    target = tmpdir_only / "elsewhere"
    target.mkdir(mode=0o700)
    expected(tmpdir_only).symlink_to(target)
    got = paths.short_private_dir()
    assert got != expected(tmpdir_only) and private(got)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a directory owned by another user")
def test_another_users_dir_is_never_used(tmpdir_only: Path) -> None:
    d = expected(tmpdir_only)
    d.mkdir()
    os.chown(d, 65534, 65534)  # nobody
    os.chmod(d, 0o777)
    got = paths.short_private_dir()
    assert got != d and private(got)


def test_long_tmpdir_falls_back_to_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    long = tmp_path / ("t" * 90)
    long.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    got = paths.short_private_dir()
    try:
        assert got.parent == Path("/tmp") and private(got)
    finally:
        got.rmdir()


def test_long_state_dir_gets_socket_in_private_dir(tmpdir_only: Path) -> None:
    state = tmpdir_only / ("x" * 120)
    sock = paths.control_socket_path(state)
    assert len(str(sock)) <= 108 and sock.parent == expected(tmpdir_only)


@pytest.mark.parametrize("mesh", ["*", "a*", "[ab]", "../x", ""])
def test_mesh_is_a_name_not_a_glob(tmp_path: Path, mesh: str) -> None:
    with pytest.raises(InvalidInput, match="mesh name"):
        paths.running_nodes(tmp_path, mesh)
