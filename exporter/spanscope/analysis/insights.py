"""Insights from the rollups: trends, anomalies, patterns, and ranked recommendations.

- Trend: a window's value against the previous window and the same window a day earlier.
- Anomaly: a minute whose value lies more than 3.5 robust z-scores (median and MAD of the trailing
  baseline; 0.6745·(x − median)/MAD, the Iglewicz-Hoaglin modified z-score) from the baseline.
- Pattern: a mode or service whose mean latency differs from the rest with Welch's t-test p < 0.01
  and by at least 20 %.
- Recommendation: an action with its estimated impact in ms per request and USD per month.
Every finding carries its evidence numbers and a PromQL query that shows it in Prometheus.
"""
from __future__ import annotations

import statistics
from decimal import Decimal

from .stats import Moments, welch
from .windows import MONTH_HOURS, MetricsApi, Query, Totals, iso, percentiles, ratio

TREND_WARNING, TREND_CRITICAL = 0.20, 0.50   # relative change
ANOMALY_Z = 3.5
PATTERN_P, PATTERN_EFFECT = 0.01, 0.20
MIN_REQUESTS = 20                            # fewer in a window: no trend is claimed
SLOW_FEATURE_MS = 10.0                       # contribution below which no feature is worth turning off
EXPIRED_SHARE = 0.3                          # of a layer's misses, before a longer TTL is suggested
PROMQL = {
    "p95_latency": 'histogram_quantile(0.95, sum by (le) (rate(pipeline_request_duration_seconds_bucket[5m])))',
    "error_rate": 'sum(rate(pipeline_requests_total{status="error"}[5m])) / sum(rate(pipeline_requests_total[5m]))',
    "cost_per_hour": 'sum(rate(llm_cost_usd_total[1h])) * 3600',
    # Per request, as the metrics API's cache_hit_ratio: the response cache's hits / its hits and misses.
    "cache_hit_ratio": 'sum(rate(pipeline_requests_total{cache_status="hit"}[5m])) '
                       '/ sum(rate(pipeline_requests_total{cache_status=~"hit|miss"}[5m]))',
    "quality_score": 'sum(rate(pipeline_quality_score_sum[5m])) / sum(rate(pipeline_quality_score_count[5m]))',
}


def _stat_of(t: Totals, metric: str, minutes: int, bounds):
    if metric == "p95_latency":
        return percentiles(bounds, t.buckets)["p95_ms"]
    if metric == "error_rate":
        return ratio(t.errors, t.requests)
    if metric == "cost_per_hour":
        return float(t.cost) / (minutes / 60) if t.requests else None
    if metric == "cache_hit_ratio":
        return t.request_hit_ratio()
    if metric == "quality_score":
        return t.quality.mean
    raise KeyError(metric)


def severity(change: float, worse_when_up: bool) -> str:
    bad = change if worse_when_up else -change
    if bad >= TREND_CRITICAL:
        return "critical"
    if bad >= TREND_WARNING:
        return "warning"
    return "info"


WORSE_WHEN_UP = {"p95_latency": True, "error_rate": True, "cost_per_hour": True, "cache_hit_ratio": False,
                 "quality_score": False}


