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
from ..analysis.windows import VIEWS, MetricsApi, Query


class ParamError(ValueError):
    pass


def parse_query(params) -> Query:
    raw = params.get("time_window_minutes", "60")
    try:
        minutes = int(raw)
    except ValueError:
        raise ParamError(f"time_window_minutes: expected an integer from 5 to 1440, got {raw!r}") from None
    if not 5 <= minutes <= 1440:
        raise ParamError(f"time_window_minutes: expected an integer from 5 to 1440, got {minutes}")
    allowed = {"time_window_minutes", "service", "mode", "operation"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ParamError(f"{unknown[0]}: unknown parameter (expected {', '.join(sorted(allowed))})")
    for name in ("service", "mode", "operation"):
        if name in params and not params[name]:
            raise ParamError(f"{name}: must not be empty")
    return Query(minutes, params.get("service"), params.get("mode"), params.get("operation"))


def add_routes(app: web.Application, api: MetricsApi, insights: Insights) -> None:
    async def metrics_view(request: web.Request) -> web.Response:
        view = request.match_info["view"]
        if view not in VIEWS:
            return web.json_response({"error": f"unknown view {view!r} (known: {', '.join(VIEWS)})", "status": 404},
                                     status=404)
        try:
            q = parse_query(request.query)
        except ParamError as exc:
            return web.json_response({"error": str(exc), "status": 400}, status=400)
        return web.json_response(api.envelope(q, getattr(api, view)(q, api.totals(q))))

    def insight_view(compute, key):
        async def handler(request: web.Request) -> web.Response:
            try:
                q = parse_query(request.query)
            except ParamError as exc:
                return web.json_response({"error": str(exc), "status": 400}, status=400)
            return web.json_response(api.envelope(q, {key: compute(q)}))
        return handler

    app.router.add_get("/api/metrics/{view}", metrics_view)
    app.router.add_get("/api/insights", insight_view(insights.insights, "insights"))
    app.router.add_get("/api/recommendations", insight_view(insights.recommendations, "recommendations"))
