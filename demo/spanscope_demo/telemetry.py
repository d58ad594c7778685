"""OpenTelemetry SDK setup: one TracerProvider for the simulated service.

The batch processor is sized for hundreds of requests per second (each about a dozen spans), so
the demo does not drop spans at the rates the benchmark and `make run` use.
"""
from __future__ import annotations

import os
import socket
import threading

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from . import __version__

SERVICE_NAME = "rag-demo"
# The batch processor: spans it may hold waiting for export (beyond, it drops them), per export, how often.
SPAN_QUEUE_SIZE = 65536
SPANS_PER_EXPORT = 4096
EXPORT_EVERY_MS = 1000


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a base endpoint such as http://127.0.0.1:4318."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def resource(service_name: str = SERVICE_NAME) -> Resource:
    return Resource.create({
        "service.name": service_name,
        "service.version": __version__,
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        "deployment.environment.name": "demo",
    })


def otlp_exporter(endpoint: str) -> SpanExporter:
    # Imported here so tests that use the in-memory exporter need no network exporter at all.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(endpoint=otlp_traces_url(endpoint), timeout=10)


def tracer_provider(exporter: SpanExporter, service_name: str = SERVICE_NAME,
                    counts: SpanCounts | None = None) -> TracerProvider:
    provider = TracerProvider(resource=resource(service_name))
    if counts is not None:
        provider.add_span_processor(counts)
        exporter = counts.counting(exporter)
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=SPAN_QUEUE_SIZE, max_export_batch_size=SPANS_PER_EXPORT,
        schedule_delay_millis=EXPORT_EVERY_MS))
    return provider


class SpanCounts(SpanProcessor):
    """Spans the SDK ended, and what the exporter behind the batch processor made of them: what was
    ended but never exported was dropped by the SDK (queue full, export failed or timed out).
    Add it to the provider and wrap the exporter with `counting(exporter)`."""

    def __init__(self):
        self._lock = threading.Lock()
        self.ended = self.exported = self.export_failed = 0

    def on_end(self, span) -> None:
        with self._lock:
            self.ended += 1

    def counting(self, exporter: SpanExporter) -> SpanExporter:
        counts = self

        class Counting(SpanExporter):
            def export(self, spans):
                result = exporter.export(spans)
                with counts._lock:
                    if result is SpanExportResult.SUCCESS:
                        counts.exported += len(spans)
                    else:
                        counts.export_failed += len(spans)
                return result

            def shutdown(self):
                exporter.shutdown()

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return exporter.force_flush(timeout_millis)

        return Counting()

    def as_dict(self) -> dict:
        with self._lock:
            return {"ended": self.ended, "exported": self.exported, "export_failed": self.export_failed,
                    "not_exported": self.ended - self.exported}
