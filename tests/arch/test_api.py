"""One typed API: `Node`, `Client` and `WireClient` implement `MeshAPI` with the same names, signatures,
defaults and return types, and the package exports exactly its public names (httpx's
tests/test_exported_members.py)."""

from __future__ import annotations

import inspect
from typing import get_type_hints

import pytest

import mesh
import mesh.api
import mesh.errors
from mesh.api import MeshAPI
from mesh.client import Client
from mesh.core.errors import MeshError
from mesh.node import Node
from mesh.wireclient import WireClient

FACES = [Node, Client, WireClient]

VERBS = sorted(
    name
    for name, member in inspect.getmembers(MeshAPI)
    if not name.startswith("_") and inspect.isfunction(member)
)


def test_the_api_has_the_verbs_every_face_needs() -> None:
    assert VERBS == [
        "board", "broadcast", "check_path", "claim", "claim_once", "claims", "counts", "heartbeat", "held",
        "info", "lease_events", "mark_read", "members", "messages", "milestone_add", "milestone_show",
        "outbox", "recover_stewards", "release", "send", "shutdown", "stats", "task_add", "task_claim",
        "task_done", "task_drop", "task_edit", "task_reopen", "watch",
    ]  # fmt: skip


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("verb", VERBS)
def test_every_face_implements_each_verb_exactly(face: type, verb: str) -> None:
    want, got = getattr(MeshAPI, verb), getattr(face, verb)
    assert inspect.signature(got) == inspect.signature(want), f"{face.__name__}.{verb}"
    # WireClient imports its annotations' types only for type checkers (it must load fast): its names are
    # resolved where MeshAPI's are; a wrong or missing type still fails here.
    assert get_type_hints(got, localns=vars(mesh.api)) == get_type_hints(want), f"{face.__name__}.{verb}"
    # A coroutine verb stays a coroutine, a stream stays an async iterator (called without await).
    assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(want), f"{face.__name__}.{verb}"


def test_streams_subscribe_without_await() -> None:
    for verb in ("watch", "messages", "lease_events"):
        assert not inspect.iscoroutinefunction(getattr(MeshAPI, verb))
        for face in FACES:
            fn = getattr(face, verb)
            assert not inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn), (face, verb)


def test_all_public_names_are_exported_and_sorted() -> None:
    assert mesh.__all__ == sorted(mesh.__all__)
    for name in mesh.__all__:
        assert getattr(mesh, name) is not None, name
    assert dir(mesh) == mesh.__all__


def test_the_whole_error_tree_is_exported() -> None:
    tree: set[str] = set()
    stack: list[type[MeshError]] = [MeshError]
    while stack:
        cls = stack.pop()
        tree.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    assert set(mesh.errors.__all__) == tree
    assert tree <= set(mesh.__all__)
    for name in tree:
        assert getattr(mesh, name) is getattr(mesh.errors, name)
