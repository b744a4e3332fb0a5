"""Wall-clock times as every face of the API shows them: RFC 3339 UTC strings with milliseconds."""

from __future__ import annotations


def iso(t: float | None) -> str | None:
    """Unix seconds -> `2026-11-25T04:39:53.885Z` (None for no time: None, 0 or negative)."""
    if t is None or t <= 0:
        return None
    import datetime as _dt  # here: a plain `meshctl status` shows no such time, and datetime is ~2 ms

    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