class Insights:
    def __init__(self, api: MetricsApi, impact=None, experiments=None, features=None):
        self.api = api
        self.impact = impact
        self.experiments = experiments
        self.features = features

    def _totals(self, q: Query, end_minute: int) -> Totals:
        return self.api.totals(q, end_minute)

    def trends(self, q: Query) -> list[dict]:
        now = self.api.rollups.now_minute()
        current = self._totals(q, now)
        previous = self._totals(q, now - q.minutes)
        day_ago = self._totals(q, now - 1440) if q.minutes <= 720 else None
        out = []
        if current.requests < MIN_REQUESTS:
            return out
        bounds = self.api.rollups.bounds
        for metric, worse_up in WORSE_WHEN_UP.items():
            value = _stat_of(current, metric, q.minutes, bounds)
            for label, base in (("previous window", previous), ("same window a day earlier", day_ago)):
                if base is None or base.requests < MIN_REQUESTS:
                    continue
                before = _stat_of(base, metric, q.minutes, bounds)
                if value is None or before in (None, 0):
                    continue
                change = (value - before) / abs(before)
                sev = severity(change, worse_up)
                if sev == "info" and abs(change) < TREND_WARNING:
                    continue
                out.append({
                    "type": "trend", "metric": metric, "severity": sev, "compared_with": label,
                    "message": f"{metric.replace('_', ' ')} {'up' if change > 0 else 'down'} "
                               f"{abs(change) * 100:.0f} % against the {label} ({before:.4g} → {value:.4g})",
                    "evidence": {"current": value, "baseline": before, "change_ratio": change,
                                 "window_minutes": q.minutes, "requests": current.requests},
                    "promql": PROMQL[metric],
                })
        return out

    def _minute_series(self, q: Query, minutes: int) -> list[tuple[int, float, float]]:
        """(minute, mean latency s, error rate) of each minute with traffic in the last `minutes`."""
        series = {}
        for minute, _, m in self.api.rollups.window(minutes, None, q.service, q.mode):
            s = series.setdefault(minute, [0, 0.0, 0])
            s[0] += m.requests
            s[1] += m.latency.total
            s[2] += m.errors
        return [(minute, total / n, errors / n) for minute, (n, total, errors) in sorted(series.items()) if n]

    def anomalies(self, q: Query, baseline_minutes: int = 180) -> list[dict]:
        """Minutes of the window far from the trailing baseline (robust z-score)."""
        series = self._minute_series(q, q.minutes + baseline_minutes)
        now = self.api.rollups.now_minute()
        window_start = now - q.minutes + 1
        baseline = [s for s in series if s[0] < window_start]
        recent = [s for s in series if s[0] >= window_start]
        out = []
        for index, metric in ((1, "mean_latency"), (2, "error_rate")):
            values = [s[index] for s in baseline]
            if len(values) < 10:
                continue
            med = statistics.median(values)
            mad = statistics.median(abs(v - med) for v in values)
            if mad == 0:
                mad = max(statistics.pstdev(values) * 0.6745, abs(med) * 0.01, 1e-9)
            for minute, *vals in recent:
                v = vals[index - 1]
                z = 0.6745 * (v - med) / mad
                if abs(z) >= ANOMALY_Z:
                    out.append({
                        "type": "anomaly", "metric": metric, "severity": "critical" if abs(z) >= 2 * ANOMALY_Z
                        else "warning", "at": iso(minute * 60),
                        "message": f"{metric.replace('_', ' ')} {'spike' if z > 0 else 'drop'} at "
                                   f"{iso(minute * 60)[11:16]} UTC: {v:.4g} against a baseline median of {med:.4g}",
                        "evidence": {"value": v, "baseline_median": med, "baseline_mad": mad, "robust_z": z,
                                     "baseline_minutes": len(values)},
                        "promql": PROMQL["p95_latency" if index == 1 else "error_rate"],
                    })
        return out

    def patterns(self, q: Query) -> list[dict]:
        t = self._totals(q, self.api.rollups.now_minute())
        out = []
        for dimension, groups in (("mode", t.by_mode), ("service", t.by_service)):
            if len(groups) < 2:
                continue
            for name, stat in groups.items():
                a, b = Moments(), stat  # the rest, and this group
                for other, s in groups.items():
                    if other != name:
                        a.merge(s)
                test = welch(a, b)
                if test is None or not a.mean:
                    continue
                effect = (b.mean - a.mean) / a.mean
                if test["p_value"] < PATTERN_P and abs(effect) >= PATTERN_EFFECT:
                    out.append({
                        "type": "pattern", "dimension": dimension, "value": name,
                        "severity": "warning" if effect > 0 else "info",
                        "message": f"requests with {dimension}={name} are {abs(effect) * 100:.0f} % "
                                   f"{'slower' if effect > 0 else 'faster'} than the rest "
                                   f"({b.mean * 1000:.0f} ms against {a.mean * 1000:.0f} ms)",
                        "evidence": {"mean_ms": b.mean * 1000, "rest_mean_ms": a.mean * 1000, "requests": b.n,
                                     "rest_requests": a.n, "p_value": test["p_value"], "test": "welch_t"},
                        "promql": f'sum(rate(pipeline_request_duration_seconds_sum{{{dimension}="{name}"}}[5m])) '
                                  f'/ sum(rate(pipeline_request_duration_seconds_count{{{dimension}="{name}"}}[5m]))',
                    })
        return out

    def insights(self, q: Query) -> list[dict]:
        order = {"critical": 0, "warning": 1, "info": 2}
        found = self.anomalies(q) + self.trends(q) + self.patterns(q)
        return sorted(found, key=lambda f: order[f["severity"]])

    # --- recommendations ---------------------------------------------------------------------------

    def recommendations(self, q: Query) -> list[dict]:
        out = []
        t = self._totals(q, self.api.rollups.now_minute())
        requests_per_month = t.requests / (q.minutes / 60) * MONTH_HOURS if t.requests else 0
        if self.impact is not None and self.features is not None:
            totals = self.impact.totals()
            mean = self.impact.mean_latency(totals)
            for name, c in self.impact.contributions(totals).items():
                feature = self.features.catalogue[name]
                ms = c * 1000
                if feature.required or not self.features.enabled(name) or ms < SLOW_FEATURE_MS:
                    continue
                saving = self.impact.cache_saving(totals, name) * 1000 if feature.caching else 0.0
                if ms - saving <= 0:
                    continue
                out.append({
                    "action": f"disable {name}", "kind": "feature",
                    "impact_ms_per_request": ms - saving, "impact_usd_per_month": 0.0,
                    "message": f"disabling {name} saves about {ms - saving:.0f} ms per request "
                               f"({c / mean * 100:.0f} % of {mean * 1000:.0f} ms)",
                    "evidence": {"contribution_ms": ms, "cache_saving_ms": saving, "mean_latency_ms": mean * 1000,
                                 "requests_in_window": totals.requests},
                    "promql": f'feature_latency_contribution_seconds{{feature="{name}"}}',
                })
        out += self._route_models(t, requests_per_month)
        out += self._cache_ttl(t)
        if self.experiments is not None:
            by_flag = self.experiments.by_flag()  # merged once for every flag
            for flag in sorted(by_flag):
                result = self.experiments.compare(flag, by_flag)
                for row in result["variants"]:
                    lat = row.get("latency_vs_control")
                    if lat and lat["significant"] and lat["delta_ms"] > 0:
                        out.append({
                            "action": f"investigate variant {row['variant']} of {flag}", "kind": "experiment",
                            "impact_ms_per_request": lat["delta_ms"], "impact_usd_per_month": 0.0,
                            "message": f"{flag}={row['variant']} is {lat['delta_ms']:.0f} ms slower than "
                                       f"{result['control']} (p={lat['p_value']:.2g})",
                            "evidence": {"variant": row, "control": result["control"]},
                            "promql": f'histogram_quantile(0.95, sum by (le, variant) (rate('
                                      f'feature_flag_variant_request_duration_seconds_bucket{{flag="{flag}"}}[5m])))',
                        })
        # Rank by money first (a month of savings), then by latency.
        return sorted(out, key=lambda r: (-r["impact_usd_per_month"], -r["impact_ms_per_request"]))

    def _cache_ttl(self, t: Totals) -> list[dict]:
        """Misses that cluster on expiry: a longer TTL would turn them into hits."""
        hit, miss = t.cache_latency.get("hit"), t.cache_latency.get("miss")
        if not (hit and hit.n and miss and miss.n and t.requests):
            return []
        gap_ms = (miss.mean - hit.mean) * 1000
        out = []
        for layer, expired in t.expired_misses.items():
            misses = t.cache.get((layer, "miss"), 0)
            if misses < MIN_REQUESTS or expired / misses < EXPIRED_SHARE or gap_ms <= 0:
                continue
            ms = expired / t.requests * gap_ms
            out.append({
                "action": f"raise the TTL of cache {layer}", "kind": "cache",
                "impact_ms_per_request": ms, "impact_usd_per_month": 0.0,
                "message": f"{expired / misses * 100:.0f} % of {layer} misses are expired entries; "
                           f"serving them as hits would save about {ms:.0f} ms per request",
                "evidence": {"misses": misses, "expired_misses": expired, "miss_latency_ms": miss.mean * 1000,
                             "hit_latency_ms": hit.mean * 1000},
                "promql": f'sum(rate(pipeline_cache_requests_total{{cache="{layer}",result="miss"}}[1h]))',
            })
        return out

    def _route_models(self, t: Totals, requests_per_month: float) -> list[dict]:
        """A cheaper model of similar quality could take the traffic of a more expensive one."""
        models = {k: (m.requests, m.cost, m.quality) for k, m in t.models.items()
                  if k != "none" and m.requests >= MIN_REQUESTS and m.quality.n}
        out = []
        for expensive, (n_e, cost_e, q_e) in models.items():
            for cheap, (n_c, cost_c, q_c) in models.items():
                per_e, per_c = cost_e / n_e, cost_c / n_c
                if cheap == expensive or per_c * 2 > per_e or q_c.mean < q_e.mean - 0.05:
                    continue
                share = n_e / t.requests
                usd = float((per_e - per_c) * Decimal(str(requests_per_month * share)))
                out.append({
                    "action": f"route {expensive} traffic to {cheap}", "kind": "routing",
                    "impact_ms_per_request": 0.0, "impact_usd_per_month": usd,
                    "message": f"{cheap} answers with similar quality ({q_c.mean:.2f} against {q_e.mean:.2f}) "
                               f"at {float(per_c):.5f} USD instead of {float(per_e):.5f} USD per request",
                    "evidence": {"requests": n_e, "cost_per_request_usd": float(per_e),
                                 "alternative_cost_per_request_usd": float(per_c), "quality": q_e.mean,
                                 "alternative_quality": q_c.mean},
                    "promql": 'sum by (model) (rate(llm_cost_usd_total[1h])) * 3600',
                })
        return out
