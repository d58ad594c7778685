"""A short baseline scenario end to end: make loadtest's runner starts the exporter and the demo in
serve mode, Locust sends a few users' sessions for seconds, and the report read from the stack must
agree with what was sent. The long scenarios are `make loadtest`, not tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # locust is not imported here: importing it monkey-patches the process with gevent (sockets,
    # threads, ssl), which breaks every test that runs after it in this pytest process.
    out = tmp_path_factory.mktemp("baseline")
    # Every answer rated, so the feedback path (interaction_id -> exporter) is exercised in seconds.
    env = {**os.environ, "LOADTEST_FEEDBACK_SHARE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "loadtest/run.py"), "--scenario", "baseline",
                           "--users", "4", "--duration", "15", "--no-prometheus", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=200)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr   # 1: a threshold failed on a loaded machine
    report = json.loads((out / "report.json").read_text())
    # Locust's own final figures, read here rather than through the report.
    locust = {e["name"]: e for e in json.loads((out / "locust.json").read_text())}
    return out, report, locust


def test_every_request_sent_was_answered_traced_and_counted(run):
    _, report, locust = run
    sent = locust["chat"]["num_requests"]
    assert sent > 0
    c = report["consistency"]
    assert c["client_requests"] == sent
    assert c["demo_answered"] == sent
    assert c["exporter_counted"] == sent


def test_spans_the_sdk_ended_all_reached_the_exporter(run):
    _, report, _ = run
    c = report["consistency"]
    assert c["spans_ended_by_sdk"] > report["consistency"]["exporter_counted"]   # several spans a request
    assert c["spans_not_exported_by_sdk"] == 0
    assert c["spans_received_by_exporter"] == c["spans_ended_by_sdk"]
    assert report["stack"]["spans_rejected"] == 0


def test_failed_answers_are_the_errors_the_exporter_counted(run):
    # The demo answers 503 exactly when the request's trace ends in error; Locust counts those as failures.
    _, report, locust = run
    assert report["stack"]["errors"] == locust["chat"]["num_failures"]


def test_ratings_name_interactions_the_exporter_knows(run):
    _, _, locust = run
    rated = locust.get("feedback", {}).get("num_requests", 0)
    assert rated > 0
    assert locust["feedback"]["num_failures"] == 0


def test_report_has_latencies_thresholds_and_explanation(run):
    out, report, _ = run
    latency = report["stack"]["latency_s"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert "gateway" in report["stack"]["components_s"]
    assert {c["check"] for c in report["checks"]} >= {"client p95 (Locust)", "span-derived p95 (exporter)"}
    assert report["metrics_api"]["dashboard"]["requests"] >= report["consistency"]["exporter_counted"]
    text = (out / "report.md").read_text()
    assert "Client-side and span-derived latency" in text
    assert (out / "latency.png").stat().st_size > 0
