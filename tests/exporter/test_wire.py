"""spanscope.wire: the native reader (spanscope._otlpwire) reads exactly what the pure-Python reader
reads from upb's decoded message, and never returns anything for a body upb rejects."""
import math
import random
import struct
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope as Scope, KeyValue, \
    KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanscope.interpret.contract import EVENT_KEYS, EVENT_NAMES, KNOWN_KEYS
from spanscope.decode.otlp import InvalidPayload, decode_protobuf
from spanscope.decode.wire import RawSpan, Reader

from protospans import kvs, request, span, tree

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import payloads  # noqa: E402

NOT_BUILT = "spanscope._otlpwire is not built (no C compiler at install): wire.py reads upb messages in Python"
PY = Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS, native=False)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def native():
    """The native reader with the contract's keys (READER's configuration)."""
    mod = pytest.importorskip("spanscope.decode._otlpwire", reason=NOT_BUILT)
    return mod.Reader(dict(KNOWN_KEYS), frozenset(EVENT_NAMES), frozenset(EVENT_KEYS))


def canon(x):
    """A comparable form that tells bool from int, str from bytes, keeps dict order, and compares
    floats by their bits (NaN == NaN, -0.0 != 0.0)."""
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    if isinstance(x, dict):
        return ("dict", [(canon(k), canon(v)) for k, v in x.items()])
    if isinstance(x, tuple):  # RawSpan or the native reader's plain tuples
        return ("tuple", [canon(i) for i in x])
    if isinstance(x, list):
        return ("list", [canon(i) for i in x])
    return (type(x).__name__, x)


def wrap(result):
    """The native result with RawSpan's field names (Reader.from_bytes returns the plain tuples)."""
    return [(service, [RawSpan._make(s) for s in spans]) for service, spans in result]


def expected(body: bytes, reader=PY):
    return reader.from_message(decode_protobuf(body))


def assert_same(native_reader, body: bytes, reader=PY):
    got = wrap(native_reader.read(body))
    want = expected(body, reader)
    assert canon(got) == canon(want)
    return got


def serialize(req) -> bytes:
    return req.SerializeToString()


# --- hand-built requests ------------------------------------------------------------------------

def test_bench_payloads(native):
    reader = Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS)
    assert reader.native
    for body in payloads.batches(3):
        got = assert_same(native, body)
        assert sum(len(spans) for _, spans in got) >= 512
        assert canon(reader.from_bytes(body, decode_protobuf)) == canon(got)
    body = payloads.batches(1, service="rag-service")[0]
    (service, spans), = native.read(body)
    assert service == "rag-service"
    genai = [s[8] for s in spans if s[9] & 2]
    assert {a["gen_ai.operation.name"] for a in genai} == {"embeddings", "chat"}  # the query's, the LLM's
    assert all(isinstance(a["gen_ai.usage.input_tokens"], int) for a in genai)
    root = next(s for s in spans if s[2] == b"")
    assert [name for name, _, _ in root[10]] == ["feature_flag.evaluation"] * 4
    assert "http.route" not in root[8]  # unknown keys are not read


