"""Exposition formats: promtool accepts the page, parsers agree, exact Decimal costs, overflow."""
import shutil
import subprocess
import time
import urllib.request
from decimal import Decimal

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from spanscope import config as config_mod
from spanscope.app import Exporter
from spanscope.metrics.exposition import render

from protospans import request, tree


@pytest.fixture
def pipeline():
    exp = Exporter(config_mod.load(overrides=["traces.finish_delay=0", "limits.max_series_per_metric=50",
                                              "limits.tenant_values=20"]))
    return exp


def feed(exp, spans, service="svc"):
    result = exp.ingest.process(request(spans, service), "http_protobuf")
    exp.ingest.finish_traces(everything=True)
    return result


FULL = ("gateway", 0, 900, {"pipeline.mode": "chat", "tenant.id": "t1", "pipeline.cache.status": "miss"}, [
    ("cache_lookup", 0, 5, {"pipeline.cache.name": "l1", "pipeline.cache.result": "miss", "pipeline.cache.size": 10,
                            "pipeline.cache.capacity": 100, "pipeline.cache.evictions": 2}),
    ("llm_inference", 10, 800, {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
                                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 980,
                                "gen_ai.usage.output_tokens": 245, "gen_ai.response.time_to_first_chunk": 0.2,
                                "_events": [("feature_flag.evaluation", {"feature_flag.key": "redis_caching",
                                                                         "feature_flag.result.variant": "on",
                                                                         "feature_flag.result.reason": "static"})]}),
    ("response_assembly", 800, 900, {"pipeline.quality.score": 0.8, "pipeline.quality.confidence": 0.9,
                                     "pipeline.quality.citations": 3, "pipeline.warnings": ["low_recall"],
                                     "pipeline.circuit_breaker.name": "llm", "pipeline.circuit_breaker.state": "closed",
                                     "pipeline.circuit_breaker.outcome": "success",
                                     "pipeline.fallback.from": "gpt-4o", "pipeline.fallback.to": "gpt-4o-mini",
                                     "pipeline.route.name": "small", "pipeline.route.reason": "cost"}),
])


