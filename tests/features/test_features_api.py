"""Feature API: toggles, required features, persistence, what-if and breakdown on known traces."""
import uuid

import pytest
from http_helpers import call
from known_traces import HIT, MISS
from processes import start_exporter, wait_until
from sdk import emit, http_exporter, provider, scrape, value


def start(tmp_path, **extra):
    return start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, **extra})


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """An exporter that has seen 4 cache misses (1000 ms) and 4 hits (100 ms)."""
    proc = start(tmp_path_factory.mktemp("features"))
    service = f"feat-{uuid.uuid4().hex[:6]}"
    tp = provider(http_exporter(proc.urls["http"]), service)
    tracer = tp.get_tracer("t")
    for _ in range(4):
        emit(tracer, MISS)
        emit(tracer, HIT)
    tp.shutdown()
    wait_until(lambda: value(scrape(proc.urls["web"]), "pipeline_requests_total", service=service) == 8)
    yield proc
    proc.stop()


def api(proc, path, method="GET", body=None, **kw):
    return call(method, proc.urls["web"] + path, body, **kw)


def test_features_are_listed_by_category_with_contribution_and_hit_rate(fed):
    status, doc = api(fed, "/api/features")
    assert status == 200
    assert set(doc["categories"]) == {"processing", "rag", "optimization", "integration"}
    by_name = {f["name"]: f for f in doc["features"]}
    assert len(by_name) == 11 and by_name["intent_classification"]["required"] is True
    assert by_name["conversation_context"]["avg_latency_ms"] == pytest.approx(100)
    assert by_name["rag_weather"]["avg_latency_ms"] == pytest.approx(10)
    assert by_name["redis_caching"]["avg_latency_ms"] == pytest.approx(10)  # cache_lookup is its component
    assert by_name["redis_caching"]["hit_rate"] == pytest.approx(0.5)
    assert doc["current_latency_ms"] == pytest.approx(550)


def test_what_if_from_measured_averages(fed):
    status, doc = api(fed, "/api/what-if?disable=conversation_context")
    assert status == 200
    assert doc["current_latency_ms"] == pytest.approx(550)
    assert doc["projected_latency_ms"] == pytest.approx(450)
    assert doc["delta_ms"] == pytest.approx(-100)
    # turning the cache off removes its 10 ms and adds back hit ratio × (miss − hit) = 0.5 × 900 ms
    status, doc = api(fed, "/api/what-if?disable=redis_caching")
    assert doc["projected_latency_ms"] == pytest.approx(550 - 10 + 450)
    status, doc = api(fed, "/api/what-if?disable=redis_caching,conversation_context")
    assert doc["projected_latency_ms"] == pytest.approx(890)
    status, doc = api(fed, "/api/what-if?disable=intent_classification")
    assert doc["projected_latency_ms"] == pytest.approx(550) and "required" in doc["steps"][0]["note"]
    assert api(fed, "/api/what-if?disable=nope")[0] == 404


def test_breakdown_sums_to_the_mean_latency(fed):
    status, doc = api(fed, "/api/breakdown")
    assert status == 200 and doc["requests_in_window"] == 8
    parts = {c["component"]: c["mean_ms"] for c in doc["components"]}
    assert sum(parts.values()) == pytest.approx(doc["total_ms"]) == pytest.approx(550)
    assert parts["llm_inference"] == pytest.approx(670 * 4 / 8)
    assert sum(c["share_percent"] for c in doc["components"]) == pytest.approx(100)


def test_impact_table_and_gauges(fed):
    status, doc = api(fed, "/api/features/impact")
    assert doc["features"][0]["name"] == "conversation_context"
    assert doc["features"][0]["percent_of_total"] == pytest.approx(100 / 550 * 100)
    s = scrape(fed.urls["web"])
    assert value(s, "feature_latency_contribution_seconds", feature="conversation_context") == pytest.approx(0.1)
    assert value(s, "feature_cache_hit_ratio", feature="redis_caching") == pytest.approx(0.5)
    assert value(s, "feature_enabled", feature="intent_classification", category="processing", required="true") == 1
    assert value(s, "feature_whatif_projected_latency_seconds", scenario="current") == pytest.approx(0.55)
    assert value(s, "feature_whatif_projected_latency_seconds", scenario="no_caching") == pytest.approx(0.99)
    # no_rag turns off weather/sports/airport: only weather ran (10 ms)
    assert value(s, "feature_whatif_projected_latency_seconds", scenario="no_rag") == pytest.approx(0.54)


def test_toggles_required_unknown_and_invalid(tmp_path):
    proc = start(tmp_path)
    try:
        status, doc = api(proc, "/api/features/conversation_context", "PUT", {"enabled": False})
        assert status == 200 and doc["enabled"] is False
        status, doc = api(proc, "/api/features/intent_classification", "PUT", {"enabled": False})
        assert status == 409 and "required" in doc["error"]
        assert api(proc, "/api/features/nope", "PUT", {"enabled": False})[0] == 404
        assert api(proc, "/api/features/nope")[0] == 404
        status, doc = api(proc, "/api/features/rag_weather", "PUT", {"rollout_percentage": 150})
        assert status == 400 and doc["error"].startswith("rollout_percentage")
        assert api(proc, "/api/features/rag_weather", "PUT", {"enabled": "no"})[0] == 400
        status, doc = api(proc, "/api/features/rag_weather", "PUT", {"rollout_percentage": 25})
        assert doc["rollout_percentage"] == 25
        s = scrape(proc.urls["web"])
        assert value(s, "feature_rollout_ratio", feature="rag_weather") == 0.25
        assert value(s, "feature_enabled", feature="conversation_context") == 0
    finally:
        proc.stop()


