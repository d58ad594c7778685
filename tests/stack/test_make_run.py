"""`make run` (scripts/run_stack.py) end to end: real exporter, demo, Prometheus and Alertmanager."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from processes import ALERTMANAGER_BINARIES, PYTHON, REPO, binary, free_port, spawn, wait_until
from prometheus_client.parser import text_string_to_metric_families

RUN_STACK = REPO / "scripts/run_stack.py"

pytestmark = pytest.mark.slow


def get_json(url: str):
    """The JSON at `url`, or None while the server is busy or not answering (polled again)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)
    except OSError:
        return None


def demo_requests(metrics_url: str) -> float:
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "pipeline_requests_total" and s.labels.get("service") == "rag-demo")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class RunStack:
    """scripts/run_stack.py as `make run` starts it, on free ports, output to a file."""

    def __init__(self, tmp_path: Path, env: dict | None = None):
        self.ports = {name: free_port() for name in ("OTLP_GRPC", "OTLP_HTTP", "WEB", "PROMETHEUS", "ALERTMANAGER")}
        self.run_dir = tmp_path / "run"
        self.process = spawn([PYTHON, str(RUN_STACK)], tmp_path, "run_stack", cwd=REPO,
                             env={"SPANSCOPE_RUN_DIR": str(self.run_dir), "SPANSCOPE_RUN_SCRAPE_INTERVAL": "2s",
                                  "SPANSCOPE_RUN_SUMMARY_SECONDS": "1", "SPANSCOPE_RUN_RATE": "20",
                                  **{f"SPANSCOPE_RUN_{k}_PORT": str(v) for k, v in self.ports.items()}, **(env or {})})
        self.popen = self.process.popen
        self.web = f"http://127.0.0.1:{self.ports['WEB']}"
        self.prometheus = f"http://127.0.0.1:{self.ports['PROMETHEUS']}"
        self.alertmanager = f"http://127.0.0.1:{self.ports['ALERTMANAGER']}"

    def output(self) -> str:
        return self.process.log()

    def child_pids(self) -> dict[str, int]:
        path = self.run_dir / "pids.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def running(self):
        assert self.popen.poll() is None, f"run_stack exited {self.popen.returncode}:\n{self.output()}"
        return True

    def kill_everything(self):
        """Cleanup after a failed test: nothing may outlive it."""
        for pid in [self.popen.pid, *self.child_pids().values()]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)


