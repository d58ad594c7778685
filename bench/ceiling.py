"""The ceiling: decode each export request and walk every attribute in Python, nothing more.

    python bench/ceiling.py --payloads FILE [--warmup 3] [--duration 10]

In-process, no server, no aggregation: protobuf decode plus, for every span, its resource's,
its own and its events' attributes converted from AnyValue to Python values. No exporter written
in Python on this protobuf runtime can ingest spans faster per core than this, since it has to do
at least this much; the issue's target is to reach half of it with every feature on.
Prints one JSON object (spans per CPU second of this process, per-request latency percentiles).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MB, memory, percentile, read_payloads
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)


def value(v):
    """An OTLP AnyValue as a Python value (arrays as lists, key-value lists as dicts)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def walk(payload: bytes) -> int:
    """Decode one request and read every span's fields and attributes; returns the span count."""
    request = ExportTraceServiceRequest.FromString(payload)
    n = 0
    for rs in request.resource_spans:
        resource = {kv.key: value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for span in ss.spans:
                attrs = {kv.key: value(kv.value) for kv in span.attributes}
                events = [(ev.name, ev.time_unix_nano, {kv.key: value(kv.value) for kv in ev.attributes})
                          for ev in span.events]
                _ = (resource, span.trace_id, span.span_id, span.parent_span_id, span.name,
                     span.start_time_unix_nano, span.end_time_unix_nano, span.status.code, attrs, events)
                n += 1
    return n


def measure(payloads: list[bytes], warmup: float, duration: float) -> dict:
    clock, cpu = time.perf_counter, time.process_time
    deadline = clock() + warmup
    i = 0
    while clock() < deadline:
        walk(payloads[i % len(payloads)])
        i += 1
    spans, latencies = 0, []
    t0, c0 = clock(), cpu()
    deadline = t0 + duration
    while True:
        started = clock()
        spans += walk(payloads[i % len(payloads)])
        now = clock()
        latencies.append(now - started)
        i += 1
        if now >= deadline:
            break
    wall, used = clock() - t0, cpu() - c0
    mem = memory(__import__("os").getpid())
    return {
        "duration_s": round(wall, 3),
        "requests": len(latencies),
        "spans": spans,
        "spans_per_s": round(spans / wall, 1),
        "server_cpu_s": round(used, 3),
        "server_cores_busy": round(used / wall, 3),
        "spans_per_core_s": round(spans / used, 1) if used > 0 else None,
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "server_rss_mb": round(mem["rss_bytes"] / MB, 1),
        "server_peak_rss_mb": round(mem["peak_rss_bytes"] / MB, 1),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--payloads", required=True, help="file written by common.write_payloads")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args(argv)
    result = measure(read_payloads(args.payloads), args.warmup, args.duration)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
