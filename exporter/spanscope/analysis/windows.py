"""Windowed views of the per-minute rollups: what the metrics API and the insights answer.

Every view reads one Totals: the window's MinuteStats (analysis.window) merged. Percentiles come from the
histogram buckets with Prometheus' histogram_quantile interpolation.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from .. import __version__
from .stats import Moments, histogram_quantile
from .window import MinuteStats

MONTH_HOURS = 730  # 365 × 24 / 12
PERIOD_HOURS = {"day": 24, "month": MONTH_HOURS}  # a budget's period
VIEWS = ("dashboard", "performance", "costs", "quality", "cache", "health")


@dataclass(frozen=True)
class Query:
    minutes: int
    service: str | None
    mode: str | None
    operation: str | None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Totals(MinuteStats):
    """A window's minutes merged, with their latency per mode and service and the per-minute timeline."""

    __slots__ = ("by_mode", "by_service", "timeline")

    def __init__(self, n_buckets: int):
        super().__init__(n_buckets)
        self.by_mode: dict = defaultdict(Moments)
        self.by_service: dict = defaultdict(Moments)
        self.timeline: dict = {}  # minute -> [requests, errors, latency sum, cost, buckets, critical path]

    def add(self, minute: int, key: tuple, m: MinuteStats) -> None:
        self.merge(m)
        if m.requests:  # not a key holding only ratings (one given before its interaction was seen)
            self.by_service[key[0]].merge(m.latency)
            self.by_mode[key[1]].merge(m.latency)
        t = self.timeline.get(minute)
        if t is None:
            t = self.timeline[minute] = [0, 0, 0.0, Decimal(0), [0] * len(self.buckets), defaultdict(float)]
        t[0] += m.requests
        t[1] += m.errors
        t[2] += m.latency.total
        t[3] += m.cost
        t[4] = [a + b for a, b in zip(t[4], m.buckets, strict=True)]
        for component, seconds in m.critical.items():
            t[5][component] += seconds

    def request_hit_ratio(self) -> float | None:
        """The response cache's hit ratio, per request: requests answered from it / requests that
        looked it up. (Per cache layer the ratio is per lookup: `cache` view's `layers`.)"""
        hit, miss = self.cache_latency.get("hit"), self.cache_latency.get("miss")
        hits = hit.n if hit else 0
        return ratio(hits, hits + (miss.n if miss else 0))


def percentiles(bounds, buckets) -> dict:
    out = {}
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        v = histogram_quantile(q, bounds, buckets)
        out[f"{name}_ms"] = None if v != v else v * 1000
    return out


