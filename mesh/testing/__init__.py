"""Test helpers shipped with the mesh, for our tests and for users': a manual clock and more."""

from mesh.testing.clock import ManualClock

__all__ = ["ManualClock"]
