"""Test-wide settings: property tests are deterministic (the same examples every run), so CI cannot flake."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("mesh", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("mesh")
