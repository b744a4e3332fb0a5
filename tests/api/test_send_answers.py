"""The control socket's answer to a batch the node queued as one run (`api_codec.run_to_pb`): the client
reads back exactly the per-item answers `answers_to_pb` would have given, and anything that is not one run
of consecutive ids to the items' own recipient is left to the per-item answer (None)."""

from __future__ import annotations

import pytest

from mesh._proto import mesh_pb2 as pb
from mesh._transport import api_codec
from mesh.views import Sent


def _ids(first: int, n: int, stream: str = "s0ab12-x") -> list[str]:
    return [f"{stream}-{k}" for k in range(first, first + n)]


@pytest.mark.parametrize("n", [1, 2, 999])
def test_a_run_reads_back_as_each_items_answer(n: int) -> None:
    to: list[str | None] = ["bob"] * n
    ids = _ids(41, n)
    run = api_codec.run_to_pb(to, ids, ("bob",))
    assert run is not None
    wire = pb.SendResults.FromString(run.SerializeToString())
    want = [Sent(i, ("bob",)) for i in ids]
    assert api_codec.answers_from_pb(wire, to) == want
    per_item = api_codec.answers_to_pb(to, want)
    assert api_codec.answers_from_pb(per_item, to) == want
    assert len(run.answers.run_at) == 1 and not run.answers.other_at


@pytest.mark.parametrize(
    ("to", "ids", "names"),
    [
        (["bob", "bob"], ["s-1", "s-3"], ("bob",)),  # not consecutive
        (["bob", "bob"], ["s-2", "s-1"], ("bob",)),
        (["bob", "bob"], ["s-1", "t-2"], ("bob",)),  # another stream
        (["bob", "ann"], ["s-1", "s-2"], ("bob",)),  # an item to another name
        (["bob", "bob"], ["s-1", "s-2"], ("ann",)),  # answered for another name
        (["bob", "bob"], ["s-1", "s-2"], ("bob", "ann")),
        (["bob", "bob"], ["s-01", "s-2"], ("bob",)),  # a number not as the run would spell it
        (["bob", "bob"], ["s-x", "s-y"], ("bob",)),
        (["bob", "bob"], ["s-1"], ("bob",)),  # an answer missing
        ([], [], ("bob",)),
        ([None, None], ["s-1", "s-2"], ()),  # broadcasts
    ],
)
def test_anything_but_one_run_is_answered_per_item(
    to: list[str | None], ids: list[str], names: tuple[str, ...]
) -> None:
    assert api_codec.run_to_pb(to, ids, names) is None