def test_every_any_value_kind(native):
    values = {
        "pipeline.component": "gateway",            # string
        "pipeline.mode": "",                        # empty string
        "tenant.id": "tênant-ü-日本-🙂",              # unicode, 2/3/4-byte sequences
        "enduser.id": True,                         # bool
        "error.type": False,
        "gen_ai.usage.input_tokens": -(2**63),      # int64 extremes
        "gen_ai.usage.output_tokens": 2**63 - 1,
        "gen_ai.usage.prompt_tokens": -1,
        "pipeline.quality.score": float("nan"),     # doubles
        "pipeline.quality.confidence": float("-inf"),
        "pipeline.cache.size": float("inf"),
        "pipeline.cache.capacity": -0.0,
        "pipeline.cache.evictions": 1.5e-300,
        "pipeline.rag.source": b"\x00\xffbytes",    # bytes (not UTF-8 checked)
        "pipeline.cache.name": b"",
        "pipeline.warnings": ["a", "b", 3, [True, [b"x", 2.5, []]], []],  # nested arrays
        "pipeline.degradation.reason": [],          # an empty array
    }
    s = span(b"\x01" * 16, "spän ✓", 0, 10, attrs=values)
    s.attributes.add(key="gen_ai.system", value=AnyValue(kvlist_value=KeyValueList(values=kvs({"a": 1}))))
    s.attributes.add(key="gen_ai.tool.name", value=AnyValue())  # value present, oneof unset
    s.attributes.add(key="llm.request.type")                   # value absent
    s.attributes.add(key="gen_ai.provider.name", value=AnyValue(string_value_strindex=-7))
    s.attributes.add(key="pipeline.route.name",
                     value=AnyValue(array_value=ArrayValue(values=[AnyValue(kvlist_value=KeyValueList())])))
    got = assert_same(native, serialize(request([s])))
    attrs = got[0][1][0].attributes
    assert attrs["enduser.id"] is True and attrs["gen_ai.usage.input_tokens"] == -(2**63)
    assert math.isnan(attrs["pipeline.quality.score"]) and attrs["pipeline.rag.source"] == b"\x00\xffbytes"
    assert attrs["pipeline.warnings"] == ["a", "b", 3, [True, [b"x", 2.5, []]], []]
    assert attrs["gen_ai.system"] is None and attrs["gen_ai.tool.name"] is None and attrs["llm.request.type"] is None
    assert attrs["gen_ai.provider.name"] == -7 and attrs["pipeline.route.name"] == [None]
    assert got[0][1][0].groups == 1 | 2 | 4 | 8 | 16
    keys = {k: k for k in KNOWN_KEYS}
    assert all(k is keys[k] for k in attrs)  # the reader's own key objects


def test_duplicate_and_unknown_keys(native):
    s = Span(trace_id=b"\x02" * 16, span_id=b"\x03" * 8, name="dup")
    s.attributes.extend([
        KeyValue(key="pipeline.mode", value=AnyValue(string_value="first")),
        KeyValue(key="http.route", value=AnyValue(string_value="/x")),
        KeyValue(key="gen_ai.system", value=AnyValue(int_value=1)),
        KeyValue(key="pipeline.mode", value=AnyValue(int_value=2)),  # last wins, first position kept
        KeyValue(key="", value=AnyValue(string_value="empty key")),
        KeyValue(key="pipeline.mode.extra", value=AnyValue(bool_value=True)),
    ])
    got = assert_same(native, serialize(request([s])))
    raw = got[0][1][0]
    assert list(raw.attributes.items()) == [("pipeline.mode", 2), ("gen_ai.system", 1)]
    assert raw.groups == 1 | 2


def test_events_wanted_and_not(native):
    s = span(b"\x04" * 16, "root", 0, 10, events=[
        ("feature_flag.evaluation", {"feature_flag.key": "f", "feature_flag.result.variant": "on",
                                     "tenant.id": "not an event key", "error.type": 3}),
        ("exception", {"feature_flag.key": "ignored"}),
        ("feature_flag", {}),
        ("circuit_breaker.state_change", {"pipeline.circuit_breaker.name": "b",
                                          "pipeline.circuit_breaker.from": "closed",
                                          "pipeline.circuit_breaker.to": "open"}),
    ])
    ev = s.events.add(name="feature_flag.evaluation")
    ev.attributes.extend(kvs({"feature_flag.key": "x"}))
    ev.attributes.extend(kvs({"feature_flag.key": "y"}))  # last wins
    got = assert_same(native, serialize(request([s])))
    events = got[0][1][0].events
    assert [name for name, _, _ in events] == ["feature_flag.evaluation", "feature_flag",
                                               "circuit_breaker.state_change", "feature_flag.evaluation"]
    start = got[0][1][0].start  # protospans stamps its events at the span's start; the one added here has none
    assert [when for _, when, _ in events] == [start, start, start, 0]
    assert events[0][2] == {"feature_flag.key": "f", "feature_flag.result.variant": "on", "error.type": 3}
    assert events[3][2] == {"feature_flag.key": "y"}


