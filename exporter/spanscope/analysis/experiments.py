"""A/B comparison of flag variants: latency, errors, cost, and whether a difference is real.

Per (flag, variant) the rollups keep count, sum and sum of squares of request latency, errors and
cost (analysis.window.Variant), merged here over every minute since the exporter started. Each
variant is compared with the control (a variant named control, off or false; else the most
requested one) with the tests of analysis.stats:
- latency: Welch's two-sample t-test;
- error rate: two-proportion z-test (`reliable: false` below 5 errors and successes per variant).
Two-sided p-values; `significant` means p < 0.05.
"""
from __future__ import annotations

import math

from .stats import histogram_quantile, two_proportions, welch
from .window import Variant

CONTROL_NAMES = ("control", "off", "false", "disabled")
ALPHA = 0.05


class Experiments:
    def __init__(self, metrics, rollups):  # analysis.rollups.Rollups
        self.metrics = metrics
        self.rollups = rollups

    def by_flag(self) -> dict[str, dict[str, Variant]]:
        """flag -> variant -> its requests since the start (every minute of the rollups merged)."""
        out: dict[str, dict[str, Variant]] = {}
        for (flag, variant), v in self.rollups.variants().items():
            out.setdefault(flag, {})[variant] = v
        return out

    def flags(self) -> list[str]:
        return sorted(self.by_flag())

    def _p95(self, flag: str, variant: str) -> float | None:
        fam = self.metrics.variant_duration
        counts = None
        for key, series in fam.series.items():
            if len(key) == 3 and key[1] == flag and key[2] == variant:
                counts = series[0] if counts is None else [x + y for x, y in zip(counts, series[0], strict=True)]
        if counts is None:
            return None
        q = histogram_quantile(0.95, fam.buckets, counts)
        return None if math.isnan(q) else q

    def compare(self, flag: str, by_flag: dict | None = None) -> dict | None:
        """The flag's variants against its control; `by_flag`: a by_flag() to reuse for several flags."""
        variants = (self.by_flag() if by_flag is None else by_flag).get(flag)
        if not variants:
            return None
        control = next((v for v in CONTROL_NAMES if v in variants), None) or \
            max(variants, key=lambda v: variants[v].latency.n)
        base = variants[control]
        rows = []
        for name, s in sorted(variants.items()):
            p95 = self._p95(flag, name)
            n = s.latency.n
            row = {
                "variant": name, "control": name == control, "requests": n,
                "mean_latency_ms": s.latency.mean * 1000,
                "p95_latency_ms": p95 * 1000 if p95 is not None else None,
                "error_rate": s.errors / n,
                "cost_per_request_usd": float(s.cost / n),
            }
            if name != control:
                lat = welch(base.latency, s.latency)
                err = two_proportions(base.errors, base.latency.n, s.errors, n)
                row["latency_vs_control"] = lat and {**lat, "delta_ms": (s.latency.mean - base.latency.mean) * 1000,
                                                     "significant": lat["p_value"] < ALPHA}
                row["errors_vs_control"] = err and {**err, "significant": err["p_value"] < ALPHA}
            rows.append(row)
        return {"flag": flag, "control": control, "alpha": ALPHA, "variants": rows,
                "method": "Welch's t-test on latency, two-proportion z-test on error rate, two-sided, "
                          "against the control variant; requests since the exporter started"}
