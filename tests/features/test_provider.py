"""SpanscopeProvider against a real HTTP feature API (aiohttp, in this test) and the real OpenFeature SDK."""
from __future__ import annotations

import json
import logging
import uuid

import pytest
from aiohttp import web
from background_app import BackgroundApp
from openfeature import api
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from processes import free_port, wait_until
from spanscope.analysis.rollout import in_rollout
from spanscope.client.openfeature_provider import FeatureApiError, SpanscopeProvider

TOKEN = "s3cret"


def feature(name, category, enabled=True, rollout=100.0, required=False, caching=False, components=()):
    return {"name": name, "display_name": name.replace("_", " ").title(), "description": f"The {name} feature.",
            "category": category, "required": required, "enabled": enabled, "rollout_percentage": rollout,
            "caching": caching, "components": list(components), "avg_latency_ms": 12.3, "hit_rate": 0.42}


def seed_features():
    return [
        feature("intent_classification", "processing", required=True, components=["intent_classification"]),
        feature("multi_intent_detection", "processing"),
        feature("conversation_context", "processing", rollout=50.0),
        feature("clarification_questions", "processing", enabled=False),
        feature("rag_weather", "rag", components=["rag_lookup"]),
        feature("rag_sports", "rag", rollout=10.0),
        feature("rag_airports", "rag"),
        feature("redis_caching", "optimization", caching=True, components=["cache_lookup"]),
        feature("mlx_backend", "optimization", enabled=False),
        feature("response_streaming", "optimization"),
        feature("home_assistant", "integration", enabled=False),
    ]


class FeatureApi(BackgroundApp):
    """The exporter's feature endpoints as the lead specified them, served by aiohttp in a thread."""

    def __init__(self, port: int | None = None):
        super().__init__(port)
        self.features = seed_features()
        self.auth_headers: list[str | None] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/features", self._list)
        app.router.add_put("/api/features/{name}", self._put)

    def _find(self, name):
        return next((f for f in self.features if f["name"] == name), None)

    async def _list(self, request):
        self.auth_headers.append(request.headers.get("Authorization"))
        categories = {}
        for f in self.features:
            categories.setdefault(f["category"], []).append(f["name"])
        return web.json_response({"features": self.features, "categories": categories})

    async def _put(self, request):
        self.auth_headers.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        f = self._find(request.match_info["name"])
        if f is None:
            return web.json_response({"error": "unknown feature"}, status=404)
        body = await request.json()
        if body.get("enabled") is False and f["required"]:
            return web.json_response({"error": f"{f['name']} is required and cannot be disabled"}, status=409)
        if "enabled" in body:
            f["enabled"] = body["enabled"]
        if "rollout_percentage" in body:
            f["rollout_percentage"] = float(body["rollout_percentage"])
        return web.json_response(f)


@pytest.fixture
def feature_api():
    server = FeatureApi().start()
    yield server
    if server.running:
        server.stop()


@pytest.fixture
def client_for():
    """An OpenFeature client bound to `provider` under a domain of its own (the API is global)."""
    domains = []

    def make(provider, wait=True):
        domain = f"test-{uuid.uuid4().hex}"
        domains.append(provider)
        if wait:
            api.set_provider_and_wait(provider, domain)
        else:
            api.set_provider(provider, domain)
        return api.get_client(domain)

    yield make
    for provider in domains:
        provider.shutdown()


def ctx(user):
    return EvaluationContext(targeting_key=user)


def test_each_case_resolves_as_specified(feature_api, client_for):
    client = client_for(SpanscopeProvider(feature_api.url, refresh_seconds=60))

    disabled = client.get_boolean_details("clarification_questions", True, ctx("u1"))
    assert (disabled.value, disabled.variant, disabled.reason) == (False, "off", Reason.DISABLED)
    assert disabled.error_code is None

    full = client.get_boolean_details("rag_weather", False, ctx("u1"))
    assert (full.value, full.variant, full.reason) == (True, "on", Reason.STATIC)
    assert full.flag_metadata["category"] == "rag"

    missing = client.get_boolean_details("no_such_feature", True, ctx("u1"))
    assert missing.value is True  # the caller's default
    assert missing.error_code == ErrorCode.FLAG_NOT_FOUND
    assert missing.reason == Reason.ERROR


