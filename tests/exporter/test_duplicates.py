"""A retried export (the same spans sent again after the answer was lost) is counted once; a late
span of a finished trace is still counted."""
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from processes import wait_until
from sdk import emit, http_exporter, scrape, value

TREE = ("gateway", 0, 100, {"pipeline.component": "gateway"}, [
    ("cache_lookup", 0, 10, {"pipeline.component": "cache_lookup"}),
    ("llm_inference", 10, 90, {"pipeline.component": "llm_inference", "gen_ai.request.model": "gpt-4o",
                               "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20}),
])


def spans_of(service: str, tree=TREE, parent=None):
    memory = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    root = emit(tp.get_tracer("dup"), tree, parent=parent)
    return memory.get_finished_spans(), root


def test_a_resent_batch_is_counted_once_and_a_late_span_still_counts(exporter):
    service = "dup-service"
    spans, root = spans_of(service)
    client = http_exporter(exporter.urls["http"])

    def settled(requests: int):
        return wait_until(lambda: (lambda s: s if value(s, "pipeline_requests_total", service=service) == requests
                                   else None)(scrape(exporter.urls["web"])), what=f"{requests} request(s) counted")

    assert client.export(spans) == SpanExportResult.SUCCESS
    first = settled(1)
    assert client.export(spans) == SpanExportResult.SUCCESS  # the retry: the trace is finished by now
    again = wait_until(lambda: (lambda s: s if value(s, "spanscope_spans_duplicate_total") >= 3 else None)(
        scrape(exporter.urls["web"])), what="the resent spans recognised")
    for name in ("pipeline_requests_total", "pipeline_component_duration_seconds_count", "llm_tokens_total",
                 "llm_cost_usd_total", "pipeline_request_cost_usd_total"):
        assert value(again, name, service=service) == value(first, name, service=service) > 0, name
    assert value(again, "spanscope_spans_duplicate_total", protocol="http_protobuf") == 3

    # A span of the same trace with a new id (work that outlived the root) is not a duplicate.
    late, _ = spans_of(service, ("late_audit", 100, 120, {"pipeline.component": "audit"}), parent=root)
    assert client.export(late) == SpanExportResult.SUCCESS
    after = wait_until(lambda: (lambda s: s if value(s, "pipeline_component_duration_seconds_count",
                                                     service=service, component="audit") == 1 else None)(
        scrape(exporter.urls["web"])), what="the late span counted")
    assert value(after, "spanscope_spans_duplicate_total") == 3
    client.shutdown()
