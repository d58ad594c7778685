"""GET /api/alerts: the firing alerts of the configured Prometheus (a fake one here), nothing without
one, and a 503 naming Prometheus when it does not answer."""
import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from spanscope.web.alerts_api import AlertsApi, add_routes
from spanscope.web.errors import api_errors

FIRING = {"labels": {"alertname": "PipelineErrorBudgetBurn", "severity": "page"}, "state": "firing",
          "annotations": {"summary": "errors"}, "activeAt": "2026-01-01T00:00:00Z", "value": "1"}
PENDING = {**FIRING, "labels": {"alertname": "SlowP95", "severity": "warning"}, "state": "pending"}


async def alerts_from(prometheus_url, path="/api/alerts"):
    app = web.Application(middlewares=[api_errors])
    add_routes(app, AlertsApi(prometheus_url))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get(path)
        return resp.status, await resp.json()


async def with_fake_prometheus(answer):
    fake = web.Application()
    fake.router.add_get("/api/v1/alerts", answer)
    async with TestServer(fake) as server:
        return await alerts_from(str(server.make_url("")) + "/")


def test_only_firing_alerts_are_listed():
    async def answer(request):
        return web.json_response({"status": "success", "data": {"alerts": [FIRING, PENDING]}})
    status, doc = asyncio.run(with_fake_prometheus(answer))
    assert status == 200 and doc["alerts"] == [FIRING] and doc["source"].startswith("http://127.0.0.1:")


def test_without_prometheus_there_is_nothing_to_list():
    assert asyncio.run(alerts_from(None)) == (200, {"source": None, "alerts": []})


def test_a_prometheus_that_fails_is_a_503_naming_it():
    async def answer(request):
        return web.Response(status=500, text="boom")
    status, doc = asyncio.run(with_fake_prometheus(answer))
    assert status == 503 and "Prometheus at http://127.0.0.1:" in doc["error"]
    status, doc = asyncio.run(alerts_from("http://127.0.0.1:9"))  # nothing listens on the discard port
    assert status == 503 and "Prometheus at http://127.0.0.1:9" in doc["error"]


def test_parameters_are_refused():
    status, doc = asyncio.run(alerts_from(None, "/api/alerts?x=1"))
    assert status == 400 and doc["error"].startswith("x:")
