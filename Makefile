# The README's two commands are `make demo` and `make test`; both set everything up first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: setup postgres test lint pytest demo stack bench bench-claims clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

postgres:
	@bash scripts/ensure-postgres.sh

setup: $(VENV)/.installed postgres

lint: $(VENV)/.installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/lint.sh

pytest: setup
	$(PY) -m pytest

test: lint pytest

demo: setup
	$(PY) scripts/demo.py

stack: setup
	$(PY) -m tests.devstack

# The performance budgets: the Action's table, the responsiveness table, following runs side by
# side with the seed's env_wait_ready.sh over REST and PostgreSQL (about 3 minutes), then the
# operator reads over a million finished runs ("Operator reads"). BENCHMARKS.md.
bench: setup
	$(PY) bench/perf_budget.py
	$(PY) bench/responsiveness.py
	$(PY) bench/follow_bench.py
	$(PY) bench/list_bench.py

# The worker's claim throughput/latency benchmark (BENCHMARKS.md, "Claiming").
bench-claims: setup
	$(PY) bench/claim_bench.py

clean:
	rm -rf $(VENV) .devstack.env .pytest_cache .mypy_cache .ruff_cache
