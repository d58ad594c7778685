"""The metrics and insights API over HTTP on a running exporter, and the insights command line."""
import subprocess
import sys
import uuid

import pytest

from http_helpers import call
from processes import start_exporter, wait_until
from sdk import emit, http_exporter, provider, scrape, value


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    proc = start_exporter(tmp_path_factory.mktemp("metrics"), {"traces": {"finish_delay": 0.05}})
    service = f"m-{uuid.uuid4().hex[:6]}"
    tp = provider(http_exporter(proc.urls["http"]), service)
    tracer = tp.get_tracer("t")
    for i in range(30):
        emit(tracer, ("gateway", 0, 100 + i, {"pipeline.component": "gateway", "pipeline.mode": "chat"}, [
            ("slow feature", 0, 60, {"pipeline.component": "context", "pipeline.feature": "conversation_context"}),
            ("llm", 60, 90, {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                             "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1000,
                             "gen_ai.usage.output_tokens": 100})]))
    tp.shutdown()
    wait_until(lambda: value(scrape(proc.urls["web"]), "pipeline_requests_total", service=service) == 30)
    yield proc, service
    proc.stop()


@pytest.mark.parametrize("view", ["dashboard", "performance", "costs", "quality", "cache", "health"])
def test_every_view_shares_the_envelope(fed, view):
    proc, service = fed
    status, doc = call("GET", f"{proc.urls['web']}/api/metrics/{view}?time_window_minutes=5&service={service}")
    assert status == 200
    assert set(doc) == {"timestamp", "window", "version", "filters", "data"}
    assert doc["window"]["minutes"] == 5 and doc["filters"]["service"] == service


def test_numbers_over_http(fed):
    proc, service = fed
    _, doc = call("GET", f"{proc.urls['web']}/api/metrics/performance?time_window_minutes=5&service={service}")
    data = doc["data"]
    assert data["requests"] == 30 and data["error_rate"] == 0
    assert data["components"]["llm_inference"]["calls"] == 30
    _, doc = call("GET", f"{proc.urls['web']}/api/metrics/costs?time_window_minutes=5&service={service}")
    # gpt-4o-mini: 1000 × 0.15/M + 100 × 0.60/M = 0.00021 per request
    assert doc["data"]["total_usd"] == pytest.approx(30 * 0.00021)
    status, doc = call("GET", f"{proc.urls['web']}/api/metrics/costs?time_window_minutes=2")
    assert status == 400 and doc["error"].startswith("time_window_minutes:")
    assert call("GET", f"{proc.urls['web']}/api/metrics/nope")[0] == 404


def test_a_rating_for_an_unseen_interaction_leaves_the_views_answering(fed):
    """A user who rates before the trace has finished: the rating is stored (201), and every view of
    every window holding that minute still answers 200 (the dashboard and performance answered 500)."""
    proc, service = fed
    status, _ = call("POST", proc.urls["web"] + "/api/v1/feedback", {"interaction_id": uuid.uuid4().hex, "rating": 2})
    assert status == 201
    for view in ("dashboard", "performance", "quality", "health"):
        for window in (5, 60, 1440):
            status, doc = call("GET", f"{proc.urls['web']}/api/metrics/{view}?time_window_minutes={window}")
            assert status == 200, (view, window, doc)
    _, doc = call("GET", f"{proc.urls['web']}/api/metrics/dashboard?time_window_minutes=5")
    assert doc["data"]["requests"] == 30 and doc["data"]["average_rating"] == 2


def test_insights_command_line(fed):
    proc, _ = fed
    out = subprocess.run([sys.executable, "-m", "spanscope.cli", "insights", "--url", proc.urls["web"],
                          "--window", "5"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "RECOMMENDATION" in out.stdout
    assert "disabling conversation_context saves about 60 ms" in " ".join(out.stdout.split())
    bad = subprocess.run([sys.executable, "-m", "spanscope.cli", "insights", "--url", "http://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "cannot reach" in bad.stderr
