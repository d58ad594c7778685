"""OpenFeature evaluations (real SDK + OpenTelemetry TracingHook) become per-variant metrics."""
import statistics
import time
import uuid

import pytest
from http_helpers import call
from openfeature import api as openfeature
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from opentelemetry.trace import Status, StatusCode
from processes import start_exporter, wait_until
from sdk import MS, http_exporter, provider, scrape, value


def by_user(flag, ctx: EvaluationContext):
    """Even users get the treatment: a deterministic split for exact expectations."""
    variant = "treatment" if int(ctx.targeting_key) % 2 == 0 else "control"
    return FlagResolutionDetails(value=flag.variants[variant], variant=variant, reason=Reason.SPLIT)


@pytest.fixture
def exporter(tmp_path):
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}})
    yield proc
    proc.stop()


def test_evaluations_and_per_variant_latency_reach_metrics_and_experiments(exporter):
    service = f"flags-{uuid.uuid4().hex[:6]}"
    base = 1_700_000_000_000 * MS

    def duration(user):  # ms, with a little spread; a request every 2 s from `base`
        return (300 if user % 2 == 0 else 100) + user % 7
    send_split(exporter, service, range(40), lambda u: base + u * 2000 * MS + duration(u) * MS, duration, duration)

    def ready():
        s = scrape(exporter.urls["web"])
        return s if value(s, "pipeline_requests_total", service=service) == 40 else None

    s = wait_until(ready, what="40 requests")
    ev = dict(service=service, flag="new_ranker", reason="split")
    assert value(s, "feature_flag_evaluations_total", variant="treatment", **ev) == 20
    assert value(s, "feature_flag_evaluations_total", variant="control", **ev) == 20
    treated = [(300 + u % 7) / 1000 for u in range(0, 40, 2)]
    var = dict(service=service, flag="new_ranker")
    assert value(s, "feature_flag_variant_request_duration_seconds_count", variant="treatment", **var) == 20
    assert value(s, "feature_flag_variant_request_duration_seconds_sum", variant="treatment", **var) == \
        pytest.approx(sum(treated))
    assert value(s, "feature_flag_variant_errors_total", variant="control", **var) == 0

    status, doc = call("GET", exporter.urls["web"] + "/api/experiments/new_ranker")
    assert status == 200 and doc["control"] == "control"
    rows = {r["variant"]: r for r in doc["variants"]}
    assert rows["treatment"]["requests"] == 20
    assert rows["treatment"]["mean_latency_ms"] == pytest.approx(sum(treated) / 20 * 1000)
    assert 300 <= rows["treatment"]["p95_latency_ms"] <= 320
    lat = rows["treatment"]["latency_vs_control"]
    assert lat["test"] == "welch_t" and lat["significant"] and lat["p_value"] < 1e-6
    assert lat["delta_ms"] == pytest.approx(200, abs=2)
    assert call("GET", exporter.urls["web"] + "/api/experiments/unknown_flag")[0] == 404


def test_experiments_leave_out_forced_and_failed_evaluations(exporter):
    """A beta cohort forced into the treatment (reason TARGETING_MATCH) and evaluations that failed
    (ERROR) are in the per-variant metrics but not in the experiment: only the split's users are."""
    service, web = f"flags-{uuid.uuid4().hex[:6]}", exporter.urls["web"]

    def forced_beta(flag, ctx: EvaluationContext):
        user = int(ctx.targeting_key)
        if user >= 100:  # the beta cohort: forced on, and much slower
            return FlagResolutionDetails(value=True, variant="treatment", reason=Reason.TARGETING_MATCH)
        if user >= 90:  # the provider failed: the caller's default
            return FlagResolutionDetails(value=False, variant="control", reason=Reason.ERROR)
        return by_user(flag, ctx)

    users = [*range(20), *range(90, 94), *range(100, 110)]
    send_split(exporter, service, users, time.time_ns() - 10 ** 9, lambda u: 2000 if u >= 100 else 300,
               lambda u: 100, evaluator=forced_beta, treated=lambda u: u % 2 == 0 if u < 90 else u >= 100)

    def ready():
        s = scrape(web)
        return s if value(s, "pipeline_requests_total", service=service) == len(users) else None

    s = wait_until(ready, what=f"{len(users)} requests")
    flag = dict(service=service, flag="new_ranker")
    assert value(s, "feature_flag_evaluations_total", variant="treatment", reason="targeting_match", **flag) == 10
    assert value(s, "feature_flag_variant_request_duration_seconds_count", variant="treatment", **flag) == 20
    status, doc = call("GET", web + "/api/experiments/new_ranker")
    assert status == 200, doc
    rows = {r["variant"]: r for r in doc["variants"]}
    assert rows["treatment"]["requests"] == 10 and rows["control"]["requests"] == 10
    assert rows["treatment"]["mean_latency_ms"] == pytest.approx(300)
    assert rows["treatment"]["latency_vs_control"]["delta_ms"] == pytest.approx(200)


