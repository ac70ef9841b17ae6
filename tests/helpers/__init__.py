"""Helpers shared by the tests (and by bench/bench_memory.py): real videos, small indexed datasets, the CLI as a
user runs it, and processes started and stopped by the tests. One place for each."""
