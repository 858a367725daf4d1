# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make demo` installs the core only (what a DuckDB sync, the receiver and the simulator
# need); `make test` adds every extra the tests exercise and the development tools.
CORE_STAMP := $(VENV)/.installed-core
TEST_STAMP := $(VENV)/.installed-test
TEST_EXTRAS := all,dev

.PHONY: demo test lint format simulator bench dist dist-check clean dbt-package

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(CORE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $@ $(CORE_STAMP)

demo: $(CORE_STAMP)
	$(BIN)/ogsync demo

simulator: $(CORE_STAMP)
	$(BIN)/ogsync simulator serve

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench

format: $(TEST_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# The dbt package's sources and staging models, written again from the data dictionary.
dbt-package: $(TEST_STAMP)
	$(BIN)/python -m ogsync.analytics.generate

bench: $(TEST_STAMP)
	$(BIN)/python bench/simulator.py

# The sdist, and the wheel built from it, in dist/.
dist: $(TEST_STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

# The wheel as a user gets it: installed (not editable) in a clean virtual environment with
# no extras, then `ogsync --version`, `ogsync --help` and the demo run from it.
dist-check: dist
	bash .ci/check-wheel dist

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist
