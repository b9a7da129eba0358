# Each target creates .venv on first use and installs the project with its test extra.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test,fast]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/kms-conformance run

lint: $(STAMP)
	$(VENV)/bin/ruff check conformance refkms tests bench
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -n 2 tests

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) reports/latest .pytest_cache .mypy_cache .ruff_cache
