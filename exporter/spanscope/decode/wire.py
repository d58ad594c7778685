"""Decoded export requests as the contract reads them: per resource, its service and raw spans.

A raw span is a tuple (see RawSpan) holding only what the contract uses: ids, name, times, status,
the attributes whose keys it knows (values converted from AnyValue), the events it reads and the
name of its instrumentation scope (which says the attributes' dialect). Two
readers produce the same tuples: `from_message` walks a decoded protobuf message (any source:
protobuf, OTLP/JSON, gRPC), and the native reader `spanscope._otlpwire` walks the protobuf wire
format directly, skipping upb's Python object per field — most of the per-span cost of reading.
The native reader never decides whether a body is valid: anything it does not handle exactly as
upb would (malformed input, repeated singular messages, deep nesting) makes it give up, and the
body goes through upb and `from_message` instead.
"""
from __future__ import annotations

from typing import NamedTuple

try:
    from . import _otlpwire
except ImportError:  # built without a C compiler: the pure-Python path does the same, slower
    _otlpwire = None
NATIVE_READER = _otlpwire is not None


class RawSpan(NamedTuple):
    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    flags: int
    name: str
    start: int
    end: int
    status_code: int
    attributes: dict  # known keys only
    groups: int       # OR of the known keys' groups
    events: list      # [(name, time_unix_nano, {known event key: value})] of the events with wanted names
    scope: str        # the instrumentation scope's name ("" when absent)


def any_value(v):
    """An OTLP AnyValue as a Python value (arrays as lists; maps are not read)."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind is None or kind == "kvlist_value":
        return None
    return getattr(v, kind)


class Reader:
    """Reads export requests keeping the span attributes in `span_keys` (key -> group bit), the
    events named in `event_names`, and of those the attributes in `event_keys`."""

    def __init__(self, span_keys: dict[str, int], event_names, event_keys, native: bool = True):
        self.span_keys = dict(span_keys)
        self.event_names = frozenset(event_names)
        self.event_keys = frozenset(event_keys)
        self._native = (_otlpwire.Reader(self.span_keys, self.event_names, self.event_keys)
                        if native and _otlpwire is not None else None)

    @property
    def native(self) -> bool:
        return self._native is not None

    def from_bytes(self, body: bytes, parse):
        """[(service, [RawSpan])] of a protobuf body; `parse` decodes it (raising for invalid
        input) when the native reader gives up or is not built."""
        if self._native is not None:
            try:
                return self._native.read(body)  # plain tuples, in RawSpan's order
            except ValueError:
                pass
        return self.from_message(parse(body))

    def from_message(self, request) -> list:
        return [(service_name(rs.resource),
                 [self._span(span, ss.scope.name) for ss in rs.scope_spans for span in ss.spans])
                for rs in request.resource_spans]

    def _span(self, span, scope: str = "") -> RawSpan:
        attrs: dict = {}
        groups = 0
        keys = self.span_keys
        for kv in span.attributes:
            group = keys.get(kv.key)
            if group is not None:
                attrs[kv.key] = any_value(kv.value)
                groups |= group
        events = [(ev.name, ev.time_unix_nano,
                   {kv.key: any_value(kv.value) for kv in ev.attributes if kv.key in self.event_keys})
                  for ev in span.events if ev.name in self.event_names]
        return RawSpan(span.trace_id, span.span_id, span.parent_span_id, span.flags, span.name,
                       span.start_time_unix_nano, span.end_time_unix_nano, span.status.code, attrs, groups, events,
                       scope)


def service_name(resource) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name" and kv.value.string_value:
            return kv.value.string_value
    return "unknown_service"
