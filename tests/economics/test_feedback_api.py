"""POST /api/v1/feedback: validation, revisions, auth, metrics labelled by the trace."""
import uuid

import pytest

from http_helpers import call
from processes import start_exporter, wait_until
from sdk import emit, http_exporter, provider, scrape, trace_id_hex, value

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    proc = start_exporter(tmp_path_factory.mktemp("fb"), {"traces": {"finish_delay": 0.05},
                                                          "auth": {"bearer_token": TOKEN}})
    yield proc
    proc.stop()


def post(exporter, body, token=TOKEN, **kw):
    return call("POST", exporter.urls["web"] + "/api/v1/feedback", body, token=token, **kw)


def new_id():
    return uuid.uuid4().hex


@pytest.mark.parametrize("body, field", [
    ({"rating": 5}, "interaction_id"),
    ({"interaction_id": "abc", "rating": 5}, "interaction_id"),
    ({"interaction_id": "z" * 32, "rating": 5}, "interaction_id"),
    ({"interaction_id": "0" * 32, "rating": 5}, "interaction_id"),
    ({"interaction_id": "a" * 32}, "rating"),
    ({"interaction_id": "a" * 32, "rating": 0}, "rating"),
    ({"interaction_id": "a" * 32, "rating": 6}, "rating"),
    ({"interaction_id": "a" * 32, "rating": 4.5}, "rating"),
    ({"interaction_id": "a" * 32, "rating": True}, "rating"),
    ({"interaction_id": "a" * 32, "rating": "5"}, "rating"),
    ({"interaction_id": "a" * 32, "rating": 5, "comment": 7}, "comment"),
    ({"interaction_id": "a" * 32, "rating": 5, "comment": "x" * 2001}, "comment"),
    ({"interaction_id": "a" * 32, "rating": 5, "user": "bob"}, "user"),
    ([1, 2], "body"),
])
def test_invalid_feedback_is_rejected_naming_the_field(exporter, body, field):
    status, doc = post(exporter, body)
    assert status == 400
    assert doc["error"].startswith(field + ":"), doc


def test_malformed_json_and_wrong_content_type(exporter):
    status, doc = post(exporter, None, raw=b"{not json")
    assert status == 400 and "invalid JSON" in doc["error"]
    status, doc = post(exporter, None, raw=b'{"rating": 5}', content_type="text/plain")
    assert status == 415


def test_auth_is_required_when_a_token_is_configured(exporter):
    body = {"interaction_id": new_id(), "rating": 4}
    assert post(exporter, body, token=None)[0] == 401
    assert post(exporter, body, token="wrong")[0] == 401
    assert post(exporter, body)[0] == 201
    assert call("GET", exporter.urls["web"] + "/api/features")[0] == 200  # reads stay open


def test_second_rating_of_an_interaction_revises_it(exporter):
    body = {"interaction_id": new_id(), "rating": 3, "comment": "ok"}
    assert post(exporter, body)[0] == 201
    status, doc = post(exporter, {**body, "rating": 1})
    assert status == 200 and doc["updated"] is True and doc["revision"] == 2
    # resending the current rating (a client retrying) is acknowledged without a new revision
    status, doc = post(exporter, {**body, "rating": 1})
    assert status == 200 and doc["updated"] is False and doc["revision"] == 2


def test_ratings_are_labelled_by_the_trace_and_low_ratings_counted(exporter):
    service = f"fb-{uuid.uuid4().hex[:6]}"
    tp = provider(http_exporter(exporter.urls["http"]), service)
    root = emit(tp.get_tracer("t"), ("gateway", 0, 100, {"pipeline.component": "gateway", "pipeline.mode": "voice"}, [
        ("llm", 10, 90, {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                         "gen_ai.request.model": "gpt-4o"})]))
    tp.shutdown()
    wait_until(lambda: value(scrape(exporter.urls["web"]), "pipeline_requests_total", service=service) == 1)
    status, doc = post(exporter, {"interaction_id": trace_id_hex(root).upper(), "rating": 2, "comment": "slow"})
    assert status == 201
    assert doc == {"interaction_id": trace_id_hex(root), "rating": 2, "service": service, "mode": "voice",
                   "model": "gpt-4o"}
    s = scrape(exporter.urls["web"])
    labels = dict(service=service, mode="voice", model="gpt-4o")
    assert value(s, "pipeline_feedback_rating_count", **labels) == 1
    assert value(s, "pipeline_feedback_rating_sum", **labels) == 2
    assert value(s, "pipeline_feedback_low_ratings_total", **labels) == 1
    # the windowed metrics API counts the rating too
    status, doc = call("GET", f"{exporter.urls['web']}/api/metrics/quality?time_window_minutes=5&service={service}")
    assert status == 200 and doc["data"]["ratings"] == 1 and doc["data"]["average_rating"] == 2
