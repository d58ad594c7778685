"""The interaction store's read API on :8889 (docs/interactions.md).

    GET /api/v1/feedback?max_rating=2&since=...&service=...&limit=100&offset=0
    GET /api/v1/interactions/{trace_id}
    GET /api/v1/users/{user_id}/stats?hours=24
    GET /api/v1/costs/by-user?hours=24&limit=100&offset=0

Database calls run on the store's API thread (never on the event loop) and outside the ingest lock. A bad
parameter answers 400 naming it; an unavailable database 503.
"""
from __future__ import annotations

import functools
import math
import re
import time
from datetime import UTC, datetime

from aiohttp import web

from ..store.db import StoreDisabled
from ..store.interactions import InteractionStore
from ..store.rows import MAX_USER_ID, iso
from .endpoints import lock_free
from .errors import error

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_HOURS = 24 * 366
TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")


class BadParameter(Exception):
    """A query or path parameter is wrong; the message starts with its name."""


def _known(request: web.Request, *names: str) -> None:
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise BadParameter(f"{unknown[0]}: unknown parameter (expected {', '.join(names) or 'none'})")
    for name, value in [*request.query.items(), *request.match_info.items()]:
        if "\x00" in value:
            raise BadParameter(f"{name}: must not contain NUL characters")


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise BadParameter(f"{name}: expected an integer from {low} to {high}, got {raw!r}")
    return value


def _hours(request: web.Request) -> float:
    raw = request.query.get("hours")
    if raw is None:
        return 24.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_HOURS:
        raise BadParameter(f"hours: expected a number of hours above 0 and at most {MAX_HOURS}, got {raw!r}")
    return value


def _since(request: web.Request) -> float | None:
    """Seconds since the epoch, or an ISO 8601 time (UTC when it names no offset)."""
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is not None:
        if not math.isfinite(value):
            raise BadParameter(f"since: expected a finite time, got {raw!r}")
        return value
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadParameter(f"since: expected seconds since the epoch or an ISO 8601 time like "
                           f"2026-01-31T12:00:00Z, got {raw!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _page(request: web.Request) -> tuple[int, int]:
    return (_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT), _int(request, "offset", 0, 0, 10 ** 9))


def _next_offset(items: list, limit: int, offset: int) -> int | None:
    return offset + limit if len(items) > limit else None


def endpoint(handler):
    """Lock-free, with BadParameter as 400, a disabled store as 404 and an unreachable database as 503."""

    @functools.wraps(handler)
    async def wrapped(self, request: web.Request):
        try:
            return await handler(self, request)
        except BadParameter as exc:
            return error(400, str(exc))
        except StoreDisabled as exc:
            return error(404, str(exc))
        except Exception as exc:
            if isinstance(exc, web.HTTPException):
                raise
            return error(503, f"the interaction store is unavailable: {' '.join(str(exc).split())}")

    return lock_free(wrapped)


class InteractionsApi:
    def __init__(self, store: InteractionStore, clock=time.time):
        self.store = store
        self.clock = clock

    @endpoint
    async def feedback(self, request: web.Request) -> web.Response:
        _known(request, "max_rating", "since", "service", "limit", "offset")
        max_rating = _int(request, "max_rating", 5, 1, 5)
        since = _since(request)
        service = request.query.get("service") or None
        limit, offset = _page(request)
        items = await self.store.run(self.store.feedback_page, max_rating, since, service, limit + 1, offset)
        return web.json_response({
            "feedback": items[:limit], "limit": limit, "offset": offset,
            "next_offset": _next_offset(items, limit, offset),
            "filters": {"max_rating": max_rating, "since": iso(since), "service": service}})

    @endpoint
    async def interaction(self, request: web.Request) -> web.Response:
        _known(request)
        trace_id = request.match_info["trace_id"]
        if not TRACE_ID.fullmatch(trace_id):
            raise BadParameter(f"trace_id: expected the trace id as 32 hex characters, got {trace_id!r}")
        doc = await self.store.run(self.store.interaction, trace_id.lower())
        if doc is None:
            return error(404, f"no interaction {trace_id.lower()} in the store (not finished yet, "
                              f"older than the retention, or never seen)")
        return web.json_response(doc)

    @endpoint
    async def user_stats(self, request: web.Request) -> web.Response:
        _known(request, "hours")
        user_id = request.match_info["user_id"]
        if not 0 < len(user_id) <= MAX_USER_ID:
            raise BadParameter(f"user_id: expected 1 to {MAX_USER_ID} characters")
        hours = _hours(request)
        since = self.clock() - hours * 3600
        stats = await self.store.run(self.store.user_stats, user_id, since)
        return web.json_response({"user_id": user_id, "hours": hours, "since": iso(since), **stats})

    @endpoint
    async def costs_by_user(self, request: web.Request) -> web.Response:
        _known(request, "hours", "limit", "offset")
        hours = _hours(request)
        limit, offset = _page(request)
        since = self.clock() - hours * 3600
        users = await self.store.run(self.store.costs_by_user, since, limit + 1, offset)
        return web.json_response({"users": users[:limit], "hours": hours, "since": iso(since),
                                  "limit": limit, "offset": offset,
                                  "next_offset": _next_offset(users, limit, offset)})


def add_routes(app: web.Application, api: InteractionsApi) -> None:
    r = app.router
    r.add_get("/api/v1/feedback", api.feedback)
    r.add_get("/api/v1/interactions/{trace_id}", api.interaction)
    r.add_get("/api/v1/users/{user_id}/stats", api.user_stats)
    r.add_get("/api/v1/costs/by-user", api.costs_by_user)
