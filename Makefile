# `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: test demo lint typecheck prometheus bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.demo-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo]'
	touch $@

# Real Prometheus and promtool come from the Debian package; installed when missing and root.
prometheus:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus </dev/null; \
	  else \
	    echo "prometheus/promtool not found: install the 'prometheus' package (tests needing it fail under CI)"; \
	  fi; \
	fi

lint: $(VENV)/.test-deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

test: $(VENV)/.test-deps prometheus lint typecheck
	$(BIN)/python -m pytest

demo: $(VENV)/.demo-deps
	$(BIN)/failsight demo

bench: $(VENV)/.test-deps
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
