"""Spans that create label values: for the scrape benchmark (many series) and the cardinality
attack (1 000 000 distinct values against default limits).

Every span has a distinct name and no `pipeline.component`, so its name becomes the component
label; every trace's root carries a distinct `tenant.id` (and `enduser.id`). Children run one after
the other inside the root, so each is on the critical path and gets self-time and critical-path
series as well as a duration histogram.
"""
from __future__ import annotations

import struct
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

MS = 1_000_000


def _str(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


class AttackBatches:
    """Serialized export requests whose span names (and root tenants) are all distinct.

    `next()` returns (payload, spans) until `total` spans were produced, then None.
    """

    def __init__(self, total: int, spans_per_batch: int = 512, spans_per_trace: int = 8,
                 prefix: str = "attack", service: str = "attack-service", start: int = 0, tenants: bool = True):
        self.i = start
        self.end = start + total
        self.spans_per_batch = max(spans_per_trace, spans_per_batch - spans_per_batch % spans_per_trace)
        self.spans_per_trace = spans_per_trace
        self.prefix = prefix
        self.service = _str("service.name", service)
        self.tenants = tenants
        self.salt = struct.pack(">Q", time.time_ns())

    def next(self):
        remaining = self.end - self.i
        if remaining <= 0:
            return None
        n = min(self.spans_per_batch, remaining)
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(self.service)
        spans = rs.scope_spans.add().spans
        now = time.time_ns() - 10_000 * MS
        prefix, k = self.prefix, self.spans_per_trace
        made = 0
        while made < n:
            size = min(k, n - made)
            i = self.i
            trace_id = self.salt + struct.pack(">Q", i)
            root_id = struct.pack(">Q", (i << 8) | 1)
            root = spans.add(trace_id=trace_id, span_id=root_id, name=f"{prefix}-{i:07d}",
                             kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=now,
                             end_time_unix_nano=now + size * MS)
            if self.tenants:
                root.attributes.extend([_str("tenant.id", f"{prefix}-tenant-{i:07d}"),
                                        _str("enduser.id", f"{prefix}-user-{i:07d}"),
                                        _str("pipeline.mode", "chat")])
            for j in range(1, size):
                spans.add(trace_id=trace_id, span_id=struct.pack(">Q", (i + j) << 8 | 2), parent_span_id=root_id,
                          name=f"{prefix}-{i + j:07d}", kind=Span.SPAN_KIND_INTERNAL,
                          start_time_unix_nano=now + (j - 1) * MS, end_time_unix_nano=now + j * MS)
            # The root last, as an SDK exports it after its children.
            spans.append(spans.pop(len(spans) - size))
            self.i += size
            made += size
        return req.SerializeToString(), n
