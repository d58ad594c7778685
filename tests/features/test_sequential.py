"""The mSPRT of analysis.sequential: its formulas against a numerical integration of the mixture
likelihood ratio, its error rate under repeated looks against the fixed-horizon tests peeked the same
way, its power and coverage under a real difference, and its edge cases."""
import json
import math

import numpy as np
import pytest
from spanscope.analysis import sequential
from spanscope.analysis.stats import Moments, two_proportions, welch

ALPHA = 0.05


def moments(values) -> Moments:
    m = Moments()
    m.n, m.total, m.squares = len(values), float(np.sum(values)), float(np.sum(np.square(values)))
    return m


def cumulative(n: int, total: float, squares: float) -> Moments:
    m = Moments()
    m.n, m.total, m.squares = int(n), float(total), float(squares)
    return m


# --- (a) the formulas against an independent computation ---------------------------------------------

def integrated_ratio(estimate: float, variance: float, null: float, tau: float) -> float:
    """Λ(null) = ∫ N(θ̂; θ, V) / N(θ̂; null, V) · N(θ; null, τ²) dθ, by the trapezoid rule on a fine grid
    (the likelihood ratio of θ against the null, averaged over the mixture of alternatives)."""
    sd = math.sqrt(variance)
    lo, hi = min(null, estimate) - 12 * max(tau, sd), max(null, estimate) + 12 * max(tau, sd)
    theta = np.linspace(lo, hi, 400_001)
    log_lr = ((estimate - null) ** 2 - (estimate - theta) ** 2) / (2 * variance)
    prior = np.exp(-(theta - null) ** 2 / (2 * tau * tau)) / (tau * math.sqrt(2 * math.pi))
    return float(np.trapezoid(np.exp(log_lr) * prior, theta))


CASES = [  # estimate, variance, null, tau: from no evidence to strong evidence, tiny and wide τ
    (0.0, 1e-4, 0.0, 0.02), (0.01, 1e-4, 0.0, 0.02), (0.03, 1e-4, 0.0, 0.02), (-0.04, 2e-4, 0.01, 0.05),
    (12.0, 30.0, 0.0, 100.0), (0.3, 0.01, 0.25, 0.1), (5.0, 4.0, 0.0, 1.0),
]


@pytest.mark.parametrize("estimate, variance, null, tau", CASES)
def test_p_value_is_one_over_the_integrated_mixture_ratio(estimate, variance, null, tau):
    e = sequential.mixture(estimate, variance, null, tau, ALPHA, (100, 100))
    ratio = integrated_ratio(estimate, variance, null, tau)
    assert e.p_value == pytest.approx(min(1.0, 1 / ratio), rel=1e-6)
    assert e.estimate == estimate and e.null == null and e.alpha == ALPHA


@pytest.mark.parametrize("estimate, variance, null, tau", CASES)
def test_confidence_sequence_is_where_the_ratio_stays_below_one_over_alpha(estimate, variance, null, tau):
    e = sequential.mixture(estimate, variance, null, tau, ALPHA, (100, 100))
    assert e.lower < estimate < e.upper
    assert estimate - e.lower == pytest.approx(e.upper - estimate)
    for bound in (e.lower, e.upper):  # the bounds are the nulls at which Λ = 1/α exactly
        assert integrated_ratio(estimate, variance, bound, tau) == pytest.approx(1 / ALPHA, rel=1e-5)
    inside = e.lower + 0.01 * (e.upper - e.lower)
    outside = e.lower - 0.01 * (e.upper - e.lower)
    assert integrated_ratio(estimate, variance, inside, tau) < 1 / ALPHA
    assert integrated_ratio(estimate, variance, outside, tau) > 1 / ALPHA
    # so the test rejects exactly when the null lies outside the confidence sequence
    assert (e.p_value < ALPHA) == (not e.lower <= null <= e.upper)


def test_one_sample_mean_matches_the_mixture_of_raw_observations():
    """Robbins' normal mSPRT over n observations of variance σ² (Johari et al. 2017, eq. 11), written in
    the observations rather than in the estimate's variance: Λ = sqrt(σ²/(σ²+nτ²)) ·
    exp(n²τ²(x̄−θ0)² / (2σ²(σ²+nτ²)))."""
    values = np.random.default_rng(3).normal(0.32, 0.05, 60)
    n, xbar, s2 = len(values), float(values.mean()), float(values.var(ddof=1))
    tau, null = 0.1, 0.3
    ratio = math.sqrt(s2 / (s2 + n * tau ** 2)) * math.exp(n * n * tau ** 2 * (xbar - null) ** 2 /
                                                            (2 * s2 * (s2 + n * tau ** 2)))
    e = sequential.mean(moments(values), null=null, tau=tau)
    assert e.estimate == pytest.approx(xbar)
    assert e.p_value == pytest.approx(min(1, 1 / ratio), rel=1e-9)
    assert e.n == (60,)


