"""Evidence that may be watched continuously: always-valid p-values and confidence sequences.

A fixed-horizon test (analysis.stats) is valid only when it is read once, at a sample size chosen
in advance; checking it after every request and stopping at the first p < α makes false alarms far
more likely than α. A guarded rollout looks all the time, so it uses the mixture sequential
probability ratio test (mSPRT, Robbins 1970; Johari et al., "Always valid inference", 2017) on the
normal approximation of an estimate θ̂ with variance V:

    Λ(θ0) = sqrt(V / (V + τ²)) · exp(τ² (θ̂ − θ0)² / (2 V (V + τ²)))

Λ is the likelihood ratio against H0: θ = θ0, mixed over alternatives θ − θ0 ~ N(0, τ²). Under H0
it is a martingale, so P(Λ ever exceeds 1/α) ≤ α (Ville's inequality): 1/Λ is a p-value valid at
every look, and {θ0 : Λ(θ0) < 1/α} a confidence sequence — an interval that holds the true θ at
all times at once with probability 1 − α. The normal approximation (plug-in variance) needs tens of
observations per group, which the guards demand before they judge.

Means use the sample variance. A proportion's variance is known once the proportion is, so the
proportions are tested with the variance under θ0 (the rates that fit the data and θ0), and their
confidence sequence is every θ0 that test does not reject (searched numerically): a variance taken
from a group's own rare events made 0 errors in 50 requests look like certainty (p ≈ 0.01 against
a 5 % error ratio, where 0 of 50 happens 7.7 % of the time) and doubled the false alarms.

τ is the size of effect the test is tuned to find fastest; callers pass the tolerance they guard
(a 2-point error-ratio increase is found fastest with τ = 0.02).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .stats import Moments

METHOD = "mSPRT (normal mixture), always-valid"
CLOSE = 1e-9  # a confidence-sequence bound is found once log Λ there is this close below log(1/α)


@dataclass(frozen=True)
class Evidence:
    """θ̂, the (1 − α) confidence sequence around it at this look, and the always-valid p-value of θ = null."""

    estimate: float
    lower: float
    upper: float
    p_value: float
    null: float
    alpha: float
    n: tuple  # observations per group

    def as_json(self) -> dict:
        return {**asdict(self), "n": list(self.n), "method": METHOD}


def _check(tau: float, alpha: float) -> None:
    if not tau > 0 or not 0 < alpha < 1:  # τ = 0 mixes over no alternative: nothing could ever be found
        raise ValueError(f"need tau > 0 and 0 < alpha < 1, got tau={tau!r}, alpha={alpha!r}")


def _log_ratio(distance: float, variance: float, t2: float) -> float:
    """log Λ for an estimate `distance` from the null, with `variance`, mixed over N(0, τ² = t2)."""
    v = max(variance, 1e-300)
    log_shrink = math.log(v + t2) - math.log(v)  # log((V + τ²)/V), apart so that a tiny V cannot underflow it
    return -0.5 * log_shrink + t2 * distance * distance / (2 * v * (v + t2))


def _p_value(log_ratio: float) -> float:
    return 1.0 if log_ratio <= 0 else math.exp(-log_ratio)


def mixture(estimate: float, variance: float, null: float, tau: float, alpha: float, n: tuple) -> Evidence:
    """The mSPRT of H0: θ = `null` for an estimate with `variance` (of the estimate, not of one observation)."""
    _check(tau, alpha)
    v, t2 = max(variance, 1e-300), tau * tau
    log_shrink = math.log(v + t2) - math.log(v)
    half_width = math.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + 0.5 * log_shrink))
    p_value = _p_value(_log_ratio(estimate - null, v, t2))
    return Evidence(estimate, estimate - half_width, estimate + half_width, p_value, null, alpha, n)


def _inverted(estimate: float, variance_at, null: float, tau: float, alpha: float, n: tuple,
              lowest: float, highest: float) -> Evidence:
    """The mSPRT when the estimate's variance depends on θ (a proportion's does): H0: θ = `null` is tested
    with `variance_at(null)`, and the confidence sequence is every θ0 in [lowest, highest] that the same
    test would not reject, searched outwards from the estimate."""
    _check(tau, alpha)
    t2, threshold = tau * tau, math.log(1 / alpha)

    def excess(theta: float) -> float:  # > 0: θ0 = theta is rejected
        return _log_ratio(estimate - theta, variance_at(theta), t2) - threshold

    def half_width(v: float) -> float:  # of the sequence were the variance v everywhere (as in mixture)
        v = max(v, 1e-300)
        return math.sqrt(2 * v * (v + t2) / t2 * (threshold + 0.5 * (math.log(v + t2) - math.log(v))))

    floor, tolerance = 1e-6 * (highest - lowest), 1e-8 * (highest - lowest)
    first = max(half_width(variance_at(estimate)), floor)

    def bound(edge: float) -> float:
        """Between the estimate (not rejected) and `edge`: where the test starts to reject. Bracketed
        around a guess, then found by the Illinois method (regula falsi)."""
        if edge == estimate:
            return edge
        sign = 1.0 if edge > estimate else -1.0

        def at(width: float) -> float:
            return edge if (estimate + sign * width - edge) * sign >= 0 else estimate + sign * width

        # the guess: a few rounds of "mixture()'s half-width with the variance where the last one ended"
        width = first
        for _ in range(3):
            width = max(half_width(variance_at(at(width))), floor)
        outer = at(width)
        f_out = excess(outer)
        if -CLOSE < f_out < 0:
            return outer
        if f_out < 0:  # step out until the test rejects
            inner, f_in, grow = outer, f_out, iter((1.01, 1.1, 1.5))
            while outer != edge:
                width *= next(grow, 2.0)  # the guess is usually close: small steps first
                outer = at(width)
                f_out = excess(outer)
                if f_out >= 0:
                    break
                inner, f_in = outer, f_out
            if f_out < 0:
                return edge
        else:  # step in until it does not
            inner, f_in = estimate, None
            for shrink in (0.999, 0.99, 0.9, 0.5):
                point = estimate + sign * width * shrink
                f_point = excess(point)
                if f_point < 0:
                    inner, f_in = point, f_point
                    break
                outer, f_out = point, f_point
            if f_in is None:
                f_in = excess(estimate)
        while f_out > 4 * threshold + 10 and abs(outer - inner) > tolerance:  # Λ is steep where the variance vanishes
            mid = (inner + outer) / 2
            f_mid = excess(mid)
            if f_mid < 0:
                inner, f_in = mid, f_mid
            else:
                outer, f_out = mid, f_mid
        side = 0
        for _ in range(100):
            if abs(outer - inner) <= tolerance or f_in > -CLOSE:
                break
            mid = (inner * f_out - outer * f_in) / (f_out - f_in)
            f_mid = excess(mid)
            if f_mid < 0:
                inner, f_in = mid, f_mid
                if side < 0:
                    f_out /= 2
                side = -1
            else:
                outer, f_out = mid, f_mid
                if side > 0:
                    f_in /= 2
                side = 1
        return inner

    p_value = _p_value(_log_ratio(estimate - null, variance_at(null), t2))
    return Evidence(estimate, bound(lowest), bound(highest), p_value, null, alpha, n)


def difference_of_proportions(events_a: int, n_a: int, events_b: int, n_b: int, null: float = 0.0,
                              tau: float = 0.02, alpha: float = 0.05) -> Evidence | None:
    """θ = p_b − p_a (e.g. the new variant's error ratio minus the control's). The variance under
    θ = θ0 is the groups' Bernoulli variances at the rates that fit both groups and θ0 (pooled, shifted
    apart by θ0): a group's own rate is no estimate of its variance when its events are rare (0 errors
    in 50 requests of a canary would look like certainty)."""
    if n_a < 1 or n_b < 1:
        return None
    events, total = events_a + events_b, n_a + n_b

    def variance_at(theta: float) -> float:
        p_a = min(max((events - n_b * theta) / total, max(0.0, -theta)), min(1.0, 1.0 - theta))
        p_b = p_a + theta
        return p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b

    return _inverted(events_b / n_b - events_a / n_a, variance_at, null, tau, alpha, (n_a, n_b), -1.0, 1.0)


def proportion(events: int, n: int, null: float, tau: float = 0.05, alpha: float = 0.05) -> Evidence | None:
    """θ = p, the share of one group's observations that are events; the variance under θ = θ0 is
    θ0(1 − θ0)/n (the Bernoulli variance is known once p is)."""
    if n < 1:
        return None
    return _inverted(events / n, lambda theta: theta * (1 - theta) / n, null, tau, alpha, (n,), 0.0, 1.0)


def difference_of_means(a: Moments, b: Moments, null: float = 0.0, tau: float = 0.1,
                        alpha: float = 0.05) -> Evidence | None:
    """θ = mean_b − mean_a, with each group's sample variance (Welch's standard error)."""
    if a.n < 2 or b.n < 2:
        return None
    variance = a.variance / a.n + b.variance / b.n
    return mixture(b.mean - a.mean, variance, null, tau, alpha, (a.n, b.n))


def mean(m: Moments, null: float, tau: float = 0.1, alpha: float = 0.05) -> Evidence | None:
    """θ = the group's mean."""
    if m.n < 2:
        return None
    return mixture(m.mean, m.variance / m.n, null, tau, alpha, (m.n,))
