"""Performance Overview: is the pipeline fast and healthy right now, and where is it not?"""
from .common import (
    MODE,
    SERVICE,
    TENANT,
    Q,
    Row,
    bargauge,
    dashboard,
    heatmap,
    or_zero,
    quantile,
    ratio,
    stat,
    sum_increase,
    sum_rate,
    timeseries,
)

UID = "spanscope-performance"

REQ = "pipeline_requests_total"
LAT = "pipeline_request_duration_seconds"
COMP = "pipeline_component_duration_seconds"

ERROR_RATIO = ratio(or_zero(sum_rate(REQ, SERVICE, MODE, 'status="error"')), sum_rate(REQ, SERVICE, MODE))


def burn_rate(slo: str, window: str) -> str:
    """SLO error ratio over `window` / the service's error budget, from the recording rules of
    prometheus/rules/slo.yml (the same series the multi-window burn-rate alerts read; objectives,
    per service where set, live in thresholds.yml)."""
    return (f'slo:sli_error:ratio_rate{window}{{slo="{slo}",{SERVICE}}}\n'
            f'/\nslo:service_error_budget:ratio{{slo="{slo}"}}')


def build():
    overview = Row("Overview", [
        stat("Request rate", "Finished requests per second (local root spans).", "reqps",
             Q(sum_rate(REQ, SERVICE, MODE))),
        stat("Error ratio", "Share of requests whose root span failed (status ERROR or error.type).",
             "percentunit", Q(ERROR_RATIO), steps=((None, "green"), (0.01, "orange"), (0.05, "red"))),
        stat("p95 end-to-end latency", "95th percentile of the root span duration.", "s",
             Q(quantile(0.95, LAT, SERVICE, MODE)), steps=((None, "green"), (2, "orange"), (5, "red"))),
        stat("Availability burn rate (1h)",
             "How fast the worst selected service spends its availability error budget: error ratio over "
             "1h / budget. 1 spends it exactly over the SLO period; 14.4 (with the 5m window) pages.",
             "suffix:x", Q(f"max(\n{burn_rate('availability', '1h')}\n)"),
             steps=((None, "green"), (1, "orange"), (14.4, "red")), decimals=2),
    ])
    latency = Row("Latency", [
        timeseries("End-to-end latency p50 / p95 / p99",
                   "Root span duration percentiles. Dots are exemplars: click one to open its trace.", "s",
                   Q(quantile(0.5, LAT, SERVICE, MODE), "p50", exemplar=True),
                   Q(quantile(0.95, LAT, SERVICE, MODE), "p95", exemplar=True),
                   Q(quantile(0.99, LAT, SERVICE, MODE), "p99", exemplar=True)),
        heatmap("End-to-end latency distribution",
                "Requests per latency bucket over time; exemplars link to traces.", "s",
                Q(sum_increase(LAT + "_bucket", SERVICE, MODE, by=("le",))), exemplars=True),
        timeseries("p95 latency by mode", "95th percentile end-to-end latency per pipeline.mode.", "s",
                   Q(quantile(0.95, LAT, SERVICE, MODE, by=("mode",)), "{{mode}}", exemplar=True)),
        timeseries("p95 latency by cache status",
                   "95th percentile end-to-end latency of response-cache hits, misses and requests "
                   "without a response cache (none).", "s",
                   Q(quantile(0.95, LAT, SERVICE, MODE, by=("cache_status",)), "{{cache_status}}",
                     exemplar=True)),
    ])
    components = Row("Components", [
        timeseries("Component p95 latency", "95th percentile span duration per pipeline component.", "s",
                   Q(quantile(0.95, COMP, SERVICE, by=("component",)), "{{component}}", exemplar=True)),
        bargauge("Slowest components (p95)", "The five components with the highest p95 span duration now.",
                 "s", Q("topk(5,\n  " + quantile(0.95, COMP, SERVICE, by=("component",)) + "\n)",
                        "{{component}}", instant=True)),
        timeseries("Component error ratio",
                   "Failed spans / all spans per component (status ERROR or error.type).", "percentunit",
                   Q(ratio(sum_rate("pipeline_component_errors_total", SERVICE, by=("component",)),
                           sum_rate(COMP + "_count", SERVICE, by=("component",))), "{{component}}"),
                   min_val=0),
        timeseries("Component errors by type", "Failed spans per second by component and error.type.",
                   "reqps",
                   Q(sum_rate("pipeline_component_errors_total", SERVICE, by=("component", "error_type")),
                     "{{component}} {{error_type}}"), stack=True),
    ])
    slo = Row("SLO", [
        timeseries("Error budget burn rate",
                   "Burn rate per service and SLO (availability: failed requests; latency: requests slower "
                   "than the objective's threshold) over the short and long windows the PipelineErrorBudgetBurn "
                   "and latency burn alerts use. Above 14.4 on both 1h and 5m pages.", "suffix:x",
                   *(Q(burn_rate(s, w), f"{{{{service}}}} {s} {w}") for s in ("availability", "latency")
                     for w in ("5m", "1h", "6h")), w=24),
    ])
    traffic = Row("Traffic", [
        timeseries("Requests by status", "Finished requests per second, ok vs error.", "reqps",
                   Q(sum_rate(REQ, SERVICE, MODE, by=("status",)), "{{status}}"), stack=True),
        timeseries("Requests by tenant", "Finished requests per second per tenant (tenants beyond the "
                   "exporter's cap are grouped as __other__).", "reqps",
                   Q(sum_rate("pipeline_tenant_requests_total", SERVICE, TENANT, by=("tenant",)), "{{tenant}}"),
                   stack=True),
    ])
    return dashboard(
        UID, "spanscope · Performance Overview",
        "Request rate, errors and latency of the LLM/RAG pipeline, end to end and per component.",
        tags=["performance"], variables=["service", "mode", "tenant"],
        rows=[overview, latency, components, slo, traffic])