def test_partial_rollout_splits_users_by_bucket(feature_api, client_for):
    client = client_for(SpanscopeProvider(feature_api.url, refresh_seconds=60))
    users = [f"user-{i}" for i in range(2000)]
    details = [client.get_boolean_details("rag_sports", False, ctx(u)) for u in users]
    assert all(d.reason == Reason.SPLIT for d in details)
    assert [d.value for d in details] == [in_rollout("rag_sports", u, 10.0) for u in users]
    assert all(d.variant == ("on" if d.value else "off") for d in details)
    share = sum(d.value for d in details) / len(users)
    assert 0.07 < share < 0.13
    # A partial rollout needs someone to bucket.
    no_key = client.get_boolean_details("rag_sports", False)
    assert no_key.error_code == ErrorCode.TARGETING_KEY_MISSING and no_key.value is False


def test_forced_users_and_rule_matched_contexts_get_their_variant(feature_api, client_for):
    """rag_sports is at 10 %: a forced cohort or a matching rule decides before the bucket does."""
    users = [f"user-{i}" for i in range(200)]
    inside = [u for u in users if in_rollout("rag_sports", u, 10.0)]
    outside = [u for u in users if not in_rollout("rag_sports", u, 10.0)]
    row = next(f for f in feature_api.features if f["name"] == "rag_sports")
    row["cohorts"] = {"on": outside[:2], "off": inside[:1]}
    row["rules"] = [{"attribute": "tenant", "operator": "equals", "value": "acme", "variant": "on"},
                    {"attribute": "mode", "operator": "in", "values": ["voice", "agent"], "variant": "off"}]
    client = client_for(SpanscopeProvider(feature_api.url, refresh_seconds=60))

    def details(user, **attributes):
        d = client.get_boolean_details("rag_sports", not in_rollout("rag_sports", user, 10.0),
                                       EvaluationContext(targeting_key=user, attributes=attributes))
        return d.value, d.variant, d.reason, d.flag_metadata.get("rule")

    # forced: the cohort wins over the bucket and over a rule that says otherwise
    assert details(outside[0]) == (True, "on", Reason.TARGETING_MATCH, None)
    assert details(outside[1], mode="voice") == (True, "on", Reason.TARGETING_MATCH, None)
    assert details(inside[0], tenant="acme") == (False, "off", Reason.TARGETING_MATCH, None)
    # rule-matched: the first rule that matches the context's attributes
    assert details(outside[5], tenant="acme", mode="voice") == (True, "on", Reason.TARGETING_MATCH, 0)
    assert details(inside[3], tenant="globex", mode="agent") == (False, "off", Reason.TARGETING_MATCH, 1)
    # neither: the percentage rollout, as before
    assert details(inside[3], tenant="globex", mode="chat") == (True, "on", Reason.SPLIT, None)
    assert details(outside[5], tenant="globex") == (False, "off", Reason.SPLIT, None)
    # a rule needs no targeting key (the bucket does)
    keyless = client.get_boolean_details("rag_sports", False, EvaluationContext(attributes={"tenant": "acme"}))
    assert (keyless.value, keyless.reason) == (True, Reason.TARGETING_MATCH)


def test_targeting_the_provider_cannot_read_is_an_error_not_a_guess(feature_api, client_for):
    row = next(f for f in feature_api.features if f["name"] == "rag_weather")
    row["rules"] = [{"attribute": "tenant", "operator": "resembles", "value": "acme", "variant": "off"}]
    client = client_for(SpanscopeProvider(feature_api.url, refresh_seconds=60))
    d = client.get_boolean_details("rag_weather", False, ctx("u1"))
    assert (d.value, d.error_code) == (False, ErrorCode.PARSE_ERROR) and "rules[0].operator" in d.error_message
    assert client.get_boolean_details("rag_airports", False, ctx("u1")).value is True  # the others are unaffected


def test_non_boolean_evaluations_are_type_mismatches(feature_api, client_for):
    client = client_for(SpanscopeProvider(feature_api.url, refresh_seconds=60))
    d = client.get_string_details("rag_weather", "x", ctx("u1"))
    assert d.error_code == ErrorCode.TYPE_MISMATCH and d.value == "x"
    assert client.get_integer_details("nope", 3, ctx("u1")).error_code == ErrorCode.FLAG_NOT_FOUND


