"""The demo service emits the span contract, scenario by scenario, through the real OTel SDK."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from demo_runs import cached_run, run_demo
from spanscope.interpret.pricing import Pricing, load_table
from spanscope_demo import scenarios
from spanscope_demo.features import SEED_FEATURES

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = {"gateway", "cache_lookup", "intent_classification", "rag_lookup", "llm_inference",
              "response_assembly"}
ATTRIBUTE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z0-9_]+)+$")
ALL_ON = tuple(sorted((name, True) for name in SEED_FEATURES))


def contract_attributes() -> set[str]:
    """Attribute names docs/span-contract.md says the exporter reads (current names, not the old ones)."""
    names = set()
    doc = (REPO / "docs/span-contract.md").read_text()
    # Names only some instrumentations emit (OpenInference's, …) are not the demo's to emit.
    doc = re.sub(r"<!-- contract:libraries -->.*?<!-- /contract -->", "", doc, flags=re.S)
    for line in doc.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first_cell = line.split("|")[1]
            names |= {n for n in re.findall(r"`([^`]+)`", first_cell) if ATTRIBUTE.match(n)}
        elif "circuit_breaker.state_change" in line or line.startswith("`pipeline.circuit_breaker"):
            names |= {n for n in re.findall(r"`([^`]+)`", line) if ATTRIBUTE.match(n)}
    names.discard("circuit_breaker.state_change")  # an event name, checked below
    return names


def emitted_names(run) -> set[str]:
    names = set()
    for s in run.spans:
        names |= set(s.attributes)
        for e in s.events:
            names |= set(e.attributes)
        names |= set(s.resource.attributes)
    return names


def test_every_component_and_contract_attribute_appears():
    normal, tripped = cached_run("normal", ALL_ON), cached_run("breaker_trip")
    components = {s.attributes.get("pipeline.component") for r in (normal, tripped) for s in r.spans}
    assert COMPONENTS <= components
    assert any(s.attributes.get("gen_ai.operation.name") == "execute_tool" for s in normal.spans)

    expected = contract_attributes()
    assert len(expected) > 40, "the contract parser found too little: has docs/span-contract.md changed shape?"
    missing = expected - (emitted_names(normal) | emitted_names(tripped))
    assert not missing, f"contract attributes the demo never emits: {sorted(missing)}"
    reasons = {s.attributes.get("pipeline.cache.miss_reason") for s in normal.component("cache_lookup")}
    assert {"absent", "expired"} <= reasons <= {None, "absent", "expired", "evicted"}
    events = {e.name for r in (normal, tripped) for s in r.spans for e in s.events}
    assert {"feature_flag.evaluation", "circuit_breaker.state_change"} <= events


def test_each_request_is_one_trace_under_a_gateway_root():
    run = cached_run("normal")
    assert len(run.roots) == len(run.outcomes) == len(run.traces)
    for root in run.roots[:300]:
        a = root.attributes
        assert root.name == "gateway" and a["pipeline.component"] == "gateway"
        assert a["pipeline.mode"] in {"chat", "search", "voice", "agent"}
        assert a["tenant.id"] and a["enduser.id"].startswith("user-")
        assert set(a["pipeline.features.enabled"]) == {n for n, on in SEED_FEATURES.items() if on}
        assert root.resource.attributes["service.name"] == "rag-demo"
        # One evaluation per seed feature, targeted at the user, recorded by the OpenFeature hook.
        evaluations = [e.attributes for e in root.events if e.name == "feature_flag.evaluation"]
        assert sorted(e["feature_flag.key"] for e in evaluations) == sorted(SEED_FEATURES)
        assert {e["feature_flag.context.id"] for e in evaluations} == {a["enduser.id"]}
        # Children lie inside the request.
        for child in run.traces[root.context.trace_id]:
            assert root.start_time <= child.start_time <= child.end_time <= root.end_time
    assert {r.attributes["tenant.id"] for r in run.roots} >= {"acme", "globex", "initech", "umbrella", "hooli"}


def test_a_cache_hit_short_circuits_to_response_assembly():
    run = cached_run("normal")
    hits = [r for r in run.roots if r.attributes.get("pipeline.cache.status") == "hit"]
    misses = [r for r in run.roots if r.attributes.get("pipeline.cache.status") == "miss"]
    assert hits and misses
    for root in hits[:200]:
        components = {s.attributes.get("pipeline.component") for s in run.traces[root.context.trace_id]}
        assert components == {"gateway", "cache_lookup", "response_assembly"}
    miss_components = {s.attributes.get("pipeline.component") for r in misses for s in run.traces[r.context.trace_id]}
    assert {"intent_classification", "llm_inference"} <= miss_components


def test_rag_lookups_run_in_parallel():
    run = cached_run("normal")
    overlapping = 0
    for spans in run.traces.values():
        lookups = sorted((s for s in spans if s.attributes.get("pipeline.component") == "rag_lookup"),
                         key=lambda s: s.start_time)
        by_source = {s.attributes["pipeline.rag.source"]: s for s in lookups}
        if "weather" in by_source and "sports" in by_source:
            w, s = by_source["weather"], by_source["sports"]
            overlapping += w.start_time < s.end_time and s.start_time < w.end_time
        if "weather" in by_source and "airport" in by_source:
            assert by_source["airport"].start_time >= by_source["weather"].end_time  # depends on weather
    assert overlapping > 0


def test_llm_spans_follow_the_genai_conventions():
    run = cached_run("normal", ALL_ON)
    chats = [s for s in run.spans if s.attributes.get("gen_ai.operation.name") == "chat"
             and "gen_ai.usage.input_tokens" in s.attributes]
    assert chats
    models = {s.attributes["gen_ai.response.model"] for s in chats}
    assert {"gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"} <= models
    pricing = Pricing(load_table())
    for s in chats:
        a = s.attributes
        assert a["gen_ai.provider.name"] in {"openai", "anthropic"}
        assert pricing.price(a["gen_ai.response.model"]) is not None, "the demo only uses priced models"
        cached = a.get("gen_ai.usage.cache_read.input_tokens", 0) + a.get("gen_ai.usage.cache_creation.input_tokens", 0)
        assert cached <= a["gen_ai.usage.input_tokens"], "input tokens include cached ones"
        assert a.get("gen_ai.usage.reasoning.output_tokens", 0) <= a["gen_ai.usage.output_tokens"]
        assert 0 < a["gen_ai.response.time_to_first_chunk"] < (s.end_time - s.start_time) / 1e9


# -- scenarios ----------------------------------------------------------------------------------


def cost_per_request(run) -> float:
    pricing = Pricing(load_table())
    total = 0.0
    for s in run.spans:
        a = s.attributes
        if "gen_ai.usage.input_tokens" not in a:
            continue
        cost = Pricing.cost(pricing.price(a["gen_ai.response.model"]), a["gen_ai.usage.input_tokens"],
                            a["gen_ai.usage.output_tokens"], a.get("gen_ai.usage.cache_read.input_tokens", 0),
                            a.get("gen_ai.usage.cache_creation.input_tokens", 0))
        total += float(cost.total)
    return total / len(run.outcomes)


def breaker_states(run) -> list[str]:
    return [s.attributes["pipeline.circuit_breaker.state"] for s in run.with_attr("pipeline.circuit_breaker.state")]


def test_latency_spike_raises_p95():
    assert cached_run("latency_spike").quantile(0.95) > 3 * cached_run("normal").quantile(0.95)


def test_error_burst_raises_the_error_ratio():
    assert cached_run("normal").error_ratio() < 0.02
    burst = cached_run("error_burst")
    assert burst.error_ratio() > 0.10
    failed = [r for r in burst.roots if r.status.status_code.name == "ERROR"]
    assert {r.attributes["error.type"] for r in failed} >= {"llm_unavailable", "internal_error"}


def test_cost_spike_raises_cost_per_request():
    normal, spike = cost_per_request(cached_run("normal")), cost_per_request(cached_run("cost_spike"))
    assert spike > 10 * normal
    spike_routes = cached_run("cost_spike").with_attr("pipeline.route.reason")
    assert {s.attributes["pipeline.route.reason"] for s in spike_routes} == {"config_override"}


def test_cache_flush_drops_the_hit_ratio_to_zero():
    assert 0.3 <= cached_run("normal").hit_ratio() <= 0.65
    flushed = cached_run("cache_flush")
    assert flushed.hit_ratio() == 0.0
    assert all(s.attributes["pipeline.cache.result"] == "miss" for s in flushed.component("cache_lookup"))


def test_breaker_trip_opens_the_breaker_and_falls_back():
    normal = cached_run("normal")
    assert set(breaker_states(normal)) == {"closed"}
    assert not [e for s in normal.spans for e in s.events if e.name == "circuit_breaker.state_change"]

    tripped = cached_run("breaker_trip")
    assert breaker_states(tripped).count("open") > len(tripped.outcomes) * 0.2
    changes = [(e.attributes["pipeline.circuit_breaker.from"], e.attributes["pipeline.circuit_breaker.to"])
               for s in tripped.spans for e in s.events if e.name == "circuit_breaker.state_change"]
    assert ("closed", "open") in changes and ("open", "half_open") in changes and ("half_open", "open") in changes
    assert tripped.with_attr("pipeline.circuit_breaker.outcome", "not_permitted")
    fallbacks = tripped.with_attr("pipeline.fallback.to", "claude-haiku-4-5")
    assert {s.attributes["pipeline.fallback.reason"] for s in fallbacks} == {"circuit_open", "upstream_error"}
    # The fallback keeps most requests answering.
    assert tripped.error_ratio() < 0.05


def test_normal_stays_inside_the_alert_thresholds():
    """`normal` must not page anyone: checked against prometheus/rules_src/thresholds.yml."""
    path = REPO / "prometheus/rules_src/thresholds.yml"
    if not path.exists():
        pytest.skip("prometheus/rules_src/thresholds.yml not written yet")
    doc = yaml.safe_load(path.read_text())
    alerts = doc["alerts"]
    run = cached_run("normal")
    roots = run.roots
    assert run.error_ratio() < alerts["PipelineHighErrorRate"]["warning"]["threshold"]
    assert run.quantile(0.95) < alerts["PipelineHighLatencyP95"]["warning"]["threshold"]
    latency_slo = doc["slo"]["objectives"]["latency"]
    slow = sum(o.duration_s > latency_slo["threshold_seconds"] for o in run.outcomes) / len(run.outcomes)
    assert slow < 1 - latency_slo["objective"]
    assert run.error_ratio() < 1 - doc["slo"]["objectives"]["availability"]["objective"]
    for layer in ("l1", "l2"):
        assert run.hit_ratio(layer) > alerts["PipelineCacheHitRateLow"]["warning"]["threshold"], layer
    degraded = len(run.with_attr("pipeline.degradation.reason")) / len(roots)
    assert degraded < alerts["PipelineDegradationRateHigh"]["warning"]["threshold"]
    fallbacks = len(run.with_attr("pipeline.fallback.to")) / len(roots)
    assert fallbacks < alerts["PipelineFallbackRateHigh"]["warning"]["threshold"]
    scores = [s.attributes["pipeline.quality.score"] for s in run.with_attr("pipeline.quality.score")]
    assert sum(scores) / len(scores) > alerts["PipelineQualityScoreLow"]["warning"]["threshold"]
    # Daily cost at the default `make run` rate (10 requests/s).
    assert cost_per_request(run) * 10 * 86400 < alerts["LLMDailyCostOverBudget"]["warning"]["threshold"]


def test_bad_rollout_breaks_only_the_requests_with_mlx_backend_on():
    normal, broken = cached_run("normal"), cached_run("bad_rollout")
    off = cached_run("bad_rollout", (("mlx_backend", False),))
    assert normal.error_ratio() < 0.05 and off.error_ratio() < 0.05
    assert broken.error_ratio() > 0.15  # 40 % of the requests that classify (cache misses) fail
    failed = {r.attributes.get("error.type") for r in broken.roots if r.status.status_code.name == "ERROR"}
    assert "classifier_error" in failed
    slow = [s for s in broken.component("intent_classification") if s.name == "intent_classification"]
    fast = [s for s in normal.component("intent_classification") if s.name == "intent_classification"]
    mean = lambda spans: sum(s.end_time - s.start_time for s in spans) / len(spans)  # noqa: E731
    assert mean(slow) > 4 * mean(fast)


@pytest.mark.parametrize("name", sorted(set(scenarios.SCENARIOS) - {"normal"}))
def test_every_scenario_is_different_from_normal(name):
    # A guard for new scenarios: each must change what flows (the specific tests above say how).
    normal, other = cached_run("normal"), cached_run(name)
    assert (other.error_ratio(), round(other.quantile(0.95), 3), round(other.hit_ratio(), 3),
            round(cost_per_request(other), 6), breaker_states(other).count("open")) != \
           (normal.error_ratio(), round(normal.quantile(0.95), 3), round(normal.hit_ratio(), 3),
            round(cost_per_request(normal), 6), breaker_states(normal).count("open"))


# -- features -----------------------------------------------------------------------------------


def spans_named(run, prefix):
    return [s for s in run.spans if s.name.startswith(prefix)]


def mean_latency(run):
    return sum(o.duration_s for o in run.outcomes) / len(run.outcomes)


def test_redis_caching_off_skips_the_cache():
    on, off = cached_run("normal"), cached_run("normal", (("redis_caching", False),))
    assert not off.component("cache_lookup")
    assert not off.with_attr("pipeline.cache.status")
    assert all(o.cache_status == "none" for o in off.outcomes)
    assert mean_latency(off) > 1.5 * mean_latency(on), "no cache, no short-circuit: slower on average"
    variants = {e.attributes["feature_flag.result.variant"] for r in off.roots for e in r.events
                if e.attributes.get("feature_flag.key") == "redis_caching"}
    assert variants == {"off"}


def test_the_demo_falls_back_on_the_seed_catalogue():
    """Until the exporter answers, the demo runs on the catalogue's names and defaults: the seed's."""
    doc = yaml.safe_load((REPO / "exporter/spanscope/defaults/features.yaml").read_text())
    assert SEED_FEATURES == {f["name"]: f["default"] for f in doc["features"]}
    assert {"rag_weather", "rag_sports", "rag_airports"} <= set(SEED_FEATURES)
    assert all(SEED_FEATURES.values()), "the seed enables every feature"
    assert [f["name"] for f in doc["features"] if f.get("required")] == ["intent_classification"]


@pytest.mark.parametrize("feature, span_prefix", [
    ("rag_weather", "rag_lookup weather"),
    ("rag_sports", "rag_lookup sports"),
    ("rag_airports", "rag_lookup airport"),
    ("multi_intent_detection", "multi_intent_detection"),
    ("conversation_context", "conversation_context"),
])
def test_a_disabled_feature_skips_its_span(feature, span_prefix):
    assert spans_named(cached_run("normal"), span_prefix), "the span exists while the feature is on"
    off = cached_run("normal", ((feature, False),))
    assert not spans_named(off, span_prefix)
    assert not [s for s in off.spans if s.attributes.get("pipeline.feature") == feature]
    assert feature not in off.roots[0].attributes["pipeline.features.enabled"]


def test_home_assistant_clarification_and_mlx_do_their_work_only_when_on():
    # All three are on in the seed's catalogue; the run that needs them off says so.
    default = cached_run("normal")
    off = cached_run("normal", (("clarification_questions", False), ("home_assistant", False), ("mlx_backend", False)))
    for feature in ("home_assistant", "clarification_questions"):
        assert [s for s in default.spans if s.attributes.get("pipeline.feature") == feature]
        assert not [s for s in off.spans if s.attributes.get("pipeline.feature") == feature]
    backend = "pipeline.intent.backend"
    assert {s.attributes[backend] for s in default.with_attr(backend)} == {"mlx"}
    assert {s.attributes[backend] for s in off.with_attr(backend)} == {"remote"}
    assert default.with_attr("pipeline.response.type", "clarification")
    assert not off.with_attr("pipeline.response.type", "clarification")


def test_response_streaming_off_drops_time_to_first_chunk():
    assert cached_run("normal").with_attr("gen_ai.response.time_to_first_chunk")
    assert not cached_run("normal", (("response_streaming", False),)).with_attr("gen_ai.response.time_to_first_chunk")


# -- feedback -----------------------------------------------------------------------------------


def test_feedback_names_the_interaction_by_trace_id():
    ratings = []
    run = run_demo(n=400, feedback=lambda *args: ratings.append(args), feedback_rate=0.2)
    trace_ids = {format(r.context.trace_id, "032x") for r in run.roots}
    assert 40 < len(ratings) < 130
    for interaction_id, rating, comment, _answered_ns in ratings:
        assert interaction_id in trace_ids and re.fullmatch(r"[0-9a-f]{32}", interaction_id)
        assert rating in {1, 2, 3, 4, 5}
        assert comment is None or 0 < len(comment) <= 2000
    assert len({r for _, r, _, _ in ratings}) >= 3
