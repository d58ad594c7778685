"""Latency Breakdown & Features: where does a request's time go, which features cost how much,
and what would latency be with features toggled (what-if)?"""
from grafana_foundation_sdk.models import dashboard as m_dashboard

from .common import (
    MODE,
    SCENARIO,
    SERVICE,
    Q,
    Row,
    agg,
    bargauge,
    dashboard,
    mean,
    quantile,
    sel,
    stat,
    sum_rate,
    table,
    timeseries,
)

UID = "spanscope-latency-breakdown"

LAT = "pipeline_request_duration_seconds"
CRITICAL = "pipeline_component_critical_path_seconds_total"
SELF = "pipeline_component_self_seconds_total"
MEASURED = "end-to-end (measured mean)"

# Component families carry no mode label: per-request means divide by all requests of the service.
PER_REQUEST = f"scalar({sum_rate('pipeline_requests_total', SERVICE)})"


def per_request(counter: str) -> str:
    return f"{sum_rate(counter, SERVICE, by=('component',))}\n/ {PER_REQUEST}"


def build():
    breakdown_panel = timeseries(
        "Critical path per request, by component",
        "Mean seconds per request each component spends on the critical path (stacked). The stack sums "
        "to the mean end-to-end latency, drawn as a dashed line, also when components run in parallel. "
        "All modes: component series carry no mode label.", "s",
        Q(per_request(CRITICAL), "{{component}}"),
        Q(mean(LAT, SERVICE), MEASURED), w=24, h=9, stack=True)
    breakdown_panel = breakdown_panel.override_by_name(MEASURED, [
        m_dashboard.DynamicConfigValue(id_val="custom.stacking", value={"mode": "none", "group": "A"}),
        m_dashboard.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        m_dashboard.DynamicConfigValue(id_val="custom.lineWidth", value=2),
        m_dashboard.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
        m_dashboard.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "white"}),
    ])
    critical = Row("Critical path", [
        breakdown_panel,
        bargauge("Share of the critical path", "Fraction of all request time spent in each component.",
                 "percentunit",
                 Q(f"{sum_rate(CRITICAL, SERVICE, by=('component',))}\n/ scalar({sum_rate(CRITICAL, SERVICE)})",
                   "{{component}}", instant=True), max_val=1),
        timeseries("Self time per request, by component",
                   "Mean exclusive seconds per request per component: span duration minus the union of its "
                   "children. Unlike the critical path, parallel work counts in full.", "s",
                   Q(per_request(SELF), "{{component}}")),
    ])
    features = Row("Features", [
        table("Feature impact", "Per feature: enabled state, rollout, mean critical-path seconds per request "
              "it contributes, and the hit ratio of caching features (sliding window).", "s",
              Q(agg("max", "feature_latency_contribution_seconds", ("feature",))),
              Q(agg("max", "feature_enabled", ("feature", "category", "required"))),
              Q(agg("max", "feature_rollout_ratio", ("feature",))),
              Q(agg("max", "feature_cache_hit_ratio", ("feature",))),
              columns={"Value #A": "Latency contribution", "Value #B": "Enabled",
                       "Value #C": "Rollout", "Value #D": "Cache hit ratio"},
              units={"Latency contribution": "s", "Enabled": "bool_on_off", "Rollout": "percentunit",
                     "Cache hit ratio": "percentunit"}),
        bargauge("Latency contribution by feature",
                 "Mean critical-path seconds per request spent in each feature's components.", "s",
                 Q(agg("max", "feature_latency_contribution_seconds", ("feature",)), "{{feature}}", instant=True)),
    ])
    whatif = Row("What-if", [
        bargauge("What-if: projected mean latency",
                 "Projected mean end-to-end latency per configured scenario: current mean minus the "
                 "contribution of features turned off plus the saving lost by caches turned off.", "s",
                 Q(agg("max", "feature_whatif_projected_latency_seconds", ("scenario",)), "{{scenario}}",
                   instant=True)),
        stat("Current vs optimized", "The mean end-to-end latency now (the `current` scenario, no toggles) "
             "side by side with the projection of the scenarios chosen in What-if scenario (default "
             "all_optimizations). Both come from the exporter's sliding window over all traffic.", "s",
             Q(sel("feature_whatif_projected_latency_seconds", 'scenario="current"'), "current"),
             Q(agg("max", sel("feature_whatif_projected_latency_seconds", SCENARIO, 'scenario!="current"'),
                   ("scenario",)), "{{scenario}}"), w=12, h=8),
    ])
    timeline = Row("Timeline", [
        timeseries("Latency timeline", "End-to-end latency percentiles and mean over time; exemplar dots "
                   "link to traces.", "s",
                   Q(quantile(0.5, LAT, SERVICE, MODE), "p50", exemplar=True),
                   Q(quantile(0.95, LAT, SERVICE, MODE), "p95", exemplar=True),
                   Q(quantile(0.99, LAT, SERVICE, MODE), "p99", exemplar=True),
                   Q(mean(LAT, SERVICE, MODE), "mean"), w=24),
    ])
    return dashboard(
        UID, "spanscope · Latency Breakdown & Features",
        "Critical-path breakdown per component (sums to end-to-end latency), self time, feature impact "
        "and what-if projections.",
        tags=["latency", "features"], variables=["service", "mode", "scenario"],
        rows=[critical, features, whatif, timeline])
