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


def record(trace: int, span: int, root: bool = False):
    from spanscope.interpret.contract import read_span
    from spanscope.decode.wire import RawSpan
    raw = RawSpan(trace.to_bytes(16, "big"), span.to_bytes(8, "big"), b"" if root else b"\x00" * 7 + b"\x01",
                  0, "s", 0, 10, 0, {}, 0, [], "")
    return read_span(raw, "svc", [])


def test_the_ids_kept_for_duplicate_detection_are_bounded(monkeypatch):
    from spanscope.config import Traces
    from spanscope.interpret import traces
    monkeypatch.setattr(traces, "REMEMBERED_BYTES", 8 * 25)  # room for the ids of 25 spans
    assembler = traces.Assembler(Traces(finish_delay=0, timeout=60, max_pending=100, max_spans=5,
                                        max_pending_spans=200_000))
    for span in range(1, 50):  # one trace far over max_spans: only the kept spans' ids are held
        assembler.add(record(1, span, root=span == 1), now=0)
    assert len(assembler.pending[record(1, 1).trace_id].span_ids) == 5
    for trace in range(2, 12):  # ten more traces of 5 spans each, finished one by one
        for span in range(1, 6):
            assembler.add(record(trace, span, root=span == 1), now=trace)
        assembler.take_finished(now=trace)
    assert assembler.finished_bytes <= 8 * 25
    assert len(assembler.finished) == 5  # the newest five traces' ids fit
    assert assembler.seen(record(11, 3)) and not assembler.seen(record(11, 9))
    assert not assembler.seen(record(2, 3))  # forgotten: the oldest went first


def test_a_span_sent_twice_in_one_request_is_counted_once():
    # Ingest.process reads a request's spans first and assembles them after: a span's twin in the same
    # request must still be recognised, and its trace summarised once.
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from spanscope.app import Exporter
    from spanscope.config import load
    exp = Exporter(load(None, ["store.enabled=false"]))
    spans, _ = spans_of("twice")
    result = exp.ingest.process(encode_spans(list(spans) * 2), "test")
    with exp.ingest.lock:
        exp.ingest.finish_traces(everything=True)
    m = exp.metrics
    assert (result.accepted, result.rejected) == (2 * len(spans), 0)
    assert sum(s[0] for s in m.spans_duplicate.series.values()) == len(spans)
    assert sum(s[0] for s in m.spans_received.series.values()) == len(spans)
    assert sum(s[2] for s in m.component_duration.series.values()) == len(spans)
    assert sum(s[0] for s in m.requests.series.values()) == 1
