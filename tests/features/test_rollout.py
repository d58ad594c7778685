"""Percentage rollout bucketing (spanscope.rollout): stable, consistent, evenly spread."""
import hashlib

import pytest
from spanscope.analysis.rollout import bucket, in_rollout

KEYS = [f"user-{i}" for i in range(100_000)]


def test_bucket_is_the_documented_hash():
    # Pinned vectors: other clients (other languages, the exporter's UI) must agree with these.
    assert bucket("redis_caching", "user-1") == pytest.approx(61.798536426344796, abs=1e-12)
    assert bucket("rag_weather", "alice") == pytest.approx(40.30504100570142, abs=1e-12)
    digest = hashlib.sha256(b"rag_sports\x00bob").digest()
    assert bucket("rag_sports", "bob") == pytest.approx(int.from_bytes(digest[:8], "big") / 2**64 * 100)


def test_bucket_is_deterministic_and_in_range():
    for key in KEYS[:2000]:
        b = bucket("response_streaming", key)
        assert 0.0 <= b < 100.0
        assert bucket("response_streaming", key) == b


def test_a_key_in_the_cohort_stays_in_as_the_percentage_grows():
    percentages = [0, 1, 5, 10, 25, 50, 75, 90, 99, 100]
    for key in KEYS[:5000]:
        answers = [in_rollout("mlx_backend", key, p) for p in percentages]
        # Once in, always in: the answers are some False followed only by True.
        first_in = answers.index(True) if True in answers else len(answers)
        assert answers == [False] * first_in + [True] * (len(answers) - first_in), key
    assert not any(in_rollout("mlx_backend", k, 0) for k in KEYS[:5000])
    assert all(in_rollout("mlx_backend", k, 100) for k in KEYS[:5000])


@pytest.mark.parametrize("percentage", [1, 10, 50, 90])
def test_share_in_rollout_matches_the_percentage(percentage):
    share = sum(in_rollout("rag_weather", k, percentage) for k in KEYS) / len(KEYS) * 100
    assert abs(share - percentage) <= 1.0, share


def test_flags_cut_the_population_independently():
    # The flag name salts the hash: two 50 % rollouts overlap on about a quarter of the users,
    # not on the same half (which would make every experiment confounded with every other).
    both = sum(in_rollout("rag_sports", k, 50) and in_rollout("rag_airports", k, 50) for k in KEYS)
    assert abs(both / len(KEYS) * 100 - 25) <= 1.0
