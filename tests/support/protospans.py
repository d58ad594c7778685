"""Hand-built OTLP protobuf spans for unit tests of interpretation and trace breakdown."""
from __future__ import annotations

import itertools
import os

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MS = 1_000_000
BASE = 1_700_000_000_000 * MS
_ids = itertools.count(1)


def any_value(v) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(x) for x in v]))
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    return AnyValue(string_value=str(v))


def kvs(attrs: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def span(trace_id: bytes, name: str, start_ms: float, end_ms: float, parent: bytes = b"", attrs=None,
         span_id: bytes | None = None, error: bool = False, events=()) -> Span:
    s = Span(trace_id=trace_id, span_id=span_id or next(_ids).to_bytes(8, "big"), parent_span_id=parent,
             name=name, start_time_unix_nano=BASE + int(start_ms * MS), end_time_unix_nano=BASE + int(end_ms * MS),
             attributes=kvs(attrs or {}))
    if error:
        s.status.code = Status.STATUS_CODE_ERROR
    for ev_name, ev_attrs in events:
        s.events.add(name=ev_name, attributes=kvs(ev_attrs), time_unix_nano=s.start_time_unix_nano)
    return s


def tree(tree_spec, trace_id: bytes | None = None, parent: bytes = b"") -> list[Span]:
    """(name, start_ms, end_ms, attrs, [children]) -> spans; name doubles as pipeline.component."""
    trace_id = trace_id or os.urandom(16)
    name, start, end, *rest = tree_spec
    attrs = {"pipeline.component": name, **(rest[0] if rest else {})}
    events = attrs.pop("_events", ())
    error = attrs.pop("_error", False)
    root = span(trace_id, name, start, end, parent, attrs, error=error, events=events)
    out = [root]
    for child in (rest[1] if len(rest) > 1 else []):
        out += tree(child, trace_id, root.span_id)
    return out


def request(spans, service: str = "rag-service") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    rs.scope_spans.add().spans.extend(spans)
    return req
