# spanscope: `make run` starts the stack on loopback, `make test` installs what it needs and tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast bench lint dashboards dialect-captures system-deps clean

# The package is installed in editable mode: only its metadata and the native reader need a reinstall.
$(STAMP): exporter/pyproject.toml exporter/setup.py exporter/spanscope/decode/_otlpwire.c \
          demo/pyproject.toml requirements-test.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e "exporter[fast,auth,postgres]" -e demo -r requirements-test.txt
	@touch $@

run: $(STAMP)
	$(PY) scripts/run_stack.py

system-deps:
	bash scripts/system-deps.sh

test: $(STAMP) system-deps
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) bench/run.py

dashboards: $(STAMP)
	$(PY) grafana/generate.py

# Each GenAI instrumentation in its own pinned virtualenv (.venv-dialects/) against the fake providers;
# refreshes tests/dialects/captures/. Not part of `make test` (its test_real_libraries.py builds the
# same virtualenvs on first use and checks the exporter's metrics from each).
dialect-captures: $(STAMP)
	$(PY) tests/dialects/capture.py

lint: $(STAMP) system-deps
	promtool check config prometheus/prometheus.yml
	promtool check rules --lint=all --lint-fatal prometheus/rules/*.yml
	amtool check-config alertmanager/alertmanager.yml
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .venv-dialects .pytest_cache
