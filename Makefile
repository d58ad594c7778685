# spanscope: `make run` starts the stack on loopback, `make test` installs what it needs and tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
PURE_TESTS := tests/exporter tests/economics tests/features tests/store tests/insights tests/robustness

.PHONY: run test test-fast bench lint dashboards system-deps clean

# Any change of the exporter's source reinstalls it: setup.py compiles the hot path from it.
$(STAMP): exporter/pyproject.toml exporter/setup.py exporter/spanscope/_otlpwire.c $(wildcard exporter/spanscope/*.py) \
          $(wildcard exporter/spanscope/*.pxd) \
          demo/pyproject.toml requirements-test.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e "exporter[fast,auth,postgres]" -e demo -r requirements-test.txt
	@touch $@

run: $(STAMP)
	$(PY) scripts/run_stack.py

system-deps:
	bash scripts/system-deps.sh

# Then the fast tests of the code the compiled modules come from, run as its Python source: what an
# install without a C compiler or Cython runs.
test: $(STAMP) system-deps
	$(PY) -m pytest
	SPANSCOPE_NO_COMPILED=1 $(PY) -m pytest -m "not slow" -q $(PURE_TESTS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) bench/run.py

dashboards: $(STAMP)
	$(PY) grafana/generate.py

lint: $(STAMP) system-deps
	promtool check config prometheus/prometheus.yml
	promtool check rules --lint=all --lint-fatal prometheus/rules/*.yml
	amtool check-config alertmanager/alertmanager.yml
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
