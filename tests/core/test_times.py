"""`iso` is datetime's RFC 3339 string, built without importing datetime (meshctl's start-up)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from mesh.core.times import iso


def by_datetime(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.floats(min_value=1e-9, max_value=253402300799.9, allow_nan=False))
def test_iso_is_datetimes(t: float) -> None:
    assert iso(t) == by_datetime(t)


@given(st.integers(min_value=1, max_value=253402300798), st.integers(min_value=0, max_value=999_999))
def test_iso_at_microsecond_edges(secs: int, micros: int) -> None:
    for t in (secs + micros / 1e6, secs + (micros + 0.5) / 1e6, secs + 0.9999995, float(secs)):
        assert iso(t) == by_datetime(t), t


def test_iso_edges() -> None:
    assert iso(None) is None and iso(0) is None and iso(-1.0) is None
    assert iso(1) == "1970-01-01T00:00:01.000Z"
    assert iso(1764478793.8851) == by_datetime(1764478793.8851)
    for t in (951782400.0, 951868799.9995, 4107542400.0, 253402300799.9999):  # leap days, rounding over
        assert iso(t) == by_datetime(t), t