def window_end(now: float) -> float:
    """A window ends with the current minute (the rollups' minutes are whole)."""
    return (int(now // 60) + 1) * 60


def ratio(a, b):
    return a / b if b else None


class MetricsApi:
    def __init__(self, rollups, metrics, started_at: float, clock=time.time, budgets=()):
        self.rollups = rollups
        self.metrics = metrics
        self.budgets = budgets  # interpret.budgets.Budget
        self.started_at = started_at
        self.clock = clock

    def totals(self, q: Query, end_minute: int | None = None, minutes: int | None = None) -> Totals:
        t = Totals(len(self.rollups.bounds))
        for minute, key, m in self.rollups.window(minutes or q.minutes, end_minute, q.service, q.mode):
            t.add(minute, key, m)
        return t

    def covered_seconds(self, q: Query) -> float:
        """The seconds of the window that have happened while the exporter was up: rates divide by
        these, not by the window's length (four minutes of traffic over a 60-minute window would
        read 15 times low; the window's last minute has not ended yet)."""
        now = self.clock()
        start = max(window_end(now) - q.minutes * 60, self.started_at)
        return max(now - start, 1.0)

    # --- views -----------------------------------------------------------------------------------

    def performance(self, q: Query, t: Totals) -> dict:
        bounds = self.rollups.bounds
        comps = {}
        for name, c in sorted(t.components.items()):
            if q.operation and name != q.operation:
                continue
            comps[name] = {"calls": c.calls, "error_rate": ratio(c.errors, c.calls),
                           "mean_ms": c.duration.mean * 1000 if c.duration.n else None,
                           "critical_path_ms_per_request": ratio(t.critical.get(name, 0.0) * 1000, t.requests),
                           **percentiles(bounds, c.buckets)}
        timeline = [{"minute": iso(minute * 60), "requests": v[0], "error_rate": ratio(v[1], v[0]),
                     "mean_ms": ratio(v[2] * 1000, v[0]), "p95_ms": percentiles(bounds, v[4])["p95_ms"],
                     "critical_path_ms_per_request": {c: s * 1000 / v[0] for c, s in sorted(v[5].items())
                                                      if v[0] and (not q.operation or c == q.operation)}}
                    for minute, v in sorted(t.timeline.items())]
        return {
            "requests": t.requests, "requests_per_second": t.requests / self.covered_seconds(q),
            "error_rate": ratio(t.errors, t.requests),
            "latency": {"mean_ms": t.latency.mean * 1000 if t.latency.n else None, **percentiles(bounds, t.buckets)},
            "by_mode": {k: {"requests": s.n, "mean_ms": s.mean * 1000} for k, s in sorted(t.by_mode.items())},
            "components": comps, "timeline": timeline,
        }

    def costs(self, q: Query, t: Totals) -> dict:
        per_hour = t.cost * 3600 / Decimal(str(self.covered_seconds(q)))
        saved = self._counter_total(self.metrics.cost_saved, q.service)
        return {
            "total_usd": float(t.cost), "cost_per_request_usd": float(t.cost / t.requests) if t.requests else None,
            "cost_per_hour_usd": float(per_hour), "projected_monthly_usd": float(per_hour * MONTH_HOURS),
            "tokens": dict(t.tokens),
            "by_model": {k: {"requests": m.requests, "cost_usd": float(m.cost),
                             "cost_per_request_usd": float(m.cost / m.requests) if m.requests else None}
                         for k, m in sorted(t.models.items())},
            "saved_usd_since_start": saved,
            "budgets": self.budget_states(),
        }

    def budget_states(self) -> list[dict]:
        """Each budget against the spend since the exporter started, projected over the budget's period
        at the same hourly rate: `over` when the projection passes the budget. (Prometheus holds the
        spend per day and per 30 days: `scope_name_period:llm_budget_spent:ratio`.)"""
        m, hours = self.metrics, max(self.clock() - self.started_at, 1.0) / 3600
        spent = {"tenant": defaultdict(Decimal), "service": defaultdict(Decimal)}
        for (_svc, _mode, tenant), s in m.request_cost.series.items():
            spent["tenant"][tenant] += Decimal(str(s[0]))
        for key, s in m.cost.series.items():
            spent["service"][key[0]] += Decimal(str(s[0]))
        states = []
        for b in self.budgets:
            used = spent[b.scope].get(b.name, Decimal(0))
            projected = used / Decimal(str(hours)) * PERIOD_HOURS[b.period]
            states.append({"scope": b.scope, "name": b.name, "period": b.period, "budget_usd": float(b.usd),
                           "spent_usd_since_start": float(used), "projected_period_usd": float(projected),
                           "projected_ratio": float(projected / b.usd),
                           "state": "over" if projected > b.usd else "within"})
        return states

    def quality(self, q: Query, t: Totals) -> dict:
        return {
            "quality_score": t.quality.mean, "confidence": t.confidence.mean,
            "citations_per_response": t.citations.mean,
            "degraded_rate": ratio(t.degraded, t.requests), "ratings": t.ratings.n, "average_rating": t.ratings.mean,
            "by_model": {k: m.quality.mean for k, m in sorted(t.models.items()) if m.quality.n},
        }

    def cache(self, q: Query, t: Totals) -> dict:
        layers = defaultdict(lambda: {"hits": 0, "misses": 0})
        for (layer, result), n in t.cache.items():
            layers[layer]["hits" if result == "hit" else "misses"] += n
        for v in layers.values():
            v["hit_ratio"] = ratio(v["hits"], v["hits"] + v["misses"])
        hit, miss = t.cache_latency.get("hit"), t.cache_latency.get("miss")
        return {
            "request_hit_ratio": t.request_hit_ratio(),
            "layers": dict(sorted(layers.items())),
            "hit_latency_ms": hit.mean * 1000 if hit and hit.n else None,
            "miss_latency_ms": miss.mean * 1000 if miss and miss.n else None,
        }

    def health(self, q: Query, t: Totals) -> dict:
        m = self.metrics
        return {
            "uptime_seconds": self.clock() - self.started_at,
            "spans_received_total": sum(s[0] for s in m.spans_received.series.values()),
            "spans_rejected_total": sum(s[0] for s in m.spans_rejected.series.values()),
            "requests_throttled_total": sum(s[0] for s in m.throttled.series.values()),
            "traces_pending": sum(s[0] for s in m.traces_pending.series.values()),
            "active_series": sum(len(f.series) for f in m.store.families.values()),
            "requests_in_window": t.requests, "error_rate": ratio(t.errors, t.requests),
        }

    def dashboard(self, q: Query, t: Totals) -> dict:
        perf = self.performance(q, t)
        return {
            "requests": t.requests, "requests_per_second": perf["requests_per_second"],
            "error_rate": perf["error_rate"], "latency": perf["latency"],
            "cost": {k: v for k, v in self.costs(q, t).items() if k != "by_model"},
            "cache_hit_ratio": t.request_hit_ratio(),
            "quality_score": t.quality.mean, "average_rating": t.ratings.mean,
        }

    @staticmethod
    def _counter_total(family, service):
        return float(sum(s[0] for k, s in family.series.items() if service is None or k[0] == service))

    def envelope(self, q: Query, data: dict) -> dict:
        now = self.clock()
        end = window_end(now)
        return {"timestamp": iso(now), "version": __version__,
                "window": {"minutes": q.minutes, "start": iso(end - q.minutes * 60), "end": iso(end),
                           "covered_seconds": self.covered_seconds(q)},
                "filters": {"service": q.service, "mode": q.mode, "operation": q.operation}, "data": data}