def test_difference_of_means_uses_welchs_standard_error():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.30, 0.05, 40), rng.normal(0.33, 0.09, 70)
    variance = a.var(ddof=1) / 40 + b.var(ddof=1) / 70
    e = sequential.difference_of_means(moments(a), moments(b), tau=0.05)
    assert e.estimate == pytest.approx(b.mean() - a.mean())
    assert e.p_value == pytest.approx(min(1, 1 / integrated_ratio(e.estimate, variance, 0.0, 0.05)), rel=1e-6)
    assert e.n == (40, 70)


def restricted_variance(events_a, n_a, events_b, n_b, theta):
    """Var(p̂_b − p̂_a) at the rates that fit both groups when p_b − p_a = theta (the pooled rate, shifted)."""
    p_a = np.clip((events_a + events_b - n_b * theta) / (n_a + n_b), max(0, -theta), min(1, 1 - theta))
    p_b = p_a + theta
    return p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b


@pytest.mark.parametrize("events_a, n_a, events_b, n_b, null", [
    (30, 1000, 60, 1000, 0.0), (50, 1000, 9, 100, 0.0), (50, 1000, 15, 100, 0.02), (0, 500, 2, 40, 0.0)])
def test_difference_of_proportions_tests_with_the_variance_under_the_null(events_a, n_a, events_b, n_b, null):
    e = sequential.difference_of_proportions(events_a, n_a, events_b, n_b, null=null, tau=0.02)
    estimate = events_b / n_b - events_a / n_a
    assert e.estimate == pytest.approx(estimate) and e.n == (n_a, n_b)
    v0 = restricted_variance(events_a, n_a, events_b, n_b, null)
    assert e.p_value == pytest.approx(min(1, 1 / integrated_ratio(estimate, v0, null, 0.02)), rel=1e-6)
    for bound in (e.lower, e.upper):  # each bound: the value the same test just stops rejecting
        v = restricted_variance(events_a, n_a, events_b, n_b, bound)
        assert integrated_ratio(estimate, v, bound, 0.02) == pytest.approx(1 / ALPHA, rel=1e-4)
    assert (e.p_value < ALPHA) == (not e.lower <= null <= e.upper)


@pytest.mark.parametrize("events, n, null", [(7, 100, 0.05), (30, 200, 0.05), (0, 300, 0.05), (9, 40, 0.5)])
def test_proportion_tests_with_the_bernoulli_variance_of_the_null(events, n, null):
    e = sequential.proportion(events, n, null=null, tau=0.05)
    estimate = events / n
    assert e.p_value == pytest.approx(min(1, 1 / integrated_ratio(estimate, null * (1 - null) / n, null, 0.05)),
                                      rel=1e-6)
    for bound in (e.lower, e.upper):
        if bound > 0:  # 0 events: the sequence starts at 0, where the variance vanishes
            ratio = integrated_ratio(estimate, bound * (1 - bound) / n, bound, 0.05)
            assert ratio == pytest.approx(1 / ALPHA, rel=1e-4)
    assert (e.p_value < ALPHA) == (not e.lower <= null <= e.upper)


def test_rare_events_in_a_small_group_are_not_mistaken_for_certainty():
    """No valid p-value can be below the probability of what was seen: 0 errors in 50 requests happen
    7.7 % of the time at an error ratio of 5 %, so neither test may call them significant at 5 %
    (a variance taken from the group's own 0 of 50 did: p = 0.009 and, beside a control of a million
    requests, p = 0.023)."""
    chance = 0.95 ** 50
    assert sequential.proportion(0, 50, null=0.05).p_value >= chance
    assert sequential.difference_of_proportions(50_000, 1_000_000, 0, 50).p_value >= chance
    assert sequential.difference_of_proportions(50_000, 1_000_000, 0, 60).p_value >= 0.95 ** 60


# --- (b) under no difference: watched after every batch, rarely a false alarm --------------------------