def test_event_times(native):
    s = span(b"\x04" * 16, "root", 0, 10)
    s.events.add(name="feature_flag", time_unix_nano=2**64 - 1)
    s.events.add(name="feature_flag", time_unix_nano=5)
    got = assert_same(native, serialize(request([s])))
    assert [when for _, when, _ in got[0][1][0].events] == [2**64 - 1, 5]


def test_scope_names(native):
    """Each span carries its scope's name, wherever the scope sits among the spans on the wire."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for name in ("openlit.instrumentation.anthropic", "", "ñ-scope"):
        ss = rs.scope_spans.add()
        if name:
            ss.scope.name = name
            ss.scope.version = "1.0"
        ss.spans.extend(tree(("a", 0, 10, {}, [("b", 1, 9)])))
    got = assert_same(native, serialize(req))
    assert [s.scope for s in got[0][1]] == ["openlit.instrumentation.anthropic"] * 2 + [""] * 2 + ["ñ-scope"] * 2
    # the scope after its spans, and given twice in one message (upb keeps the last name)
    spans = b"".join(b"\x12" + bytes([len(x)]) + x for x in (Span(name="s").SerializeToString(),))
    scope = Scope(name="first").SerializeToString()
    scope2 = Scope(name="last").SerializeToString()
    scope_msg = b"\x0a" + bytes([len(scope) + len(scope2)]) + scope + scope2
    ss = spans + scope_msg
    body = b"\x0a" + bytes([len(ss) + 2]) + b"\x12" + bytes([len(ss)]) + ss
    got = assert_same(native, body)
    assert [s.scope for s in got[0][1]] == ["last"]


def test_multiple_resources_and_scopes(native):
    req = ExportTraceServiceRequest()
    for i, svc_value in enumerate([AnyValue(string_value="svc-a"), AnyValue(int_value=5), AnyValue(string_value=""),
                                   None, AnyValue(string_value="ñ-svc")]):
        rs = req.resource_spans.add()
        if svc_value is not None:
            rs.resource.attributes.add(key="other", value=AnyValue(string_value="x"))
            rs.resource.attributes.add(key="service.name", value=svc_value)
            rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=f"second-{i}"))
        if i == 3:
            rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=""))
        for j in range(i % 3):
            ss = rs.scope_spans.add()
            ss.scope.name = f"scope-{j}"
            ss.scope.attributes.extend(kvs({"k": [1, "v"]}))
            ss.spans.extend(tree(("gateway", 0, 10, {"pipeline.feature": f"f{i}{j}"}, [("llm", 1, 9)])))
        rs.scope_spans.add()  # empty scope
    req.resource_spans.add()  # empty resource spans
    got = assert_same(native, serialize(req))
    assert [svc for svc, _ in got] == ["svc-a", "second-1", "second-2", "unknown_service", "ñ-svc", "unknown_service"]
    assert [len(spans) for _, spans in got] == [0, 2, 4, 0, 2, 0]
    assert native.read(b"") == []


def test_missing_fields_and_status(native):
    bare = Span()  # nothing set: proto3 defaults
    with_status = Span(name="s", status=Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    empty_status = Span(name="e")
    empty_status.status.SetInParent()
    odd = Span(name="odd", flags=0xFFFFFFFF, start_time_unix_nano=2**64 - 1, kind=-3)
    odd.status.code = -5  # open enum: any int32
    got = assert_same(native, serialize(request([bare, with_status, empty_status, odd])))
    spans = got[0][1]
    assert spans[0] == (b"", b"", b"", 0, "", 0, 0, 0, {}, 0, [], "")
    assert spans[1].status_code == 2 and spans[2].status_code == 0 and spans[3].status_code == -5
    assert spans[3].flags == 0xFFFFFFFF and spans[3].start == 2**64 - 1


def test_links_resource_entity_refs_and_unknown_fields(native):
    s = span(b"\x05" * 16, "linked", 0, 10, attrs={"pipeline.mode": "chat"})
    link = s.links.add(trace_id=b"\x06" * 16, span_id=b"\x07" * 8, trace_state="a=b", flags=0x301)
    link.attributes.extend(kvs({"pipeline.mode": "ignored", "x": [1, 2]}))
    s.trace_state = "k=v"
    s.dropped_attributes_count = s.dropped_events_count = s.dropped_links_count = 2**32 - 1
    req = request([s])
    rs = req.resource_spans[0]
    rs.schema_url = rs.scope_spans[0].schema_url = "https://opentelemetry.io/schemas/1.30.0"
    ref = rs.resource.entity_refs.add(schema_url="u", type="service", id_keys=["service.name"], description_keys=["d"])
    assert ref.type == "service"
    rs.resource.dropped_attributes_count = 1
    body = serialize(req)
    assert_same(native, body)
    # unknown fields of every wire type at the top level and inside the span are skipped, as upb does
    unknown = b"\xf8\x07\x01" + b"\xf9\x07" + bytes(8) + b"\xfa\x07\x02ab" + b"\xfd\x07" + bytes(4)
    span_bytes = serialize(s) + unknown
    ss = b"\x12" + varint(len(span_bytes)) + span_bytes + unknown
    rs_bytes = b"\x12" + varint(len(ss)) + ss + unknown
    body = unknown + b"\x0a" + varint(len(rs_bytes)) + rs_bytes + unknown
    got = assert_same(native, body)
    assert got[0][1][0].attributes == {"pipeline.mode": "chat"}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def body_with_span(span_bytes: bytes, resource: bytes = b"") -> bytes:
    rs = (field(1, resource) if resource else b"") + field(2, field(2, span_bytes))
    return field(1, rs)


def attr_bytes(key: str, any_value: bytes) -> bytes:
    return field(9, field(1, key.encode()) + field(2, any_value))


def outcome(native_reader, body):
    """(native result or None if it gave up, upb's from_message result or None if upb rejects)."""
    try:
        got = wrap(native_reader.read(body))
    except ValueError:
        got = None
    try:
        want = expected(body)
    except InvalidPayload:
        want = None
    return got, want


def test_repeated_scalars_last_wins(native):
    span_bytes = (field(1, b"A" * 16) + field(1, b"B" * 16) + field(5, b"n1") + field(5, b"n2")
                  + b"\x39" + bytes(8) + b"\x39" + (5).to_bytes(8, "little")                 # start twice
                  + b"\x85\x01" + (7).to_bytes(4, "little") + b"\x85\x01" + (9).to_bytes(4, "little")  # flags
                  + field(9, field(1, b"pipeline.mode") + field(1, b"tenant.id") + field(2, b"\x0a\x01x")))
    body = body_with_span(span_bytes) + body_with_span(b"")  # concatenated requests merge
    got = assert_same(native, body)
    assert len(got) == 2
    raw = got[0][1][0]
    assert (raw.trace_id, raw.name, raw.start, raw.flags, raw.attributes) == (b"B" * 16, "n2", 5, 9, {"tenant.id": "x"})


@pytest.mark.parametrize("any_value,value", [
    (b"\x10\x02", True),                                    # bool from a varint other than 1
    (b"\x10" + b"\xff" * 9 + b"\x01", True),
    (b"\x18" + b"\xff" * 9 + b"\x01", -1),                  # int64 -1 in 10 bytes
    (b"\x18\x80\x00", 0),                                   # non-minimal varint
    (b"\x40\xff\xff\xff\xff\x0f", -1),                      # int32 (string_value_strindex) from 32 bits
    (b"\x40\x85\x80\x80\x80\x10", 5),                       # int32: upper bits dropped
    (b"\x0a\x00", ""),
    (b"\x0a\x82\x00hi", "hi"),                              # non-minimal length
    (b"\x21" + struct.pack("<d", -2.5), -2.5),
    (b"\x2a\x00", []),
    (b"\x32\x00", None),
    (b"", None),
])
def test_scalar_encodings(native, any_value, value):
    got, want = outcome(native, body_with_span(attr_bytes("pipeline.mode", any_value)))
    assert got is not None and canon(got) == canon(want)
    assert canon(got[0][1][0].attributes["pipeline.mode"]) == canon(value)


@pytest.mark.parametrize("status,code", [
    (b"\x18\xff\xff\xff\xff\x0f", -1), (b"\x18\x85\x80\x80\x80\x10", 5),
    (b"\x18" + b"\xfe" + b"\xff" * 8 + b"\x01", -2), (b"\x08\x05", 0),  # field 1 (reserved) is unknown
])
def test_status_code_encodings(native, status, code):
    got, want = outcome(native, body_with_span(b"\x2a\x01s" + field(15, status)))
    assert got is not None and canon(got) == canon(want)
    assert got[0][1][0].status_code == code


@pytest.mark.parametrize("why,body", [
    ("truncated varint", body_with_span(b"\x30\xff")),
    ("length past the end", body_with_span(b"\x2a\x05ab")),
    ("field number 0", body_with_span(b"\x00\x01")),
    ("wire type 7", body_with_span(b"\x0f")),
    ("wire type 6", body_with_span(b"\x0e")),
    ("end group", body_with_span(b"\x0c")),
    ("invalid UTF-8: span name", body_with_span(b"\x2a\x01\xff")),
    ("invalid UTF-8: overwritten span name", body_with_span(b"\x2a\x01\xff\x2a\x01a")),
    ("invalid UTF-8: surrogate", body_with_span(b"\x2a\x03\xed\xa0\x80")),
    ("invalid UTF-8: overlong", body_with_span(b"\x2a\x02\xc0\xaf")),
    ("invalid UTF-8: above U+10FFFF", body_with_span(b"\x2a\x04\xf4\x90\x80\x80")),
    ("invalid UTF-8: trace_state", body_with_span(b"\x1a\x01\x80")),
    ("invalid UTF-8: unknown key", body_with_span(field(9, field(1, b"\xfe")))),
    ("invalid UTF-8: overwritten known key", body_with_span(field(9, field(1, b"\xff") + field(1, b"pipeline.mode")))),
    ("invalid UTF-8: value of unknown key", body_with_span(attr_bytes("http.route", b"\x0a\x01\xff"))),
    ("invalid UTF-8: kvlist key", body_with_span(attr_bytes("pipeline.mode", field(6, field(1, b"\x0a\x01\xff"))))),
    ("invalid UTF-8: link trace_state", body_with_span(field(13, b"\x1a\x01\xff"))),
    ("invalid UTF-8: event name", body_with_span(field(11, b"\x12\x01\xff"))),
    ("invalid UTF-8: status message", body_with_span(field(15, b"\x12\x01\xff"))),
    ("invalid UTF-8: scope name", field(1, field(2, field(1, b"\x0a\x01\xff")))),
    ("invalid UTF-8: schema url", field(1, field(3, b"\xff"))),
    ("invalid UTF-8: resource key", body_with_span(b"", field(1, field(1, b"\xff")))),
    ("invalid UTF-8: entity ref id key", body_with_span(b"", field(3, field(3, b"\xff")))),
    ("truncated fixed64", body_with_span(b"\x39\x01\x02")),
    ("truncated fixed32", body_with_span(b"\x85\x01\x01")),
    ("tag longer than 5 bytes", body_with_span(b"\x80\x80\x80\x80\x80\x01")),
])
def test_invalid_bodies_are_left_to_upb(native, why, body):
    with pytest.raises(ValueError):
        native.read(body)
    with pytest.raises(InvalidPayload):
        decode_protobuf(body)
    with pytest.raises(InvalidPayload):
        Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS).from_bytes(body, decode_protobuf)


