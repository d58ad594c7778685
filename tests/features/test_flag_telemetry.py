"""OpenFeature evaluations (real SDK + OpenTelemetry TracingHook) become per-variant metrics."""
import uuid

import pytest
from http_helpers import call
from openfeature import api as openfeature
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
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
    tp = provider(http_exporter(exporter.urls["http"]), service)
    tracer = tp.get_tracer("t")
    openfeature.set_provider(InMemoryProvider({"new_ranker": InMemoryFlag(
        "control", {"control": False, "treatment": True}, context_evaluator=by_user)}))
    client = openfeature.get_client()
    client.add_hooks([TracingHook()])
    base = 1_700_000_000_000 * MS
    for user in range(40):
        treated = user % 2 == 0
        start = base + user * 2000 * MS
        duration = (300 if treated else 100) + user % 7  # ms, with a little spread
        with tracer.start_as_current_span("gateway", start_time=start, end_on_exit=False,
                                          attributes={"pipeline.component": "gateway"}) as span:
            client.get_boolean_value("new_ranker", False, EvaluationContext(targeting_key=str(user)))
        span.end(end_time=start + duration * MS)
    tp.shutdown()
    openfeature.clear_hooks()
    client.hooks.clear()

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
