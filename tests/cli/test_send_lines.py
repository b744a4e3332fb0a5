"""`meshctl send -`'s input: the one-array parse of the common lines (`_plain_lines`) accepts only what the
line-by-line reading (`_each_line`) accepts, with the same values; anything else it declines, and the
line-by-line reading names the bad line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.cli.mail_cmds import _each_line, _plain_lines, parse_send_lines
from mesh.core.errors import InvalidInput


def _line(to: str = "b", subject: str = "s", body: str = "x", **more: object) -> str:
    return json.dumps({"to": to, "subject": subject, "body": body, **more})


def _as_columns(text: str) -> tuple[list[str | None], list[str], list[str], list[str], list[str]]:
    items = _each_line(text)
    return (
        [None if it.get("all") else it["to"] for it in items],
        [it["subject"] for it in items],
        [it["body"] for it in items],
        [it.get("reply_to") or "" for it in items],
        [it.get("key") or "" for it in items],
    )


def _check_agrees(text: str) -> None:
    """Whatever `_plain_lines` accepts, `_each_line` accepts with the same values; what `_plain_lines`
    declines is `parse_send_lines`'s line-by-line reading (the same answer or the same error)."""
    plain = _plain_lines(text)
    if plain is None:
        return
    got = (list(plain.to), list(plain.subjects), list(plain.bodies), list(plain.reply_tos), list(plain.keys))
    assert got == _as_columns(text)


def test_the_common_lines_take_the_one_array_parse() -> None:
    text = "".join(_line(subject=f"m {i}", body="é" * i) + "\n" for i in range(5))
    cols = _plain_lines(text)
    assert cols is not None
    assert list(cols.subjects) == [f"m {i}" for i in range(5)]
    assert list(cols.bodies) == ["é" * i for i in range(5)]
    assert list(cols.to) == ["b"] * 5
    assert list(cols.reply_tos) == list(cols.keys) == [""] * 5
    _check_agrees(text)
    assert _plain_lines(text.rstrip("\n")) is not None  # no newline after the last line


def test_lines_that_join_into_valid_objects_are_still_refused_by_line() -> None:
    # Lines 1-2 are one object split at a comma, line 3 two objects: as many objects as lines when joined
    # with a bare comma; the newline in the join (JSON allows none inside a string) keeps them apart.
    split_at_comma = '{"to": "b", "subject": "s"\n"body": "x"}\n'
    two = _line() + ", " + _line() + "\n"
    split_in_string = '{"to": "b", "subject": "s", "body": "a}\n{b"}\n'
    for text in (split_at_comma + two, split_in_string + two, two + split_at_comma):
        assert _plain_lines(text) is None
        with pytest.raises(InvalidInput, match="stdin line"):
            parse_send_lines(text)


@pytest.mark.parametrize(
    "text",
    [
        _line() + "\n\n" + _line() + "\n",  # a blank line
        _line() + "\r\n" + _line() + "\r\n",  # CRLF
        " " + _line() + "\n",  # space around the object
        _line(reply_to="m-1") + "\n",  # a fourth field
        '{"to": "b", "subject": "s"}\n',  # a field missing
        _line(body="a\u2028b") + "\n",  # a break splitlines cuts the line at
        _line(body="a\x85b") + "\n",
        json.dumps({"to": "b", "subject": "s", "body": "a\u2028b"}, ensure_ascii=False) + "\n",
        json.dumps({"to": "b", "subject": "s", "body": "a\x85b"}, ensure_ascii=False) + "\n",
        _line(body="a\x00b") + "\n",  # a NUL (escaped in the JSON)
        _line(subject="a\tb") + "\n",  # a control character in a subject
        _line(subject=" ") + "\n",
        _line(to="bad name") + "\n",
        _line(body="\ud800") + "\n",  # a lone surrogate
        '{"to": "b", "subject": 1, "body": "x"}\n',
        "[1, 2, 3]\n",
        "{" * 50_000 + "}" * 50_000 + "\n",  # too deep for the decoder
        "",
        "\n",
    ],
)
def test_anything_else_is_read_line_by_line(text: str) -> None:
    _check_agrees(text)
    try:
        want = _as_columns(text)
    except (InvalidInput, RecursionError) as e:
        with pytest.raises(type(e)) as refused:
            parse_send_lines(text)
        assert str(refused.value) == str(e)
        return
    cols = parse_send_lines(text)
    got = (list(cols.to), list(cols.subjects), list(cols.bodies), list(cols.reply_tos), list(cols.keys))
    assert got == want


_CHARS = ['"', "\\", "{", "}", ",", "\n", "\r", "\x85", "\u2028", "a", " ", "é", "\x00", "\t", ":"]
_TEXT = st.text(alphabet=st.sampled_from(_CHARS), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_TEXT, _TEXT, st.booleans(), st.booleans()), min_size=1, max_size=6))
def test_the_one_array_parse_never_accepts_what_line_by_line_refuses(
    parts: list[tuple[str, str, bool, bool]],
) -> None:
    lines = []
    for subject, body, raw, ascii in parts:
        line = json.dumps({"to": "b", "subject": subject or "s", "body": body}, ensure_ascii=ascii)
        lines.append(line if not raw else line[: len(line) // 2] + body + line[len(line) // 2 :])
    _check_agrees("\n".join(lines) + "\n")
