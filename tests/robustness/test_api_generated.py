"""Generated requests against every route of the web app: whatever the method, path parameters,
query string, headers (bytes that are not UTF-8 included) and body, the answer is never a 5xx.
In process, over raw HTTP/1.1 so that any bytes can be sent; a bounded number of examples."""
import asyncio
import json
import re
import urllib.parse

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings, strategies as st

from spanscope.app import Exporter
from spanscope.config import load

TOKEN = "gen-token"
PARAMS = ["limit", "offset", "since", "service", "max_rating", "hours", "time_window_minutes", "mode", "operation",
          "disable", "enable", "x"]
HEADERS = ["Authorization", "X-Spanscope-Token", "Content-Type", "Accept", "Content-Encoding", "Content-Length",
           "Transfer-Encoding", "X-Other"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("generated")
    exporter = Exporter(load(None, [f"store.url=sqlite:///{d}/interactions.db", f"auth.bearer_token={TOKEN}",
                                    f"features.state_file={d}/features.json"]))
    exporter.interactions.start()
    exporter.state["ready"] = True  # /readyz: 503 means "starting", which is not what is tested here
    loop = asyncio.new_event_loop()
    server = TestServer(exporter.web_app)
    loop.run_until_complete(server.start_server())
    routes = sorted({(r.method, r.resource.canonical) for r in exporter.web_app.router.routes()})
    yield loop, server, routes, list(exporter.features.catalogue)
    loop.run_until_complete(server.close())
    loop.close()
    exporter.interactions.stop_writer(10)
    exporter.interactions.close()


header_value = st.one_of(st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                         st.sampled_from([f"Bearer {TOKEN}".encode(), b"application/json", b"Basic \xff\xfe", b"gzip",
                                          b"chunked", b"-1", b"99999999999"]))
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                              st.sampled_from(["enabled", "rollout_percentage", "strategy", "step", "interaction_id",
                                               "rating", "comment", "cohorts", "on", "off", "rules", "attribute",
                                               "operator", "value", "values", "variant", "targeting_key",
                                               "attributes"]) | st.text(max_size=8), inner, max_size=4),
                          max_leaves=20)
body = st.one_of(st.just(b""), st.binary(max_size=200), json_value.map(lambda v: json.dumps(v).encode()),
                 st.integers(1, 5000).map(lambda n: b"[" * n), st.just(b'{"a":' * 3000 + b"1" + b"}" * 3000),
                 st.builds(lambda r, c: json.dumps({"interaction_id": "ab" * 16, "rating": r, "comment": c}).encode(),
                           st.integers(-1, 7), st.text(max_size=30)))
path_value = st.one_of(st.text(max_size=40).map(lambda t: urllib.parse.quote(t, safe="")),
                       st.binary(max_size=20).map(lambda b: urllib.parse.quote_from_bytes(b, safe="")),
                       st.sampled_from(["a" * 32, "0" * 32, "bob@example.com", "%00", "..", "%2e%2e"]))


@st.composite
def requests(draw, routes, features):
    method, template = draw(st.sampled_from(routes))
    method = draw(st.sampled_from([method, method, "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    path = re.sub(r"\{(\w+)\}", lambda m: draw(st.sampled_from(features) | path_value), template)
    query = urllib.parse.urlencode(draw(st.dictionaries(st.sampled_from(PARAMS), st.text(max_size=20) |
                                                        st.sampled_from(["1e20", "-1", "nan", "inf", "0", "501"]),
                                                        max_size=4)))
    if draw(st.booleans()):
        query += "&" + urllib.parse.quote_from_bytes(draw(st.binary(max_size=10))) + "=%ff%fe"
    headers = draw(st.lists(st.tuples(st.sampled_from(HEADERS), header_value), max_size=5))
    return method, path + ("?" + query if query else ""), headers, draw(body)


def send(loop, server, method, target, headers, payload) -> bytes:
    async def go():
        reader, writer = await asyncio.open_connection(server.host, server.port)
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: x", b"Connection: close"]
        head += [name.encode() + b": " + value for name, value in headers if name != "Content-Length"]
        head.append(b"Content-Length: %d" % len(payload))
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + payload)
        answer = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        return answer
    return loop.run_until_complete(go())


def test_no_route_answers_5xx_whatever_is_sent(served):
    loop, server, routes, features = served
    assert len(routes) > 20

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(requests(routes, features))
    def check(request):
        method, target, headers, payload = request
        status_line = send(loop, server, method, target, headers, payload)
        assert re.match(rb"HTTP/1\.[01] [1-4]\d\d ", status_line), (method, target, headers, payload[:100], status_line)

    check()
