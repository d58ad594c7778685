"""Property-based tests: hostile payloads never crash decoding or interpretation, never corrupt
the exposition, and never change what was counted before."""
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from spanscope import config as config_mod
from spanscope.decode import otlp
from spanscope.app import Exporter
from spanscope.interpret.contract import KNOWN_KEYS
from spanscope.metrics.exposition import render

from protospans import kvs, request, tree

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "parentSpanId", "name",
                         "startTimeUnixNano", "endTimeUnixNano", "attributes", "key", "value", "stringValue",
                         "intValue", "events", "status", "code", "kind", "resource", "x"]) | st.text(max_size=8),
        children, max_size=5),
    max_leaves=30)

hostile_values = st.one_of(
    st.text(max_size=300), st.integers(min_value=-2**63, max_value=2**63 - 1), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=50),
    st.lists(st.text(max_size=10), max_size=5), st.lists(st.integers(-5, 5), max_size=3),
    st.just("x" * 100_000), st.sampled_from(["hit", "miss", "open", "closed", "half_open", "chat", "", "\n\"\\"]),
)
contract_attrs = st.dictionaries(st.sampled_from(sorted(KNOWN_KEYS)), hostile_values, max_size=12)


@pytest.fixture(scope="module")
def exporter():
    exp = Exporter(config_mod.load(overrides=["traces.finish_delay=0", "limits.max_series_per_metric=200"]))
    exp.ingest.process(request(tree(("gateway", 0, 100, {"tenant.id": "acme"})), "before"), "fuzz")
    exp.ingest.finish_traces(everything=True)
    return exp


def baseline(exp):
    m = exp.metrics
    return (m.requests.value(("before", "default", "ok", "none")),
            m.component_duration.series[("before", "gateway", "ok")][2])


def assert_exposition_parses(exp):
    exp.store.collect()
    families = list(text_string_to_metric_families(render(exp.store).decode()))
    assert families


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes_decode_or_fail_cleanly(data):
    try:
        otlp.decode_protobuf(data)
    except otlp.InvalidPayload as exc:
        assert str(exc)


@SETTINGS
@given(json_values)
def test_random_json_decodes_or_fails_cleanly(doc):
    try:
        otlp.decode_json(json.dumps(doc).encode())
    except otlp.InvalidPayload as exc:
        assert str(exc)


@SETTINGS
@given(st.binary(min_size=1, max_size=64), st.integers(0, 10_000))
def test_mutated_valid_payloads(patch, position):
    spans = tree(("gateway", 0, 10, {}, [("llm", 1, 9, {"gen_ai.usage.input_tokens": 5})]))
    body = bytearray(request(spans).SerializeToString())
    position %= len(body)
    body[position:position + len(patch)] = patch
    try:
        otlp.decode_protobuf(bytes(body))
    except otlp.InvalidPayload:
        pass


span_ids = st.sampled_from([b"\x01" * 8, b"\x02" * 8, b"\x03" * 8, b"", b"\x04" * 3, b"\x05" * 8])


@st.composite
def hostile_span(draw):
    s = Span(trace_id=draw(st.sampled_from([b"\xaa" * 16, b"\xbb" * 16, b"\x01" * 5])),
             span_id=draw(span_ids), parent_span_id=draw(span_ids),
             name=draw(st.text(max_size=40)),
             start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
             end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
             flags=draw(st.integers(0, 2**32 - 1)), attributes=kvs(draw(contract_attrs)))
    s.status.code = draw(st.integers(0, 2))
    for _ in range(draw(st.integers(0, 3))):
        ev = s.events.add(name=draw(st.sampled_from(["feature_flag.evaluation", "feature_flag",
                                                     "circuit_breaker.state_change", "exception"])))
        ev.attributes.extend(kvs(draw(st.dictionaries(st.sampled_from([
            "feature_flag.key", "feature_flag.result.variant", "feature_flag.variant", "feature_flag.result.value",
            "feature_flag.result.reason", "error.type", "pipeline.circuit_breaker.name",
            "pipeline.circuit_breaker.from", "pipeline.circuit_breaker.to"]), hostile_values, max_size=6))))
    return s


@pytest.mark.timeout(240)  # a hang (it found one: a cycle through a duplicated root id) fails, not stalls
@SETTINGS
@given(st.lists(hostile_span(), min_size=1, max_size=12), st.text(max_size=30))
def test_hostile_spans_never_crash_or_corrupt(exporter, spans, service):
    before = baseline(exporter)
    req = request(spans, service or "svc")
    try:
        req = otlp.decode_protobuf(req.SerializeToString())  # what a receiver would see
    except otlp.InvalidPayload:
        return
    result = exporter.ingest.process(req, "fuzz")
    assert result.accepted + result.rejected == len(spans)
    exporter.ingest.finish_traces(everything=True)
    assert baseline(exporter) == before
    assert_exposition_parses(exporter)
    for fam in exporter.store.families.values():
        assert len(fam.series) <= fam.limit + 1
        for s in fam.series.values():
            v = s[0] if not isinstance(s[0], list) else s[1]
            assert not (isinstance(v, float) and math.isnan(v))


def test_duplicate_ids_and_a_parent_cycle_in_one_trace(exporter):
    tid = b"\xcc" * 16
    a = Span(trace_id=tid, span_id=b"\x01" * 8, parent_span_id=b"\x02" * 8, name="a",
             start_time_unix_nano=10, end_time_unix_nano=20)
    b = Span(trace_id=tid, span_id=b"\x02" * 8, parent_span_id=b"\x01" * 8, name="b",
             start_time_unix_nano=10, end_time_unix_nano=20)
    root = Span(trace_id=tid, span_id=b"\x03" * 8, name="root", start_time_unix_nano=0, end_time_unix_nano=30)
    dup = Span(trace_id=tid, span_id=b"\x03" * 8, name="dup-root", start_time_unix_nano=0, end_time_unix_nano=99)
    result = exporter.ingest.process(request([a, b, root, dup], "cycle"), "fuzz")
    assert result.accepted == 4
    exporter.ingest.finish_traces(everything=True)
    crit = exporter.metrics.component_critical
    total = sum(s[0] for k, s in crit.series.items() if k[0] == "cycle")
    assert total == pytest.approx(30e-9)  # the first root wins; the cycle is unreachable from it


def test_megabyte_attribute_is_clipped_as_a_label(exporter):
    big = "c" * 1_000_000
    exporter.ingest.process(request(tree(("gateway", 0, 10, {"pipeline.component": big})), "big"), "fuzz")
    keys = [k for k in exporter.metrics.component_duration.series if k[0] == "big"]
    assert keys and all(len(k[1]) <= 128 for k in keys)
