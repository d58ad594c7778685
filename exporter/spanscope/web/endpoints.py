"""The web endpoint on :8889: /metrics, the overview page (/), health and readiness, and the JSON API."""
from __future__ import annotations

import asyncio
import html
from pathlib import Path

from aiohttp import web

from .. import __version__
from ..metrics.catalogue import Metrics
from ..metrics.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, render
from ..metrics.runtime import runtime_families

ENDPOINTS = [
    ("/", "Overview page: rates, latency, cost, quality, waterfall, what-if, alerts, recent interactions"),
    ("/metrics", "Prometheus metrics (OpenMetrics with exemplars when asked for)"),
    ("/features", "Features page: toggles, impact and what-if"),
    ("/api/features", "Feature catalogue and state (JSON)"),
    ("/api/features/impact", "Latency contribution per feature (JSON)"),
    ("/api/what-if", "Projected latency for toggles: ?disable=a,b&enable=c (JSON)"),
    ("/api/breakdown", "Critical-path share per component (JSON)"),
    ("/api/metrics/dashboard", "Windowed metrics: dashboard, performance, costs, quality, cache, health (JSON)"),
    ("/api/insights", "Trends, anomalies and patterns (JSON)"),
    ("/api/recommendations", "Ranked recommendations (JSON)"),
    ("/api/experiments", "A/B comparison of flag variants (JSON)"),
    ("/api/v1/interactions", "Recent interactions, filtered, with cursor pagination (JSON)"),
    ("/api/v1/feedback", "POST user ratings; GET low-rated interactions (JSON)"),
    ("/api/v1/costs/by-user", "Top users by cost (JSON)"),
    ("/healthz", "Liveness"),
    ("/readyz", "Readiness: receivers listening"),
]


STATIC_DIR = Path(__file__).parent / "static"
STATIC_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
VENDOR = "vendor/"  # third-party files (Chart.js), each with its licence beside it: vendor/README.md
# The pages talk only to this origin's JSON API: nothing inline, nothing from elsewhere.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def static_files() -> dict[str, Path]:
    """The servable files: regular files directly in static/ or static/vendor/ with a known type (nothing
    else is reachable), by their name under static/."""
    files = {}
    for prefix in ("", VENDOR):
        directory = STATIC_DIR / prefix
        if directory.is_dir():
            files.update({prefix + p.name: p for p in directory.iterdir()
                          if p.is_file() and not p.name.startswith(".") and p.suffix in STATIC_TYPES})
    return files


def endpoint_list() -> str:
    """ENDPOINTS as the HTML list at the foot of the overview page."""
    return "".join(f'<li><a href="{p}">{html.escape(p)}</a> — {html.escape(d)}</li>'
                   for p, d in ENDPOINTS)


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept


def lock_free(handler):
    """Mark a handler that awaits slow work (a database call): `locked` then leaves it alone and it
    takes the ingest lock itself, briefly, where it touches shared state. Holding the lock across
    such an await would stall ingest behind the database."""
    handler.lock_free = True
    return handler


def personal_data(handler):
    """Mark a read that answers user ids or comments: with a bearer token configured it needs the
    token, as writes do (web/api.py auth_middleware)."""
    handler.personal_data = True
    return handler


def body_within(seconds: float):
    """Read a request's body first, within `seconds` (408 after): the idle timeout ends with the
    request's head, and a body sent slowly would otherwise hold its connection as long as it likes."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.body_exists:
            try:
                await asyncio.wait_for(request.read(), seconds)
            except asyncio.TimeoutError:
                return web.json_response({"error": f"body not received within {seconds:g}s (limits.body_timeout)",
                                          "status": 408}, status=408, headers={"Connection": "close"})
        return await handler(request)

    return middleware


def locked(lock):
    """Hold the ingest lock while a handler reads aggregated state. The body is read first, so the
    lock is never held while waiting on the network."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if getattr(request.match_info.handler, "lock_free", False):
            return await handler(request)
        if request.path == "/metrics" or request.path.startswith("/api/"):
            await request.read()
            with lock:
                return await handler(request)
        return await handler(request)

    return middleware


def make_app(metrics: Metrics, state: dict, middlewares=()) -> web.Application:
    """`state["ready"]` is set once the receivers listen. A scrape renders the store, whose collectors
    fill the scrape-time families first."""

    async def scrape(request: web.Request) -> web.Response:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        body = render(metrics.store, openmetrics=openmetrics, tail=runtime_families(openmetrics))
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        if state.get("after_scrape"):  # shutting down: this was the last scrape that was waited for
            asyncio.get_running_loop().call_soon(state["after_scrape"])
        return resp

    files = static_files()
    # The overview page carries the version and the endpoint list, filled in once here (no inline script).
    overview = (files["overview.html"].read_text().replace("{{version}}", html.escape(__version__))
                .replace("{{endpoints}}", endpoint_list()).encode()) if "overview.html" in files else None

    def static_response(name: str, body: bytes | None = None) -> web.Response:
        path = files.get(name)
        if path is None:
            return web.json_response({"error": f"no static file {name!r}", "status": 404}, status=404)
        return web.Response(body=body or path.read_bytes(), content_type=STATIC_TYPES[path.suffix], charset="utf-8",
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy": PAGE_CSP})

    async def overview_page(request: web.Request) -> web.Response:
        return static_response("overview.html", overview)

    async def features_page(request: web.Request) -> web.Response:
        return static_response("features.html")

    async def static_file(request: web.Request) -> web.Response:
        return static_response(request.match_info["file"])

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(request: web.Request) -> web.Response:
        if state.get("ready"):
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    app = web.Application(middlewares=list(middlewares), client_max_size=1024 * 1024)
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/", overview_page)
    app.router.add_get("/features", features_page)
    app.router.add_get("/static/{file:(vendor/)?[^/]+}", static_file)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
