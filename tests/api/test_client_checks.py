"""What `Client.send` checks before anything goes to a node: a recipient name is checked once per Client
(remembered only when it passed), the text's size is the check's own count. No node runs here: every case is
refused before the client would connect (its socket does not exist)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mesh import client as client_mod
from mesh.client import Client, _message
from mesh.core.errors import InvalidInput
from mesh.paths import RunningNode


def _client(tmp_path: Path) -> Client:
    sock = str(tmp_path / "none.sock")  # never made: nothing here may reach a node
    return Client(RunningNode("n", "default", "n1", 1, sock, "127.0.0.1:1", str(tmp_path)))


async def test_a_bad_recipient_is_refused_every_time(tmp_path: Path) -> None:
    c = _client(tmp_path)
    try:
        for _ in range(3):
            with pytest.raises(InvalidInput, match="invalid recipient"):
                await c.send("bad name", "s", "b")
        bad: Any = ["b"]  # unhashable: refused as a name, not a TypeError from the remembered names
        with pytest.raises(InvalidInput, match="invalid recipient"):
            await c.send(bad, "s", "b")
    finally:
        await c.close()


async def test_remembered_names_stay_bounded_and_a_bad_name_is_never_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "_NAMES_KEPT", 4)
    c = _client(tmp_path)
    try:
        for i in range(10):  # a good name with a bad subject: the name passes, the send is refused
            with pytest.raises(InvalidInput, match="subject"):
                await c.send(f"s{i}", "", "b")
            assert len(c._names) <= 4
            assert f"s{i}" in c._names
        with pytest.raises(InvalidInput, match="invalid recipient"):
            await c.send("bad name", "s", "b")
        assert "bad name" not in c._names
    finally:
        await c.close()


def test_the_size_sent_is_the_checks_count_in_utf8_bytes() -> None:
    fields, size = _message("sujet é", "corps ü€", None, None)
    assert size == len("sujet é".encode()) + len("corps ü€".encode())
    assert fields == {"subject": "sujet é", "body": "corps ü€", "in_reply_to": ""}
