"""Overload: a full ingest queue answers 503/UNAVAILABLE; the SDK's retries deliver every span.

The overload is made certain, not left to timing: a flood of pre-serialized requests on the other
protocol keeps the one-slot queue full while the SDK exporters under test send theirs, until their
requests have been refused (counted per protocol); then the flood stops, as an overload does, and
every span must arrive through the SDK's own retries.
"""
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from processes import start_exporter, wait_until
from sdk import TRACES_PER_BATCH, grpc_exporter, http_exporter, make_batches, scrape, value

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import payloads  # noqa: E402
from common import fresh_traces, trace_id_offsets  # noqa: E402

SENDERS = 12
FLOODERS = 8
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def flood(protocol: str, urls: dict, stop: threading.Event) -> threading.Thread:
    """FLOODERS threads sending new traces (service flood) back to back until `stop`."""
    bodies = payloads.batches(8, service="flood", base_ns=time.time_ns() - 60 * 10**9)
    offsets = [trace_id_offsets(b) for b in bodies]
    counter = iter(range(10**9))
    lock = threading.Lock()

    def next_body() -> bytes:
        with lock:
            i = next(counter)
        replay, j = divmod(i, len(bodies))
        return fresh_traces(bodies[j], offsets[j], replay)

    def http_worker():
        while not stop.is_set():
            req = urllib.request.Request(urls["http"] + "/v1/traces", data=next_body(),
                                         headers={"Content-Type": "application/x-protobuf"})
            try:
                urllib.request.urlopen(req, timeout=30).read()
            except urllib.error.HTTPError as exc:  # 503: the queue is full, which is the point
                exc.read()

    def grpc_worker():
        with grpc.insecure_channel(urls["grpc"]) as channel:
            export = channel.unary_unary(EXPORT_METHOD)  # bytes in, bytes out
            while not stop.is_set():
                try:
                    export(next_body(), timeout=30)
                except grpc.RpcError:  # UNAVAILABLE: the queue is full
                    pass

    workers = [threading.Thread(target=http_worker if protocol == "http" else grpc_worker, daemon=True)
               for _ in range(FLOODERS)]
    for w in workers:
        w.start()

    def joiner():
        for w in workers:
            w.join(60)

    t = threading.Thread(target=joiner)
    t.start()
    return t


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_overload_is_refused_with_retry_and_nothing_is_lost(tmp_path, protocol):
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, "limits": {"ingest_queue": 1}})
    stop = threading.Event()
    flooding = None
    try:
        service = f"load-{protocol}"
        batches = make_batches(service, SENDERS * 2)
        exporter = (lambda: http_exporter(proc.urls["http"], timeout=60)) if protocol == "http" else \
            (lambda: grpc_exporter(proc.urls["grpc"], timeout=60))
        flooding = flood("grpc" if protocol == "http" else "http", proc.urls, stop)
        wait_until(lambda: value(scrape(proc.urls["web"]), "spanscope_requests_throttled_total") > 0,
                   interval=0.02, what="the flood filling the queue")
        results = []

        def send(my_batches):
            exp = exporter()
            for batch in my_batches:
                results.append(exp.export(batch))
            exp.shutdown()

        threads = [threading.Thread(target=send, args=(batches[i::SENDERS],)) for i in range(SENDERS)]
        label, code = ("http_protobuf", "503") if protocol == "http" else ("grpc", "UNAVAILABLE")
        for t in threads:
            t.start()
        wait_until(lambda: value(scrape(proc.urls["web"]), "spanscope_export_requests_total",
                                 protocol=label, code=code) > 0, interval=0.02, what="an SDK request refused")
        stop.set()
        for t in threads:
            t.join(120)
        assert results == [SpanExportResult.SUCCESS] * len(batches)
        total = sum(len(b) for b in batches)
        s = wait_until(lambda: (lambda s: s if value(s, "pipeline_requests_total", service=service)
                                == SENDERS * 2 * TRACES_PER_BATCH else None)(scrape(proc.urls["web"])),
                       what="every request counted")
        received = value(s, "pipeline_component_duration_seconds_count", service=service)
        assert received == total
        # The SDK's own requests were refused (the flood uses the other protocol) and retried.
        assert value(s, "spanscope_export_requests_total", protocol=label, code=code) > 0
        assert value(s, "spanscope_requests_throttled_total", protocol=label) > 0
    finally:
        stop.set()
        if flooding is not None:
            flooding.join(60)
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
