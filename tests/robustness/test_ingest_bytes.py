"""The byte budget of request bodies (limits.ingest_bytes): bytes count as they arrive, until the
request is processed; a request that does not fit is refused with a retry delay, the SDK's retry
delivers it once bytes are released, and a sender that gives up releases what it held. And what
gRPC buffers before a message counts: at most limits.grpc_calls calls being received at once.

A held body is made certain, not left to timing: a raw connection announces a body (Content-Length,
or chunks) and sends only part of it, so what it sent stays held until the test finishes or drops it.
"""
import gzip
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExportResult

from processes import start_exporter, wait_until
from sdk import grpc_exporter, http_exporter, make_batches, scrape, value

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import payloads  # noqa: E402
from common import span_count  # noqa: E402

BUDGET = 100_000
HELD = 80_000  # what the partial body sends: later requests over 20 000 bytes do not fit


def body_of(n_requests: int = 1) -> bytes:
    return payloads.batches(n_requests, service="held", base_ns=time.time_ns() - 60 * 10**9)[0]


def partial_post(http_url: str, head: bytes, length: int | None) -> socket.socket:
    """A POST /v1/traces that announces `length` bytes (chunked when None) and sends only `head`."""
    host, port = http_url[len("http://"):].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    sock.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                 f"{framing}\r\n\r\n".encode())
    sock.sendall(head if length is not None else b"%x\r\n" % len(head) + head + b"\r\n")
    return sock


def held(proc) -> float:
    return value(scrape(proc.urls["web"]), "spanscope_ingest_bytes")


def throttled(proc, reason: str = "ingest_bytes", **labels) -> float:
    return value(scrape(proc.urls["web"]), "spanscope_requests_throttled_total", reason=reason, **labels)


def export_in_background(exporter, batch) -> tuple[threading.Thread, list]:
    results: list = []
    sender = threading.Thread(target=lambda: results.append(exporter.export(batch)))
    sender.start()
    return sender, results


def assert_delivered(proc, exporter, sending, batch, service) -> None:
    """The SDK's export succeeded through its retries, every span was counted, nothing is held."""
    sender, results = sending
    sender.join(60)
    assert results == [SpanExportResult.SUCCESS]
    s = wait_until(lambda: (lambda s: s if value(s, "pipeline_component_duration_seconds_count",
                                                 service=service) == len(batch) else None)(
        scrape(proc.urls["web"])), what="every span counted")
    assert value(s, "spanscope_ingest_bytes") == 0
    exporter.shutdown()


def test_http_request_over_the_budget_is_refused_and_delivered_by_the_retry(tmp_path):
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, "limits": {"ingest_bytes": BUDGET}})
    try:
        batch = make_batches("budget-http", 1)[0]
        assert len(encode_spans(batch).SerializeToString()) > BUDGET - HELD
        sock = partial_post(proc.urls["http"], b"\x0a" * HELD, HELD + 1)
        wait_until(lambda: held(proc) == HELD, what="the bytes sent held")

        exporter = http_exporter(proc.urls["http"], timeout=60)
        sending = export_in_background(exporter, batch)
        wait_until(lambda: throttled(proc, protocol="http_protobuf") >= 1, what="the SDK's request refused")
        s = scrape(proc.urls["web"])
        assert value(s, "spanscope_export_requests_total", protocol="http_protobuf", code="503") >= 1
        assert value(s, "spanscope_spans_received_total") == 0

        sock.close()  # the sender gives up: what it held is released, and the SDK's retry gets in
        assert_delivered(proc, exporter, sending, batch, "budget-http")
    finally:
        proc.stop()


def test_grpc_request_over_the_budget_is_refused_and_delivered_by_the_retry(tmp_path):
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, "limits": {"ingest_bytes": BUDGET}})
    try:
        batch = make_batches("budget-grpc", 1)[0]
        body = body_of()
        sock = partial_post(proc.urls["http"], body[:HELD], len(body))
        wait_until(lambda: held(proc) == HELD, what="the bytes sent held")

        exporter = grpc_exporter(proc.urls["grpc"], timeout=60)
        sending = export_in_background(exporter, batch)
        wait_until(lambda: throttled(proc, protocol="grpc") >= 1, what="the SDK's request refused")
        assert value(scrape(proc.urls["web"]), "spanscope_export_requests_total", protocol="grpc",
                     code="UNAVAILABLE") >= 1

        sock.sendall(body[HELD:])  # the held request completes (alone, past the budget): processed, released
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
        assert_delivered(proc, exporter, sending, batch, "budget-grpc")
    finally:
        proc.stop()


