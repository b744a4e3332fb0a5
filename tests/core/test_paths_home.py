"""meshctl finds its default home without importing platformdirs, at the path platformdirs gives."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from mesh.paths import default_home

CASES = [
    {"HOME": "/home/ann"},
    {"HOME": "/home/ann/"},
    {"HOME": "/home/ann", "XDG_DATA_HOME": "/data/xdg"},
    {"HOME": "/home/ann", "XDG_DATA_HOME": ""},
    {"HOME": "/home/ann", "XDG_DATA_HOME": "relative/xdg"},
    {"HOME": "/home/ann", "XDG_DATA_HOME": "  "},
    {"HOME": "relative"},
    {},
]


@pytest.mark.parametrize("env", CASES, ids=lambda e: ",".join(f"{k}={v!r}" for k, v in e.items()) or "none")
def test_default_home_is_platformdirs(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("MESH_HOME", "HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert default_home() == Path(platformdirs.user_data_dir("session-mesh", appauthor=False))
