"""Window queries over the per-minute rollups: exact counts, percentiles, edges, parameters."""
from decimal import Decimal

import pytest

from spanscope.metrics.series import Store
from spanscope.metrics.catalogue import Metrics
from spanscope.analysis.windows import MetricsApi
from spanscope.web.errors import ApiError
from spanscope.web.requests import WindowParams, parse_params
from spanscope.analysis.stats import histogram_quantile
from spanscope.interpret.summary import RequestSummary
from spanscope.analysis.rollups import Rollups

BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
NOW = 1_700_000_000.0  # 22:13:20 UTC; its minute starts at NOW - 20


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def summary(end_s: float, duration: float, mode="chat", service="svc", cost="0.001", error=False, **kw):
    """A request whose one LLM call, to `model`, cost `cost` (as interpret.summarise makes it)."""
    start_ns = int((end_s - duration) * 1e9)
    model = kw.pop("model", "gpt-4o-mini")
    return RequestSummary(trace_id="ab" * 16, service=service, mode=mode, tenant="t", user=None, error=error,
                          start_ns=start_ns, duration=duration, cache_status=kw.pop("cache_status", "none"),
                          cost=Decimal(cost), model=model,
                          cost_by_model=kw.pop("cost_by_model", {model: Decimal(cost)} if model else {}), **kw)


@pytest.fixture
def api():
    clock = Clock(NOW)
    rollups = Rollups(BOUNDS, clock=clock)
    return MetricsApi(rollups, Metrics(Store(1000), BOUNDS), started_at=NOW - 3600, clock=clock)


def q(minutes=5, **kw):
    return parse_params({"time_window_minutes": str(minutes), **kw}, WindowParams).window()


def test_counts_and_window_edges(api):
    minute_start = NOW - NOW % 60
    # 3 requests in the current minute, 2 exactly at the start of the window's first minute,
    # 4 one second before the window: 5-minute window = the current minute and the 4 before it.
    for _ in range(3):
        api.rollups.observe(summary(NOW - 1, 0.1))
    for _ in range(2):
        api.rollups.observe(summary(minute_start - 4 * 60, 0.1))
    for _ in range(4):
        api.rollups.observe(summary(minute_start - 4 * 60 - 1, 0.1))
    assert api.totals(q(5)).requests == 5
    assert api.totals(q(6)).requests == 9
    env = api.envelope(q(5), {})
    assert env["window"]["minutes"] == 5 and env["window"]["end"] == "2023-11-14T22:14:00Z"
    assert env["window"]["start"] == "2023-11-14T22:09:00Z"


def test_percentiles_follow_prometheus_interpolation(api):
    durations = [0.015] * 50 + [0.05] * 40 + [0.5] * 10
    for d in durations:
        api.rollups.observe(summary(NOW - 5, d))
    perf = api.performance(q(5), api.totals(q(5)))
    # p50: rank 50 of 100 lands at the top of the (0.01, 0.02] bucket -> 20 ms
    assert perf["latency"]["p50_ms"] == pytest.approx(20.0)
    # p95: rank 95 is the 5th of 10 in (0.32, 0.64] -> 0.32 + 0.32 * 5/10 = 0.48 s
    assert perf["latency"]["p95_ms"] == pytest.approx(480.0)
    assert perf["requests"] == 100
    # Divided by the seconds of the window that have passed: its first four minutes and the 20 s
    # of the current one (NOW is 22:13:20), not by the whole 300 s.
    assert perf["requests_per_second"] == pytest.approx(100 / (4 * 60 + 20))


def test_histogram_quantile_matches_prometheus_edge_cases():
    assert histogram_quantile(0.5, (1.0, 2.0), [0, 0, 0]) != histogram_quantile(0.5, (1.0, 2.0), [0, 0, 0])  # NaN
    assert histogram_quantile(0.99, (1.0, 2.0), [0, 0, 5]) == 2.0  # +Inf bucket: highest finite bound
    assert histogram_quantile(0.5, (1.0, 2.0), [4, 0, 0]) == 0.5


def test_filters_costs_and_projection(api):
    for _ in range(10):
        api.rollups.observe(summary(NOW - 30, 0.2, mode="voice", cost="0.002"))
        api.rollups.observe(summary(NOW - 30, 0.4, mode="chat", cost="0.001", error=True))
    t = api.totals(q(60, mode="voice"))
    assert t.requests == 10 and t.errors == 0
    costs = api.costs(q(60), api.totals(q(60)))
    assert costs["total_usd"] == pytest.approx(0.03)
    # The 60-minute window has covered 59 min 20 s so far (its last minute ends at 22:14:00).
    assert costs["cost_per_hour_usd"] == pytest.approx(0.03 * 3600 / 3560)
    assert costs["projected_monthly_usd"] == pytest.approx(0.03 * 3600 / 3560 * 730)
    assert api.dashboard(q(60), api.totals(q(60)))["error_rate"] == pytest.approx(0.5)


