"""The error -> gRPC status edge: every class of the one tree travels and comes back as itself."""

from __future__ import annotations

import grpc
import pytest

import mesh.errors
from mesh._transport.errors import from_status, status_of
from mesh.core.errors import error_classes

S = grpc.StatusCode


def _sample(cls: type[mesh.errors.MeshError]) -> mesh.errors.MeshError:
    # The cores' classes take more than a message; build each as its raiser does.
    special = {
        "InvalidField": lambda: mesh.errors.InvalidField("priority", "priority must be P0-P3"),
        "PatternError": lambda: mesh.errors.PatternError("src/[", "unclosed '['"),
        "AmbiguousId": lambda: mesh.errors.AmbiguousId("task", "ab", ("abc1", "abd2")),
        "UnknownId": lambda: mesh.errors.UnknownId("task", "zz"),
    }
    return special[cls.__name__]() if cls.__name__ in special else cls("went wrong")


@pytest.mark.parametrize("name", sorted(mesh.errors.__all__))
def test_each_class_comes_back_as_itself_with_its_message(name: str) -> None:
    cls = getattr(mesh.errors, name)
    e = _sample(cls)
    back = from_status(status_of(e), str(e), type(e).__name__)
    assert type(back) is cls and str(back) == str(e)
    assert isinstance(back, mesh.errors.MeshError)


def test_the_cores_errors_sit_in_the_tree_where_their_meaning_is() -> None:
    assert issubclass(mesh.errors.InvalidField, mesh.errors.InvalidInput)
    assert issubclass(mesh.errors.InvalidField, ValueError)  # plain Python callers of a core
    assert issubclass(mesh.errors.PatternError, mesh.errors.InvalidField)
    assert issubclass(mesh.errors.AmbiguousId, mesh.errors.InvalidField)
    assert issubclass(mesh.errors.UnknownId, LookupError)
    assert issubclass(mesh.errors.ConflictingOp, mesh.errors.ProtocolError)
    assert status_of(_sample(mesh.errors.UnknownId)) == S.NOT_FOUND
    assert status_of(_sample(mesh.errors.PatternError)) == S.INVALID_ARGUMENT
    assert set(error_classes()) == set(mesh.errors.__all__)


def test_what_did_not_travel_keeps_its_class_default() -> None:
    back = from_status(S.INVALID_ARGUMENT, "task 'ab' is ambiguous", "AmbiguousId")
    assert isinstance(back, mesh.errors.AmbiguousId) and back.choices == () and back.field == ""


def test_storage_faults_travel_as_what_they_mean() -> None:
    assert issubclass(mesh.errors.StorageFull, mesh.errors.StorageError)
    assert issubclass(mesh.errors.StateDamaged, mesh.errors.StorageError)
    assert status_of(mesh.errors.StorageError("read-only")) == S.FAILED_PRECONDITION
    assert status_of(mesh.errors.StorageFull("no space")) == S.RESOURCE_EXHAUSTED
    assert status_of(mesh.errors.StateDamaged("damaged")) == S.DATA_LOSS
    assert type(from_status(S.DATA_LOSS, "damaged")) is mesh.errors.StateDamaged  # even with no class name
