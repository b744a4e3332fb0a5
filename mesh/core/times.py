"""Wall-clock times as every face of the API shows them: RFC 3339 UTC strings with milliseconds."""

from __future__ import annotations

_YEAR_10000 = 253402300800  # unix seconds of 10000-01-01: beyond, datetime's range (it refuses those)


def iso(t: float | None) -> str | None:
    """Unix seconds -> `2026-11-25T04:39:53.885Z` (None for no time: None, 0 or negative).

    The same string as `datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")` with `Z`, built
    by hand: importing datetime is ~1.2 ms of a `meshctl status --json` (tests/core/test_times.py holds the
    two equal). As datetime does, the fraction is rounded half-even to microseconds, then cut to millis."""
    if t is None or t <= 0:
        return None
    if t >= _YEAR_10000:
        import datetime as _dt

        return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds")  # it refuses
    secs = int(t)
    micros = round((t - secs) * 1e6)  # t - secs is exact; round() is half-even, as CPython's timestamp
    if micros >= 1_000_000:
        secs += 1
        micros -= 1_000_000
    days, rest = divmod(secs, 86400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    year, month, day = _civil(days)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{micros // 1000:03d}Z"


def _civil(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's civil_from_days)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day
