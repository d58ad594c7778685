"""The web endpoint on :8889: /metrics, the landing page, health and readiness, and the JSON API."""
from __future__ import annotations

import asyncio
import html

from aiohttp import web

from . import __version__
from .catalogue import Metrics
from .exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render

ENDPOINTS = [
    ("/metrics", "Prometheus metrics (OpenMetrics with exemplars when asked for)"),
    ("/features", "Features page: toggles, impact and what-if"),
    ("/api/features", "Feature catalogue and state (JSON)"),
    ("/api/features/impact", "Latency contribution per feature (JSON)"),
    ("/api/what-if", "Projected latency for toggles: ?disable=a,b&enable=c (JSON)"),
    ("/api/breakdown", "Critical-path share per component (JSON)"),
    ("/api/v1/feedback", "POST user ratings (JSON)"),
    ("/healthz", "Liveness"),
    ("/readyz", "Readiness: receivers listening"),
]


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept


def locked(lock):
    """Hold the ingest lock while a handler reads aggregated state. The body is read first, so the
    lock is never held while waiting on the network."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path == "/metrics" or request.path.startswith("/api/"):
            await request.read()
            with lock:
                return await handler(request)
        return await handler(request)

    return middleware


def make_app(metrics: Metrics, state: dict, middlewares=()) -> web.Application:
    """`state["ready"]` is set once the receivers listen; `state["before_scrape"]` are callables."""

    async def scrape(request: web.Request) -> web.Response:
        for hook in state.get("before_scrape", ()):
            hook()
        metrics.refresh_self_metrics()
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        body = render(metrics.store, openmetrics=openmetrics)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        if state.get("after_scrape"):  # shutting down: this was the last scrape that was waited for
            asyncio.get_running_loop().call_soon(state["after_scrape"])
        return resp

    async def landing(request: web.Request) -> web.Response:
        rows = "".join(f'<li><a href="{p}">{html.escape(p)}</a> — {html.escape(d)}</li>' for p, d in ENDPOINTS)
        page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>spanscope exporter</title>"
                f"</head><body><h1>spanscope exporter {__version__}</h1><ul>{rows}</ul></body></html>")
        return web.Response(text=page, content_type="text/html")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(request: web.Request) -> web.Response:
        if state.get("ready"):
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    app = web.Application(middlewares=list(middlewares), client_max_size=1024 * 1024)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/", landing)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