def test_rollout_schedules_advance_roll_back_and_emergency(tmp_path):
    proc = start(tmp_path)
    try:
        path = "/api/features/mlx_backend/rollout"
        status, doc = api(proc, path, "POST", {"strategy": "exponential", "step": 1})
        assert status == 200 and doc["rollout_percentage"] == 1 and doc["enabled"] is True
        assert doc["rollout"]["schedule"] == [1, 2, 4, 8, 16, 32, 64, 100]
        assert api(proc, path + "/advance", "POST")[1]["rollout_percentage"] == 2
        assert api(proc, path + "/advance", "POST")[1]["rollout_percentage"] == 4
        assert api(proc, path + "/rollback", "POST")[1]["rollout_percentage"] == 2
        assert api(proc, path + "/emergency-rollback", "POST")[1]["rollout_percentage"] == 0
        assert api(proc, path + "/advance", "POST")[0] == 409  # nothing running any more
        status, doc = api(proc, path, "POST", {"strategy": "linear", "step": 25})
        assert doc["rollout"]["schedule"] == [25, 50, 75, 100]
        assert api(proc, path, "POST", {"strategy": "sideways"})[0] == 400
        assert api(proc, "/api/features/intent_classification/rollout", "POST", {"strategy": "linear"})[0] == 409
    finally:
        proc.stop()


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "features.json"
    proc = start(tmp_path, features={"state_file": str(state)})
    try:
        # Off differs from the catalogue default (every seed feature is on), so only the file can say it.
        assert api(proc, "/api/features/home_assistant", "PUT", {"enabled": False})[0] == 200
        assert api(proc, "/api/features/rag_weather", "PUT", {"rollout_percentage": 40})[0] == 200
    finally:
        proc.stop()
    proc = start(tmp_path, features={"state_file": str(state)})
    try:
        by_name = {f["name"]: f for f in api(proc, "/api/features")[1]["features"]}
        assert by_name["home_assistant"]["enabled"] is False
        assert by_name["rag_weather"]["rollout_percentage"] == 40
    finally:
        proc.stop()


@pytest.mark.parametrize("garbage", ["{not json", '{"features": {"rag_weather": {"enabled": "yes"}}}', "[]",
                                     '{"features": {"rag_weather": {"enabled": true, "cohorts": {"on": "u1"}}}}',
                                     '{"features": {"intent_classification": {"enabled": true, "rules": '
                                     '[{"attribute": "a", "operator": "equals", "value": 1, "variant": "off"}]}}}'])
def test_corrupted_state_file_gives_defaults_and_a_clear_error(tmp_path, garbage):
    state = tmp_path / "features.json"
    state.write_text(garbage)
    proc = start(tmp_path, features={"state_file": str(state)})
    try:
        status, doc = api(proc, "/api/features")
        assert status == 200
        assert str(state) in doc["state_file_error"] and "catalogue defaults" in doc["state_file_error"]
        assert {f["name"]: f["enabled"] for f in doc["features"]}["rag_weather"] is True
        assert str(state) in proc.log()
    finally:
        proc.stop()


# --- cohorts and targeting rules ---------------------------------------------------------------------

COHORTS = {"on": ["beta-1", "beta-2"], "off": ["vip-1"]}
RULES = [{"attribute": "tenant", "operator": "in", "values": ["acme", "globex"], "variant": "on"},
         {"attribute": "targeting_key", "operator": "starts_with", "value": "bot-", "variant": "off"}]


def evaluate(proc, name, key=None, **attributes):
    status, doc = api(proc, f"/api/features/{name}/evaluate", "POST",
                      {"targeting_key": key, "attributes": attributes})
    assert status == 200, doc
    return doc["value"], doc["variant"], doc["reason"], doc["rule"]