def test_cost_by_model_puts_each_calls_cost_on_its_model(api):
    """A request that failed over from gpt-4o (charged) to claude-haiku-4-5 (answered): as llm_cost_usd_total."""
    for _ in range(4):
        api.rollups.observe(summary(NOW - 30, 0.5, model="claude-haiku-4-5", cost="0.005",
                                    cost_by_model={"gpt-4o": Decimal("0.004"), "claude-haiku-4-5": Decimal("0.001")}))
    by_model = api.costs(q(60), api.totals(q(60)))["by_model"]
    assert by_model["gpt-4o"] == {"requests": 0, "cost_usd": pytest.approx(0.016), "cost_per_request_usd": None}
    assert by_model["claude-haiku-4-5"]["requests"] == 4
    assert by_model["claude-haiku-4-5"]["cost_usd"] == pytest.approx(0.004)
    assert by_model["claude-haiku-4-5"]["cost_per_request_usd"] == pytest.approx(0.001)


def test_components_and_operation_filter(api):
    api.rollups.observe(summary(NOW - 10, 1.0,
                                components={"llm_inference": (1, 0, [0.7]), "rag_lookup": (2, 1, [0.1, 0.2])},
                                critical={"llm_inference": 0.7, "rag_lookup": 0.2, "gateway": 0.1}))
    perf = api.performance(q(5, operation="rag_lookup"), api.totals(q(5)))
    assert list(perf["components"]) == ["rag_lookup"]
    rag = perf["components"]["rag_lookup"]
    assert rag["calls"] == 2 and rag["error_rate"] == 0.5 and rag["critical_path_ms_per_request"] == pytest.approx(200)


def test_a_rating_before_its_interaction_leaves_every_view_answering(api):
    """A user rated a trace the exporter has not seen (the rating lands under unknown/unknown, a key
    with a rating and no request): the views count it and answer, and no mode or service shows up."""
    api.rollups.observe(summary(NOW - 10, 0.2, mode="chat"))
    api.rollups.observe_rating("unknown", "unknown", 4)
    t = api.totals(q(5))
    perf = api.performance(q(5), t)
    assert perf["requests"] == 1 and list(perf["by_mode"]) == ["chat"]
    assert perf["by_mode"]["chat"] == {"requests": 1, "mean_ms": pytest.approx(200.0)}
    assert api.dashboard(q(5), t)["average_rating"] == 4
    assert api.quality(q(5), t)["ratings"] == 1
    assert api.health(q(5), t)["requests_in_window"] == 1
    only_rating = api.totals(q(5, mode="unknown"))
    assert api.dashboard(q(5, mode="unknown"), only_rating)["requests"] == 0
    assert api.performance(q(5, mode="unknown"), only_rating)["by_mode"] == {}


def test_old_data_leaves_the_24h_ring(api):
    api.rollups.observe(summary(NOW - 10, 0.1))
    api.rollups.clock.t = NOW + 1441 * 60
    api.rollups.observe(summary(NOW + 1441 * 60 - 1, 0.1))
    assert len(api.rollups.data) == 1


@pytest.mark.parametrize("params, name", [
    ({"time_window_minutes": "4"}, "time_window_minutes"),
    ({"time_window_minutes": "1441"}, "time_window_minutes"),
    ({"time_window_minutes": "abc"}, "time_window_minutes"),
    ({"mode": ""}, "mode"),
    ({"window": "5"}, "window"),
])
def test_bad_parameters_name_the_parameter(params, name):
    with pytest.raises(ApiError, match=f"^{name}:") as err:
        parse_params(params, WindowParams)
    assert err.value.status == 400


def test_rates_of_a_young_exporter_divide_by_its_uptime():
    """Four minutes after the start, 60-minute rates are the rates of those four minutes."""
    clock = Clock(NOW)
    api = MetricsApi(Rollups(BOUNDS, clock=clock), Metrics(Store(1000), BOUNDS), started_at=NOW - 240, clock=clock)
    for i in range(2400):  # 10 req/s for 240 s, $0.001 each: $36/h
        api.rollups.observe(summary(NOW - 240 + i * 0.1, 0.1, cost="0.001"))
    t = api.totals(q(60))
    assert api.performance(q(60), t)["requests_per_second"] == pytest.approx(10)
    costs = api.costs(q(60), t)
    assert costs["cost_per_hour_usd"] == pytest.approx(36)
    assert costs["projected_monthly_usd"] == pytest.approx(36 * 730)
    assert api.envelope(q(60), {})["window"]["covered_seconds"] == pytest.approx(240)


def test_a_mode_rated_without_requests_in_the_window_answers(api):
    # Ratings come after the answer, often in a later minute: that minute's rollup for the mode has
    # a rating and no request; the views still answer (they once raised on its missing mean).
    api.rollups.observe(summary(NOW - 120, 0.5, mode="chat"))
    api.rollups.observe_rating("svc", "voice", 4, now=NOW - 1)
    t = api.totals(q(5))
    perf = api.performance(q(5), t)
    assert "voice" not in perf["by_mode"]  # no request of that mode in the window
    assert perf["by_mode"]["chat"] == {"requests": 1, "mean_ms": 500.0}
    assert api.dashboard(q(5), t)["requests"] == 1