@pytest.mark.parametrize("why,body", [
    ("status twice (upb merges)", body_with_span(field(15, b"\x12\x01a\x18\x01") + field(15, b"\x18\x02"))),
    ("resource twice", field(1, field(1, field(1, field(1, b"service.name") + field(2, b"\x0a\x01a")))
                             + field(1, b"") + field(2, field(2, b"\x2a\x01s")))),
    ("scope twice", field(1, field(2, field(1, b"") + field(1, b"\x0a\x01n") + field(2, b"")))),
    ("kv value twice",
     body_with_span(field(9, field(1, b"pipeline.mode") + field(2, b"\x0a\x01a") + field(2, b"\x18\x01")))),
    ("oneof twice", body_with_span(attr_bytes("pipeline.mode", b"\x0a\x01a\x18\x01"))),
    ("oneof twice, same field", body_with_span(attr_bytes("pipeline.mode", b"\x0a\x01a\x0a\x01b"))),
    ("array twice", body_with_span(attr_bytes("pipeline.mode", b"\x2a\x02\x0a\x00\x2a\x00"))),
    ("oneof twice in an unknown key's value", body_with_span(attr_bytes("http.route", b"\x10\x01\x18\x01"))),
    ("known field, other wire type", body_with_span(b"\x28\x01\x2a\x01s")),
    ("flags as a varint", body_with_span(b"\x80\x01\x01")),
    ("group of an unknown field", body_with_span(b"\xcb\x06\x08\x01\xcc\x06\x2a\x01s")),
    ("10-byte varint with dropped bits", body_with_span(b"\x30" + b"\xff" * 9 + b"\x7f")),
])
def test_valid_bodies_the_native_reader_leaves_to_upb(native, why, body):
    with pytest.raises(ValueError):
        native.read(body)
    want = expected(body)
    assert want  # upb accepts it
    reader = Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS)
    assert canon(reader.from_bytes(body, decode_protobuf)) == canon(want)


