"""The JSON API on :8889: features, impact, what-if, breakdown, experiments, feedback.

Bodies are parsed by the models of web/requests.py; errors are JSON `{"error": MESSAGE, "status": CODE}`
with the right 4xx (web/errors.py). Write methods, and reads of personal data, require the bearer
token when one is configured (compared in constant time).
"""
from __future__ import annotations

import hmac

from aiohttp import web

from ..analysis import targeting
from ..analysis.experiments import Experiments
from ..analysis.features import Feature, Features
from ..analysis.guards import Guard
from ..analysis.impact import Impact
from ..analysis.window import MinuteStats
from ..store.feedback import Feedback, Rating
from .endpoints import lock_free
from .errors import ApiError
from .requests import (
    EvaluationRequest,
    ExperimentParams,
    FeatureUpdate,
    RolloutGuardSpec,
    RolloutStart,
    parse_body,
    parse_query,
)

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def auth_middleware(token_source):
    """Bearer-token check on write requests to /api/ and on reads of personal data (handlers marked
    `personal_data`; `token_source()` returns None when open).

    The token comes in `Authorization: Bearer`, or in `X-Spanscope-Token` when basic auth already
    takes the Authorization header. Headers are compared as the bytes that were sent (aiohttp keeps
    bytes that are not UTF-8 as surrogates), so any header is a 401 at worst."""

    @web.middleware
    async def check(request: web.Request, handler):
        token = token_source()
        guarded = request.method in WRITE_METHODS or getattr(request.match_info.handler, "personal_data", False)
        if token and guarded and request.path.startswith("/api/"):
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            sent = value.strip() if scheme.lower() == "bearer" else request.headers.get("X-Spanscope-Token", "")
            if not hmac.compare_digest(sent.encode(errors="surrogateescape"), token.encode()):
                raise ApiError(401, "missing or wrong bearer token: send Authorization: Bearer <token>",
                               {"WWW-Authenticate": 'Bearer realm="spanscope"'})
        return await handler(request)

    return check


def names_param(request: web.Request, key: str) -> list[str]:
    return [n.strip() for n in request.query.get(key, "").split(",") if n.strip()]


