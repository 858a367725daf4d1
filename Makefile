# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format simulator bench clean dbt-package

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,airflow,dbt]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ogsync demo

simulator: $(STAMP)
	$(BIN)/ogsync simulator serve

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# The dbt package's sources and staging models, written again from the data dictionary.
dbt-package: $(STAMP)
	$(BIN)/python -m ogsync.analytics.generate

bench: $(STAMP)
	$(BIN)/python bench/simulator.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