def test_promtool_check_metrics_is_clean(pipeline, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run `make system-deps` (apt-get install prometheus)")
    feed(pipeline, tree(FULL))
    body = render(pipeline.store)
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b"", proc.stderr.decode()


def test_text_and_openmetrics_parse_to_the_same_samples(pipeline):
    feed(pipeline, tree(FULL))
    pipeline.store.collect()
    text = {(s.name, frozenset(s.labels.items())): s.value
            for f in parse_text(render(pipeline.store).decode()) for s in f.samples}
    om = {(s.name, frozenset(s.labels.items())): s.value
          for f in parse_openmetrics(render(pipeline.store, openmetrics=True).decode()) for s in f.samples}
    assert text == om
    svc = ("service", "svc")
    assert ("pipeline_cache_requests_total", frozenset({svc, ("cache", "l1"), ("result", "miss")})) in text
    assert text[("circuit_breaker_state", frozenset({svc, ("breaker", "llm"), ("state", "closed")}))] == 1
    assert text[("circuit_breaker_state", frozenset({svc, ("breaker", "llm"), ("state", "open")}))] == 0


def test_cost_accumulates_exactly_in_decimal(pipeline):
    # gpt-4o-mini: 980 input * 0.15/M + 245 output * 0.60/M = 0.000147 + 0.000147 = 0.000294 per request
    spans = []
    for _ in range(2000):
        spans += tree(("llm_inference", 0, 10, {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                                                "gen_ai.usage.input_tokens": 980, "gen_ai.usage.output_tokens": 245}))
    feed(pipeline, spans)
    cost = pipeline.metrics.cost
    assert cost.value(("svc", "openai", "gpt-4o-mini", "input")) == Decimal("0.294")
    assert cost.value(("svc", "openai", "gpt-4o-mini", "output")) == Decimal("0.294")
    assert b'token_type="input"} 0.294\n' in render(pipeline.store)


def test_series_limit_routes_new_label_sets_to_one_overflow_series(pipeline):
    spans = []
    for i in range(500):
        spans += tree(("gateway", 0, 10, {"pipeline.component": f"component-{i}"}))
    feed(pipeline, spans)
    fam = pipeline.metrics.component_duration
    assert len(fam.series) == 50 + 1
    assert sum(s[2] for s in fam.series.values()) == 500  # nothing lost: overflow holds the rest
    text = render(pipeline.store).decode()
    assert 'pipeline_component_duration_seconds_count{otel_metric_overflow="true"}' in text


def test_ten_thousand_tenants_are_capped(pipeline):
    spans = []
    for i in range(10_000):
        spans += tree(("gateway", 0, 10, {"tenant.id": f"tenant-{i}"}))
    feed(pipeline, spans)
    tenants = {k[1] for k in pipeline.metrics.tenant_requests.series}
    assert len(tenants) == 20 + 1 and "__other__" in tenants
    assert sum(s[0] for s in pipeline.metrics.tenant_requests.series.values()) == 10_000
    assert pipeline.metrics.label_capped.value(("tenant",)) == 10_000 - 20


def test_idle_series_expire_and_self_metrics_stay(pipeline):
    feed(pipeline, tree(("gateway", 0, 10)))
    now = pipeline.store.clock.now
    assert pipeline.metrics.requests.series
    pipeline.ingest.series_ttl = 60
    pipeline.ingest.expire_series(now + 61)
    assert not pipeline.metrics.requests.series
    assert pipeline.metrics.spans_received.series  # self-metrics never expire
    pipeline.store.collect()
    assert pipeline.metrics.series_expired.value(("pipeline_requests_total",)) == 1


def test_label_value_cap_keeps_configured_components():
    pipeline = Exporter(config_mod.load(overrides=["traces.finish_delay=0", "limits.max_series_per_metric=5000"]))
    spans = []
    for i in range(2000):
        spans += tree(("gateway", 0, 10, {"pipeline.component": f"flood-{i}"}))
    spans += tree(("gateway", 0, 10, {"pipeline.component": "llm_inference"}))
    feed(pipeline, spans)
    comps = {k[1] for k in pipeline.metrics.component_duration.series if len(k) == 3}
    assert "llm_inference" in comps and "__other__" in comps
    configured = len(pipeline.config.components.names)
    assert configured == 8
    assert len({c for c in comps if c.startswith("flood-")}) == 1000 - configured  # the cap less the configured
    assert pipeline.metrics.label_capped.value(("component",)) == 2000 - (1000 - configured)


def scraped(exporter, accept: str | None = None) -> str:
    headers = {"Accept": accept} if accept else {}
    with urllib.request.urlopen(urllib.request.Request(exporter.urls["web"] + "/metrics", headers=headers),
                                timeout=10) as resp:
        return resp.read().decode()


def test_the_scrape_carries_the_process_and_python_runtime_families_in_both_formats(exporter, tmp_path):
    text = scraped(exporter)
    om = scraped(exporter, "application/openmetrics-text; version=1.0.0")
    samples = {s.name: s for f in parse_text(text) for s in f.samples}
    assert samples["process_resident_memory_bytes"].value > 10 * 2**20
    assert samples["process_cpu_seconds_total"].value > 0
    assert 0 < time.time() - samples["process_start_time_seconds"].value < 3600
    assert samples["process_open_fds"].value > 0
    assert samples["python_info"].labels["implementation"] == "CPython"
    assert "python_gc_collections_total" in samples
    assert "spanscope_build_info" in samples  # after the store's families, not instead of them
    om_names = {s.name for f in parse_openmetrics(om) for s in f.samples}  # strict: one # EOF, at the end
    assert {"process_cpu_seconds_total", "python_info", "spanscope_build_info"} <= om_names
    assert om.count("# EOF") == 1
    promtool = shutil.which("promtool")
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()
