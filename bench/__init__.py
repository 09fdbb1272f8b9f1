"""Benchmarks of the urbanstack broker (see README.md); not part of the package."""
