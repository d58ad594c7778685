"""The real exporter with its interaction store, against SQLite and PostgreSQL: interactions from
SDK traces, the read API, feedback that survives kill -9, and a blocked database that costs rows
but never ingest."""
import signal
import uuid
from decimal import Decimal

import pytest
from database_lock import database_locked
from http_helpers import call
from processes import start_exporter, wait_until
from sdk import emit, http_exporter, provider, scrape, trace_id_hex, value
from store_backends import BACKENDS, empty_database

# The design's critical-path example (docs: DESIGN "Critical path"), with a priced LLM call and a
# flag evaluation: critical path gateway 100, assembly 40, llm 500, rag 300, intent 50, cache 10 ms.
LLM = {"pipeline.component": "llm_inference", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
       "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}
COST = Decimal("0.006")  # gpt-4o: 1200 × $2.50/M + 300 × $10/M


def request_tree(user: str):
    return ("gateway", 0, 1000, {"pipeline.component": "gateway", "pipeline.mode": "voice", "tenant.id": "acme",
                                 "enduser.id": user,
                                 "_events": [("feature_flag.evaluation", {"feature_flag.key": "reranker",
                                                                          "feature_flag.result.variant": "on",
                                                                          "feature_flag.result.reason": "SPLIT"}),
                                             ("feature_flag.evaluation", {"feature_flag.key": "beta_search",
                                                                          "feature_flag.result.variant": "on",
                                                                          "feature_flag.result.reason":
                                                                              "TARGETING_MATCH"})]}, [
        ("cache", 0, 10, {"pipeline.component": "cache_lookup", "pipeline.cache.name": "l1",
                          "pipeline.cache.result": "miss"}),
        ("intent", 10, 60, {"pipeline.component": "intent_classification"}),
        ("rag-a", 60, 260, {"pipeline.component": "rag_lookup"}),
        ("rag-b", 60, 360, {"pipeline.component": "rag_lookup"}),
        ("llm", 360, 860, LLM),
        ("assembly", 860, 900, {"pipeline.component": "response_assembly", "pipeline.quality.score": 0.9,
                                "pipeline.quality.confidence": 0.35, "pipeline.quality.citations": 2}),
    ])


def exporter_with_store(tmp_path, url, **store):
    return start_exporter(tmp_path, {"traces": {"finish_delay": 0.05},
                                     "store": {"url": url, "cleanup_interval": 3600, **store}})


def get(proc, path):
    return call("GET", proc.urls["web"] + path)


def rate(proc, trace_id, rating, comment=None):
    return call("POST", proc.urls["web"] + "/api/v1/feedback",
                {"interaction_id": trace_id, "rating": rating, "comment": comment})


@pytest.fixture(scope="module", params=BACKENDS)
def fed(request, tmp_path_factory):
    """An exporter that has stored one request of a known user; (process, trace id, user, service)."""
    tmp = tmp_path_factory.mktemp(f"store-{request.param}")
    with empty_database(request, request.param, tmp) as url:
        proc = exporter_with_store(tmp, url)
        try:
            service, user = f"svc-{uuid.uuid4().hex[:6]}", f"user-{uuid.uuid4().hex[:6]}"
            tp = provider(http_exporter(proc.urls["http"]), service)
            root = emit(tp.get_tracer("t"), request_tree(user))
            tp.shutdown()
            trace_id = trace_id_hex(root)
            wait_until(lambda: get(proc, f"/api/v1/interactions/{trace_id}")[0] == 200, timeout=15,
                       what="the interaction in the store")
            yield proc, trace_id, user, service
        finally:
            proc.stop()


def test_an_interaction_carries_breakdown_tokens_cost_quality_variants_and_their_reasons(fed):
    proc, trace_id, user, service = fed
    status, doc = get(proc, f"/api/v1/interactions/{trace_id.upper()}")
    assert status == 200
    assert (doc["trace_id"], doc["service"], doc["mode"], doc["tenant"], doc["user_id"]) == \
        (trace_id, service, "voice", "acme", user)
    assert doc["duration_seconds"] == pytest.approx(1.0)
    assert doc["critical_path_seconds"] == pytest.approx({
        "gateway": 0.1, "response_assembly": 0.04, "llm_inference": 0.5, "rag_lookup": 0.3,
        "intent_classification": 0.05, "cache_lookup": 0.01})
    assert sum(doc["critical_path_seconds"].values()) == pytest.approx(doc["duration_seconds"])
    assert doc["tokens"] == {"input": 1200, "output": 300, "cache_read": 0, "cache_creation": 0, "reasoning": 0}
    assert doc["model"] == "gpt-4o" and Decimal(doc["cost_usd"]) == COST
    assert (doc["quality"], doc["confidence"], doc["citations"]) == (0.9, 0.35, 2)
    assert doc["cache_status"] == "miss" and doc["error"] is False
    # why each flag took its variant: a guarded rollout of beta_search would leave this request out
    assert doc["variants"] == {"reranker": "on", "beta_search": "on"}
    assert doc["variant_reasons"] == {"reranker": "split", "beta_search": "targeting_match"}
    [listed] = get(proc, f"/api/v1/interactions?service={service}")[1]["interactions"]
    assert (listed["variants"], listed["variant_reasons"]) == (doc["variants"], doc["variant_reasons"])
    assert value(scrape(proc.urls["web"]), "spanscope_interactions_written_total") == 1


def test_low_ratings_are_listed_with_latency_model_and_cost(fed):
    proc, trace_id, _, service = fed
    assert rate(proc, trace_id, 2, "too slow")[0] == 201
    status, doc = get(proc, f"/api/v1/feedback?max_rating=2&service={service}&since=2020-01-01T00:00:00Z")
    assert status == 200
    [item] = doc["feedback"]
    assert (item["trace_id"], item["rating"], item["comment"], item["model"]) == (trace_id, 2, "too slow", "gpt-4o")
    assert item["duration_seconds"] == pytest.approx(1.0) and Decimal(item["cost_usd"]) == COST
    assert get(proc, f"/api/v1/feedback?max_rating=1&service={service}")[1]["feedback"] == []
    # a revision replaces the current rating and keeps the earlier one in the interaction's history
    status, doc = rate(proc, trace_id, 5, "fine after all")
    assert status == 200 and doc["updated"] is True and doc["revision"] == 2
    assert get(proc, f"/api/v1/feedback?max_rating=2&service={service}")[1]["feedback"] == []
    history = get(proc, f"/api/v1/interactions/{trace_id}")[1]["feedback"]
    assert [(f["revision"], f["rating"], f["superseded_at"] is None) for f in history] == \
        [(1, 2, False), (2, 5, True)]


def test_user_stats_and_costs_by_user(fed):
    proc, _, user, _ = fed
    status, doc = get(proc, f"/api/v1/users/{user}/stats?hours=24")
    assert status == 200
    assert doc["requests"] == 1 and Decimal(doc["cost_usd"]) == COST
    assert doc["avg_latency_seconds"] == pytest.approx(1.0) and doc["avg_confidence"] == pytest.approx(0.35)
    assert doc["tokens"]["input"] == 1200 and doc["tokens"]["output"] == 300
    assert get(proc, "/api/v1/users/nobody/stats")[1]["requests"] == 0
    status, doc = get(proc, "/api/v1/costs/by-user?hours=1&limit=1")
    assert status == 200
    assert [(u["user_id"], Decimal(u["cost_usd"]), u["requests"]) for u in doc["users"]] == [(user, COST, 1)]
    assert doc["next_offset"] is None


@pytest.mark.parametrize("path, parameter", [
    ("/api/v1/feedback?max_rating=0", "max_rating"),
    ("/api/v1/feedback?max_rating=two", "max_rating"),
    ("/api/v1/feedback?limit=501", "limit"),
    ("/api/v1/feedback?offset=-1", "offset"),
    ("/api/v1/feedback?since=yesterday", "since"),
    ("/api/v1/feedback?maxrating=2", "maxrating"),
    ("/api/v1/costs/by-user?hours=0", "hours"),
    ("/api/v1/costs/by-user?limit=0", "limit"),
    ("/api/v1/users/u1/stats?hours=nan", "hours"),
    ("/api/v1/interactions/not-a-trace-id", "trace_id"),
])
def test_bad_parameters_are_named(fed, path, parameter):
    status, doc = get(fed[0], path)
    assert status == 400 and doc["status"] == 400
    assert doc["error"].startswith(parameter + ":"), doc


def test_unknown_interaction_is_404(fed):
    status, doc = get(fed[0], f"/api/v1/interactions/{uuid.uuid4().hex}")
    assert status == 404 and "no interaction" in doc["error"]


# --- nothing lost --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_acknowledged_feedback_survives_kill_9(request, tmp_path, backend):
    with empty_database(request, backend, tmp_path) as url:
        proc = exporter_with_store(tmp_path, url)
        ratings = {uuid.uuid4().hex: (1 + n % 5, f"comment {n}") for n in range(20)}
        try:
            for trace_id, (rating, comment) in ratings.items():
                assert rate(proc, trace_id, rating, comment)[0] == 201
            revised = next(iter(ratings))
            assert rate(proc, revised, 5, "revised")[0] == 200
            ratings[revised] = (5, "revised")
        finally:
            assert proc.stop(sig=signal.SIGKILL) == -signal.SIGKILL  # right after the last answer
        proc = exporter_with_store(tmp_path, url)
        try:
            status, doc = get(proc, "/api/v1/feedback?limit=500")
            assert status == 200
            assert {f["interaction_id"]: (f["rating"], f["comment"]) for f in doc["feedback"]} == ratings
            # the restarted exporter knows the stored ratings: resending one is not a new rating
            trace_id, (rating, comment) = next(iter(ratings.items()))
            status, doc = rate(proc, trace_id, rating, comment)
            assert status == 200 and doc["updated"] is False
        finally:
            proc.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_blocked_database_does_not_slow_ingest(request, tmp_path, backend):
    with empty_database(request, backend, tmp_path) as url:
        proc = exporter_with_store(tmp_path, url, queue_size=20, batch_size=5)
        try:
            service = f"slow-{uuid.uuid4().hex[:6]}"
            tp = provider(http_exporter(proc.urls["http"], timeout=5), service)
            tracer = tp.get_tracer("t")
            sent = 60
            with database_locked(url):
                for _ in range(sent):
                    emit(tracer, ("gateway", 0, 100, {"pipeline.component": "gateway"}, [("llm", 10, 90, LLM)]))
                # Every request was ingested and finished while the writer could not write a row.
                wait_until(lambda: value(scrape(proc.urls["web"]), "pipeline_requests_total", service=service)
                           == sent, timeout=20, what="all requests ingested while the database is locked")
                s = scrape(proc.urls["web"])
                assert value(s, "spanscope_interactions_written_total") == 0
                assert value(s, "spanscope_interactions_dropped_total", reason="queue_full") >= sent - 20 - 5
                assert value(s, "spanscope_requests_throttled_total") == 0
            tp.shutdown()

            def settled():
                s = scrape(proc.urls["web"])
                return (value(s, "spanscope_interactions_written_total")
                        + value(s, "spanscope_interactions_dropped_total") == sent)
            wait_until(settled, timeout=20, what="queued interactions written after the lock is released")
            assert 20 <= value(scrape(proc.urls["web"]), "spanscope_interactions_written_total") <= 25
        finally:
            proc.stop()


def test_a_disabled_store_keeps_nothing_and_says_so(tmp_path):
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, "store": {"enabled": False}})
    try:
        service = f"svc-{uuid.uuid4().hex[:6]}"
        tp = provider(http_exporter(proc.urls["http"]), service)
        root = emit(tp.get_tracer("t"), request_tree("someone"))
        tp.shutdown()
        s = wait_until(lambda: (lambda s: s if value(s, "pipeline_requests_total", service=service) == 1 else None)(
            scrape(proc.urls["web"])), what="the request counted")
        assert value(s, "spanscope_interactions_written_total") == 0
        trace_id = trace_id_hex(root)
        for status, doc in (get(proc, f"/api/v1/interactions/{trace_id}"), get(proc, "/api/v1/users/someone/stats"),
                            get(proc, "/api/v1/feedback"), rate(proc, trace_id, 5)):
            assert status == 404
            assert "store.enabled: false" in doc["error"]
        assert "temporary database" not in proc.log()  # no store was opened
    finally:
        proc.stop()
