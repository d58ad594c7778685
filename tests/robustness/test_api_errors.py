"""Every /api/ failure is JSON {"error", "status"}: bad bodies and parameters name the field, unknown
routes and methods answer 404/405 (with Allow), and malformed JSON of any shape is a 400, never a 500."""
import asyncio
import json

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from pydantic import ValidationError

from spanscope.app import Exporter
from spanscope.config import explain, load
from spanscope.store.feedback import Rating

TOKEN = "t0ken"
FEATURE = "rag_weather"


@pytest.fixture(scope="module")
def exporter():
    """The exporter's web app served in process, on its own event loop."""
    loop = asyncio.new_event_loop()
    server = TestServer(Exporter(load(None, ["store.enabled=false", f"auth.bearer_token={TOKEN}"])).web_app)
    loop.run_until_complete(server.start_server())
    yield loop, server
    loop.run_until_complete(server.close())
    loop.close()


def ask(exporter, method, path, body=None, raw=None, token=TOKEN, content_type="application/json"):
    """(status, headers, parsed JSON answer) of one request; the answer must be JSON."""
    loop, server = exporter

    async def go():
        async with ClientSession() as session:
            headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
            data = raw if raw is not None else None if body is None else json.dumps(body).encode()
            async with session.request(method, server.make_url(path), data=data, headers=headers) as resp:
                assert resp.content_type == "application/json", (path, resp.content_type, await resp.text())
                return resp.status, resp.headers, await resp.json()
    return loop.run_until_complete(go())


def assert_error(answer, status, starts):
    code, _, doc = answer
    assert (code, doc["status"]) == (status, status), doc
    assert doc["error"].startswith(starts), doc


def test_an_unknown_api_route_is_a_json_404(exporter):
    assert_error(ask(exporter, "GET", "/api/nope"), 404, "no API endpoint /api/nope")
    # /api/v1/interactions is an endpoint now (the list); its singular is not
    assert_error(ask(exporter, "GET", "/api/v1/interaction"), 404, "no API endpoint")


def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(exporter):
    code, headers, doc = ask(exporter, "DELETE", "/api/features")
    assert code == 405 and doc["status"] == 405
    assert doc["error"] == "DELETE is not allowed on /api/features (allowed: GET, HEAD)"
    assert headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("raw", [
    b"{not json", b"", b"\xff\xfe", b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
], ids=["broken", "empty", "not UTF-8", "deep list", "deep object"])
def test_malformed_json_is_a_400(exporter, raw):
    for path in ("/api/v1/feedback", f"/api/features/{FEATURE}"):
        method = "POST" if path.endswith("feedback") else "PUT"
        assert_error(ask(exporter, method, path, raw=raw), 400, "body: invalid JSON")


@pytest.mark.parametrize("body", [[1, 2], "x", 3, None])
def test_a_body_that_is_no_object_is_a_400(exporter, body):
    assert_error(ask(exporter, "POST", "/api/v1/feedback", raw=json.dumps(body).encode()), 400,
                 "body: expected a mapping")
    assert_error(ask(exporter, "PUT", f"/api/features/{FEATURE}", raw=json.dumps(body).encode()), 400,
                 "body: expected a mapping")


@pytest.mark.parametrize("body, message", [
    ({}, 'body: expected {"enabled": true|false}, {"rollout_percentage": 0-100}, '
         '{"cohorts": {"on": [...], "off": [...]}} and/or {"rules": [...]}'),
    ({"enabled": "no"}, "enabled: expected true or false, got 'no'"),
    ({"rollout_percentage": 101}, "rollout_percentage: expected a number from 0 to 100, got 101"),
    ({"rollout_percentage": True}, "rollout_percentage: expected a number from 0 to 100, got True"),
    ({"enabled": True, "colour": "red"},
     "colour: unknown field (expected enabled, rollout_percentage, cohorts, rules)"),
    ({"cohorts": {"maybe": ["u1"]}}, "cohorts.maybe: unknown field (expected on, off)"),
    ({"rules": [{"attribute": "a", "operator": "equals", "value": 1, "variant": "on", "colour": "red"}]},
     "rules[0].colour: unknown field (expected attribute, operator, value, values, variant)"),
])
def test_feature_updates_name_the_bad_field(exporter, body, message):
    code, _, doc = ask(exporter, "PUT", f"/api/features/{FEATURE}", body)
    assert (code, doc["error"]) == (400, message)


@pytest.mark.parametrize("body, field", [
    ({}, "strategy"), ({"strategy": 5}, "strategy"), ({"strategy": "linear", "step": "big"}, "step"),
    ({"strategy": "linear", "steps": 5}, "steps"),
])
def test_rollout_bodies_name_the_bad_field(exporter, body, field):
    assert_error(ask(exporter, "POST", f"/api/features/{FEATURE}/rollout", body), 400, field + ":")


def test_an_unknown_feature_is_404_before_its_body_is_read(exporter):
    assert_error(ask(exporter, "PUT", "/api/features/nope", raw=b"{not json"), 404, "unknown feature 'nope'")


