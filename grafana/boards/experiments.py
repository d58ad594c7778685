"""Experiments: for one feature flag, how do its variants compare on latency, errors and cost?"""
from .common import (
    FLAG,
    RATE_INTERVAL,
    SERVICE,
    Q,
    Row,
    bargauge,
    dashboard,
    mean,
    quantile,
    ratio,
    sel,
    sum_rate,
    table,
    timeseries,
)

UID = "spanscope-experiments"

LAT = "feature_flag_variant_request_duration_seconds"
ERRORS = "feature_flag_variant_errors_total"
COST = "feature_flag_variant_cost_usd_total"
BY = ("variant",)

REQUESTS = sum_rate(LAT + "_count", SERVICE, FLAG, by=BY)
ERROR_RATIO = ratio(sum_rate(ERRORS, SERVICE, FLAG, by=BY), REQUESTS)
COST_PER_REQUEST = ratio(sum_rate(COST, SERVICE, FLAG, by=BY), REQUESTS)
P95 = quantile(0.95, LAT, SERVICE, FLAG, by=BY)


def build():
    traffic = Row("Traffic split", [
        timeseries("Evaluations by variant and reason", "feature_flag.evaluation events per second for "
                   "$flag, by variant and resolution reason.", "ops",
                   Q(sum_rate("feature_flag_evaluations_total", SERVICE, FLAG, by=("variant", "reason")),
                     "{{variant}} ({{reason}})"), stack=True),
        bargauge("Share of requests per variant", "Fraction of the requests that evaluated $flag, per variant.",
                 "percentunit",
                 Q(f"{REQUESTS}\n/ scalar({sum_rate(LAT + '_count', SERVICE, FLAG)})", "{{variant}}",
                   instant=True), max_val=1),
    ])
    compare = Row("Variant comparison", [
        timeseries("p95 latency by variant", "95th percentile end-to-end latency of requests per variant of "
                   "$flag; exemplars link to traces.", "s",
                   Q(P95, "{{variant}}", exemplar=True)),
        timeseries("Mean latency by variant", "Mean end-to-end latency per variant of $flag.", "s",
                   Q(mean(LAT, SERVICE, FLAG, by=BY), "{{variant}}")),
        timeseries("Error ratio by variant", "Failed requests / requests per variant of $flag.", "percentunit",
                   Q(ERROR_RATIO, "{{variant}}"), min_val=0),
        timeseries("Cost per request by variant", "Mean LLM cost (USD) of a request per variant of $flag.",
                   "currencyUSD", Q(COST_PER_REQUEST, "{{variant}}")),
        timeseries("Requests by variant", "Requests per second that evaluated $flag, per variant.", "reqps",
                   Q(REQUESTS, "{{variant}}"), stack=True),
        table("Variant scorecard", "Now, per variant of $flag: request rate, p95 latency, error ratio and "
              "cost per request.", "short",
              Q(REQUESTS), Q(P95), Q(ERROR_RATIO), Q(COST_PER_REQUEST),
              columns={"Value #A": "Requests/s", "Value #B": "p95 latency", "Value #C": "Error ratio",
                       "Value #D": "Cost per request"},
              units={"Requests/s": "reqps", "p95 latency": "s", "Error ratio": "percentunit",
                     "Cost per request": "currencyUSD"}),
    ])
    feature = 'feature="$flag"'  # a catalogue feature's flag has the feature's name
    rollout = Row("Guarded rollout", [
        timeseries("Rollout share", "Share of users the feature $flag is rolled out to; a drop to 0 is a "
                   "rollback.", "percentunit", Q(f"max({sel('feature_rollout_ratio', feature)})", "share"),
                   w=8, min_val=0, max_val=1),
        timeseries("Rollout stage", "Stage of the running rollout of $flag (0 when none runs).", "short",
                   Q(f"max({sel('feature_rollout_stage', feature)})", "stage"), w=8, min_val=0),
        timeseries("Rollout decisions", "Decisions on the rollout of $flag: start, advance and rollback by the "
                   "guards, manual ones through the API (GET /api/features/$flag has their evidence).", "short",
                   Q(f"sum by (decision) (increase({sel('feature_rollout_decisions_total', feature)}"
                     f"[{RATE_INTERVAL}]))", "{{decision}}"), w=8, bars=True),
    ])
    return dashboard(
        UID, "spanscope · Experiments",
        "A/B comparison of the variants of one feature flag (choose it in Feature flag): latency, errors, "
        "cost per request.",
        tags=["experiments", "features"], variables=["service", "flag"], rows=[traffic, compare, rollout])
