"""The interaction store's read API on :8889 (docs/interactions.md).

    GET /api/v1/feedback?max_rating=2&since=...&service=...&limit=100&offset=0
    GET /api/v1/interactions?user=&service=&model=&since=&until=&status=&rating=&rated=&confidence_below=
                            &limit=50&cursor=...
    GET /api/v1/interactions/{trace_id}
    GET /api/v1/users/{user_id}/stats?hours=24
    GET /api/v1/costs/by-user?hours=24&limit=100&offset=0

Database calls run on the store's API thread (never on the event loop) and outside the ingest lock. A bad
parameter answers 400 naming it; an unavailable database 503. Every route answers user ids or comments:
with a bearer token configured, each needs it (401 without).
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time

from aiohttp import web

from ..store.db import StoreDisabled
from ..store.interactions import InteractionStore
from ..store.rows import MAX_USER_ID, iso
from .endpoints import lock_free, personal_data
from .errors import ApiError
from .requests import CostsParams, FeedbackParams, HoursParams, InteractionsParams, NoParams, parse_query

TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")


def encode_cursor(item: dict) -> str:
    """The position after `item` (its start and trace id) as opaque URL-safe text."""
    return base64.urlsafe_b64encode(json.dumps([item["started_at_unix"], item["trace_id"]]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        started, trace_id = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        if isinstance(started, (int, float)) and math.isfinite(started) and TRACE_ID.fullmatch(trace_id):
            return float(started), trace_id
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        pass
    raise ApiError(400, "cursor: expected the next_cursor of a previous page, unchanged")


def _next_offset(items: list, limit: int, offset: int) -> int | None:
    return offset + limit if len(items) > limit else None


class InteractionsApi:
    """Handlers are lock-free: they wait on the database, not on the ingest lock."""

    def __init__(self, store: InteractionStore, clock=time.time):
        self.store = store
        self.clock = clock

    async def query(self, method, *args):
        """`method` on the store's thread; a database that fails answers 503 (a disabled store 404)."""
        try:
            return await self.store.run(method, *args)
        except Exception as exc:
            if isinstance(exc, StoreDisabled):
                raise
            raise ApiError(503, f"the interaction store is unavailable: {' '.join(str(exc).split())}") from None

    @personal_data
    @lock_free
    async def feedback(self, request: web.Request) -> web.Response:
        p = parse_query(request, FeedbackParams)
        items = await self.query(self.store.feedback_page, p.max_rating, p.since, p.service, p.limit + 1, p.offset)
        return web.json_response({
            "feedback": items[:p.limit], "limit": p.limit, "offset": p.offset,
            "next_offset": _next_offset(items, p.limit, p.offset),
            "filters": {"max_rating": p.max_rating, "since": iso(p.since), "service": p.service}})

    @personal_data
    @lock_free
    async def interactions(self, request: web.Request) -> web.Response:
        p = parse_query(request, InteractionsParams)
        after = decode_cursor(p.cursor) if p.cursor else None
        items = await self.query(self.store.interactions_page, p.filters(), after, p.limit + 1)
        page = items[:p.limit]
        return web.json_response({
            "interactions": page, "limit": p.limit,
            "next_cursor": encode_cursor(page[-1]) if len(items) > p.limit else None,
            "filters": {k: iso(v) if k in ("since", "until") else v
                        for k, v in p.model_dump(exclude={"limit", "cursor"}).items() if v is not None}})

    @personal_data
    @lock_free
    async def interaction(self, request: web.Request) -> web.Response:
        parse_query(request, NoParams)
        trace_id = request.match_info["trace_id"]
        if not TRACE_ID.fullmatch(trace_id):
            raise ApiError(400, f"trace_id: expected the trace id as 32 hex characters, got {trace_id!r}")
        doc = await self.query(self.store.interaction, trace_id.lower())
        if doc is None:
            raise ApiError(404, f"no interaction {trace_id.lower()} in the store (not finished yet, "
                                f"older than the retention, or never seen)")
        return web.json_response(doc)

    @personal_data
    @lock_free
    async def user_stats(self, request: web.Request) -> web.Response:
        p = parse_query(request, HoursParams)
        user_id = request.match_info["user_id"]
        if not 0 < len(user_id) <= MAX_USER_ID:
            raise ApiError(400, f"user_id: expected 1 to {MAX_USER_ID} characters")
        since = self.clock() - p.hours * 3600
        stats = await self.query(self.store.user_stats, user_id, since)
        return web.json_response({"user_id": user_id, "hours": p.hours, "since": iso(since), **stats})

    @personal_data
    @lock_free
    async def costs_by_user(self, request: web.Request) -> web.Response:
        p = parse_query(request, CostsParams)
        since = self.clock() - p.hours * 3600
        users = await self.query(self.store.costs_by_user, since, p.limit + 1, p.offset)
        return web.json_response({"users": users[:p.limit], "hours": p.hours, "since": iso(since),
                                  "limit": p.limit, "offset": p.offset,
                                  "next_offset": _next_offset(users, p.limit, p.offset)})


def add_routes(app: web.Application, api: InteractionsApi) -> None:
    r = app.router
    r.add_get("/api/v1/feedback", api.feedback)
    r.add_get("/api/v1/interactions", api.interactions)
    r.add_get("/api/v1/interactions/{trace_id}", api.interaction)
    r.add_get("/api/v1/users/{user_id}/stats", api.user_stats)
    r.add_get("/api/v1/costs/by-user", api.costs_by_user)
