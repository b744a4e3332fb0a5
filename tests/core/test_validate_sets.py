"""The name rules in mesh.core.validate are character sets, not regular expressions (`re` stays out of
meshctl's hot verbs): each accepts exactly what its regular expression (as the rule was first written)
accepts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.core import validate
from mesh.errors import InvalidInput

RULES = {
    "name": r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    "ident": r"[A-Za-z0-9_-]{1,64}",
    "type": r"[a-z][a-z0-9_-]{0,31}",
    "item": r"[A-Za-z0-9][A-Za-z0-9._/@:+-]{0,199}",
}
ALPHABET = "aZz09._-/@:+ *é١\x00\n%A"
TEXTS = (
    st.text(alphabet=ALPHABET, max_size=70)
    | st.sampled_from(["a" * 64, "a" * 65, "-a", ".a", "_a", "a" * 200, "a" * 201, "a" * 32, "a" * 33, "a\n"])
    | st.text(max_size=5)
)


def accepts(rule: str, text: str) -> bool:
    check = {
        "name": lambda: validate.name(text),
        "ident": lambda: validate.ident(text),
        "type": lambda: validate.resource_name(text, "x"),
        "item": lambda: validate.resource_name("service", text),
    }[rule]
    try:
        check()
    except InvalidInput:
        return False
    return True


@pytest.mark.parametrize("rule", sorted(RULES))
@settings(max_examples=400, deadline=None)
@given(text=TEXTS)
def test_each_rule_accepts_what_its_regular_expression_accepts(rule: str, text: str) -> None:
    want = re.fullmatch(RULES[rule], text) is not None
    if rule == "item":
        want = want and "//" not in text and not text.endswith("/")
    assert accepts(rule, text) == want
    if rule == "name":
        assert validate.is_name(text) == want


@pytest.mark.parametrize("value", [None, 7, b"abc", ["a"]])
def test_a_value_that_is_not_text_is_refused(value: object) -> None:
    assert not validate.is_name(value)
    with pytest.raises(InvalidInput):
        validate.name(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        validate.ident(value)  # type: ignore[arg-type]
