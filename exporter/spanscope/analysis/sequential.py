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

τ is the size of effect the test is tuned to find fastest; callers pass the tolerance they guard
(a 2-point error-ratio increase is found fastest with τ = 0.02).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .stats import Moments

METHOD = "mSPRT (normal mixture), always-valid"


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


def mixture(estimate: float, variance: float, null: float, tau: float, alpha: float, n: tuple) -> Evidence:
    """The mSPRT of H0: θ = `null` for an estimate with `variance` (of the estimate, not of one observation)."""
    v, t2 = max(variance, 1e-300), tau * tau
    log_ratio = 0.5 * math.log(v / (v + t2)) + t2 * (estimate - null) ** 2 / (2 * v * (v + t2))
    p_value = 1.0 if log_ratio <= 0 else math.exp(-log_ratio)
    half_width = math.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + 0.5 * math.log((v + t2) / v)))
    return Evidence(estimate, estimate - half_width, estimate + half_width, min(p_value, 1.0), null, alpha, n)


def _bernoulli_variance(events: int, n: int) -> float:
    """p(1 − p)/n with p shrunk by half an event towards ½, so 0 of n is not certainty."""
    p = (events + 0.5) / (n + 1)
    return p * (1 - p) / n


def difference_of_proportions(events_a: int, n_a: int, events_b: int, n_b: int, null: float = 0.0,
                              tau: float = 0.02, alpha: float = 0.05) -> Evidence | None:
    """θ = p_b − p_a (e.g. the new variant's error ratio minus the control's)."""
    if n_a < 1 or n_b < 1:
        return None
    estimate = events_b / n_b - events_a / n_a
    variance = _bernoulli_variance(events_a, n_a) + _bernoulli_variance(events_b, n_b)
    return mixture(estimate, variance, null, tau, alpha, (n_a, n_b))


def proportion(events: int, n: int, null: float, tau: float = 0.05, alpha: float = 0.05) -> Evidence | None:
    """θ = p, the share of one group's observations that are events."""
    if n < 1:
        return None
    return mixture(events / n, _bernoulli_variance(events, n), null, tau, alpha, (n,))


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
