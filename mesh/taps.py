"""Taps: code installed from outside, before a node starts, that sees or filters what its runtime does.

Production installs none. The tests inject faults this way: their entry module (tests/integration/meshctl.py)
adds a frame filter that drops frames between the two sides of a partition, then runs the real `meshctl`.
A tap is process-wide: every node this process starts afterwards consults it.
"""

from __future__ import annotations

from collections.abc import Callable

FrameFilter = Callable[[str, str], bool]
"""(this node's name, the sending peer's name) -> True to drop the frame as if the network lost it."""

_frame_filters: list[FrameFilter] = []


def add_frame_filter(drop: FrameFilter) -> None:
    """Consult `drop` for every frame a peer sends to a node started after this call."""
    _frame_filters.append(drop)


def frame_filters() -> tuple[FrameFilter, ...]:
    """The filters installed so far (a runtime takes them when it is built)."""
    return tuple(_frame_filters)
