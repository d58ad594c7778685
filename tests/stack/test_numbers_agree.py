"""The metrics API and PromQL agree on the same traffic: a real Prometheus scraping a real exporter
that receives the demo's spans.

While the demo sends at a steady rate, the API's 60-minute request rate (divided by the time the
exporter has been up, not by the hour) matches Prometheus' rate over the last minute. Once the demo
has finished and Prometheus has scraped the final counters, the totals, the error ratio, the
response cache hit ratio (per request) and the total cost are the same numbers on both sides, and
the API's models are the models Prometheus' cost counters name (the response model, never the
request model of a failed call).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.parse
import urllib.request

import pytest

from processes import spawn, start_exporter, start_prometheus, wait_until

pytestmark = pytest.mark.slow
RATE = 20  # demo requests per second


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def promql(prom: str, expr: str) -> dict[tuple, float]:
    """Instant query: {label values tuple: value}."""
    doc = get(f"{prom}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in doc["data"]["result"]}


def scalar(prom: str, expr: str) -> float | None:
    result = promql(prom, expr)
    return next(iter(result.values())) if result else None


def exported_requests(metrics_url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "pipeline_requests_total")


def test_api_and_promql_agree_on_the_same_traffic(tmp_path):
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: `make test` installs it (scripts/system-deps.sh)")
    exporter = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}})
    demo = prom = None
    try:
        target = exporter.urls["web"][len("http://"):]
        prom = start_prometheus(tmp_path, {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "spanscope", "static_configs": [{"targets": [target]}]}],
        })
        p = prom.urls["web"]
        demo = spawn([sys.executable, "-m", "spanscope_demo", "--endpoint", exporter.urls["http"],
                      "--api", exporter.urls["web"], "--rate", str(RATE), "--scenario", "error_burst",
                      "--seed", "11", "--duration", "45"], tmp_path, "demo")
        api = exporter.urls["web"] + "/api/metrics"
        started = time.monotonic()

        # Steady traffic: the API's 60-minute rate is the rate of the minute the exporter has been up.
        wait_until(lambda: (scalar(p, "sum(rate(pipeline_requests_total[30s]))") or 0) > RATE * 0.5
                   and time.monotonic() - started > 35,
                   timeout=90, interval=1, what="35 s of steady traffic in Prometheus")
        from_api = get(api + "/dashboard?time_window_minutes=60")["data"]["requests_per_second"]
        from_prometheus = scalar(p, "sum(rate(pipeline_requests_total[30s]))")
        assert from_api == pytest.approx(from_prometheus, rel=0.3), (from_api, from_prometheus)

        # The demo has finished and Prometheus has the final counters: the same numbers.
        assert demo.popen.wait(120) == 0, demo.log()
        final = exported_requests(exporter.urls["metrics"])
        wait_until(lambda: scalar(p, "sum(pipeline_requests_total)") == final, timeout=30, interval=0.5,
                   what="Prometheus scraped the final counters")
        dashboard = get(api + "/dashboard?time_window_minutes=60")["data"]
        costs = get(api + "/costs?time_window_minutes=60")["data"]
        assert dashboard["requests"] == final
        assert dashboard["error_rate"] == pytest.approx(
            scalar(p, 'sum(pipeline_requests_total{status="error"}) / sum(pipeline_requests_total)'))
        assert dashboard["cache_hit_ratio"] == pytest.approx(scalar(
            p, 'sum(pipeline_requests_total{cache_status="hit"})'
               ' / sum(pipeline_requests_total{cache_status=~"hit|miss"})'))
        by_model = {dict(k)["model"]: v for k, v in promql(p, "sum by (model) (llm_cost_usd_total)").items()}
        assert costs["total_usd"] == pytest.approx(sum(by_model.values()))
        # Per model too: each call's cost on the model it called, in both.
        assert {m: c["cost_usd"] for m, c in costs["by_model"].items() if c["cost_usd"] > 0} == \
            pytest.approx({m: v for m, v in by_model.items() if v > 0})
    finally:
        for proc in (demo, prom, exporter):
            if proc is not None:
                proc.stop()
