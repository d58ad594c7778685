"""Hostile and malformed OTLP/HTTP requests get the right 4xx, and OTLP/gRPC calls the right status
code; the exporter keeps its counts."""
import gzip
import json
import os
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from processes import start_exporter, wait_until
from sdk import emit, http_exporter, provider, scrape, value
from protospans import request, tree

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_exporter(tmp_path_factory):
    proc = start_exporter(tmp_path_factory.mktemp("bad"),
                          {"traces": {"finish_delay": 0.05},
                           "limits": {"max_body_bytes": LIMIT, "max_grpc_message_bytes": LIMIT}})
    yield proc
    proc.stop()


def post(url, body, content_type="application/x-protobuf", headers=None):
    req = urllib.request.Request(url + "/v1/traces", data=body, method="POST",
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.fixture(scope="module")
def baseline(small_exporter):
    """Counts recorded before the abuse; they must survive it unchanged."""
    service = f"before-{uuid.uuid4().hex[:6]}"
    tp = provider(http_exporter(small_exporter.urls["http"]), service)
    emit(tp.get_tracer("t"), ("gateway", 0, 100, {"pipeline.component": "gateway"}))
    tp.shutdown()
    wait_until(lambda: value(scrape(small_exporter.urls["web"]), "pipeline_requests_total", service=service) == 1)
    return service


VALID = request(tree(("gateway", 0, 10))).SerializeToString()
BOMB = gzip.compress(b"\x00" * (50 * 1024 * 1024))  # 50 MiB of zeros in ~50 KiB

CASES = {
    "truncated protobuf": (VALID[: len(VALID) // 2], "application/x-protobuf", {}, 400),
    "random bytes": (os.urandom(4096), "application/x-protobuf", {}, 400),
    "invalid json": (b'{"resourceSpans": [', "application/json", {}, 400),
    "json not an object": (b"[1, 2, 3]", "application/json", {}, 400),
    "json bad hex id": (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}).encode(),
                        "application/json", {}, 400),
    "wrong content type": (VALID, "text/plain", {}, 415),
    "unsupported encoding": (VALID, "application/x-protobuf", {"Content-Encoding": "br"}, 415),
    "oversized body": (b"\x0a" * (LIMIT + 1), "application/x-protobuf", {}, 413),
    "gzip bomb": (BOMB, "application/x-protobuf", {"Content-Encoding": "gzip"}, 413),
    "corrupt gzip": (b"\x1f\x8b\x08\x00garbage", "application/x-protobuf", {"Content-Encoding": "gzip"}, 400),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_the_right_status_and_a_clear_message(small_exporter, baseline, case):
    body, content_type, headers, expected = CASES[case]
    code, resp_headers, payload = post(small_exporter.urls["http"], body, content_type, headers)
    assert code == expected
    if content_type == "application/x-protobuf":
        assert resp_headers["Content-Type"] == "application/x-protobuf"
        status = status_pb2.Status.FromString(payload)
        assert status.message
    else:
        assert json.loads(payload)["message"]
    s = scrape(small_exporter.urls["web"])
    assert value(s, "pipeline_requests_total", service=baseline) == 1  # still serving, counts intact
    assert value(s, "spanscope_export_requests_total", code=str(expected)) >= 1


EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
GRPC_CASES = {  # messages sent in one call (request-streaming, so that "none" can be sent), expected code
    "malformed protobuf": ([b"\x0a\xff\xff\xff"], grpc.StatusCode.INVALID_ARGUMENT),
    "no message": ([], grpc.StatusCode.INVALID_ARGUMENT),
    "oversized message": ([b"\x0a" * (LIMIT + 1)], grpc.StatusCode.RESOURCE_EXHAUSTED),
}


@pytest.mark.parametrize("case", list(GRPC_CASES))
def test_bad_grpc_call_gets_the_right_code_and_a_clear_message(small_exporter, baseline, case):
    messages, expected = GRPC_CASES[case]
    with grpc.insecure_channel(small_exporter.urls["grpc"]) as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.stream_unary(EXPORT)(iter(messages), timeout=10)
    assert err.value.code() == expected
    assert err.value.details()
    s = scrape(small_exporter.urls["web"])
    assert value(s, "pipeline_requests_total", service=baseline) == 1  # still serving, counts intact
    if expected == grpc.StatusCode.INVALID_ARGUMENT:
        assert value(s, "spanscope_export_requests_total", protocol="grpc", code="INVALID_ARGUMENT") >= 1


def test_invalid_spans_are_rejected_with_partial_success(small_exporter):
    good = tree(("gateway", 0, 10))
    bad_ids = tree(("gateway", 0, 10))
    bad_ids[0].span_id = b"\x01\x02"
    backwards = tree(("gateway", 10, 0))
    code, headers, payload = post(small_exporter.urls["http"], request(good + bad_ids + backwards).SerializeToString())
    assert code == 200
    resp = ExportTraceServiceResponse.FromString(payload)
    assert resp.partial_success.rejected_spans == 2
    assert "invalid trace or span id" in resp.partial_success.error_message
    assert "end time before start time" in resp.partial_success.error_message


def test_json_partial_success_answers_in_json(small_exporter):
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "x",
         "startTimeUnixNano": "2000", "endTimeUnixNano": 1000, "kind": 2, "unknownField": True}]}]}]}
    code, headers, payload = post(small_exporter.urls["http"], json.dumps(doc).encode(), "application/json")
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(payload)["partialSuccess"]["rejectedSpans"] in ("1", 1)


def test_gzip_body_within_limit_is_accepted(small_exporter):
    service = f"gz-{uuid.uuid4().hex[:6]}"
    body = gzip.compress(request(tree(("gateway", 0, 10)), service).SerializeToString())
    code, _, _ = post(small_exporter.urls["http"], body, headers={"Content-Encoding": "gzip"})
    assert code == 200
    wait_until(lambda: value(scrape(small_exporter.urls["web"]), "spanscope_spans_received_total") >= 1)


def test_config_errors_name_the_bad_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("limits:\n  max_series_per_metric: lots\n")
    with pytest.raises(RuntimeError) as err:
        start_exporter(tmp_path, extra_args=["--config", str(cfg)])
    assert "limits.max_series_per_metric: expected a positive integer, got 'lots'" in str(err.value)
