"""Interactions: one row per finished request (a RequestSummary), and its JSON form for the API.

User ids are stored as sent (`enduser.id`) or, with `store.user_id_hash`, as a keyed SHA-256
(HMAC-SHA256 with the configured salt) so the store never holds the raw id yet per-user queries
still work: the API hashes the id it is asked about the same way.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from decimal import Decimal

from ..interpret.summary import RequestSummary

try:  # orjson is several times faster; both write the same compact JSON
    import orjson

    def to_json(value, sort_keys: bool = False) -> str:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0).decode()
except ImportError:  # pragma: no cover
    def to_json(value, sort_keys: bool = False) -> str:
        return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"))

TOKEN_TYPES = ("input", "output", "cache_read", "cache_creation", "reasoning")
# Values are stored as the spans carry them (never a metric's `__other__`), cut to MAX_TEXT characters:
# service, tenant, mode, model, cache status, the names of components, flags, variants and reasons,
# user ids (before they are hashed).
MAX_TEXT = 256
MAX_USER_ID = MAX_TEXT

COLUMNS = ("trace_id", "service", "tenant", "user_id", "mode", "started_at", "duration_seconds", "error",
           "critical_path", *(f"tokens_{t}" for t in TOKEN_TYPES), "model", "cost", "confidence",
           "citations", "quality", "cache_status", "variants", "variant_reasons", "recorded_at")


class UserIds:
    """The stored form of a user id: as sent, or HMAC-SHA256(salt, id) in hex."""

    def __init__(self, hash_ids: bool, salt: str | None):
        self.salt = salt.encode() if hash_ids and salt else None

    def stored(self, user: str | None) -> str | None:
        if not user:
            return None
        user = _text(user)
        if self.salt is None:
            return user
        return hmac.new(self.salt, user.encode(), hashlib.sha256).hexdigest()


def _text(value: str | None) -> str | None:
    """At most MAX_TEXT characters, without NUL (span strings may carry it; PostgreSQL TEXT refuses it)."""
    if not value:
        return value
    value = value[:MAX_TEXT]
    return value.replace("\x00", "") if "\x00" in value else value


def decimal_text(value: Decimal) -> str:
    """Plain notation without trailing zeros (0.006, never 6E-3 or 0.00600000)."""
    return format(value.normalize(), "f") if value else "0"


def _nanoseconds(v: float) -> float:
    """round(v, 9), exactly, and twice as fast for a whole number of nanoseconds as seconds (what
    summarise makes): v * 1e9 is then within a rounding error of that number, which / 1e9 is the
    double nearest the 9-decimal value, as round() gives. Anything else goes to round()."""
    ns = v * 1e9
    k = round(ns) if -1e15 < ns < 1e15 else None
    return k / 1e9 if k is not None and -0.25 < ns - k < 0.25 else round(v, 9)


def _flag_json(by_flag: dict) -> str:
    """flag -> text (its variant, or its reason) as a JSON column, both cut to MAX_TEXT."""
    return to_json({f[:MAX_TEXT]: v[:MAX_TEXT] for f, v in by_flag.items()}, sort_keys=True)


def row(summary: RequestSummary, users: UserIds, decimal_cost: bool, now: float | None = None) -> tuple:
    """The column values of COLUMNS. `decimal_cost`: pass cost as Decimal (PostgreSQL NUMERIC) or text."""
    s = summary
    get = s.tokens.get
    return (
        s.trace_id, _text(s.service), _text(s.tenant), users.stored(s.user), _text(s.mode), s.start_ns / 1e9,
        s.duration,
        1 if s.error else 0,
        to_json({c[:MAX_TEXT]: _nanoseconds(v) for c, v in s.critical.items()}, sort_keys=True),
        *(int(get(t, 0)) for t in TOKEN_TYPES),
        _text(s.model), s.cost if decimal_cost else decimal_text(s.cost),
        s.confidence, s.citations, s.quality, _text(s.cache_status),
        _flag_json(s.variants), _flag_json(s.variant_reasons),
        time.time() if now is None else now,
    )


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def money(value) -> str:
    """Cost from either database (Decimal or decimal text) as plain decimal text."""
    return decimal_text(Decimal(str(value if value is not None else 0)))


def as_json(values: tuple) -> dict:
    """An interactions row (in COLUMNS order) as the API shows it."""
    r = dict(zip(COLUMNS, values))
    return {
        "trace_id": r["trace_id"], "service": r["service"], "tenant": r["tenant"], "user_id": r["user_id"],
        "mode": r["mode"], "started_at": iso(r["started_at"]), "started_at_unix": r["started_at"],
        "duration_seconds": r["duration_seconds"], "error": bool(r["error"]),
        "critical_path_seconds": json.loads(r["critical_path"]),
        "tokens": {t: r[f"tokens_{t}"] for t in TOKEN_TYPES},
        "model": r["model"], "cost_usd": money(r["cost"]), "confidence": r["confidence"],
        "citations": r["citations"], "quality": r["quality"], "cache_status": r["cache_status"],
        "variants": json.loads(r["variants"]),
        "variant_reasons": json.loads(r["variant_reasons"] or "{}"),  # nullable: see migration 4
    }