@pytest.mark.parametrize("path, message", [
    ("/api/metrics/dashboard?time_window_minutes=abc",
     "time_window_minutes: expected an integer from 5 to 1440, got 'abc'"),
    ("/api/insights?service=", "service: must not be empty"),
    ("/api/recommendations?window=5",
     "window: unknown parameter (expected time_window_minutes, service, mode, operation)"),
    ("/api/v1/feedback?limit=0", "limit: expected an integer from 1 to 500, got '0'"),
    ("/api/v1/feedback?service=a%00b", "service: must not contain NUL characters"),
    ("/api/v1/costs/by-user?hours=inf", "hours: expected a number of hours above 0 and at most 8784, got 'inf'"),
    ("/api/v1/feedback?since=1e999", "since: expected a finite time, got '1e999'"),
    ("/api/v1/feedback?since=1e20",
     "since: expected a time from 1970 to the year 9999 (0 to 253402300799 seconds), got '1e20'"),
    ("/api/v1/feedback?since=-1",
     "since: expected a time from 1970 to the year 9999 (0 to 253402300799 seconds), got '-1'"),
    ("/api/v1/feedback?since=99999-01-01", "since: expected seconds since the epoch or an ISO 8601 time"
                                           " like 2026-01-31T12:00:00Z, got '99999-01-01'"),
])
def test_query_parameters_are_named(exporter, path, message):
    code, _, doc = ask(exporter, "GET", path)
    assert (code, doc["error"]) == (400, message)


def test_a_disabled_store_is_a_json_404_once_the_parameters_are_right(exporter):
    assert_error(ask(exporter, "GET", "/api/v1/feedback?limit=5"), 404, "the interaction store is disabled")


@pytest.mark.parametrize("body", [{"strategy": "linear", "step": 1e-6}, {"strategy": "linear", "step": 1e-4},
                                  {"strategy": "linear", "step": 0.99}, {"strategy": "exponential", "step": 1e-40}])
def test_a_rollout_of_too_many_stages_is_refused_before_it_is_built(exporter, body):
    # 1e-6 built 100 million stages on the event loop (seconds frozen, then killed for memory)
    assert_error(ask(exporter, "POST", f"/api/features/{FEATURE}/rollout", body), 400,
                 f"step: {body['step']:g} makes a {body['strategy']} schedule of more than 100 stages")


def test_the_largest_rollout_still_runs(exporter):
    code, _, doc = ask(exporter, "POST", f"/api/features/{FEATURE}/rollout", {"strategy": "linear", "step": 1})
    assert code == 200 and len(doc["rollout"]["schedule"]) == 100


def test_a_comment_with_a_lone_surrogate_is_a_400_not_retry_later(exporter):
    # the JSON parser refuses "\ud800" itself, and the model a str holding one that came another way
    assert_error(ask(exporter, "POST", "/api/v1/feedback", raw=b'{"interaction_id": "' + b"a" * 32 +
                     b'", "rating": 2, "comment": "\\ud800"}'), 400, "body: invalid JSON")
    with pytest.raises(ValidationError) as err:
        Rating.model_validate({"interaction_id": "a" * 32, "rating": 2, "comment": "ok \ud800"})
    assert explain(err.value, Rating, "unknown field", "body").startswith("comment: ")


PERSONAL_READS = ["/api/v1/feedback", f"/api/v1/interactions/{'a' * 32}", "/api/v1/users/bob@example.com/stats",
                  "/api/v1/costs/by-user"]


@pytest.mark.parametrize("path", PERSONAL_READS)
def test_reads_of_personal_data_need_the_token_too(exporter, path):
    code, headers, doc = ask(exporter, "GET", path, token="wrong")
    assert (code, doc["status"]) == (401, 401) and headers["WWW-Authenticate"] == 'Bearer realm="spanscope"'
    assert ask(exporter, "GET", path)[0] == 404  # with the token: on to the (disabled) store


def test_other_reads_stay_open(exporter):
    assert ask(exporter, "GET", "/api/features", token="wrong")[0] == 200


@pytest.mark.parametrize("authorization", [b"Bearer \xff\xfe", b"\xff", b"Basic \xc3\x28"])
def test_an_authorization_header_that_is_not_utf8_is_a_401(exporter, authorization):
    loop, server = exporter

    async def send():
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"PUT /api/features/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 2\r\nAuthorization: %s\r\n\r\n{}"
                     % (FEATURE.encode(), authorization))
        answer = await reader.read()
        writer.close()
        return answer
    assert loop.run_until_complete(send()).startswith(b"HTTP/1.1 401 ")


@pytest.mark.parametrize("method, path", [("GET", "/api/breakdown"), ("PUT", f"/api/features/{FEATURE}"),
                                          ("POST", "/api/v1/feedback"), ("GET", "/metrics")])
def test_a_body_that_cannot_be_decoded_is_a_400(exporter, method, path):
    loop, server = exporter

    async def send():
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: gzip\r\n"
                     f"Content-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Length: 8\r\n\r\n{{\"a\": 1}}".encode())
        answer = await reader.read()
        writer.close()
        return answer
    answer = loop.run_until_complete(send())
    assert answer.startswith(b"HTTP/1.1 400 ") and b"could not read the request body: Can not decode" in answer


def test_a_missing_token_is_a_json_401(exporter):
    code, headers, doc = ask(exporter, "PUT", f"/api/features/{FEATURE}", {"enabled": True}, token="wrong")
    assert (code, doc["status"]) == (401, 401) and headers["WWW-Authenticate"] == 'Bearer realm="spanscope"'


def test_a_wrong_content_type_is_a_json_415(exporter):
    assert_error(ask(exporter, "POST", "/api/v1/feedback", raw=b"{}", content_type="text/plain"), 415,
                 "send Content-Type: application/json")


def test_an_oversized_body_is_a_json_413(exporter):
    assert_error(ask(exporter, "POST", "/api/v1/feedback", raw=b" " * (1024 * 1024 + 1)), 413,
                 "Maximum request body size 1048576 exceeded")