def test_chunked_body_counts_as_it_arrives_and_a_lone_request_may_pass_the_budget(tmp_path):
    proc = start_exporter(tmp_path, {"limits": {"ingest_bytes": BUDGET}})
    try:
        sock = partial_post(proc.urls["http"], b"\x0a" * 30_000, None)
        wait_until(lambda: held(proc) == 30_000, what="the chunk received held")
        body = body_of()
        req = urllib.request.Request(proc.urls["http"] + "/v1/traces", data=body,
                                     headers={"Content-Type": "application/x-protobuf"})
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError("a request past the budget was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert exc.headers["Retry-After"] == "1"
        assert throttled(proc, protocol="http_protobuf") == 1
        sock.close()
        wait_until(lambda: held(proc) == 0, what="the dropped body released")

        # Alone, a body larger than the whole budget is accepted: the budget never blocks a request
        # that the size limits allow.
        assert len(body) > BUDGET
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
        wait_until(lambda: held(proc) == 0, what="the processed body released")
    finally:
        proc.stop()


def test_an_announced_body_holds_only_what_was_sent(tmp_path):
    proc = start_exporter(tmp_path, {"limits": {"ingest_bytes": BUDGET}})
    try:
        slow = [partial_post(proc.urls["http"], b"\x0a" * 10, 10_000_000) for _ in range(5)]
        wait_until(lambda: held(proc) == 50, what="the bytes sent held")
        small = payloads.batches(1, spans_per_batch=64, service="small", base_ns=time.time_ns() - 60 * 10**9)[0]
        assert len(small) < BUDGET - 50
        req = urllib.request.Request(proc.urls["http"] + "/v1/traces", data=small,
                                     headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
        assert throttled(proc) == 0
        for sock in slow:
            sock.close()
        wait_until(lambda: held(proc) == 0, what="the dropped bodies released")
    finally:
        proc.stop()


def test_gzip_body_holds_its_compressed_size(tmp_path):
    """A gzip body counts what was sent: the ingest worker inflates it just before decoding."""
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, "limits": {"ingest_bytes": BUDGET}})
    try:
        raw = body_of()
        body = gzip.compress(raw)
        assert len(body) < BUDGET - HELD < len(raw)  # fits compressed, not inflated
        sock = partial_post(proc.urls["http"], b"\x0a" * HELD, HELD + 1)
        wait_until(lambda: held(proc) == HELD, what="the bytes sent held")
        req = urllib.request.Request(proc.urls["http"] + "/v1/traces", data=body, headers={
            "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
        s = scrape(proc.urls["web"])
        assert value(s, "spanscope_spans_received_total", protocol="http_protobuf") == span_count(raw)
        assert value(s, "spanscope_ingest_bytes") == HELD
        assert throttled(proc) == 0
        sock.close()
    finally:
        proc.stop()


def test_grpc_calls_being_received_are_bounded_and_the_sdk_retry_delivers(tmp_path):
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, "limits": {"grpc_calls": 2}})
    channel = grpc.insecure_channel(proc.urls["grpc"])
    try:
        release = threading.Event()
        body = body_of()

        def message_later():
            release.wait(60)  # the call is open, its message not sent yet
            yield body

        open_call = channel.stream_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        stalled = [open_call.future(message_later(), timeout=60) for _ in range(2)]
        wait_until(lambda: value(scrape(proc.urls["web"]), "spanscope_grpc_calls_receiving") == 2,
                   what="two calls being received")

        exporter = grpc_exporter(proc.urls["grpc"], timeout=60)
        batch = make_batches("grpc-calls", 1)[0]
        sending = export_in_background(exporter, batch)
        wait_until(lambda: throttled(proc, "grpc_calls", protocol="grpc") >= 1, what="the SDK's call refused")
        assert value(scrape(proc.urls["web"]), "spanscope_export_requests_total", protocol="grpc",
                     code="UNAVAILABLE") >= 1

        release.set()  # the open calls send their message: received, processed, answered
        for call in stalled:
            call.result(timeout=30)
        assert_delivered(proc, exporter, sending, batch, "grpc-calls")
        assert value(scrape(proc.urls["web"]), "spanscope_grpc_calls_receiving") == 0
    finally:
        channel.close()
        proc.stop()
