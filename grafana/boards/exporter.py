"""Exporter: the spanscope sidecar in detail — ingest per protocol and answer code, throttling, queue
and bytes held, processing time, trace assembly, cardinality protection, CPU and memory, per instance."""
from .common import (
    INSTANCE,
    JOB,
    Q,
    Row,
    agg,
    dashboard,
    quantile,
    sel,
    sum_rate,
    table,
    timeseries,
)

UID = "spanscope-exporter"

SELF = (JOB, INSTANCE)


def gauge_per_instance(metric: str) -> str:
    return agg("max", sel(metric, *SELF), ("instance",))


def build():
    ingest = Row("Ingest", [
        timeseries("Spans received", "Spans accepted per second by protocol and instance.", "ops",
                   Q(sum_rate("spanscope_spans_received_total", *SELF, by=("instance", "protocol")),
                     "{{instance}} {{protocol}}"), stack=True),
        timeseries("Spans rejected", "Spans dropped per second by protocol and reason.", "ops",
                   Q(sum_rate("spanscope_spans_rejected_total", *SELF, by=("protocol", "reason")),
                     "{{protocol}} {{reason}}"), stack=True),
        timeseries("Export requests by answer", "OTLP export requests per second by protocol and answer code "
                   "(200/OK; 400 and 413/415 are the sender's fault; 503/UNAVAILABLE is throttling).", "reqps",
                   Q(sum_rate("spanscope_export_requests_total", *SELF, by=("protocol", "code")),
                     "{{protocol}} {{code}}"), stack=True),
        timeseries("Throttled export requests", "Export requests per second refused with a retry delay, by the "
                   "limit reached: ingest_queue (requests waiting), ingest_bytes (bytes of request bodies "
                   "held) or grpc_calls (OTLP/gRPC calls being received). Senders retry after Retry-After; "
                   "if it persists, add replicas.", "reqps",
                   Q(sum_rate("spanscope_requests_throttled_total", *SELF, by=("instance", "protocol", "reason")),
                     "{{instance}} {{protocol}} {{reason}}")),
        timeseries("Ingest queue depth", "Export requests waiting to be processed (limits.ingest_queue is the "
                   "maximum).", "short", Q(gauge_per_instance("spanscope_ingest_queue_depth"), "{{instance}}")),
        timeseries("Request bodies held", "Bytes of export request bodies being received, queued or processed "
                   "(limits.ingest_bytes is the budget).", "bytes",
                   Q(gauge_per_instance("spanscope_ingest_bytes"), "{{instance}}")),
        timeseries("OTLP/gRPC calls being received", "gRPC export calls whose message is still arriving "
                   "(limits.grpc_calls is the maximum; more are refused before their message is read).", "short",
                   Q(gauge_per_instance("spanscope_grpc_calls_receiving"), "{{instance}}")),
        timeseries("Processing time", "Time to interpret and aggregate one export request.", "s",
                   Q(quantile(0.5, "spanscope_processing_seconds", *SELF, by=("instance",)), "p50 {{instance}}"),
                   Q(quantile(0.99, "spanscope_processing_seconds", *SELF, by=("instance",)), "p99 {{instance}}")),
    ])
    assembly = Row("Trace assembly", [
        timeseries("Pending traces", "Traces buffered until their local root (plus traces.finish_delay) or "
                   "the timeout.", "short", Q(gauge_per_instance("spanscope_traces_pending"), "{{instance}}")),
        timeseries("Pending spans", "Spans of the pending traces: most of the exporter's memory under load "
                   "(about 760 bytes each). At traces.max_pending_spans the oldest traces are finished early.",
                   "short", Q(gauge_per_instance("spanscope_trace_spans_pending"), "{{instance}}")),
        timeseries("Traces finished", "Traces finished per second after their root (root), flushed "
                   "incomplete (timeout), or early because the buffer held traces.max_pending traces "
                   "(traces_limit) or traces.max_pending_spans spans (spans_limit).", "ops",
                   Q(sum_rate("spanscope_traces_completed_total", *SELF, by=("reason",)), "{{reason}}")),
        timeseries("Spans left out of assembly", "Spans per second left out of their trace's breakdown because "
                   "it reached traces.max_spans (their per-span metrics still count).", "ops",
                   Q(sum_rate("spanscope_trace_spans_dropped_total", *SELF, by=("instance",)), "{{instance}}")),
    ])
    cardinality = Row("Cardinality", [
        timeseries("Active series by family", "Series held per metric family, top 10.", "short",
                   Q(f"topk(10, {agg('sum', sel('spanscope_active_series', *SELF), ('metric',))})", "{{metric}}")),
        timeseries("Active series per instance", "All series held per exporter (memory grows with it).", "short",
                   Q(agg("sum", sel("spanscope_active_series", *SELF), ("instance",)), "{{instance}}")),
        timeseries("Overflowing families", "Samples per second routed to a family's overflow series "
                   "(otel_metric_overflow=\"true\") because it reached limits.max_series_per_metric.", "ops",
                   Q(sum_rate("spanscope_series_overflowed_total", *SELF, by=("metric",)), "{{metric}}")),
        timeseries("Expired series and capped label values", "Idle series dropped after limits.series_ttl, "
                   "and label values replaced by __other__ under a per-label cap (tenant), per second.", "ops",
                   Q(sum_rate("spanscope_series_expired_total", *SELF, by=("metric",)), "expired {{metric}}"),
                   Q(sum_rate("spanscope_label_values_capped_total", *SELF, by=("label",)), "capped {{label}}")),
    ])
    process = Row("Process", [
        timeseries("CPU", "Cores used per instance (process_cpu_seconds_total). One exporter does its Python "
                   "work on one core: near 1, add replicas (docs/scaling.md).", "short",
                   Q(sum_rate("process_cpu_seconds_total", *SELF, by=("instance",)), "{{instance}}")),
        timeseries("Resident memory", "Resident memory per instance (process_resident_memory_bytes): series, "
                   "pending spans and the interaction writer's queue; compare with the container's limit.",
                   "bytes", Q(gauge_per_instance("process_resident_memory_bytes"), "{{instance}}")),
    ])
    build_row = Row("Build", [
        table("Exporter build", "Version, Python and span reader of every exporter instance "
              "(reader python: installed without a C compiler, so it decodes OTLP more slowly).", "none",
              Q(agg("max", sel("spanscope_build_info", *SELF),
                    ("instance", "version", "python_version", "reader"))),
              columns={"instance": "Instance", "version": "Version", "python_version": "Python", "reader": "Reader"},
              hide=("Time", "Value"), w=24, h=5),
    ])
    return dashboard(
        UID, "spanscope · Exporter",
        "The exporter itself per instance: ingest, answers, throttling, processing time, trace assembly, "
        "cardinality protection, CPU and memory, and build.",
        tags=["exporter"], variables=["job", "instance"], rows=[ingest, assembly, cardinality, process, build_row])
