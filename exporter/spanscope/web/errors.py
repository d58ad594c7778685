"""API errors: JSON `{"error": MESSAGE, "status": CODE}` with the right status."""
from __future__ import annotations

from aiohttp import web


def error(status: int, message: str, headers=None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)
