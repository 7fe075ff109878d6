# The two commands that matter: `make demo` and `make test`. Everything else is a building block of those.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint unit venv system-deps lab-build lab-up lab-down lab-status bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the lab and the PostgreSQL tests need (iproute2, iptables, ipset, conntrack, postgresql...).
system-deps:
	bash tests/lab/install-deps.sh

# The lab's Go binaries and Helm (for the chart tests), built once and cached outside the repo
# (~/.cache/netpol-drift-lab/<name>-<version>).
lab-build: system-deps
	bash tests/lab/build.sh

lab-up: venv lab-build
	$(BIN)/python -m tests.lab up

lab-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tests.lab down; else $(PY) -m tests.lab down; fi

lab-status: venv
	$(BIN)/python -m tests.lab status

demo: venv
	bash config/examples/demo.sh $(BIN)

lint: venv
	$(BIN)/ruff check .

# Everything: lint, unit, conformance, PostgreSQL and lab tests. pytest's exit 5 (no tests) fails the target.
test: venv system-deps lab-build lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Fast loop while developing: no lab, no PostgreSQL.
unit: venv
	$(BIN)/python -m pytest -m "not lab and not postgres" $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
