"""System Health: is everything that feeds the dashboards working — the exporters (up, ingest,
rejections, throttling, cardinality) and the pipeline's dependencies (tools, RAG sources, circuit
breakers)? The Exporter dashboard has the details of the exporter itself."""
from .common import (
    JOB,
    SERVICE,
    Q,
    Row,
    agg,
    dashboard,
    or_zero,
    quantile,
    ratio,
    sel,
    stat,
    sum_rate,
    timeseries,
)

UID = "spanscope-system-health"

RECEIVED = "spanscope_spans_received_total"
REJECTED = "spanscope_spans_rejected_total"
EXPORTS = "spanscope_export_requests_total"
THROTTLED = "spanscope_requests_throttled_total"
OPEN = 'state="open"'


def build():
    overview = Row("Overview", [
        stat("Exporters up", "Scrape targets of the selected jobs that answer (Prometheus `up`).", "short",
             Q(f"sum({sel('up', JOB)})"), w=4, steps=((None, "red"), (1, "green"))),
        stat("Spans received", "Spans accepted per second over all protocols and exporters.", "ops",
             Q(sum_rate(RECEIVED, JOB)), w=4),
        stat("Spans rejected", "Rejected spans / all spans offered (invalid ids or timestamps, ...).",
             "percentunit",
             Q(ratio(or_zero(sum_rate(REJECTED, JOB)),
                     f"{sum_rate(RECEIVED, JOB)} + {or_zero(sum_rate(REJECTED, JOB))}")),
             w=4, steps=((None, "green"), (0.001, "orange"), (0.01, "red"))),
        stat("Exports throttled", "Export requests answered 503/UNAVAILABLE (ingest queue full) / all export "
             "requests.", "percentunit",
             Q(ratio(or_zero(sum_rate(THROTTLED, JOB)), sum_rate(EXPORTS, JOB))),
             w=4, steps=((None, "green"), (0.001, "orange"), (0.05, "red"))),
        stat("Pending traces", "Traces buffered for assembly, waiting for their root or the timeout.", "short",
             Q(f"sum({sel('spanscope_traces_pending', JOB)})"), w=4),
        stat("Open circuit breakers", "Circuit breakers of the selected services that are open now.", "short",
             Q(agg("sum", agg("max", sel("circuit_breaker_state", SERVICE, OPEN), ("service", "breaker")))),
             w=4, steps=((None, "green"), (1, "red"))),
    ])
    exporter = Row("Exporters", [
        timeseries("Spans received by protocol", "Spans accepted per second: grpc, http_protobuf, http_json.",
                   "ops", Q(sum_rate(RECEIVED, JOB, by=("protocol",)), "{{protocol}}"), stack=True),
        timeseries("Spans rejected by reason", "Spans dropped per second by protocol and reason "
                   "(invalid_span, invalid_timestamps, ...).", "ops",
                   Q(sum_rate(REJECTED, JOB, by=("protocol", "reason")), "{{protocol}} {{reason}}"), stack=True),
        timeseries("Processing time", "Time to interpret and aggregate one export request, p50 and p99.", "s",
                   Q(quantile(0.5, "spanscope_processing_seconds", JOB), "p50"),
                   Q(quantile(0.99, "spanscope_processing_seconds", JOB), "p99")),
        timeseries("Series held and overflowing", "Series held per exporter, and samples per second that went "
                   "to a family's overflow series because it reached its series limit.", "short",
                   Q(agg("sum", sel("spanscope_active_series", JOB), ("instance",)), "held {{instance}}"),
                   Q(sum_rate("spanscope_series_overflowed_total", JOB, by=("instance",)), "overflow/s {{instance}}")),
    ])
    dependencies = Row("Pipeline dependencies", [
        timeseries("Tool success ratio", "Successful tool executions / all, per tool.", "percentunit",
                   Q(ratio(sum_rate("pipeline_tool_calls_total", SERVICE, 'outcome="success"', by=("tool",)),
                           sum_rate("pipeline_tool_calls_total", SERVICE, by=("tool",))), "{{tool}}"),
                   w=8, min_val=0, max_val=1),
        timeseries("RAG success ratio", "Successful RAG lookups / all, per source.", "percentunit",
                   Q(ratio(sum_rate("pipeline_rag_lookups_total", SERVICE, 'outcome="success"', by=("source",)),
                           sum_rate("pipeline_rag_lookups_total", SERVICE, by=("source",))), "{{source}}"),
                   w=8, min_val=0, max_val=1),
        timeseries("Circuit breakers by state", "How many breakers are closed, half_open and open.", "short",
                   Q(agg("sum", agg("max", sel("circuit_breaker_state", SERVICE), ("service", "breaker", "state")),
                         ("state",)), "{{state}}"), w=8, stack=True),
    ])
    return dashboard(
        UID, "spanscope · System Health",
        "Exporters up and keeping up (ingest, rejections, throttling, cardinality), and the pipeline's tools, "
        "RAG sources and circuit breakers.",
        tags=["health"], variables=["job", "service"], rows=[overview, exporter, dependencies])
