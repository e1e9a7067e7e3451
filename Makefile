# The two commands of the README. Everything the project needs is installed from here:
# a fresh machine needs only Python 3.11, g++, make and perl (Verilator's build tools); `make test`
# also installs Debian's chromium (apt) for the report's browser test.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Each stamp records that its install step ran against the current pyproject.toml.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# pytest-xdist workers: both cores; Verilator builds are serialised per design by a file lock.
WORKERS ?= 2
# Debian's headless Chromium, for the browser test of the sweep report (root in CI, sudo elsewhere).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test test-fast lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

test: $(DEV_STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(WORKERS) --durations=10

# The fast tier only: Amaranth simulator and pure Python, no Verilator build.
test-fast: $(DEV_STAMP)
	$(BIN)/pytest -n $(WORKERS) -m "not verilator"

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache demo-out
