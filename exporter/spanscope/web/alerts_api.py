"""GET /api/alerts: the alerts firing now, read from the Prometheus of `overview.prometheus_url` for the
overview page (which may talk to its own origin only). Without one: `{"source": null, "alerts": []}`."""
from __future__ import annotations

import aiohttp
from aiohttp import web

from .endpoints import lock_free
from .errors import ApiError
from .requests import NoParams, parse_query

TIMEOUT_S = 3.0


class AlertsApi:
    def __init__(self, prometheus_url: str | None):
        self.source = prometheus_url.rstrip("/") if prometheus_url else None

    @lock_free  # waits on Prometheus, never under the ingest lock
    async def alerts(self, request: web.Request) -> web.Response:
        parse_query(request, NoParams)
        if self.source is None:
            return web.json_response({"source": None, "alerts": []})
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
                async with session.get(f"{self.source}/api/v1/alerts") as resp:
                    resp.raise_for_status()
                    alerts = (await resp.json())["data"]["alerts"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            raise ApiError(503, f"Prometheus at {self.source} did not list its alerts: "
                                f"{type(exc).__name__} {exc}".strip()) from None
        firing = [a for a in alerts if isinstance(a, dict) and a.get("state") == "firing"]
        return web.json_response({"source": self.source, "alerts": firing})


def add_routes(app: web.Application, api: AlertsApi) -> None:
    app.router.add_get("/api/alerts", api.alerts)
