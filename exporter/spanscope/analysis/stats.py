"""The statistics the analyses share: moments, histogram quantiles and the significance tests.

- `Moments`: count, sum and sum of squares, mergeable; enough for means, variances and Welch's test.
- `histogram_quantile`: Prometheus' interpolation inside the bucket holding the rank; the first
  bucket's lower bound is 0 (for a positive upper bound); a rank in the +Inf bucket returns the
  highest finite upper bound.
- `welch`: Welch's two-sample t-test (unequal variances; assumes independent requests and a mean
  that is roughly normal, which holds for tens of requests or more by the CLT).
- `two_proportions`: two-proportion z-test (normal approximation; needs >= 5 events and non-events
  per group to be trustworthy, reported as `reliable: false` otherwise).
Two-sided p-values.
"""
from __future__ import annotations

import math


class Moments:
    """count, sum and sum of squares of a sample."""

    __slots__ = ("n", "total", "squares")

    def __init__(self):
        self.n, self.total, self.squares = 0, 0.0, 0.0

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        self.squares += x * x

    def merge(self, other: Moments) -> None:
        self.n += other.n
        self.total += other.total
        self.squares += other.squares

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float:
        """The sample variance (n − 1), 0 below two values."""
        if self.n < 2:
            return 0.0
        return max((self.squares - self.total * self.total / self.n) / (self.n - 1), 0.0)


def histogram_quantile(q: float, bounds, counts) -> float:
    """`bounds`: finite upper bounds ascending; `counts`: non-cumulative counts, one more for +Inf."""
    total = sum(counts)
    if total == 0 or not bounds:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * total
    cumulative = 0
    for i, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            if i == len(bounds):  # +Inf bucket
                return bounds[-1]
            upper = bounds[i]
            lower = bounds[i - 1] if i > 0 else (0.0 if upper > 0 else upper)
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
    return bounds[-1]


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


def welch(a: Moments, b: Moments) -> dict | None:
    """Welch's t-test of b's mean against a's; None below two values in either."""
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.variance / a.n, b.variance / b.n
    if va + vb == 0:
        return {"test": "welch_t", "t": 0.0 if a.mean == b.mean else math.inf, "df": a.n + b.n - 2,
                "p_value": 1.0 if a.mean == b.mean else 0.0}
    t = (b.mean - a.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va * va) / (a.n - 1) + (vb * vb) / (b.n - 1))
    return {"test": "welch_t", "t": t, "df": df, "p_value": t_two_sided_p(t, df)}


def two_proportions(events_a: int, n_a: int, events_b: int, n_b: int) -> dict | None:
    """The z-test of b's event rate against a's; None when either group is empty."""
    if not n_a or not n_b:
        return None
    pooled = (events_a + events_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = events_b / n_b - events_a / n_a
    z = diff / se if se else 0.0
    p = math.erfc(abs(z) / math.sqrt(2))
    reliable = min(events_a, events_b, n_a - events_a, n_b - events_b) >= 5
    return {"test": "two_proportion_z", "z": z, "p_value": p, "reliable": reliable}
