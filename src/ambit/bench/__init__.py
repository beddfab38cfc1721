"""Benchmarks: side-by-side measurements of ambit's data path, run as separate OS processes."""
