"""Benchmark harness: sections measure, `bench.report` renders, `python -m bench.run` drives them."""
