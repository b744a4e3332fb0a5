"""mesh._steward_store.HomeStewardFiles on real files: what upkeep sees of this home's steward files is what
is on disk now, though an unchanged file is not read again."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import _steward_store as store
from mesh.core.stewards import StewardConfig, StewardState
from mesh.errors import StateDamaged
from mesh.paths import mesh_dir


def _node(home: Path, name: str) -> Path:
    d = mesh_dir(home, "m") / "nodes" / name
    d.mkdir(parents=True)
    return d


def _epochs(files: store.HomeStewardFiles) -> dict[str, object]:
    return {
        nid: (st.config.epoch if isinstance(st, StewardState) and st.config else st)
        for nid, st in files.states()
    }


def test_changes_are_seen_and_unchanged_files_are_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _node(tmp_path, "a"), _node(tmp_path, "b")
    _node(tmp_path, "c")  # never kept steward state: not listed
    store.save_steward_state(a, "id-a", StewardState(config=StewardConfig(1, ("id-a",))))
    files = store.HomeStewardFiles(tmp_path, "m")
    assert files.dirs() == {"id-a": a}
    assert _epochs(files) == {"id-a": 1}

    reads: list[Path] = []
    real = store._read_steward_file
    monkeypatch.setattr(store, "_read_steward_file", lambda p: reads.append(p) or real(p))
    assert files.dirs() == {"id-a": a} and reads == []  # nothing changed: nothing read

    store.save_steward_state(b, "id-b", StewardState(config=StewardConfig(1, ("id-a",))))
    store.save_steward_state(a, "id-a", StewardState(config=StewardConfig(2, ("id-a", "id-b"))))
    assert _epochs(files) == {"id-a": 2, "id-b": 1}
    assert sorted(p.parent.name for p in reads) == ["a", "b"]

    (b / store.STEWARD_FILE).unlink()
    assert files.dirs() == {"id-a": a}


def test_a_damaged_file_is_reported_not_taken_for_nothing(tmp_path: Path) -> None:
    a = _node(tmp_path, "a")
    (a / store.STEWARD_FILE).write_text('{"node_id": "id-a", "state": 7}')
    files = store.HomeStewardFiles(tmp_path, "m")
    assert files.dirs() == {"id-a": a}
    [(nid, st)] = files.states()
    assert nid == "id-a" and isinstance(st, StateDamaged)
    (a / store.STEWARD_FILE).write_text("not json")  # names no node: no state to report
    assert files.states() == []
    assert files.dirs() == {"id-a": a}  # the directory is still that node's (its lock proves it dead or not)
    assert store.HomeStewardFiles(tmp_path, "m").dirs() == {}  # a fresh look cannot tell whose it is


def test_a_node_made_afresh_is_read_again(tmp_path: Path) -> None:
    a = _node(tmp_path, "a")
    (a / store.IDENTITY_FILE).write_text("1")
    store.save_steward_state(a, "id-a", StewardState())
    files = store.HomeStewardFiles(tmp_path, "m")
    assert files.dirs() == {"id-a": a}
    a.rename(tmp_path / "aside")  # moved aside; a new node of the same name starts there
    a = _node(tmp_path, "a")
    store.save_steward_state(a, "id-a2", StewardState())
    assert files.dirs() == {"id-a2": a}
    (a / store.IDENTITY_FILE).write_text("2")  # its identity store made afresh in the same directory
    store.save_steward_state(a, "id-a3", StewardState())
    assert files.dirs() == {"id-a3": a}