class Api:
    def __init__(self, features: Features, impact: Impact, experiments: Experiments, feedback: Feedback,
                 scenarios: dict, guard_defaults, lock, no_evidence: str | None = None):
        """`guard_defaults`: config.Guards; `lock`: the ingest lock (the feature handlers wait on the state
        backend's thread, so they take it themselves, only while reading aggregates); `no_evidence`: why
        guarded rollouts cannot run here (no interaction store)."""
        self.lock = lock
        self.features = features
        self.impact = impact
        self.experiments = experiments
        self.feedback = feedback
        self.scenarios = scenarios
        self.guard_defaults = guard_defaults
        self.no_evidence = no_evidence

    def feature_json(self, f: Feature, totals: MinuteStats, contributions: dict) -> dict:
        s = self.features.state[f.name]
        out = {
            "name": f.name, "display_name": f.display_name, "description": f.description,
            "category": f.category, "required": f.required, "enabled": s.enabled,
            "rollout_percentage": s.rollout_percentage, "caching": f.caching, "components": list(f.components),
            "avg_latency_ms": contributions.get(f.name, 0.0) * 1000,
            "hit_rate": self.impact.hit_ratio(totals, f.name) if f.caching else None,
            "cohorts": s.cohorts, "rules": s.rules,
        }
        if s.running:
            out["rollout"] = {"strategy": s.strategy, "schedule": s.schedule, "step": s.step, "stage": s.step + 1,
                              "stage_started_at": s.stage_started_at, "auto_advance": s.auto_advance,
                              "stage_seconds": s.stage_seconds, "guard": s.guard, "evaluation": s.evaluation}
        return out

    # --- handlers ----------------------------------------------------------------------------------

    @lock_free
    async def list_features(self, request):
        latest = await self.features.run(self.features.latest_decisions)
        with self.lock:
            t = self.impact.totals()
            contrib = self.impact.contributions(t)
            features = [{**self.feature_json(f, t, contrib), "last_decision": latest.get(f.name)}
                        for f in self.features.catalogue.values()]
            current = self.impact.mean_latency(t) * 1000
        categories: dict = {}
        for f in features:
            categories.setdefault(f["category"], []).append(f["name"])
        return web.json_response({"features": features, "categories": categories, "current_latency_ms": current,
                                  "requests_in_window": t.requests, "window_seconds": self.impact.window,
                                  "state_file_error": self.features.load_error})

    @lock_free
    async def get_feature(self, request):
        f = self.features.get(request.match_info["name"])
        decisions = await self.features.run(self.features.decisions, f.name)
        with self.lock:
            t = self.impact.totals()
            out = self.feature_json(f, t, self.impact.contributions(t))
        return web.json_response({**out, "decisions": decisions})

    @lock_free
    async def put_feature(self, request):
        name = request.match_info["name"]
        self.features.get(name)
        change = await parse_body(request, FeatureUpdate)
        # Validated before anything changes, so a refused targeting leaves the toggles as they were.
        aimed = self.features.targeting_change(name, change.cohorts_json(), change.rules_json())
        await self.features.run(self.features.update, name, change.enabled, change.rollout_percentage, aimed)
        return await self.get_feature(request)

    async def evaluate(self, request):
        """What the feature answers for one context, by the rules the OpenFeature provider applies."""
        name = request.match_info["name"]
        self.features.get(name)
        ctx = await parse_body(request, EvaluationRequest)
        s = self.features.state[name]
        d = targeting.evaluate(name, s.enabled, s.rollout_percentage, self.features.targeting_of(name),
                               ctx.targeting_key, ctx.attributes)
        if d is None:
            raise ApiError(400, f"targeting_key: {name} is rolled out to {s.rollout_percentage:g}%, "
                                f"a targeting key is needed to bucket the context")
        return web.json_response({"name": name, "value": d.on, "variant": d.variant, "reason": d.reason,
                                  "rule": d.rule})

    def guard(self, spec: RolloutGuardSpec) -> dict:
        d = self.guard_defaults
        return Guard(spec.max_error_ratio_increase, spec.max_p95_latency_increase, spec.min_quality_score,
                     spec.min_requests_per_stage or d.min_requests_per_stage, spec.alpha).as_json()

    @lock_free
    async def start_rollout(self, request):
        name = request.match_info["name"]
        self.features.get(name)
        r = await parse_body(request, RolloutStart)
        guarded = r.guard is not None or r.auto_advance
        if guarded and self.no_evidence:
            raise ApiError(409, self.no_evidence)
        stage_seconds = self.guard_defaults.stage_seconds if r.stage_seconds is None else r.stage_seconds
        await self.features.run(self.features.start_rollout, name, r.strategy, r.step,
                                self.guard(r.guard or RolloutGuardSpec()) if guarded else None, r.auto_advance,
                                stage_seconds)
        return await self.get_feature(request)

    @lock_free
    async def advance_rollout(self, request):
        await self.features.run(self.features.advance, request.match_info["name"], +1)
        return await self.get_feature(request)

    @lock_free
    async def rollback_rollout(self, request):
        await self.features.run(self.features.advance, request.match_info["name"], -1)
        return await self.get_feature(request)

    @lock_free
    async def emergency_rollback(self, request):
        await self.features.run(self.features.emergency_rollback, request.match_info["name"])
        return await self.get_feature(request)

    async def impact_table(self, request):
        t = self.impact.totals()
        total = self.impact.mean_latency(t)
        contrib = self.impact.contributions(t)
        rows = [{"name": name, "enabled": self.features.enabled(name), "avg_latency_ms": c * 1000,
                 "percent_of_total": c / total * 100 if total else 0.0}
                for name, c in sorted(contrib.items(), key=lambda x: -x[1])]
        return web.json_response({"total_latency_ms": total * 1000, "requests_in_window": t.requests,
                                  "window_seconds": self.impact.window, "features": rows})

    async def what_if(self, request):
        return web.json_response(self.impact.what_if(names_param(request, "disable"), names_param(request, "enable")))

    async def scenarios_view(self, request):
        return web.json_response({"scenarios": self.impact.scenarios(self.scenarios)})

    async def breakdown(self, request):
        return web.json_response(self.impact.breakdown())

    async def list_experiments(self, request):
        return web.json_response({"flags": self.experiments.flags()})

    async def experiment(self, request):
        flag = request.match_info["flag"]
        minutes = parse_query(request, ExperimentParams).minutes()
        result = self.experiments.compare(flag, minutes=minutes)
        if result is None:
            raise ApiError(404, f"no requests have evaluated flag {flag!r} yet" if minutes is None else
                           f"no requests have evaluated flag {flag!r} in the last {minutes} minutes")
        return web.json_response(result)

    @lock_free  # waits for the database commit; Feedback takes the ingest lock for the metrics only
    async def post_feedback(self, request):
        status, doc = await self.feedback.submit(await parse_body(request, Rating))
        return web.json_response(doc, status=status)


def add_routes(app: web.Application, api: Api) -> None:
    r = app.router
    r.add_get("/api/features", api.list_features)
    r.add_get("/api/features/impact", api.impact_table)
    r.add_get("/api/features/{name}", api.get_feature)
    r.add_put("/api/features/{name}", api.put_feature)
    r.add_post("/api/features/{name}/evaluate", api.evaluate)
    r.add_post("/api/features/{name}/rollout", api.start_rollout)
    r.add_post("/api/features/{name}/rollout/advance", api.advance_rollout)
    r.add_post("/api/features/{name}/rollout/rollback", api.rollback_rollout)
    r.add_post("/api/features/{name}/rollout/emergency-rollback", api.emergency_rollback)
    r.add_get("/api/what-if", api.what_if)
    r.add_get("/api/what-if/scenarios", api.scenarios_view)
    r.add_get("/api/breakdown", api.breakdown)
    r.add_get("/api/experiments", api.list_experiments)
    r.add_get("/api/experiments/{flag}", api.experiment)
    r.add_post("/api/v1/feedback", api.post_feedback)
