"""Fixtures shared by the core tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def held() -> Iterator[list[int]]:
    """File descriptors a test holds open (a node's lock, say), closed when it ends."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)
