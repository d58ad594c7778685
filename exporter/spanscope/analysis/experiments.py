"""A/B comparison of flag variants: latency, errors, cost, and whether a difference is real.

Per (flag, variant) the exporter keeps count, sum and sum of squares of request latency, errors and
cost since it started. Each variant is compared with the control (a variant named control, off or
false; else the most requested one):
- latency: Welch's two-sample t-test (unequal variances; assumes independent requests and a mean
  that is roughly normal, which holds for tens of requests or more per variant by the CLT);
- error rate: two-proportion z-test (normal approximation; needs ≥ 5 errors and successes per
  variant to be trustworthy, reported as `reliable: false` otherwise).
Two-sided p-values; `significant` means p < 0.05.
"""
from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal

from ..interpret.summary import RequestSummary
from .quantiles import histogram_quantile

CONTROL_NAMES = ("control", "off", "false", "disabled")
ALPHA = 0.05


class VariantStats:
    __slots__ = ("n", "total", "squares", "errors", "cost")

    def __init__(self):
        self.n, self.total, self.squares, self.errors, self.cost = 0, 0.0, 0.0, 0, Decimal(0)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        if self.n < 2:
            return 0.0
        return max((self.squares - self.total * self.total / self.n) / (self.n - 1), 0.0)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(c) > tiny else 1 + aa / tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(c) > tiny else 1 + aa / tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return _betai(df / 2, 0.5, df / (df + t * t))


def welch(a: VariantStats, b: VariantStats) -> dict | None:
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.variance / a.n, b.variance / b.n
    if va + vb == 0:
        return {"test": "welch_t", "t": 0.0 if a.mean == b.mean else math.inf, "df": a.n + b.n - 2,
                "p_value": 1.0 if a.mean == b.mean else 0.0}
    t = (b.mean - a.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va * va) / (a.n - 1) + (vb * vb) / (b.n - 1))
    return {"test": "welch_t", "t": t, "df": df, "p_value": t_two_sided_p(t, df)}


def two_proportions(a: VariantStats, b: VariantStats) -> dict | None:
    if not a.n or not b.n:
        return None
    pooled = (a.errors + b.errors) / (a.n + b.n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.n + 1 / b.n))
    diff = b.errors / b.n - a.errors / a.n
    z = diff / se if se else 0.0
    p = math.erfc(abs(z) / math.sqrt(2))
    reliable = min(a.errors, b.errors, a.n - a.errors, b.n - b.errors) >= 5
    return {"test": "two_proportion_z", "z": z, "p_value": p, "reliable": reliable}


class Experiments:
    def __init__(self, metrics):
        self.metrics = metrics
        self.stats: dict[str, dict[str, VariantStats]] = defaultdict(lambda: defaultdict(VariantStats))

    def observe(self, r: RequestSummary) -> None:
        for flag, variant in r.variants.items():
            s = self.stats[flag][variant]
            s.n += 1
            s.total += r.duration
            s.squares += r.duration * r.duration
            s.errors += r.error
            s.cost += r.cost

    def flags(self) -> list[str]:
        return sorted(self.stats)

    def _p95(self, flag: str, variant: str) -> float | None:
        fam = self.metrics.variant_duration
        counts = None
        for key, series in fam.series.items():
            if len(key) == 3 and key[1] == flag and key[2] == variant:
                counts = series[0] if counts is None else [x + y for x, y in zip(counts, series[0])]
        if counts is None:
            return None
        q = histogram_quantile(0.95, fam.buckets, counts)
        return None if math.isnan(q) else q

    def compare(self, flag: str) -> dict | None:
        variants = self.stats.get(flag)
        if not variants:
            return None
        control = next((v for v in CONTROL_NAMES if v in variants), None) or max(variants, key=lambda v: variants[v].n)
        base = variants[control]
        rows = []
        for name, s in sorted(variants.items()):
            p95 = self._p95(flag, name)
            row = {
                "variant": name, "control": name == control, "requests": s.n,
                "mean_latency_ms": s.mean * 1000,
                "p95_latency_ms": p95 * 1000 if p95 is not None else None,
                "error_rate": s.errors / s.n if s.n else 0.0,
                "cost_per_request_usd": float(s.cost / s.n) if s.n else 0.0,
            }
            if name != control:
                lat, err = welch(base, s), two_proportions(base, s)
                row["latency_vs_control"] = lat and {**lat, "delta_ms": (s.mean - base.mean) * 1000,
                                                     "significant": lat["p_value"] < ALPHA}
                row["errors_vs_control"] = err and {**err, "significant": err["p_value"] < ALPHA}
            rows.append(row)
        return {"flag": flag, "control": control, "alpha": ALPHA, "variants": rows,
                "method": "Welch's t-test on latency, two-proportion z-test on error rate, two-sided, "
                          "against the control variant; requests since the exporter started"}