def send_split(exporter, service: str, users, end_ns, treated_ms, control_ms, failing=(), evaluator=by_user,
               treated=lambda user: user % 2 == 0):
    """One request per user through the real SDK and TracingHook, ending at `end_ns` (a time, or a
    function of the user); `evaluator` assigns the variants, `treated` says whom it gives the treatment
    (by_user: the even users); `failing`: the users whose request fails."""
    end_of = end_ns if callable(end_ns) else (lambda user: end_ns)
    tp = provider(http_exporter(exporter.urls["http"]), service)
    tracer = tp.get_tracer("t")
    openfeature.set_provider(InMemoryProvider({"new_ranker": InMemoryFlag(
        "control", {"control": False, "treatment": True}, context_evaluator=evaluator)}))
    client = openfeature.get_client()
    client.add_hooks([TracingHook()])
    for user in users:
        duration, end = treated_ms(user) if treated(user) else control_ms(user), end_of(user)
        with tracer.start_as_current_span("gateway", start_time=end - duration * MS, end_on_exit=False,
                                          attributes={"pipeline.component": "gateway"}) as span:
            client.get_boolean_value("new_ranker", False, EvaluationContext(targeting_key=str(user)))
            if user in failing:
                span.set_status(Status(StatusCode.ERROR, "failed"))
        span.end(end_time=end)
    tp.shutdown()
    openfeature.clear_hooks()
    client.hooks.clear()


def test_experiment_window_and_sequential_evidence(exporter):
    """Requests of two hours ago count since the start but not in `?window=1h`; each variant carries the
    mSPRT evidence (always-valid) beside the fixed-horizon tests."""
    service, web = f"flags-{uuid.uuid4().hex[:6]}", exporter.urls["web"]
    now = time.time_ns()
    send_split(exporter, service, range(20), now - 2 * 3600 * 10 ** 9, lambda u: 300, lambda u: 100)
    failing = {20, 24, 28, 32, 36}  # 5 of the 20 recent treated requests
    send_split(exporter, service, range(20, 60), now - 2 * 10 ** 9, lambda u: 300 + u % 7, lambda u: 100 + u % 5,
               failing)

    def ready():
        s = scrape(web)
        return s if value(s, "pipeline_requests_total", service=service) == 60 else None

    wait_until(ready, what="60 requests")
    status, recent = call("GET", web + "/api/experiments/new_ranker?window=1h")
    assert status == 200, recent
    assert recent["window_seconds"] == 3600 and "last 60 minutes" in recent["method"]
    assert "may be watched continuously" in recent["method"] and "fixed-horizon" in recent["method"]
    rows = {r["variant"]: r for r in recent["variants"]}
    assert rows["treatment"]["requests"] == 20 and rows["control"]["requests"] == 20
    assert rows["treatment"]["error_rate"] == 0.25 and "sequential" not in rows["control"]

    treated = [300 + u % 7 for u in range(20, 60, 2)]
    control = [100 + u % 5 for u in range(21, 60, 2)]
    seq = rows["treatment"]["sequential"]
    lat, err = seq["latency_ms"], seq["error_rate"]
    assert lat["estimate"] == pytest.approx(statistics.mean(treated) - statistics.mean(control))
    assert lat["n"] == [20, 20] and lat["null"] == 0 and lat["alpha"] == 0.05 and "mSPRT" in lat["method"]
    # 200 ms apart with a spread of a few ms: overwhelming evidence, and a sequence around the difference
    assert lat["significant"] and lat["p_value"] < 1e-6 and 150 < lat["lower"] < lat["estimate"] < lat["upper"] < 250
    assert err["estimate"] == pytest.approx(0.25) and err["n"] == [20, 20]
    assert err["lower"] < 0.25 < err["upper"]
    assert err["significant"] == (err["p_value"] < 0.05) == (err["lower"] > 0)
    assert rows["treatment"]["latency_vs_control"]["test"] == "welch_t"  # the fixed-horizon tests stay

    status, everything = call("GET", web + "/api/experiments/new_ranker")
    assert status == 200 and everything["window_seconds"] is None and "since the exporter started" in \
        everything["method"]
    rows = {r["variant"]: r for r in everything["variants"]}
    assert rows["treatment"]["requests"] == 30 and rows["control"]["requests"] == 30
    assert rows["treatment"]["sequential"]["latency_ms"]["n"] == [30, 30]
    assert call("GET", web + "/api/experiments/new_ranker?window=3h")[1]["variants"] == everything["variants"]
    assert call("GET", web + "/api/experiments/new_ranker?window=10800")[1]["window_seconds"] == 10800


def test_experiment_window_bad_values_are_400_naming_the_parameter(exporter):
    for query in ("window=abc", "window=0", "window=30s", "window=25h", "window=nan", "window=", "window=-1h",
                  "since=1h"):
        status, doc = call("GET", exporter.urls["web"] + "/api/experiments/new_ranker?" + query)
        assert status == 400 and doc["error"].startswith(query.split("=")[0]), (query, doc)