@pytest.mark.parametrize("args, expected", [((), ""), (("SCENARIO=error_burst",), " --scenario error_burst")])
def test_make_run_is_run_stack_with_the_scenario_asked_for(args, expected):
    """The README's `make run` and `make run SCENARIO=…` are the script the tests below start (a Makefile
    default of another target's SCENARIO once made plain `make run` fail)."""
    out = subprocess.run(["make", "-s", "-n", "-C", str(REPO), "run", "VENV=/venv", "-o", "/venv/.installed-run",
                          *args], capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert out[-1] == f"/venv/bin/python scripts/run_stack.py{expected}".strip(), out


@pytest.fixture
def exporter_available():
    try:
        import spanscope.cli  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the exporter is not importable yet: {exc}")


def test_make_run_starts_the_stack_and_ctrl_c_stops_all_of_it(tmp_path, exporter_available):
    if not (binary("prometheus") and binary(*ALERTMANAGER_BINARIES)):
        pytest.skip("needs Prometheus and Alertmanager: sudo apt-get install prometheus prometheus-alertmanager")
    stack = RunStack(tmp_path)
    try:
        wait_until(lambda: stack.running() and "Ctrl-C stops everything" in stack.output(), timeout=120,
                   what="run_stack ready banner")
        out = stack.output()
        for url in (stack.web + "/metrics", stack.web + "/api/features", stack.web + "/features",
                    stack.prometheus, stack.alertmanager):
            assert url in out
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200, url
        pids = stack.child_pids()
        assert set(pids) == {"exporter", "demo", "prometheus", "alertmanager"}

        # The demo's requests reach the exporter ...
        wait_until(lambda: demo_requests(stack.web + "/metrics") > 20, timeout=60, what="demo requests counted")
        # ... and Prometheus scrapes them with the project's config (job from prometheus.yml).
        query = urllib.parse.urlencode({"query": 'pipeline_requests_total{service="rag-demo"}'})

        def scraped():
            answer = get_json(f"{stack.prometheus}/api/v1/query?{query}")
            result = answer and answer["data"]["result"]
            return result and {r["metric"]["job"] for r in result}
        jobs = wait_until(scraped, timeout=60, what="Prometheus has the demo's requests")
        assert jobs == {"spanscope"}
        # Rules are loaded and alerts reach Alertmanager over loopback (Watchdog always fires).
        def rule_groups():
            return ((get_json(f"{stack.prometheus}/api/v1/rules") or {}).get("data") or {}).get("groups")
        groups = wait_until(rule_groups, timeout=30, what="the project's rule files loaded")
        assert {r.get("name") for g in groups for r in g["rules"]} >= {"Watchdog"}
        wait_until(lambda: any(a["labels"]["alertname"] == "Watchdog"
                               for a in get_json(f"{stack.alertmanager}/api/v2/alerts") or []),
                   timeout=90, what="Watchdog in Alertmanager")
        # The live summary is printed.
        wait_until(lambda: "req/s" in stack.output(), timeout=30, what="a summary line")

        stack.popen.send_signal(signal.SIGINT)
        assert stack.popen.wait(60) == 0, stack.output()
        assert "stopped." in stack.output()
        for name, pid in pids.items():
            assert not group_alive(pid), f"{name} (process group {pid}) outlived make run"
        assert not group_alive(stack.popen.pid)
    finally:
        stack.kill_everything()


def test_without_prometheus_it_runs_exporter_and_demo_and_says_how_to_get_the_rest(tmp_path, exporter_available):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    stack = RunStack(tmp_path, env={"PATH": str(empty_bin)})  # no prometheus on PATH
    try:
        wait_until(lambda: stack.running() and "Ctrl-C stops everything" in stack.output(), timeout=120,
                   what="run_stack ready banner")
        assert "sudo apt-get install prometheus prometheus-alertmanager" in stack.output()
        pids = stack.child_pids()
        assert set(pids) == {"exporter", "demo"}
        assert demo_requests(stack.web + "/metrics") > 0
        stack.popen.send_signal(signal.SIGTERM)
        assert stack.popen.wait(60) == 0, stack.output()
        assert not any(group_alive(pid) for pid in pids.values())
    finally:
        stack.kill_everything()


def test_a_busy_port_is_reported_before_anything_starts(tmp_path, exporter_available):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        stack = RunStack(tmp_path, env={"SPANSCOPE_RUN_WEB_PORT": str(busy.getsockname()[1])})
        try:
            assert stack.popen.wait(60) == 1
            assert f"web port {busy.getsockname()[1]}" in stack.output()
            assert stack.child_pids() == {}
        finally:
            stack.kill_everything()


def firing(alerts: list[dict], severity: str) -> list[dict]:
    """Firing alerts of `severity`, from Prometheus' /api/v1/alerts or Alertmanager's /api/v2/alerts."""
    return [a for a in alerts if a["labels"].get("severity") == severity
            and (a.get("state") == "firing" or a.get("status", {}).get("state") == "active")]


def test_make_run_with_a_fault_scenario_pages_within_three_minutes(tmp_path, exporter_available):
    """`make run SCENARIO=error_burst` as README's second thing to try: its printed links answer, and a
    critical alert fires in Prometheus and reaches Alertmanager within three minutes of the start,
    with the intervals and `for`s make run chooses (no test overrides)."""
    if not (binary("prometheus") and binary(*ALERTMANAGER_BINARIES)):
        pytest.skip("needs Prometheus and Alertmanager: sudo apt-get install prometheus prometheus-alertmanager")
    started = time.monotonic()
    stack = RunStack(tmp_path, env={"SPANSCOPE_RUN_SCENARIO": "error_burst", "SPANSCOPE_RUN_SCRAPE_INTERVAL": "",
                                    "SPANSCOPE_RUN_RATE": "10"})
    try:
        wait_until(lambda: stack.running() and "Ctrl-C stops everything" in stack.output(), timeout=120,
                   what="run_stack ready banner")
        out = stack.output()
        banner = out[out.index("spanscope is running"):]
        first_url = re.search(r"http://\S+", banner).group(0)
        assert first_url == stack.web + "/" and "open this first" in banner.splitlines()[1]
        for url in re.findall(re.escape(stack.prometheus) + r"/\S+", banner):
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200, url
        assert f"amtool --alertmanager.url={stack.alertmanager} alert query" in banner or \
            f"Alertmanager  {stack.alertmanager}" in banner

        def paged(url):
            return lambda: firing(get_json(url) or [], "critical") if url.endswith("v2/alerts") else \
                firing(((get_json(url) or {}).get("data") or {}).get("alerts") or [], "critical")
        left = lambda: 180 - (time.monotonic() - started)  # noqa: E731
        in_prometheus = wait_until(paged(stack.prometheus + "/api/v1/alerts"), timeout=left(), interval=1,
                                   what="a critical alert firing in Prometheus")
        assert all(a["annotations"]["dashboard_url"] == stack.web + "/" for a in in_prometheus)
        names = {a["labels"]["alertname"] for a in in_prometheus}
        in_alertmanager = wait_until(paged(stack.alertmanager + "/api/v2/alerts"), timeout=left(), interval=1,
                                     what="the critical alert in Alertmanager")
        assert names & {a["labels"]["alertname"] for a in in_alertmanager}
    finally:
        stack.kill_everything()


def test_feature_state_and_interactions_survive_a_restart_in_the_run_directory(tmp_path, exporter_available):
    """Ctrl-C and `make run` again with the same run directory: a feature toggled off stays off and
    the interactions stored before are still there."""
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {"PATH": str(empty_bin)}  # exporter and demo only: Prometheus plays no part here

    def run_once(check):
        stack = RunStack(tmp_path, env=env)
        try:
            wait_until(lambda: stack.running() and "Ctrl-C stops everything" in stack.output(), timeout=120,
                       what="run_stack ready banner")
            check(stack)
            stack.popen.send_signal(signal.SIGINT)
            assert stack.popen.wait(60) == 0, stack.output()
        finally:
            stack.kill_everything()

    def first(stack):
        request = urllib.request.Request(stack.web + "/api/features/rag_weather", method="PUT",
                                         data=b'{"enabled": false}', headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.load(resp)["enabled"] is False
        wait_until(lambda: demo_requests(stack.web + "/metrics") > 20, timeout=60, what="demo requests counted")

    run_once(first)
    with contextlib.closing(sqlite3.connect(tmp_path / "run" / "interactions.db")) as db:
        (trace_id,) = db.execute("SELECT trace_id FROM interactions LIMIT 1").fetchone()

    def second(stack):
        assert get_json(stack.web + "/api/features/rag_weather")["enabled"] is False
        assert get_json(f"{stack.web}/api/v1/interactions/{trace_id}")["trace_id"] == trace_id
    run_once(second)
