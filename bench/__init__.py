"""Benchmarks: `python -m bench [NAME...]` (see bench/__main__.py). Results go to bench/RESULTS.md by hand.

Benchmarks measure; they never assert timings inside the unit-test suite."""