EXPERIMENTS, LOOKS = 400, 100  # each experiment looked at 100 times, after every batch of requests
# The largest false-alarm share that is still consistent with a rate of α: three binomial standard errors.
TOLERATED = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / EXPERIMENTS)


def batched(rng, batch, draw, experiments=EXPERIMENTS):
    """Cumulative sums and sums of squares of `batch` draws per look: arrays (experiments, LOOKS)."""
    x = draw(rng, (experiments, LOOKS, batch)).astype(float)
    return x.sum(2).cumsum(1), (x * x).sum(2).cumsum(1)


def counts(rng, batch, rate, experiments=EXPERIMENTS) -> list:
    """Cumulative events per look of Bernoulli(rate) requests, `batch` per look."""
    return batched(rng, batch, lambda r, shape: r.random(shape) < rate, experiments)[0].astype(int).tolist()


def ever_below(p_value_at_look) -> float:
    """The share of experiments in which some look gives p < α (a person stopping at the first one)."""
    alarms = 0
    for e in range(EXPERIMENTS):
        alarms += any(p_value_at_look(e, k) < ALPHA for k in range(LOOKS))  # any() stops at the first
    return alarms / EXPERIMENTS


@pytest.mark.parametrize("per_look", [(10, 10), (18, 2)], ids=["half-half", "canary-10%"])
def test_a_a_error_rates_watched_continuously_stay_within_alpha_unlike_the_peeked_z_test(per_look):
    (step_a, step_b), rng = per_look, np.random.default_rng(11)
    a, b = counts(rng, step_a, 0.05), counts(rng, step_b, 0.05)

    def seq(e, k):
        return sequential.difference_of_proportions(a[e][k], (k + 1) * step_a, b[e][k], (k + 1) * step_b).p_value

    def fixed(e, k):
        return two_proportions(a[e][k], (k + 1) * step_a, b[e][k], (k + 1) * step_b)["p_value"]

    once = sum(fixed(e, LOOKS - 1) < ALPHA for e in range(EXPERIMENTS)) / EXPERIMENTS
    peeked, watched = ever_below(fixed), ever_below(seq)
    # Read once, at the planned size, the z-test errs about α of the time; the same test read after
    # every batch finds a "significant" difference in several times as many identical experiments.
    assert abs(once - ALPHA) <= TOLERATED - ALPHA, once
    assert peeked > 2.5 * TOLERATED, peeked
    assert watched <= TOLERATED, watched


def test_a_a_latency_watched_continuously_stays_within_alpha_unlike_the_peeked_welch_test():
    rng = np.random.default_rng(12)
    (ta, sa), (tb, sb) = (batched(rng, 20, lambda r, shape: r.normal(0.30, 0.08, shape)) for _ in range(2))

    def groups(e, k):
        n = (k + 1) * 20
        return cumulative(n, ta[e, k], sa[e, k]), cumulative(n, tb[e, k], sb[e, k])

    once = sum(welch(*groups(e, LOOKS - 1))["p_value"] < ALPHA for e in range(EXPERIMENTS)) / EXPERIMENTS
    peeked = ever_below(lambda e, k: welch(*groups(e, k))["p_value"])
    watched = ever_below(lambda e, k: sequential.difference_of_means(*groups(e, k), tau=0.05).p_value)
    assert abs(once - ALPHA) <= TOLERATED - ALPHA, once
    assert peeked > 2.5 * TOLERATED, peeked
    assert watched <= TOLERATED, watched


def test_one_sample_tests_watched_continuously_stay_within_alpha():
    """What a guard watches: the share of slow requests against 5 %, a mean quality score against its floor."""
    rng = np.random.default_rng(13)
    slow = counts(rng, 10, 0.05)
    total, squares = batched(rng, 10, lambda r, shape: r.normal(0.7, 0.15, shape))
    share = ever_below(lambda e, k: sequential.proportion(slow[e][k], (k + 1) * 10, null=0.05, tau=0.05).p_value)
    quality = ever_below(lambda e, k: sequential.mean(cumulative((k + 1) * 10, total[e, k], squares[e, k]),
                                                      null=0.7, tau=0.1).p_value)
    assert share <= TOLERATED, share
    assert quality <= TOLERATED, quality


# --- (c) under a real difference: found, and the confidence sequence holds it at every look -----------

