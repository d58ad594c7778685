"""The guards' decisions on a stage's evidence (analysis.guards.judge), and the rollout API's checks."""
from __future__ import annotations

import math

import pytest
from http_helpers import call
from processes import start_exporter
from spanscope.analysis.guards import Arm, Guard, StageSample, judge

GUARD = Guard(max_error_ratio_increase=0.02, max_p95_latency_increase=0.25, min_quality_score=0.6,
              min_requests_per_stage=100)


def arm(requests: int, errors: int, latency: float = 0.5, quality: float | None = 0.8, spread: float = 0.1) -> Arm:
    """An arm whose latency and quality have the given means and a standard deviation of `spread`."""
    a = Arm(requests=requests, errors=errors)
    for m, mean in ((a.latency, latency), (a.quality, quality)):
        if mean is None:
            continue
        m.n, m.total = requests, mean * requests
        m.squares = (spread ** 2) * (requests - 1) + mean * mean * requests  # sample variance = spread²
    return a


def sample(control: Arm, treatment: Arm, p95: float = 1.0, slower: int = 0) -> StageSample:
    return StageSample(control, treatment, p95, slower)


def test_a_young_or_thin_stage_holds_and_a_healthy_full_one_advances():
    healthy = sample(arm(400, 8), arm(400, 8), slower=12)
    assert judge(GUARD, healthy, stage_age=30, stage_seconds=60, auto_advance=True).decision == "hold"
    thin = sample(arm(400, 8), arm(99, 2))
    verdict = judge(GUARD, thin, stage_age=90, stage_seconds=60, auto_advance=True)
    assert verdict.decision == "hold" and "on has 99 of 100 requests" in verdict.reason
    verdict = judge(GUARD, healthy, stage_age=90, stage_seconds=60, auto_advance=True)
    assert verdict.decision == "advance"
    assert verdict.evidence["arms"]["on"]["requests"] == 400
    assert set(verdict.evidence["guards"]) == {"error_ratio_increase", "p95_latency", "quality"}
    # Without auto_advance a healthy stage waits for a person.
    assert judge(GUARD, healthy, stage_age=90, stage_seconds=60, auto_advance=False).decision == "hold"


def test_a_clear_error_increase_rolls_back_at_once_whatever_the_stage_age():
    bad = sample(arm(400, 8), arm(120, 30))  # 2 % against 25 %
    verdict = judge(GUARD, bad, stage_age=1, stage_seconds=600, auto_advance=False)
    assert verdict.decision == "rollback" and "error ratio" in verdict.reason
    e = verdict.evidence["guards"]["error_ratio_increase"]
    assert e["estimate"] == pytest.approx(30 / 120 - 8 / 400)
    assert e["lower"] > 0.02 and e["p_value"] < 0.05


def test_an_increase_within_the_noise_is_not_a_breach():
    """The estimate is above the limit, but the evidence does not exclude the limit: no rollback."""
    close = sample(arm(400, 8), arm(100, 5))  # 2 % against 5 %: +3 points on 100 requests
    verdict = judge(GUARD, close, stage_age=90, stage_seconds=60, auto_advance=True)
    e = verdict.evidence["guards"]["error_ratio_increase"]
    assert e["estimate"] > 0.02 and e["lower"] < 0.02
    assert verdict.decision == "advance"


def test_a_slower_treatment_breaches_the_p95_guard():
    # 30 % of the treatment's requests are slower than 1.25 × the control's p95: its p95 rose > 25 %.
    verdict = judge(GUARD, sample(arm(400, 8), arm(200, 4), p95=1.0, slower=60), 90, 60, True)
    assert verdict.decision == "rollback" and "p95" in verdict.reason
    p95 = verdict.evidence["guards"]["p95_latency"]
    assert p95["limit_seconds"] == pytest.approx(1.25) and p95["share_slower_than_limit"] == pytest.approx(0.3)
    # 6 % slower on 200 requests: not evidence that more than 5 % are.
    assert judge(GUARD, sample(arm(400, 8), arm(200, 4), slower=12), 90, 60, True).decision == "advance"


def test_low_quality_breaches_the_quality_guard():
    verdict = judge(GUARD, sample(arm(400, 8), arm(200, 4, quality=0.4)), 90, 60, True)
    assert verdict.decision == "rollback" and "quality" in verdict.reason
    q = verdict.evidence["guards"]["quality"]
    assert q["estimate"] == pytest.approx(0.4) and q["upper"] < 0.6
    # The confidence sequence's half width follows the mSPRT formula (computed here on its own).
    v, t2, alpha = 0.1 ** 2 / 200, 0.1 ** 2, 0.05
    half = math.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + 0.5 * math.log((v + t2) / v)))
    assert q["upper"] - q["estimate"] == pytest.approx(half)


def test_guards_left_out_are_not_tested():
    only_errors = Guard(max_error_ratio_increase=0.02, min_requests_per_stage=10)
    verdict = judge(only_errors, sample(arm(50, 1, quality=0.1), arm(50, 1, quality=0.1), slower=50), 90, 60, True)
    assert verdict.decision == "advance" and set(verdict.evidence["guards"]) == {"error_ratio_increase"}


def test_the_rollout_api_checks_the_guard_and_needs_the_store(tmp_path):
    proc = start_exporter(tmp_path, {"features": {"guards": {"stage_seconds": "5m", "min_requests_per_stage": 7}}})
    try:
        path = proc.urls["web"] + "/api/features/mlx_backend/rollout"
        status, doc = call("POST", path, {"strategy": "canary", "guard": {"max_error_ratio_increase": 2}})
        assert status == 400 and doc["error"].startswith("guard.max_error_ratio_increase"), doc
        status, doc = call("POST", path, {"strategy": "canary", "guard": {"min_requests": 5}})
        assert status == 400 and "guard.min_requests" in doc["error"], doc
        status, doc = call("POST", path, {"strategy": "canary", "auto_advance": "yes"})
        assert status == 400 and doc["error"].startswith("auto_advance"), doc
        status, doc = call("POST", path, {"strategy": "canary", "guard": {"max_error_ratio_increase": 0.01}})
        assert status == 200, doc
        rollout = doc["rollout"]
        assert rollout["stage"] == 1 and rollout["stage_seconds"] == 300 and rollout["auto_advance"] is False
        assert rollout["guard"]["min_requests_per_stage"] == 7 and rollout["guard"]["max_error_ratio_increase"] == 0.01
        assert [d["decision"] for d in doc["decisions"]] == ["start"]
    finally:
        proc.stop()
    proc = start_exporter(tmp_path, {"store": {"enabled": False}})
    try:
        status, doc = call("POST", proc.urls["web"] + "/api/features/mlx_backend/rollout",
                           {"strategy": "canary", "auto_advance": True})
        assert status == 409 and "store.enabled" in doc["error"], doc
        # a rollout without guards still works without the store
        assert call("POST", proc.urls["web"] + "/api/features/mlx_backend/rollout", {"strategy": "canary"})[0] == 200
    finally:
        proc.stop()


def test_no_rollback_on_a_handful_of_requests():
    # 3 errors in 5 requests is a 60 % error ratio, but 5 requests are too few to judge on
    few = sample(arm(400, 8), arm(5, 3))
    assert judge(GUARD, few, 1, 600, False).decision == "hold"
    assert judge(GUARD, sample(arm(400, 8), arm(10, 8)), 1, 600, False).decision == "rollback"
