"""Benchmarks for anju (not part of the installed package); see docs/BENCHMARKS.md."""
