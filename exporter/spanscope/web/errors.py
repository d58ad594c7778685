"""API errors: every failed /api/ request answers JSON `{"error": MESSAGE, "status": CODE}`.

Handlers raise ApiError, or let a domain error through: those carry their HTTP status as `status`
(FeatureError, FeedbackError, StoreDisabled), so this module needs none of them. `api_errors`, one
middleware, turns them into answers, and so the router's own 404 and 405 under /api/ too.
"""
from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("spanscope.api")


class ApiError(Exception):
    """An API request failed with `status`; the message names what was wrong (a field first, when one was)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


def error(status: int, message: str, headers=None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


def _router_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error(405, f"{request.method} is not allowed on {request.path} (allowed: {allowed})", {"Allow": allowed})
    if isinstance(exc, web.HTTPNotFound):
        return error(404, f"no API endpoint {request.path} (the list is at /)")
    return error(exc.status, exc.text or exc.reason)


@web.middleware
async def api_errors(request: web.Request, handler):
    """ApiError and domain errors -> their status; aiohttp's HTTP errors and anything unexpected under /api/
    -> JSON as well; a body that cannot be read (on any path) -> 400."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        return _router_error(request, exc)
    except web.RequestPayloadError as exc:  # a body aiohttp could not read: e.g. "gzip" that is not gzip
        reason = getattr(exc.__cause__, "message", None) or str(exc)
        return error(400, f"could not read the request body: {' '.join(str(reason).split())}")
    except OSError as exc:  # e.g. the state file cannot be written
        return error(500, f"could not persist the change: {exc.strerror or exc}")
    except Exception as exc:
        if isinstance(getattr(exc, "status", None), int):  # ApiError or a domain error
            return error(exc.status, str(exc), getattr(exc, "headers", None))
        if not request.path.startswith("/api/"):
            raise
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal error (logged by the exporter)")
