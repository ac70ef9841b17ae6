# The two Quick start commands: `make demo` (install + run the whole job on the demo corpus) and `make test`.
.PHONY: setup demo test test-fast lint bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/moclip demo --out demo-out

test: setup
	.venv/bin/python -m pytest -q

# the unit tests: no Prefect server, no Dask cluster, no CLI subprocess, nothing slow (under 2 minutes)
test-fast: setup
	.venv/bin/python -m pytest -q -m "not integration and not slow"

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python bench/run_all.py
