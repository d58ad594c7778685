# spanscope: `make run` starts the stack on loopback, `make test` installs what it needs and tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

# The package is installed in editable mode: only its metadata and the native reader need a reinstall.
# One progress line per step; pip says nothing more unless something fails (-qq also hides warnings
# about the machine's own pip configuration, e.g. find-links that do not exist here).
# `make run` installs what the stack runs (the exporter and the demo); `make test` adds the test tools.
PIP_INSTALL := PIP_DISABLE_PIP_VERSION_CHECK=1 $(PIP) install -qq
$(RUN_STAMP): exporter/pyproject.toml exporter/setup.py exporter/spanscope/decode/_otlpwire.c demo/pyproject.toml
	@test -x $(PY) || { echo "install 1/3: a virtualenv in $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "install 2/3: pip"
	@$(PIP_INSTALL) --upgrade pip
	@echo "install 3/3: spanscope and the demo (about a minute on a fresh clone)"
	@$(PIP_INSTALL) -e "exporter[fast,auth,postgres]" -e demo
	@touch $@

$(STAMP): $(RUN_STAMP) requirements-test.txt loadtest/requirements.txt
	@echo "install: the test tools (1-2 minutes on a fresh clone)"
	@$(PIP_INSTALL) -r requirements-test.txt
	@touch $@

# make run SCENARIO=error_burst: a fault scenario, with alerting sped up to watch its alert fire.
run: $(RUN_STAMP)
	@$(PY) scripts/run_stack.py $(if $(SCENARIO),--scenario $(SCENARIO))

system-deps:
	bash scripts/system-deps.sh

# One pass, the real GenAI instrumentations included (tests/dialects/test_real_libraries.py: their
# seven virtualenvs are built with uv, about 15 s on a fresh machine, then the setups run three at a
# time, about a minute). `make test-dialects` runs just those.
# Two pytest workers, each taking whole test files (a module's fixtures, e.g. the dialects' runs,
# start once, in one worker): most tests wait on the processes they start, so on two cores the
# suite takes about 11 minutes instead of 18. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: $(STAMP) system-deps
	$(PY) -m pytest $(PYTEST_PARALLEL)

test-dialects: $(STAMP)
	$(PY) -m pytest -m real_libraries

test-fast: $(STAMP)
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow"

bench: $(STAMP)
	$(PY) bench/run.py

# One load scenario (loadtest/scenarios.py), headless and bounded in time, then its report from the
# stack's metrics: make loadtest SCENARIO=baseline|peak|stress|batch [USERS=n] [DURATION=seconds]
# [RAMP=seconds] [BEYOND_USERS=n BEYOND=seconds (stress: users added after the run, 0: none)]
# [TARGET=http://demo:8000 EXPORTER=http://exporter:8889 PROMETHEUS=http://prometheus:9090] [OUT=dir]
# (SCENARIO defaults to baseline here only: `make run`'s SCENARIO is a demo scenario, none by default.)
loadtest: $(STAMP)
	SCENARIO=$(or $(SCENARIO),baseline) USERS=$(USERS) DURATION=$(DURATION) RAMP=$(RAMP) BEYOND_USERS=$(BEYOND_USERS) \
	BEYOND=$(BEYOND) TARGET=$(TARGET) EXPORTER=$(EXPORTER) PROMETHEUS=$(PROMETHEUS) OUT=$(OUT) $(PY) loadtest/run.py

dashboards: $(STAMP)
	$(PY) grafana/generate.py

# Each GenAI instrumentation in its own pinned virtualenv (.venv-dialects/) against the fake providers;
# refreshes tests/dialects/captures/. Not part of `make test`, which checks the committed captures
# and, in test_real_libraries.py, the exporter's metrics from each setup in the same virtualenvs.
dialect-captures: $(STAMP)
	$(PY) tests/dialects/capture.py

lint: $(STAMP) system-deps
	promtool check config prometheus/prometheus.yml
	promtool check rules --lint=all --lint-fatal prometheus/rules/*.yml
	amtool check-config alertmanager/alertmanager.yml
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .venv-dialects .pytest_cache
