"""OpenTelemetry SDK setup: one TracerProvider for the simulated service.

The batch processor is sized for hundreds of requests per second (each about a dozen spans), so
the demo does not drop spans at the rates the benchmark and `make run` use.
"""
from __future__ import annotations

import os
import socket

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from . import __version__

SERVICE_NAME = "rag-demo"


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


def tracer_provider(exporter: SpanExporter, service_name: str = SERVICE_NAME) -> TracerProvider:
    provider = TracerProvider(resource=resource(service_name))
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=65536, max_export_batch_size=4096, schedule_delay_millis=1000))
    return provider
