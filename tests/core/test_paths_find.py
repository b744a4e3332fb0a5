"""find_node's direct look-up (mesh and name known: that node's directory only) answers as the scan of every
node does, and leaves every other case — not running, a bad name, no mesh — to the scan and its errors."""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh import _nodefile, paths
from mesh.core import validate
from mesh.errors import InvalidInput, NodeNotFound


def fake_node(home: Path, mesh: str, dirname: str, held: list[int], name: str | None = None) -> None:
    """A node.json in `dirname`'s state dir, its lock held by this process: a running node to find_node."""
    sd = paths.node_dir(home, mesh, dirname)
    sd.mkdir(parents=True, mode=0o700)
    info = {"name": name or dirname, "mesh": mesh, "node_id": "x" * 16, "pid": os.getpid(),
            "socket": str(sd / "control.sock"), "address": "127.0.0.1:1",
            "hook_socket": str(sd / "hooks.sock")}  # fmt: skip
    (sd / "node.json").write_text(json.dumps(info))
    fd = os.open(sd / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held.append(fd)


def no_scan(*args: object) -> list[paths.RunningNode]:
    raise AssertionError("scanned every node")


def test_a_named_node_in_a_named_mesh_is_read_from_its_directory_alone(
    tmp_path: Path, held: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in ("a", "b", "c"):
        fake_node(tmp_path, "m", n, held)
    scanned = [n for n in paths.running_nodes(tmp_path, "m") if n.name == "b"]
    monkeypatch.setattr(_nodefile, "running_nodes", no_scan)
    assert [paths.find_node(tmp_path, "m", "b")] == scanned
    with pytest.raises(AssertionError, match="scanned"):  # the check can fail: no mesh given, it scans
        paths.find_node(tmp_path, None, "b")


def test_every_other_case_is_the_scans(tmp_path: Path, held: list[int]) -> None:
    fake_node(tmp_path, "m", "a", held)
    fake_node(tmp_path, "m", "odd", held, name="other")  # a directory not named after its node
    (paths.node_dir(tmp_path, "m", "stopped")).mkdir(parents=True)
    with pytest.raises(NodeNotFound, match="no node named 'stopped' is running"):
        paths.find_node(tmp_path, "m", "stopped")
    with pytest.raises(NodeNotFound, match="no node named 'odd'"):
        paths.find_node(tmp_path, "m", "odd")
    assert os.path.basename(paths.find_node(tmp_path, "m", "other").state_dir) == "odd"
    with pytest.raises(NodeNotFound, match=re.escape("no node named '../m/nodes/a'")):
        paths.find_node(tmp_path, "m", "../m/nodes/a")
    with pytest.raises(InvalidInput, match="invalid mesh name"):
        paths.find_node(tmp_path, "*", "a")


@given(st.text(alphabet="aZ09._-/ *é١\x00", max_size=66) | st.sampled_from(["a" * 64, "a" * 65, "-a", ".a"]))
def test_a_plain_name_is_exactly_what_the_name_rule_accepts(text: str) -> None:
    try:
        validate.name(text)
        valid = True
    except InvalidInput:
        valid = False
    assert validate.is_name(text) == valid
