"""mesh._json (json's C accelerator alone, for meshctl's start-up) gives json's text, and reads it back."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh import _json

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(), kids, max_size=5),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(values)
def test_dumps_is_jsons(v: Any) -> None:
    for ascii_ in (True, False):
        for seps in ((", ", ": "), (",", ":")):
            assert _json.dumps(v, ensure_ascii=ascii_, separators=seps) == json.dumps(
                v, ensure_ascii=ascii_, separators=seps
            )


@given(values)
def test_loads_reads_what_json_wrote(v: Any) -> None:
    text = json.dumps(v, ensure_ascii=False)
    assert same(_json.loads(text), json.loads(text))
    assert same(_json.loads(" \n" + text.encode().decode() + "\n "), v)
    assert same(_json.loads(text.encode()), v)


@pytest.mark.parametrize("bad", ["", " ", "{", '{"a": 1} x', "[1,]", "nope", '"\x01"', b"\xff"])
def test_loads_refuses_what_json_refuses(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        _json.loads(bad)


def test_dumps_refuses_what_json_cannot_write() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        _json.dumps({"a": object()})