def test_from_bytes_falls_back_to_upb_merge():
    """Span.status twice: upb merges the two messages (code from the second, message from the first)."""
    s = Span(trace_id=b"\x08" * 16, span_id=b"\x09" * 8, name="twice")
    body = serialize(request([s]))
    span_bytes = serialize(s) + field(15, serialize(Status(message="first", code=1))) + field(
        15, serialize(Status(code=2)))
    body = body_with_span(span_bytes, field(1, field(1, b"service.name") + field(2, b"\x0a\x03svc")))
    reader = Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS)
    (service, spans), = reader.from_bytes(body, decode_protobuf)
    assert service == "svc" and spans[0].status_code == 2 and spans[0].name == "twice"
    assert decode_protobuf(body).resource_spans[0].scope_spans[0].spans[0].status.message == "first"
    with pytest.raises(InvalidPayload):
        reader.from_bytes(body[:-1], decode_protobuf)


def nested_array(levels: int) -> bytes:
    value = b"\x0a\x01x"
    for _ in range(levels):
        value = field(5, field(1, value))
    return value


def test_nesting_depth(native):
    shallow = body_with_span(attr_bytes("pipeline.warnings", nested_array(20)))
    got = assert_same(native, shallow)
    v = got[0][1][0].attributes["pipeline.warnings"]
    for _ in range(20):
        v, = v
    assert v == "x"
    deep = body_with_span(attr_bytes("pipeline.warnings", nested_array(35)))  # upb accepts, native gives up
    with pytest.raises(ValueError):
        native.read(deep)
    assert expected(deep)
    too_deep = body_with_span(attr_bytes("http.route", nested_array(60)))
    with pytest.raises(ValueError):
        native.read(too_deep)
    with pytest.raises(InvalidPayload):
        decode_protobuf(too_deep)
    very_deep = body_with_span(attr_bytes("pipeline.warnings", nested_array(5000)))  # no C stack overflow
    with pytest.raises(ValueError):
        native.read(very_deep)


