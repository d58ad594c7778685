"""Insights and recommendations on synthetic traffic with known properties."""
import random

import pytest

from spanscope.metrics.series import Store
from spanscope.metrics.catalogue import Metrics
from spanscope.analysis.features import Features, load_catalogue
from spanscope.analysis.impact import Impact
from spanscope.analysis.insights import Insights
from spanscope.analysis.windows import MetricsApi
from spanscope.web.requests import WindowParams, parse_params
from spanscope.analysis.rollups import Rollups

from test_metrics_windows import BOUNDS, NOW, Clock, summary


@pytest.fixture
def setup():
    clock = Clock(NOW)
    rollups = Rollups(BOUNDS, clock=clock)
    api = MetricsApi(rollups, Metrics(Store(1000), BOUNDS), started_at=NOW - 86400, clock=clock)
    features = Features(load_catalogue(None))
    impact = Impact(features, rollups, 300)
    return api, Insights(api, impact, None, features), impact


def steady(api, minutes, rng, per_minute=30, base=0.3, sigma=0.01, **kw):
    for m in range(minutes, 0, -1):
        for _ in range(per_minute):
            api.rollups.observe(summary(NOW - m * 60 + 30, max(rng.gauss(base, sigma), 0.001), **kw))


def q(minutes):
    return parse_params({"time_window_minutes": str(minutes)}, WindowParams).window()


def test_steady_noise_raises_no_anomaly(setup):
    api, insights, _ = setup
    steady(api, 240, random.Random(1))
    assert insights.anomalies(q(30)) == []


def test_latency_spike_is_found_with_its_minute(setup):
    api, insights, _ = setup
    rng = random.Random(2)
    steady(api, 240, rng)
    spike_minute_end = NOW - 10 * 60 + 30
    for _ in range(30):
        api.rollups.observe(summary(spike_minute_end - 60 + 45, 2.5))  # one minute at ~2.5 s
    found = [a for a in insights.anomalies(q(30)) if a["metric"] == "mean_latency"]
    assert len(found) == 1
    spike = found[0]
    assert spike["at"].endswith(":03:00Z")  # the minute of NOW - 10 min (22:03 UTC)
    assert spike["evidence"]["robust_z"] > 3.5 and spike["evidence"]["value"] > 1.0
    assert "spike" in spike["message"] and spike["promql"]


def test_cost_trend_against_the_previous_window(setup):
    api, insights, _ = setup
    rng = random.Random(3)
    # NOW's minute starts at NOW - 20: +50 puts each request in minute now-m+1, aligned with the windows
    for m in range(120, 60, -1):
        for _ in range(30):
            api.rollups.observe(summary(NOW - m * 60 + 50, rng.gauss(0.3, 0.01), cost="0.001"))
    for m in range(60, 0, -1):
        for _ in range(30):
            api.rollups.observe(summary(NOW - m * 60 + 50, rng.gauss(0.3, 0.01), cost="0.002"))
    trends = {t["metric"]: t for t in insights.trends(q(60))}
    assert set(trends) == {"cost_per_hour"}
    cost = trends["cost_per_hour"]
    assert cost["severity"] == "critical" and cost["evidence"]["change_ratio"] == pytest.approx(1.0)
    assert cost["evidence"]["baseline"] == pytest.approx(1.8) and cost["evidence"]["current"] == pytest.approx(3.6)


def test_slow_dimension_is_a_pattern(setup):
    api, insights, _ = setup
    rng = random.Random(4)
    steady(api, 30, rng, per_minute=10, mode="chat")
    steady(api, 30, rng, per_minute=10, mode="search")
    steady(api, 30, rng, per_minute=10, mode="voice", base=0.45)
    patterns = insights.patterns(q(30))
    assert [(p["dimension"], p["value"]) for p in patterns if p["severity"] == "warning"] == [("mode", "voice")]
    voice = next(p for p in patterns if p["value"] == "voice")
    assert voice["evidence"]["p_value"] < 0.01 and voice["evidence"]["mean_ms"] == pytest.approx(450, rel=0.02)


def test_a_200_ms_feature_ranks_above_a_20_ms_one(setup):
    api, insights, impact = setup
    for _ in range(50):
        api.rollups.observe(summary(NOW - 5, 1.0,
                                    by_feature={"conversation_context": 0.2, "multi_intent_detection": 0.02}))
    recs = [r for r in insights.recommendations(q(30)) if r["kind"] == "feature"]
    assert [r["action"] for r in recs] == ["disable conversation_context", "disable multi_intent_detection"]
    assert recs[0]["impact_ms_per_request"] == pytest.approx(200)
    assert recs[1]["impact_ms_per_request"] == pytest.approx(20)


def test_cheaper_model_of_similar_quality_is_recommended(setup):
    api, insights, _ = setup
    for _ in range(40):
        api.rollups.observe(summary(NOW - 30, 0.5, model="gpt-4o", cost="0.01", quality=0.82))
        api.rollups.observe(summary(NOW - 30, 0.5, model="gpt-4o-mini", cost="0.001", quality=0.80))
    recs = [r for r in insights.recommendations(q(60)) if r["kind"] == "routing"]
    assert len(recs) == 1 and recs[0]["action"] == "route gpt-4o traffic to gpt-4o-mini"
    # 40 requests of gpt-4o per hour, 730 h a month, 0.009 USD saved each
    assert recs[0]["impact_usd_per_month"] == pytest.approx(40 * 730 * 0.009)


def test_expired_misses_suggest_a_longer_ttl(setup):
    api, insights, _ = setup
    for i in range(40):
        api.rollups.observe(summary(NOW - 30, 1.0, cache_status="miss",
                                    cache_lookups=[("l1", "miss", None, "expired" if i % 2 else "absent")]))
        api.rollups.observe(summary(NOW - 30, 0.1, cache_status="hit", cache_lookups=[("l1", "hit", None, None)]))
    recs = [r for r in insights.recommendations(q(60)) if r["kind"] == "cache"]
    assert recs and recs[0]["action"] == "raise the TTL of cache l1"
    assert recs[0]["impact_ms_per_request"] == pytest.approx(20 / 80 * 900)