def test_cohorts_and_rules_are_set_returned_and_evaluated(tmp_path):
    state = tmp_path / "features.json"
    proc = start(tmp_path, features={"state_file": str(state)})
    try:
        status, doc = api(proc, "/api/features/mlx_backend", "PUT",
                          {"rollout_percentage": 0, "cohorts": COHORTS, "rules": RULES})
        assert status == 200, doc
        assert (doc["rollout_percentage"], doc["cohorts"], doc["rules"]) == (0, COHORTS, RULES)
        listed = {f["name"]: f for f in api(proc, "/api/features")[1]["features"]}
        assert (listed["mlx_backend"]["cohorts"], listed["mlx_backend"]["rules"]) == (COHORTS, RULES)
        assert (listed["rag_weather"]["cohorts"], listed["rag_weather"]["rules"]) == ({}, [])

        # forced users first, then the first matching rule, then the (0 %) rollout
        assert evaluate(proc, "mlx_backend", "beta-2") == (True, "on", "TARGETING_MATCH", None)
        assert evaluate(proc, "mlx_backend", "vip-1", tenant="acme") == (False, "off", "TARGETING_MATCH", None)
        assert evaluate(proc, "mlx_backend", "u7", tenant="globex") == (True, "on", "TARGETING_MATCH", 0)
        assert evaluate(proc, "mlx_backend", "bot-3", tenant="initech") == (False, "off", "TARGETING_MATCH", 1)
        assert evaluate(proc, "mlx_backend", "u7", tenant="initech") == (False, "off", "SPLIT", None)
        # disabled beats everything
        assert api(proc, "/api/features/mlx_backend", "PUT", {"enabled": False})[0] == 200
        assert evaluate(proc, "mlx_backend", "beta-2") == (False, "off", "DISABLED", None)
        assert api(proc, "/api/features/mlx_backend", "PUT", {"enabled": True, "rollout_percentage": 50})[0] == 200
        status, doc = api(proc, "/api/features/mlx_backend/evaluate", "POST", {"attributes": {"tenant": "initech"}})
        assert status == 400 and doc["error"].startswith("targeting_key:")

        # a PUT replaces what it names and leaves the rest
        status, doc = api(proc, "/api/features/mlx_backend", "PUT", {"cohorts": {"off": ["vip-2"]}})
        assert (doc["cohorts"], doc["rules"]) == ({"off": ["vip-2"]}, RULES)
    finally:
        proc.stop()
    proc = start(tmp_path, features={"state_file": str(state)})
    try:
        doc = api(proc, "/api/features/mlx_backend")[1]
        assert (doc["cohorts"], doc["rules"], doc["rollout_percentage"]) == ({"off": ["vip-2"]}, RULES, 50)
        assert evaluate(proc, "mlx_backend", "u7", tenant="acme") == (True, "on", "TARGETING_MATCH", 0)
    finally:
        proc.stop()


@pytest.mark.parametrize("body, message", [
    ({"cohorts": {"maybe": ["u1"]}}, "cohorts.maybe: unknown field"),
    ({"cohorts": {"on": "u1"}}, "cohorts.on:"),
    ({"cohorts": {"on": [""]}}, "cohorts.on[0]: expected a targeting key"),
    ({"cohorts": {"on": ["u1"], "off": ["u1"]}}, "cohorts: 'u1' is forced into both on and off"),
    ({"rules": {}}, "rules:"),
    ({"rules": [{"attribute": "tier", "operator": "like", "value": "x", "variant": "on"}]}, "rules[0].operator:"),
    ({"rules": [{"attribute": "tier", "operator": "equals", "value": "x", "variant": "yes"}]}, "rules[0].variant:"),
    ({"rules": [{"attribute": "tier", "operator": "equals", "value": "x"}]}, "rules[0].variant: missing"),
    ({"rules": [{"attribute": "tier", "operator": "in", "value": "x", "variant": "on"}]}, "rules[0]: value: in takes"),
    ({"rules": [{"attribute": "tier", "operator": "matches", "value": "(", "variant": "on"}]},
     "rules[0]: value: not a regular expression"),
    ({"rules": [{"attribute": "tier", "operator": "equals", "value": {"a": 1}, "variant": "on"}]}, "rules[0].value:"),
    ({"cohorts": {"on": ["a", "b", "c", "d"]}}, "cohorts: 4 targeting keys, at most 3 per feature "
                                                "(features.max_cohort_users)"),
    ({"rules": [{"attribute": "a", "operator": "equals", "value": i, "variant": "on"} for i in range(3)]},
     "rules: 3 rules, at most 2 per feature (features.max_rules)"),
])
def test_bad_targeting_is_a_400_naming_the_field_and_changes_nothing(limited, body, message):
    status, doc = api(limited, "/api/features/rag_sports", "PUT", {"enabled": False, **body})
    assert status == 400 and doc["error"].startswith(message), doc
    doc = api(limited, "/api/features/rag_sports")[1]
    assert (doc["enabled"], doc["cohorts"], doc["rules"]) == (True, {}, [])


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    proc = start(tmp_path_factory.mktemp("limited"), features={"max_cohort_users": 3, "max_rules": 2})
    yield proc
    proc.stop()


def test_a_required_feature_cannot_be_forced_off(limited):
    off_rule = [{"attribute": "tier", "operator": "equals", "value": "free", "variant": "off"}]
    for body in ({"cohorts": {"off": ["u1"]}}, {"rules": off_rule}):
        status, doc = api(limited, "/api/features/intent_classification", "PUT", body)
        assert status == 409 and "required" in doc["error"], doc
    status, doc = api(limited, "/api/features/intent_classification", "PUT", {"cohorts": {"on": ["u1"]}})
    assert status == 200 and doc["cohorts"] == {"on": ["u1"]}
    assert evaluate(limited, "intent_classification", "u2", tier="free") == (True, "on", "STATIC", None)
