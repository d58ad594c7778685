"""What API requests may carry: models of the JSON bodies and query strings, and the two functions
that parse a request into one (ApiError 400 naming the field or parameter, 415 for a body not in JSON)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from ..analysis import targeting
from ..analysis.windows import Query as Window
from ..config import Strict, expect, explain, to_seconds
from ..store.queries import InteractionFilters
from .errors import ApiError

MAX_KEY_CHARS = 256       # a targeting key or an attribute name
MAX_VALUE_CHARS = 1024    # a rule's string value or pattern
MAX_RULE_VALUES = 1000    # values of one in / not_in rule
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_HOURS = 24 * 366
DAY_SECONDS = 86400  # what the per-minute rollups keep
LAST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()  # the last one ISO 8601 can write
M = TypeVar("M", bound=Strict)


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body as `model`; malformed, too deeply nested or of the wrong shape -> 400 naming the field."""
    if request.content_type != "application/json":
        raise ApiError(415, "send Content-Type: application/json")
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        raise ApiError(400, explain(exc, model, "unknown field", "body")) from None


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`: an unknown or bad parameter -> 400 naming it."""
    for name, value in [*request.query.items(), *request.match_info.items()]:
        if "\x00" in value:
            raise ApiError(400, f"{name}: must not contain NUL characters")
    return parse_params(request.query, model)


def parse_params(params: Mapping[str, str], model: type[M]) -> M:
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise ApiError(400, explain(exc, model, "unknown parameter", "query")) from None


# --- bodies ------------------------------------------------------------------------------------------

TargetingKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS),
                         expect(f"a targeting key of 1 to {MAX_KEY_CHARS} characters")]
Scalar = Annotated[StrictBool | StrictInt | Annotated[float, Field(allow_inf_nan=False)] | Annotated[StrictStr, Field(
    max_length=MAX_VALUE_CHARS)], expect(f"a string (at most {MAX_VALUE_CHARS} characters), number or boolean")]


class Cohorts(Strict):
    """Targeting keys (users) forced into each variant."""

    on: list[TargetingKey] = []
    off: list[TargetingKey] = []


class TargetingRule(Strict):
    """One rule: when the context's `attribute` compares true with `value` (`values` for in / not_in)."""

    attribute: TargetingKey
    operator: Annotated[Literal[targeting.OPERATORS], expect(", ".join(targeting.OPERATORS))]
    value: Scalar | None = None
    values: Annotated[list[Scalar] | None, Field(min_length=1, max_length=MAX_RULE_VALUES),
                      expect(f"a list of 1 to {MAX_RULE_VALUES} strings, numbers or booleans")] = None
    variant: Annotated[Literal[targeting.VARIANTS], expect("on or off")]

    @model_validator(mode="after")
    def _consistent(self) -> TargetingRule:
        problem = targeting.rule_problem(self.attribute, self.operator, self.variant, self.value, self.values or ())
        if problem:
            raise ValueError(problem)
        return self


class FeatureUpdate(Strict):
    """PUT /api/features/{name}"""

    enabled: Annotated[bool | None, expect("true or false")] = None
    rollout_percentage: Annotated[float | None, Field(ge=0, le=100), expect("a number from 0 to 100")] = None
    cohorts: Cohorts | None = None
    rules: list[TargetingRule] | None = None

    @model_validator(mode="after")
    def _something(self) -> FeatureUpdate:
        if not self.model_fields_set:
            raise ValueError('expected {"enabled": true|false}, {"rollout_percentage": 0-100}, '
                             '{"cohorts": {"on": [...], "off": [...]}} and/or {"rules": [...]}')
        return self

    def cohorts_json(self) -> dict | None:
        return None if self.cohorts is None else self.cohorts.model_dump()

    def rules_json(self) -> list | None:
        return None if self.rules is None else [r.model_dump(exclude_none=True) for r in self.rules]


class EvaluationRequest(Strict):
    """POST /api/features/{name}/evaluate: what the feature answers for one evaluation context."""

    targeting_key: Annotated[str | None, Field(max_length=MAX_KEY_CHARS),
                             expect(f"a string of at most {MAX_KEY_CHARS} characters")] = None
    attributes: dict[Annotated[str, Field(max_length=MAX_KEY_CHARS)],
                     Scalar | Annotated[list[Scalar], Field(max_length=MAX_RULE_VALUES)]] = {}


Share = Annotated[float | None, Field(ge=0, le=1), expect("a number from 0 to 1")]


class RolloutGuardSpec(Strict):
    """The "guard" of POST /api/features/{name}/rollout (analysis.guards.Guard; defaults from features.guards)."""

    max_error_ratio_increase: Share = None
    max_p95_latency_increase: Annotated[float | None, Field(ge=0, le=100),
                                        expect("a relative increase, e.g. 0.25 for 25 %")] = None
    min_quality_score: Annotated[float | None, Field(allow_inf_nan=False), expect("a number")] = None
    min_requests_per_stage: Annotated[int | None, Field(ge=2, le=10_000_000), expect("a count of at least 2")] = None
    alpha: Annotated[float, Field(gt=0, lt=0.5), expect("a probability below 0.5, e.g. 0.05")] = 0.05


class RolloutStart(Strict):
    """POST /api/features/{name}/rollout"""

    strategy: Annotated[str, expect("linear, exponential or canary")]
    step: Annotated[float | None, expect("a percentage")] = None
    guard: RolloutGuardSpec | None = None
    auto_advance: Annotated[bool, expect("true or false")] = False
    stage_seconds: Annotated[float | None, Field(ge=0, le=30 * 86400), expect("seconds, up to 30 days")] = None


# --- query strings (their values arrive as text: converted, not strict) -------------------------------

class Params(Strict, strict=False):
    """Query-string values arrive as text: converted to the field's type, not refused for being text."""


def _not_empty(v: str) -> str:
    if not v:
        raise ValueError("must not be empty")
    return v


def _epoch_seconds(raw):
    """Seconds since the epoch, or an ISO 8601 time (UTC when it names no offset)."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"expected a finite time, got {raw!r}")
        if not 0 <= value <= LAST_TIME:
            raise ValueError(f"expected a time from 1970 to the year 9999 (0 to {LAST_TIME:.0f} seconds), got {raw!r}")
        return value
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    except (AttributeError, ValueError, OverflowError):
        raise ValueError(f"expected seconds since the epoch or an ISO 8601 time like "
                         f"2026-01-31T12:00:00Z, got {raw!r}") from None


Filter = Annotated[str | None, AfterValidator(_not_empty)]


class WindowParams(Params):
    """GET /api/metrics/{view}, /api/insights, /api/recommendations"""

    time_window_minutes: Annotated[int, Field(ge=5, le=1440), expect("an integer from 5 to 1440")] = 60
    service: Filter = None
    mode: Filter = None
    operation: Filter = None

    def window(self) -> Window:
        return Window(self.time_window_minutes, self.service, self.mode, self.operation)


class ExperimentParams(Params):
    """GET /api/experiments/{flag}: compare the requests of the last `window` (in whole minutes, the
    current one included), or, without it, every request since the exporter started."""

    window: Annotated[float | None, BeforeValidator(to_seconds), Field(ge=60, le=DAY_SECONDS, allow_inf_nan=False),
                      expect("a duration from 1m to 24h, like 15m, 1h or 3600 (seconds)")] = None

    def minutes(self) -> int | None:
        return None if self.window is None else math.ceil(self.window / 60)


class Page(Params):
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), expect(f"an integer from 1 to {MAX_LIMIT}")] = DEFAULT_LIMIT
    offset: Annotated[int, Field(ge=0, le=10 ** 9), expect(f"an integer from 0 to {10 ** 9}")] = 0


class FeedbackParams(Page):
    """GET /api/v1/feedback"""

    max_rating: Annotated[int, Field(ge=1, le=5), expect("an integer from 1 to 5")] = 5
    since: Time = None
    service: Annotated[str | None, AfterValidator(lambda v: v or None)] = None


Time = Annotated[float | None, BeforeValidator(_epoch_seconds)]


class InteractionsParams(Params):
    """GET /api/v1/interactions: filters, and a page after `cursor` (the previous page's next_cursor)."""

    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), expect(f"an integer from 1 to {MAX_LIMIT}")] = 50
    cursor: Filter = None
    user: Filter = None
    service: Filter = None
    model: Filter = None
    since: Time = None
    until: Time = None
    status: Annotated[Literal["ok", "error"] | None, expect("ok or error")] = None
    rating: Annotated[int | None, Field(ge=1, le=5), expect("an integer from 1 to 5")] = None
    rated: Annotated[bool | None, expect("true or false")] = None
    confidence_below: Annotated[float | None, Field(allow_inf_nan=False), expect("a number")] = None

    def filters(self) -> InteractionFilters:
        return InteractionFilters(
            user_id=self.user, service=self.service, model=self.model, since=self.since, until=self.until,
            error=None if self.status is None else self.status == "error", rating=self.rating, rated=self.rated,
            confidence_below=self.confidence_below)


class HoursParams(Params):
    """GET /api/v1/users/{user_id}/stats"""

    hours: Annotated[float, Field(gt=0, le=MAX_HOURS, allow_inf_nan=False),
                     expect(f"a number of hours above 0 and at most {MAX_HOURS}")] = 24.0


class CostsParams(HoursParams, Page):
    """GET /api/v1/costs/by-user"""


class NoParams(Params):
    """Endpoints that take no query parameters."""
