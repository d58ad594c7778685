"""The significance tests behind /api/experiments against known reference values."""
import random

import pytest
from spanscope.analysis.stats import Moments, t_two_sided_p, two_proportions, welch


@pytest.mark.parametrize("t, df, p", [(2.228, 10, 0.05), (1.96, 1e6, 0.05), (2.576, 1e6, 0.01), (0.0, 5, 1.0),
                                      (12.706, 1, 0.05)])
def test_student_t_p_values_match_tables(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, abs=5e-4)


def stats(values):
    s = Moments()
    for v in values:
        s.add(v)
    return s


def test_same_distribution_is_rarely_significant():
    rng = random.Random(7)
    significant = sum(
        welch(stats([rng.gauss(0.3, 0.05) for _ in range(50)]), stats([rng.gauss(0.3, 0.05) for _ in range(50)]))
        ["p_value"] < 0.05 for _ in range(200))
    assert significant <= 20  # about 5 % false positives expected


def test_shifted_distribution_is_detected():
    rng = random.Random(8)
    r = welch(stats([rng.gauss(0.30, 0.05) for _ in range(50)]), stats([rng.gauss(0.36, 0.05) for _ in range(50)]))
    assert r["p_value"] < 0.01 and r["t"] > 0


def test_error_rate_difference():
    r = two_proportions(20, 1000, 60, 1000)
    assert r["p_value"] < 0.001 and r["reliable"]
    r = two_proportions(1, 10, 2, 10)
    assert not r["reliable"]
