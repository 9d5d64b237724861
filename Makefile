# `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: test test-clientlibs demo lint typecheck prometheus bench bench-instructions bench-profile \
	bench-venvs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The client libraries of tests/test_client_libraries.py come with the test deps: those that
# resolve to the newest openai here (`clientlibs`), those pinned to an older major in that
# major's venv below (`clientlibs-openai2`).
$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,clientlibs,prices]'
	touch $@

# The patch tests also run against the newest release of each older openai major, with the
# client libraries that need that major (extra `clientlibs-openai<major>`, where there is one).
.venv-openai%/.test-deps: pyproject.toml
	$(PYTHON) -m venv .venv-openai$*
	.venv-openai$*/bin/python -m pip install -q --upgrade pip
	.venv-openai$*/bin/python -m pip install -q -e '.[test$(CLIENTLIBS_EXTRA_$*)]' "openai>=$*,<$$(($*+1))"
	touch $@

OPENAI_MAJORS := 1 2
CLIENTLIBS_EXTRA_2 := ,clientlibs-openai2
PATCH_TESTS_1 := tests/test_openai_patch.py
PATCH_TESTS_2 := tests/test_openai_patch.py tests/test_openai_videos.py tests/test_client_libraries.py

# The official OpenTelemetry OpenAI instrumentations that benchmarks/overhead.py compares
# failsight with, each in a venv of its own (their util-genai pins conflict), made from
# .venv's interpreter with .venv's openai and OpenTelemetry (its other packages as
# constraints), so every mode runs the same SDK: pins in benchmarks/requirements-<name>.txt.
BENCH_VENVS := .venv-bench-openai-v2 .venv-bench-genai-openai
.venv-bench-%/.deps: benchmarks/requirements-%.txt pyproject.toml $(VENV)/.test-deps
	rm -rf .venv-bench-$*
	$(BIN)/python -m venv .venv-bench-$*
	$(BIN)/python -m pip freeze --exclude-editable \
	  | grep -viE '^opentelemetry-(util-genai|instrumentation-[a-z-]*openai)' > .venv-bench-$*/constraints.txt
	.venv-bench-$*/bin/python -m pip install -q --disable-pip-version-check \
	  -e '.[testing]' -r $< -c .venv-bench-$*/constraints.txt
	touch $@
bench-venvs: $(foreach v,$(BENCH_VENVS),$(v)/.deps)

$(VENV)/.demo-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo]'
	touch $@

# Real Prometheus and promtool come from the Debian package, as does valgrind (the benchmarks'
# instruction counts); installed when missing and root.
prometheus:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1 \
	    || ! command -v valgrind >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus valgrind </dev/null; \
	  else \
	    echo "prometheus/promtool/valgrind not found: install the 'prometheus' and 'valgrind' packages (tests needing them fail)"; \
	  fi; \
	fi

# tests/test_grafana_schema.py: @grafana/schema and typescript from npm, as locked. Without
# npm, or when `npm ci` fails, that test skips (and fails under CI).
GRAFANA_SCHEMA_DEPS := tests/grafana_schema/node_modules/.package-lock.json
$(GRAFANA_SCHEMA_DEPS): tests/grafana_schema/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  (cd tests/grafana_schema && npm ci --no-audit --no-fund) || [ -z "$$CI" ]; \
	else \
	  echo "npm not found: install Node.js and npm for the Grafana schema check"; [ -z "$$CI" ]; \
	fi

# The OpenTelemetry Collector that runs otel-collector.yaml in tests/test_collector_e2e.py,
# and for users without Docker: `make collector`, then `bin/otelcol-failsight --config
# otel-collector.yaml`. Built with Go from deploy/collector/ (modules from the Go module proxy,
# kept in Go's module and build caches between runs); rebuilt only when its sources change.
.PHONY: collector
COLLECTOR := bin/otelcol-failsight
COLLECTOR_SRC := $(wildcard deploy/collector/*.go) deploy/collector/go.mod deploy/collector/go.sum
collector: $(COLLECTOR)
	@echo "$(COLLECTOR): up to date ($$(cat $(COLLECTOR).build-time 2>/dev/null))"
$(COLLECTOR): $(COLLECTOR_SRC)
	@command -v go >/dev/null 2>&1 || { echo "go not found: install Go to build the collector (make collector)"; exit 1; }
	@mkdir -p bin
	@echo "building $@ from deploy/collector/ ($$(go version | cut -d' ' -f3)): first build downloads and compiles, a few minutes"
	@start=$$(date +%s); \
	  (cd deploy/collector && go build -mod=readonly -trimpath -buildvcs=false -ldflags='-s -w' -o ../../$@.tmp .) \
	  && mv $@.tmp $@ \
	  && secs=$$(( $$(date +%s) - start )) \
	  && echo "built in $$secs s on $$(date -u +%FT%TZ)" > $@.build-time \
	  && echo "$@: built in $$secs s"
test: collector

lint: $(VENV)/.test-deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

test: $(VENV)/.test-deps prometheus lint typecheck $(foreach m,$(OPENAI_MAJORS),.venv-openai$(m)/.test-deps) $(GRAFANA_SCHEMA_DEPS) bench-venvs js-test
	$(BIN)/python -m pytest
	@for m in $(OPENAI_MAJORS); do \
	  echo "== patch tests against openai $$(.venv-openai$$m/bin/python -c 'import openai; print(openai.__version__)')"; \
	  tests="$(PATCH_TESTS_1)"; [ $$m -ge 2 ] && tests="$(PATCH_TESTS_2)"; \
	  .venv-openai$$m/bin/python -m pytest -q $$tests || exit 1; \
	done

# Only the client-library tests (marker `clientlibs`), in every venv that has some of them.
test-clientlibs: $(VENV)/.test-deps .venv-openai2/.test-deps
	$(BIN)/python -m pytest -q -m clientlibs tests/test_client_libraries.py
	.venv-openai2/bin/python -m pytest -q -m clientlibs tests/test_client_libraries.py

demo: $(VENV)/.demo-deps
	$(BIN)/failsight demo

# The Node.js package (js/): locked deps, typecheck, build, its tests against the fault server
# (python -m failsight.testing from .venv), the conformance cases included.
.PHONY: js-test demo-js
js-test: $(VENV)/.test-deps
	cd js && npm ci --no-audit --no-fund && npx tsc --noEmit && npm run build \
	  && FAILSIGHT_PYTHON=$(abspath $(BIN))/python node --expose-gc --test --test-concurrency=1 test/

demo-js: $(VENV)/.test-deps
	cd js && npm ci --no-audit --no-fund && npm run build && FAILSIGHT_PYTHON=$(abspath $(BIN))/python node demo/demo.mjs

# failsight next to the official instrumentations (bench-venvs), recorded and sampled out,
# each mode in its own process: CPU time, which wanders on a shared machine.
bench: $(VENV)/.test-deps bench-venvs
	$(BIN)/python benchmarks/overhead.py

# The same table counted in instructions under valgrind (Debian package `valgrind`), the same
# on every run; the modes run side by side, one per CPU.
bench-instructions: $(VENV)/.test-deps bench-venvs
	$(BIN)/python benchmarks/overhead.py --rounds 5 --calls 100 --instructions

# Where each mode's instructions go: callgrind's inclusive counts of the top Python functions
# (benchmarks/pyprofile.py builds a small C extension: needs cc and Python's headers).
bench-profile: $(VENV)/.test-deps bench-venvs
	$(BIN)/python benchmarks/overhead.py --calls 40 --profile

clean:
	rm -rf $(VENV) .venv-openai* .venv-bench-* .mypy_cache .ruff_cache .pytest_cache
