"""Span sources for tests: the real OpenTelemetry SDK and its OTLP exporters.

`emit(tracer, tree)` builds one trace with explicit timestamps from a nested spec, so tests know
every duration exactly without sleeping:

    ("gateway", 0, 1000, {"pipeline.component": "gateway"}, [
        ("cache", 0, 10, {...}, []), ...])

times in milliseconds from a base; attributes and children optional.
"""
from __future__ import annotations

import time
import uuid
import urllib.request

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from prometheus_client.parser import text_string_to_metric_families
from processes import wait_until

MS = 1_000_000


def http_exporter(base_url: str, **kwargs):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(endpoint=base_url + "/v1/traces", **kwargs)


def grpc_exporter(address: str, **kwargs):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(endpoint=address, insecure=True, **kwargs)


def json_exporter(base_url: str, **kwargs):
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(endpoint=base_url + "/v1/traces", **kwargs)


def provider(exporter, service: str = "rag-service", batch: bool = False) -> TracerProvider:
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return tp


def emit(tracer, tree, base_ns: int | None = None, parent=None, events=None):
    """Create the spans of `tree` (children first ended, as real code does); returns the root span."""
    base_ns = time.time_ns() - 5_000 * MS if base_ns is None else base_ns
    name, start_ms, end_ms, *rest = tree
    attrs = rest[0] if rest else {}
    children = rest[1] if len(rest) > 1 else []
    ctx = trace.set_span_in_context(parent) if parent is not None else None
    span = tracer.start_span(name, context=ctx, start_time=base_ns + int(start_ms * MS),
                             attributes={k: v for k, v in attrs.items() if not k.startswith("_")})
    for ev_name, ev_attrs in attrs.get("_events", []):
        span.add_event(ev_name, ev_attrs)
    if attrs.get("_error"):
        span.set_status(Status(StatusCode.ERROR, "failed"))
    for child in children:
        emit(tracer, child, base_ns, span)
    span.end(end_time=base_ns + int(end_ms * MS))
    return span


TRACES_PER_BATCH = 100  # of make_batches: 700 spans per export call


def make_batches(service: str, n: int) -> list:
    """`n` export calls' worth of finished SDK spans (TRACES_PER_BATCH traces of 7 spans each)."""
    memory = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tp.get_tracer("load")
    for _ in range(n * TRACES_PER_BATCH):
        emit(tracer, ("gateway", 0, 100, {"pipeline.component": "gateway"}, [
            ("a", 0, 10), ("b", 10, 20), ("c", 20, 30), ("d", 30, 40), ("e", 40, 50), ("f", 50, 60)]))
    spans = memory.get_finished_spans()
    size = len(spans) // n
    return [spans[i * size:(i + 1) * size] for i in range(n)]


def trace_id_hex(span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def scrape(web_url: str) -> dict:
    """Parsed /metrics: {sample name: {frozenset(labels.items()): value}}."""
    with urllib.request.urlopen(web_url + "/metrics", timeout=10) as resp:
        return parse(resp.read().decode())


def parse(text: str) -> dict:
    """A Prometheus text page as {sample name: {frozenset(labels.items()): value}}."""
    samples: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= k)


def send_traces(proc, service_prefix: str, traces) -> str:
    """Send the span trees `traces` through the real SDK to the exporter `proc` as a new service, and
    wait until it has counted each as a request; returns the service name."""
    service = f"{service_prefix}-{uuid.uuid4().hex[:6]}"
    tp = provider(http_exporter(proc.urls["http"]), service)
    tracer = tp.get_tracer(f"{service_prefix}-test")
    for tree in traces:
        emit(tracer, tree)
    tp.shutdown()
    wait_until(lambda: value(scrape(proc.urls["web"]), "pipeline_requests_total", service=service) == len(traces),
               what=f"{len(traces)} requests counted")
    return service
