# Each target creates .venv on first use and installs the project with its test extra.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench allure coverage clean

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

# Renders reports/latest/allure-results (written by `make run`) with the Allure 3 CLI
# from the npm registry (package "allure"); needs node/npx.
allure:
	@command -v npx >/dev/null 2>&1 || { echo "make allure: needs node and npx (e.g. apt-get install nodejs npm), then: npx --yes allure@3 generate reports/latest/allure-results -o reports/latest/allure-report"; exit 2; }
	@test -d reports/latest/allure-results || { echo "make allure: no reports/latest/allure-results yet; run 'make run' first"; exit 2; }
	npx --yes allure@3 generate reports/latest/allure-results -o reports/latest/allure-report
	@echo "open reports/latest/allure-report/index.html"

# testcases/COVERAGE.md is generated, never edited by hand.
coverage: $(STAMP)
	$(VENV)/bin/kms-conformance coverage --write

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) reports/latest .pytest_cache .mypy_cache .ruff_cache
