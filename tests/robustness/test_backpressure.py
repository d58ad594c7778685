"""Overload: a full ingest queue answers 503/UNAVAILABLE; the SDK's retries deliver every span."""
import socket
import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.resources import Resource

from processes import start_exporter, wait_until
from sdk import emit, grpc_exporter, http_exporter, scrape, value

TRACES_PER_BATCH = 100   # 700 spans per export call
SENDERS = 12


def make_batches(service: str, n: int):
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


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_overload_is_refused_with_retry_and_nothing_is_lost(tmp_path, protocol):
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, "limits": {"ingest_queue": 1}})
    try:
        service = f"load-{protocol}"
        batches = make_batches(service, SENDERS * 2)
        exporter = (lambda: http_exporter(proc.urls["http"], timeout=60)) if protocol == "http" else \
            (lambda: grpc_exporter(proc.urls["grpc"], timeout=60))
        results = []

        def send(my_batches):
            exp = exporter()
            for batch in my_batches:
                results.append(exp.export(batch))
            exp.shutdown()

        threads = [threading.Thread(target=send, args=(batches[i::SENDERS],)) for i in range(SENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == [SpanExportResult.SUCCESS] * len(batches)
        total = sum(len(b) for b in batches)
        s = wait_until(lambda: (lambda s: s if value(s, "pipeline_requests_total", service=service)
                                == SENDERS * 2 * TRACES_PER_BATCH else None)(scrape(proc.urls["web"])),
                       what="every request counted")
        received = value(s, "pipeline_component_duration_seconds_count", service=service)
        assert received == total
        assert value(s, "spanscope_requests_throttled_total") > 0, "the queue never filled: no overload tested"
        code = "503" if protocol == "http" else "UNAVAILABLE"
        assert value(s, "spanscope_export_requests_total", code=code) > 0
    finally:
        proc.stop()


def test_slow_loris_body_gets_408(tmp_path):
    proc = start_exporter(tmp_path, {"limits": {"body_timeout": 0.5}})
    try:
        host, port = proc.urls["http"][len("http://"):].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                         b"Content-Length: 1000\r\n\r\n\x0a\x05")
            started = time.monotonic()
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert time.monotonic() - started < 5
        assert value(scrape(proc.urls["web"]), "spanscope_export_requests_total", code="408") == 1
    finally:
        proc.stop()