def test_exporter_down_keeps_the_last_known_state(feature_api, client_for, caplog):
    provider = SpanscopeProvider(feature_api.url, refresh_seconds=60, timeout=0.5)
    client = client_for(provider)
    before = {f["name"]: client.get_boolean_value(f["name"], None, ctx("user-7")) for f in feature_api.features}

    feature_api.stop()
    with caplog.at_level(logging.WARNING, logger="spanscope.openfeature"):
        assert provider.refresh() is False
        assert provider.refresh() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "an unreachable exporter is logged once, not on every poll"
    after = {f["name"]: client.get_boolean_value(f["name"], None, ctx("user-7")) for f in feature_api.features}
    assert after == before
    assert client.get_boolean_details("rag_weather", False, ctx("u")).reason == Reason.STATIC

    # It comes back with a change: the provider picks it up.
    restarted = FeatureApi(port=feature_api.port)
    restarted.features = seed_features()
    next(f for f in restarted.features if f["name"] == "rag_weather")["enabled"] = False
    restarted.start()
    try:
        assert provider.refresh() is True
        assert client.get_boolean_details("rag_weather", True, ctx("u")).reason == Reason.DISABLED
    finally:
        restarted.stop()


def test_background_polling_picks_up_changes(feature_api, client_for):
    client = client_for(SpanscopeProvider(feature_api.url, refresh_seconds=0.05))
    assert client.get_boolean_value("home_assistant", True, ctx("u")) is False
    next(f for f in feature_api.features if f["name"] == "home_assistant")["enabled"] = True
    wait_until(lambda: client.get_boolean_value("home_assistant", False, ctx("u")), timeout=10,
               what="home_assistant seen as enabled")


def test_exporter_down_at_startup_then_up(client_for):
    port = free_port()
    provider = SpanscopeProvider(f"http://127.0.0.1:{port}", refresh_seconds=0.05, timeout=0.5)
    client = client_for(provider, wait=False)
    early = client.get_boolean_details("rag_weather", True, ctx("u"))
    assert early.value is True and early.error_code == ErrorCode.PROVIDER_NOT_READY

    server = FeatureApi(port=port).start()
    try:
        assert provider.wait_until_ready(10)
        wait_until(lambda: client.get_boolean_details("rag_weather", False, ctx("u")).reason == Reason.STATIC,
                   timeout=10, what="provider ready after the exporter came up")
    finally:
        server.stop()


def test_put_changes_features_with_the_bearer_token(feature_api):
    provider = SpanscopeProvider(feature_api.url, refresh_seconds=60, token=TOKEN)
    assert provider.refresh()
    provider.set_feature("rag_sports", rollout_percentage=100)
    assert provider.features()["rag_sports"].rollout_percentage == 100.0
    assert provider.resolve_boolean_details("rag_sports", False, ctx("anyone")).reason == Reason.STATIC
    provider.set_feature("rag_airports", enabled=False)
    assert provider.resolve_boolean_details("rag_airports", True, ctx("u")).variant == "off"
    assert set(feature_api.auth_headers) == {f"Bearer {TOKEN}"}

    with pytest.raises(FeatureApiError) as err:
        provider.set_feature("intent_classification", enabled=False)
    assert err.value.status == 409 and "required" in err.value.message

    anonymous = SpanscopeProvider(feature_api.url, refresh_seconds=60)
    with pytest.raises(FeatureApiError) as err:
        anonymous.set_feature("rag_airports", enabled=True)
    assert err.value.status == 401


def test_tracing_hook_records_the_evaluation_on_the_current_span(feature_api, client_for):
    """What the exporter reads: feature_flag.evaluation events with key, variant and reason."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = client_for(SpanscopeProvider(feature_api.url, refresh_seconds=60))
    client.add_hooks([TracingHook()])
    with tracer_provider.get_tracer("test").start_as_current_span("gateway"):
        client.get_boolean_value("clarification_questions", True, ctx("user-3"))
        client.get_boolean_value("rag_weather", False, ctx("user-3"))
        client.get_boolean_value("missing_feature", False, ctx("user-3"))
    (span,) = exporter.get_finished_spans()
    events = [dict(e.attributes) for e in span.events if e.name == "feature_flag.evaluation"]
    assert [e["feature_flag.key"] for e in events] == ["clarification_questions", "rag_weather", "missing_feature"]
    assert events[0]["feature_flag.result.variant"] == "off" and events[0]["feature_flag.result.reason"] == "disabled"
    assert events[1]["feature_flag.result.variant"] == "on" and events[1]["feature_flag.result.reason"] == "static"
    assert json.loads(events[1]["feature_flag.result.value"]) is True
    assert events[2]["error.type"] == "flag_not_found"
    assert all(e["feature_flag.provider.name"] == "spanscope" for e in events)
