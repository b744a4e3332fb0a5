"""`dumps` / `loads` as the standard library's `json` gives them, for meshctl's hot verbs, straight from
`json`'s own C accelerator (`_json`): importing the `json` package (its Python encoder, decoder and scanner
modules and their regular expressions) is ~1.2 ms of a `meshctl status`, which needs only these two calls.
The C functions are the ones `json` itself uses, so the text is the same (tests/core/test_json_lite.py);
without `_json` (another Python) this is `json` itself.

Differences, none of which our data can meet: no check for circular structures (a RecursionError rather
than a ValueError), and `loads` takes str or UTF-8 bytes only (json also guesses UTF-16/32).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "loads"]

_SPACE = " \t\n\r"


def _not_serializable(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


class _Context:
    """What `_json.make_scanner` reads off a decoder: json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


try:
    import _json

    _scan = _json.make_scanner(_Context)  # type: ignore[arg-type]  # typeshed wants a JSONDecoder
    _encoders: dict[tuple[bool, str, str], Any] = {}

    def dumps(obj: Any, *, ensure_ascii: bool = True, separators: tuple[str, str] = (", ", ": ")) -> str:
        """`json.dumps(obj, ensure_ascii=…, separators=…)`."""
        key = (ensure_ascii, *separators)
        enc = _encoders.get(key)
        if enc is None:
            escape = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
            item_sep, key_sep = separators
            enc = _encoders[key] = _json.make_encoder(
                None, _not_serializable, escape, None, key_sep, item_sep, False, False, True
            )
        return "".join(enc(obj, 0))

    def loads(text: str | bytes) -> Any:
        """`json.loads(text)` (ValueError for what is not one JSON document)."""
        s = text.decode() if isinstance(text, bytes) else text
        start = len(s) - len(s.lstrip(_SPACE))
        try:
            obj, end = _scan(s, start)
        except StopIteration as e:
            raise ValueError(f"Expecting value: char {e.value}") from None
        if s[end:].strip(_SPACE):
            raise ValueError(f"Extra data: char {end}")
        return obj

except (ImportError, AttributeError, TypeError):  # pragma: no cover - a Python without the accelerator

    def dumps(obj: Any, *, ensure_ascii: bool = True, separators: tuple[str, str] = (", ", ": ")) -> str:
        import json

        return json.dumps(obj, ensure_ascii=ensure_ascii, separators=separators)

    def loads(text: str | bytes) -> Any:
        import json

        return json.loads(text)