def test_reader_construction():
    mod = pytest.importorskip("spanscope.decode._otlpwire", reason=NOT_BUILT)
    keys = {"a": 1, "b": None, "c": -(2**63), 7: 4, "\udcff": 8, "e": True}
    r = mod.Reader(keys, frozenset({"ev", 3}), frozenset({"k"}))
    s = Span(name="n", attributes=kvs({"a": 1, "b": 2, "c": 3, "e": "x", "7": 1}))
    s.events.add(name="ev").attributes.extend(kvs({"k": 1, "a": 2}))
    body = serialize(request([s]))
    ref = Reader(keys, ["ev", 3], ["k"], native=False)
    got = wrap(r.read(body))
    assert canon(got) == canon(ref.from_message(decode_protobuf(body)))
    assert got[0][1][0].attributes == {"a": 1, "c": 3, "e": "x"} and got[0][1][0].groups == 1 | -(2**63) | True
    with pytest.raises(TypeError):
        mod.Reader({"a": 1.5}, frozenset(), frozenset())
    with pytest.raises(TypeError):
        mod.Reader([], frozenset(), frozenset())
    with pytest.raises(ValueError):
        r.read("not bytes")
    assert canon(wrap(r.read(memoryview(body)))) == canon(got)
    assert r.read(bytearray(body)) == r.read(body)


