"""Benchmarks (not tests): run by hand, e.g. `python -m bench.lengths`."""
