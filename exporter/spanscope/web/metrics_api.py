"""The metrics API: windowed views of the per-minute rollups for dashboards and scripts.

GET /api/metrics/{dashboard,performance,costs,quality,cache,health}
    ?time_window_minutes=5..1440 (default 60) &service= &mode= &operation=
GET /api/insights, /api/recommendations (same parameters)
`operation` selects one component (e.g. llm_inference) in the per-component views. Every answer
shares one envelope: {timestamp, window: {minutes, start, end}, version, filters, data}.
"""
from __future__ import annotations

from aiohttp import web

from ..analysis.insights import Insights
from ..analysis.windows import VIEWS, MetricsApi
from .errors import ApiError
from .requests import WindowParams, parse_query


def add_routes(app: web.Application, api: MetricsApi, insights: Insights) -> None:
    async def metrics_view(request: web.Request) -> web.Response:
        view = request.match_info["view"]
        if view not in VIEWS:
            raise ApiError(404, f"unknown view {view!r} (known: {', '.join(VIEWS)})")
        q = parse_query(request, WindowParams).window()
        return web.json_response(api.envelope(q, getattr(api, view)(q, api.totals(q))))

    def insight_view(compute, key):
        async def handler(request: web.Request) -> web.Response:
            q = parse_query(request, WindowParams).window()
            return web.json_response(api.envelope(q, {key: compute(q)}))
        return handler

    app.router.add_get("/api/metrics/{view}", metrics_view)
    app.router.add_get("/api/insights", insight_view(insights.insights, "insights"))
    app.router.add_get("/api/recommendations", insight_view(insights.recommendations, "recommendations"))
