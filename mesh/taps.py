"""Taps: code installed from outside, before a node starts, that sees or filters what its runtime does.

Production installs none. The tests inject faults this way: their entry module (tests/integration/meshctl.py)
adds a frame filter that drops frames between the two sides of a partition, or loses control answers after
the node acted on them, then runs the real `meshctl`.
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


ReplyLoss = Callable[[str], bool]
"""(control API method) -> True to lose this call's answer after the node carried the call out, as a
stream that breaks at that moment would ("Stream removed": the caller cannot know it was done)."""

_reply_losses: list[ReplyLoss] = []


def add_reply_loss(lose: ReplyLoss) -> None:
    """Consult `lose` after every control call of this process's node (see ReplyLoss)."""
    _reply_losses.append(lose)


def lose_reply(method: str) -> bool:
    """Whether a tap wants this call's answer lost."""
    return any(lose(method) for lose in _reply_losses)