def test_real_differences_are_found_and_always_covered():
    runs = 200  # fewer than above: power is far from α, and coverage gets its own tolerance
    tolerated = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    rng = np.random.default_rng(14)
    err_a, err_b = counts(rng, 20, 0.05, runs), counts(rng, 20, 0.09, runs)      # 4 points more errors
    (ta, sa), (tb, sb) = (batched(rng, 20, lambda r, shape, mu=mu: r.normal(mu, 0.08, shape), runs)
                          for mu in (0.30, 0.32))
    found_errors = found_latency = missed_errors = missed_latency = 0
    for e in range(runs):
        hit_e = hit_l = miss_e = miss_l = False
        for k in range(LOOKS):
            n = (k + 1) * 20
            pe = sequential.difference_of_proportions(err_a[e][k], n, err_b[e][k], n)
            pl = sequential.difference_of_means(cumulative(n, ta[e, k], sa[e, k]), cumulative(n, tb[e, k], sb[e, k]),
                                                tau=0.05)
            hit_e |= pe.p_value < ALPHA and pe.lower > 0
            hit_l |= pl.p_value < ALPHA and pl.lower > 0
            miss_e |= not pe.lower <= 0.04 <= pe.upper   # the true differences
            miss_l |= not pl.lower <= 0.02 <= pl.upper
        found_errors += hit_e
        found_latency += hit_l
        missed_errors += miss_e
        missed_latency += miss_l
    # By 2,000 requests per variant (a fixed-horizon z-test read once there would have ~99 % power for
    # 4 points); the 20 ms latency shift, a quarter of a standard deviation, is found with near certainty.
    assert found_errors / runs >= 0.9, found_errors
    assert found_latency / runs >= 0.99, found_latency
    assert missed_errors / runs <= tolerated, missed_errors
    assert missed_latency / runs <= tolerated, missed_latency


# --- (d) edge cases: no exception, nothing that is not a finite number ---------------------------------

def finite(e: sequential.Evidence) -> sequential.Evidence:
    doc = e.as_json()
    json.dumps(doc, allow_nan=False)  # raises on NaN or infinity
    assert 0 <= e.p_value <= 1 and e.lower <= e.estimate <= e.upper
    return e


def test_too_few_observations_give_no_evidence():
    one = moments([0.2])
    two = moments([0.2, 0.3])
    assert sequential.difference_of_means(one, two) is None
    assert sequential.difference_of_means(two, one) is None
    assert sequential.difference_of_means(Moments(), Moments()) is None
    assert sequential.mean(one, null=0.2) is None
    assert sequential.difference_of_proportions(0, 0, 3, 10) is None
    assert sequential.difference_of_proportions(3, 10, 0, 0) is None
    assert sequential.proportion(0, 0, null=0.05) is None
    finite(sequential.difference_of_means(two, two))
    finite(sequential.proportion(1, 1, null=0.05))


def test_zero_events_and_all_events():
    none = finite(sequential.difference_of_proportions(0, 500, 0, 500))
    assert none.estimate == 0 and none.p_value == 1.0
    finite(sequential.difference_of_proportions(500, 500, 500, 500))
    finite(sequential.difference_of_proportions(0, 1, 1, 1))
    finite(sequential.proportion(0, 10_000, null=0.05))
    assert finite(sequential.proportion(0, 10_000, null=0.05)).upper < 0.05  # 0 in 10,000: well below 5 %


def test_zero_variance():
    same = finite(sequential.difference_of_means(moments([0.25] * 50), moments([0.25] * 50)))
    assert same.estimate == 0 and same.p_value == 1.0
    apart = finite(sequential.difference_of_means(moments([0.25] * 50), moments([0.5] * 50)))
    assert apart.p_value == 0.0 and apart.lower > 0
    finite(sequential.mean(moments([3.0] * 10), null=3.0))
    # a tiny variance against a wide mixture: no underflow of V/(V + τ²), no infinite bounds
    finite(sequential.mixture(0.0, 0.0, 0.0, 1e12, ALPHA, (2, 2)))
    finite(sequential.mixture(0.0, 0.0, 0.0, 1e5, ALPHA, (2, 2)))


@pytest.mark.parametrize("tau, alpha", [(0.0, 0.05), (-0.1, 0.05), (0.1, 0.0), (0.1, 1.0)])
def test_a_mixture_over_nothing_is_refused(tau, alpha):
    with pytest.raises(ValueError, match="tau"):
        sequential.mixture(0.1, 1e-3, 0.0, tau, alpha, (10, 10))