def test_no_leaks_on_any_path(native):
    body = payloads.batches(1, spans_per_batch=16)[0]
    bad = [body[:i] for i in range(0, len(body), 7)] + [body + b"\x0f", body + field(1, b"\x0f")]

    def run():
        for b in bad:
            try:
                native.read(b)
            except ValueError:
                pass

    run()
    tracemalloc.start()
    try:
        run()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            run()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 20_000


# --- property tests -----------------------------------------------------------------------------

key_names = st.sampled_from(sorted(KNOWN_KEYS) + sorted(EVENT_KEYS) + ["service.name", "http.route", ""]) | st.text(
    max_size=12)
scalar_values = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=20)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-2**63, 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=12)),
    st.builds(lambda v: AnyValue(string_value_strindex=v), st.integers(-2**31, 2**31 - 1)),
    st.just(AnyValue()),
)
any_values = st.recursive(
    scalar_values,
    lambda children: st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(children, max_size=4))
    | st.builds(lambda kv: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kv])),
                st.lists(st.tuples(key_names, children), max_size=3)),
    max_leaves=8)


@st.composite
def key_values(draw, max_size=6):
    out = []
    for key, value in draw(st.lists(st.tuples(key_names, st.none() | any_values), max_size=max_size)):
        kv = KeyValue(key=key)
        if value is not None:
            kv.value.CopyFrom(value)
        if draw(st.integers(0, 9)) == 0:
            kv.key_strindex = draw(st.integers(-2**31, 2**31 - 1))
        out.append(kv)
    return out


ids = st.sampled_from([b"", b"\x01" * 8, b"\x02" * 16]) | st.binary(max_size=20)


@st.composite
def spans(draw):
    s = Span(trace_id=draw(ids), span_id=draw(ids), parent_span_id=draw(ids), name=draw(st.text(max_size=15)),
             trace_state=draw(st.text(max_size=5)), kind=draw(st.integers(-2**31, 2**31 - 1)),
             start_time_unix_nano=draw(st.integers(0, 2**64 - 1)), end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
             flags=draw(st.integers(0, 2**32 - 1)), dropped_attributes_count=draw(st.integers(0, 2**32 - 1)))
    s.attributes.extend(draw(key_values(6)))
    for _ in range(draw(st.integers(0, 3))):
        ev = s.events.add(name=draw(st.sampled_from(sorted(EVENT_NAMES) + ["exception"]) | st.text(max_size=5)),
                          time_unix_nano=draw(st.integers(0, 2**64 - 1)))
        ev.attributes.extend(draw(key_values(4)))
    for _ in range(draw(st.integers(0, 2))):
        link = s.links.add(trace_id=draw(ids), span_id=draw(ids), flags=draw(st.integers(0, 2**32 - 1)),
                           trace_state=draw(st.text(max_size=5)))
        link.attributes.extend(draw(key_values(2)))
    if draw(st.booleans()):
        s.status.code = draw(st.integers(-2**31, 2**31 - 1))
        s.status.message = draw(st.text(max_size=5))
    return s


