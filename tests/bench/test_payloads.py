"""The bench's payloads have the shape the issue asks for: requests of 7-10 spans with GenAI
attributes and flag events, whole traces in export requests of 512 spans."""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import payloads  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)


def attributes(span) -> dict:
    return {kv.key: kv.value for kv in span.attributes}


def test_requests_of_seven_to_ten_spans_in_whole_traces():
    traces = defaultdict(list)
    for body in payloads.batches(8):
        request = ExportTraceServiceRequest.FromString(body)
        spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert len(spans) >= 512
        in_request = defaultdict(list)
        for span in spans:
            in_request[span.trace_id].append(span)
        for trace_id, trace in in_request.items():
            assert trace_id not in traces, "a trace split across export requests"
            traces[trace_id] = trace
    sizes = [len(t) for t in traces.values()]
    assert min(sizes) >= 7 and max(sizes) <= 10, sorted(set(sizes))
    assert 8 <= sum(sizes) / len(sizes) <= 9
    for trace in traces.values():
        root = trace[-1]  # exported last, after its children
        assert root.parent_span_id == b"" and all(s.parent_span_id == root.span_id for s in trace[:-1])
        assert [e.name for e in root.events] == ["feature_flag.evaluation"] * 4
        genai = [attributes(s) for s in trace if "gen_ai.operation.name" in attributes(s)]
        assert genai and all(a["gen_ai.usage.input_tokens"].int_value > 0 for a in genai)
