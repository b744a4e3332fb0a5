"""`meshctl claim --ttl/--wait` durations are read by hand (no `re` in the hot verbs), exactly as the regular
expression they were first read with: the same values accepted, the same seconds, the same refusals."""

from __future__ import annotations

import argparse
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.cli.claim_cmds import duration

PATTERN = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def by_pattern(text: str) -> float | None:
    m = PATTERN.fullmatch(text.strip().lower())
    return None if m is None else float(m.group(1)) * UNIT[m.group(2)]


def by_hand(text: str) -> float | None:
    try:
        return duration(text)
    except argparse.ArgumentTypeError:
        return None


@pytest.mark.parametrize(
    "text",
    ["90m", "2h", "30s", "1d", "45", " 10M ", "1.5h", "1.", ".5", "1..5", "1.2.3", "", "m", "-5", "+5",
     "1e3", "1_000", "\u0661\u0665m", "²", "10ms", "10 m", "inf", "nan", "0", "00.00d", "7d", "1.5.", "5S"],
)  # fmt: skip
def test_known_spellings(text: str) -> None:
    assert by_hand(text) == by_pattern(text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789.smhdSMHD x-+e\u0661²_\t", max_size=8) | st.text(max_size=4))
def test_any_text_is_read_as_the_pattern_reads_it(text: str) -> None:
    assert by_hand(text) == by_pattern(text)