@st.composite
def export_requests(draw):
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        rs = req.resource_spans.add(schema_url=draw(st.text(max_size=4)))
        if draw(st.booleans()):
            rs.resource.attributes.extend(draw(key_values(3)))
            if draw(st.booleans()):
                rs.resource.attributes.add(key="service.name", value=draw(any_values))
            if draw(st.integers(0, 4)) == 0:
                rs.resource.entity_refs.add(type=draw(st.text(max_size=4)), id_keys=draw(st.lists(st.text(max_size=4),
                                                                                                 max_size=2)))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name = draw(st.text(max_size=5))
                ss.scope.attributes.extend(draw(key_values(2)))
            ss.spans.extend(draw(st.lists(spans(), max_size=2)))
    return req


@SETTINGS
@given(export_requests())
def test_random_requests_read_the_same(native, req):
    assert_same(native, serialize(req))


def realistic_body(seed: int) -> bytes:
    rng = random.Random(seed)
    return serialize(request(payloads.trace(rng, 1_700_000_000_000_000_000), "svc"))


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=6)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 6)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
)


def mutate(body: bytes, edits) -> bytes:
    b = bytearray(body)
    for kind, pos, arg in edits:
        pos %= len(b) + 1
        if kind == "flip" and pos < len(b):
            b[pos] ^= arg
        elif kind == "insert":
            b[pos:pos] = arg
        elif kind == "delete":
            del b[pos:pos + arg]
        elif kind == "truncate":
            del b[pos:]
    return bytes(b)


def assert_never_disagrees(native_reader, body):
    got, want = outcome(native_reader, body)
    if got is not None:
        assert want is not None, "the native reader returned a result for a body upb rejects"
        assert canon(got) == canon(want)
    return got, want


@SETTINGS
@given(export_requests().map(serialize) | st.integers(0, 50).map(realistic_body),
       st.lists(mutations, min_size=1, max_size=3))
def test_mutated_bodies_never_disagree_with_upb(native, body, edits):
    assert_never_disagrees(native, mutate(body, edits))


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_disagree_with_upb(native, data):
    assert_never_disagrees(native, data)


@SETTINGS
@given(st.lists(st.sampled_from([
    b"\x0a\x00", b"\x12\x00", b"\x1a\x00", b"\x08\x01", b"\x10\x02", b"\x18\xff\xff\xff\xff\x0f", b"\x21" + bytes(8),
    b"\x0a\x02\x0a\x00", b"\x2a\x02\x0a\x00", b"\x32\x02\x0a\x00", b"\x3a\x01x", b"\x0a\x01\xff", b"\x7a\x00",
    b"\x85\x01" + bytes(4), b"\x2a\x01s", b"\x4a\x04\x0a\x02ab", b"\x5a\x02\x12\x00", b"\x0c", b"\x0b",
    b"\x0d" + bytes(4), b"\x09" + bytes(8), b"\x12\x05", b"\x80\x80\x80\x80\x10", b"\xfa\x01\x00",
]), max_size=10), st.integers(0, 4))
def test_token_soup_never_disagrees_with_upb(native, tokens, nest):
    """Valid-looking fragments at random message levels: well-formed-but-odd bodies reach deep."""
    body = b"".join(tokens)
    for _ in range(nest):
        body = field(random.Random(len(body)).choice([1, 2, 9]), body)
    assert_never_disagrees(native, body)


def test_the_native_reader_is_built_where_a_c_compiler_is():
    """setup.py marks the extension optional (an install without a compiler still works, slower);
    where the tests run with a compiler, a silent fallback would hide a broken build."""
    import shutil
    import sysconfig
    from spanscope.decode.wire import NATIVE_READER
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the pure-Python reader is expected")
    assert NATIVE_READER, ("spanscope._otlpwire did not build: reinstall with `pip install -e exporter` "
                           "and read its output")
