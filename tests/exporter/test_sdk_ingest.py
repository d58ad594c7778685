"""The real OpenTelemetry SDK exports to a running exporter; /metrics shows exact numbers."""
import urllib.request
import uuid

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from processes import wait_until
from sdk import emit, grpc_exporter, http_exporter, json_exporter, provider, scrape, trace_id_hex, value

PIPELINE = ("gateway", 0, 1000, {"pipeline.component": "gateway", "pipeline.mode": "fast", "tenant.id": "acme"}, [
    ("cache", 0, 10, {"pipeline.component": "cache_lookup"}),
    ("intent", 10, 60, {"pipeline.component": "intent_classification"}),
    ("rag weather", 60, 260, {"pipeline.component": "rag_lookup", "pipeline.rag.source": "weather"}),
    ("rag sports", 60, 360, {"pipeline.component": "rag_lookup", "pipeline.rag.source": "sports"}),
    ("chat gpt-4o-mini", 360, 860, {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                    "gen_ai.request.model": "gpt-4o-mini"}),
    ("assembly", 860, 900, {"pipeline.component": "response_assembly"}),
])

EXPORTERS = {
    "http_protobuf": lambda p: http_exporter(p.urls["http"]),
    "grpc": lambda p: grpc_exporter(p.urls["grpc"]),
    "http_json": lambda p: json_exporter(p.urls["http"]),
}


@pytest.mark.parametrize("protocol", list(EXPORTERS))
def test_pipeline_trace_gives_exact_metrics(exporter, protocol):
    service = f"svc-{protocol}-{uuid.uuid4().hex[:6]}"
    tp = provider(EXPORTERS[protocol](exporter), service)
    tracer = tp.get_tracer("test")
    for _ in range(3):
        emit(tracer, PIPELINE)
    tp.shutdown()

    def finished():
        s = scrape(exporter.urls["web"])
        return s if value(s, "pipeline_requests_total", service=service) == 3 else None

    s = wait_until(finished, what="3 requests counted")
    assert value(s, "spanscope_spans_received_total", protocol=protocol) >= 21
    req = dict(service=service, mode="fast", status="ok", cache_status="none")
    assert value(s, "pipeline_requests_total", **req) == 3
    assert value(s, "pipeline_request_duration_seconds_sum", **req) == pytest.approx(3.0)
    # 1.0 s falls in the (0.64, 1.28] bucket of the GenAI duration boundaries
    assert value(s, "pipeline_request_duration_seconds_bucket", le="0.64", **req) == 0
    assert value(s, "pipeline_request_duration_seconds_bucket", le="1.28", **req) == 3
    comp = dict(service=service)
    assert value(s, "pipeline_component_duration_seconds_count", component="rag_lookup", **comp) == 6
    assert value(s, "pipeline_component_duration_seconds_sum", component="rag_lookup", **comp) == pytest.approx(1.5)
    assert value(s, "pipeline_component_duration_seconds_bucket", component="cache_lookup", le="0.01", **comp) == 3
    assert value(s, "pipeline_component_duration_seconds_count", component="llm_inference", **comp) == 3
    critical = {c: value(s, "pipeline_component_critical_path_seconds_total", component=c, **comp)
                for c in ("gateway", "cache_lookup", "intent_classification", "rag_lookup", "llm_inference",
                          "response_assembly")}
    assert critical == pytest.approx({"gateway": 0.3, "cache_lookup": 0.03, "intent_classification": 0.15,
                                      "rag_lookup": 0.9, "llm_inference": 1.5, "response_assembly": 0.12})
    assert sum(critical.values()) == pytest.approx(3.0, abs=1e-6)
    assert value(s, "pipeline_component_self_seconds_total", component="rag_lookup", **comp) == pytest.approx(1.5)
    assert value(s, "pipeline_rag_lookups_total", source="weather", outcome="success", **comp) == 3
    assert value(s, "pipeline_tenant_requests_total", tenant="acme", **comp) == 3
    assert value(s, "pipeline_component_errors_total", component="gateway", **comp) == 0  # starts at zero


def test_errors_are_counted_by_component_and_type(exporter):
    service = f"svc-err-{uuid.uuid4().hex[:6]}"
    tp = provider(http_exporter(exporter.urls["http"]), service)
    tracer = tp.get_tracer("test")
    emit(tracer, ("gateway", 0, 100, {"pipeline.component": "gateway", "_error": True}, [
        ("llm", 10, 90, {"pipeline.component": "llm_inference", "error.type": "timeout"}),
    ]))
    tp.shutdown()
    s = wait_until(lambda: (lambda s: s if value(s, "pipeline_requests_total", service=service) else None)(
        scrape(exporter.urls["web"])), what="request counted")
    assert value(s, "pipeline_requests_total", service=service, status="error") == 1
    assert value(s, "pipeline_component_errors_total", service=service, component="llm_inference",
                 error_type="timeout") == 1
    assert value(s, "pipeline_component_errors_total", service=service, component="gateway", error_type="_OTHER") == 1
    assert value(s, "pipeline_component_duration_seconds_count", service=service, component="llm_inference",
                 status="error") == 1


def test_openmetrics_exposition_carries_trace_id_exemplars(exporter):
    service = f"svc-om-{uuid.uuid4().hex[:6]}"
    tp = provider(http_exporter(exporter.urls["http"]), service)
    root = emit(tp.get_tracer("test"), ("gateway", 0, 50, {"pipeline.component": "gateway"}))
    tp.shutdown()
    trace_id = trace_id_hex(root)

    def exemplar():
        req = urllib.request.Request(exporter.urls["web"] + "/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        with urllib.request.urlopen(req) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            text = resp.read().decode()
        for fam in parse_openmetrics(text):  # the strict OpenMetrics parser accepts the whole page
            for sample in fam.samples:
                if sample.name == "pipeline_request_duration_seconds_bucket" and \
                        sample.labels.get("service") == service and sample.exemplar:
                    return sample
        return None

    sample = wait_until(exemplar, what="exemplar exposed")
    assert sample.exemplar.labels == {"trace_id": trace_id}
    assert sample.exemplar.value == pytest.approx(0.05)
    assert sample.labels["le"] == "0.08"


def test_spans_beyond_max_spans_are_counted_per_span_and_left_out_of_assembly(tmp_path):
    from processes import start_exporter
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05, "max_spans": 3}})
    try:
        tp = provider(http_exporter(proc.urls["http"]), "wide")
        # 5 children end (and are exported) first, then the root: 3 children are assembled, 2 are left
        # out, and the root still gets in, so the request is finished and counted.
        steps = [(f"step {i}", i * 10, i * 10 + 5, {"pipeline.component": "step"}) for i in range(5)]
        emit(tp.get_tracer("t"), ("gateway", 0, 100, {"pipeline.component": "gateway"}, steps))
        tp.shutdown()
        s = wait_until(lambda: (lambda s: s if value(s, "pipeline_requests_total", service="wide") == 1 else None)(
            scrape(proc.urls["web"])), what="the request finished")
        assert value(s, "spanscope_trace_spans_dropped_total") == 2
        assert value(s, "pipeline_component_duration_seconds_count", service="wide") == 6
    finally:
        proc.stop()
