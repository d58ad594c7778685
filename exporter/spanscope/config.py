"""Configuration: embedded defaults, a user YAML file merged over them, then overrides, validated once.

Every option has a dotted path (`limits.max_series_per_metric`). It can be set in the file, by
`--set PATH=VALUE` on the command line, or by the environment variable `SPANSCOPE__PATH` with `__`
between the parts (`SPANSCOPE__LIMITS__MAX_SERIES_PER_METRIC=5000`); flags win over the environment,
the environment over the file. Each section is a pydantic model (`config.limits.series_ttl`) handed
whole to the part it configures. Errors name the path.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from itertools import pairwise
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A configuration value is wrong; the message names its dotted path."""


def load_embedded(name: str) -> Any:
    return yaml.safe_load(resources.files("spanscope").joinpath("defaults", name).read_text())


def read_yaml(path: str, setting: str) -> Any:
    """The YAML document in the file `path` names (given by `setting`); ConfigError saying which."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{setting}: {path} is not valid YAML: {exc}") from None


def read_secret(path: str, setting: str) -> str:
    """The stripped text of a secret's file (`setting` names the option); ConfigError saying which."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {exc.filename}: {exc.strerror}") from None


# --- value types shared by the config and the API models -------------------------------------------

def expect(what: str) -> WrapValidator:
    """Word any failure of the value as `expected WHAT, got VALUE` (pydantic's own wording names types)."""

    def check(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("expected", "expected {what}, got {got}",
                                      {"what": what, "got": repr(value)}) from None

    return WrapValidator(check)


class Strict(BaseModel):
    """Unknown keys are errors (naming them), values are not coerced across types, nothing changes later."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def dotted(loc: tuple) -> str:
    """("components", "span_names", 0, "pattern") -> components.span_names[0].pattern"""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _model_in(annotation) -> type[BaseModel] | None:
    """The model of a field typed `M`, `M | None` or `list[M]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is dict:
        return None  # its keys are names of the user's, not fields
    return next((m for m in map(_model_in, get_args(annotation)) if m), None)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str] | None:
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list of models
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field else None
        if model is None:
            return None
    return list(model.model_fields)


def explain(exc: ValidationError, model: type[BaseModel], unknown: str, root: str) -> str:
    """`PATH: MESSAGE` for the first error; an unknown key lists the known ones beside it."""
    err = exc.errors(include_url=False)[0]
    path = dotted(err["loc"]) or root
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, err["loc"][:-1])
        return f"{path}: {unknown}" + (f" (expected {', '.join(known) or 'none'})" if known is not None else "")
    if err["type"] == "missing":
        return f"{path}: missing"
    if err["type"] == "value_error":
        return f"{path}: {err['ctx']['error']}"
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return f"{path}: expected a mapping, got {err['input']!r}"
    return f"{path}: {err['msg'][0].lower()}{err['msg'][1:]}"


def to_seconds(v):
    """Seconds as a number or a Prometheus-style duration string (`500ms`, `30s`, `5m`, `1h`, `30d`)."""
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", v)
        if m:
            return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]
    return v


def _port_in_range(v: str) -> str:
    if int(v.rsplit(":", 1)[1]) > 65535:
        raise ValueError("port above 65535")
    return v


def _increasing(v: list[float]) -> list[float]:
    if any(b <= a for a, b in pairwise(v)):
        raise ValueError(f"bucket boundaries must be strictly increasing, got {v!r}")
    return v


def _regex(v):
    try:
        return re.compile(v) if isinstance(v, str) else v
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None


HTTP_URL = r"^https?://[^\s/]+(/\S*)?$"
PositiveInt = Annotated[int, Field(gt=0), expect("a positive integer")]
Seconds = Annotated[float, BeforeValidator(to_seconds), Field(ge=0), expect("seconds or a duration like 30s")]
Address = Annotated[str, Field(pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$"), AfterValidator(_port_in_range),
                    expect("HOST:PORT")]
OptionalText = Annotated[str | None, AfterValidator(lambda v: v or None), expect("a string or null")]
Flag = Annotated[bool, expect("true or false")]
Names = Annotated[list[Annotated[str, Field(min_length=1)]], expect("a list of names")]
Buckets = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1),
                    expect("a non-empty list of numbers"), AfterValidator(_increasing)]


# --- the sections ------------------------------------------------------------------------------------

class Listen(Strict):
    otlp_grpc: Address
    otlp_http: Address
    web: Address
    web_config_file: OptionalText


class SpanName(Strict):
    """Spans without pipeline.component whose name matches `pattern` (searched) belong to `component`."""

    pattern: Annotated[re.Pattern, BeforeValidator(_regex)]
    component: Annotated[str, Field(min_length=1)]


class Components(Strict):
    names: Names
    span_names: list[SpanName]


class DialectAttribute(Strict):
    """An attribute of your own instrumentation, read as a field of the span contract
    (`genai.usage.input`, `genai.provider`, …; docs/span-contract.md), after the table's names."""

    key: Annotated[str, Field(min_length=1)]
    field: Annotated[str, Field(min_length=1)]


class DialectScope(Strict):
    """Your own instrumentation, recognised by its instrumentation scope names ("x.*": a prefix)."""

    name: Annotated[str, Field(min_length=1)]
    scopes: Names
    input_excludes_cache: Flag = False  # its input count leaves cached input out
    component: str = ""                 # every span of these scopes is this component


class Dialects(Strict):
    attributes: list[DialectAttribute]
    scopes: list[DialectScope]


class Histograms(Strict):
    duration_buckets: Buckets


class Limits(Strict):
    max_body_bytes: PositiveInt
    max_grpc_message_bytes: PositiveInt
    grpc_calls: PositiveInt
    max_series_per_metric: PositiveInt
    label_values: PositiveInt
    tenant_values: PositiveInt
    label_value_length: PositiveInt
    series_ttl: Seconds
    ingest_queue: PositiveInt
    ingest_bytes: PositiveInt
    retry_after: Seconds
    body_timeout: Seconds
    grpc_calls_per_peer: PositiveInt
    idle_timeout: Seconds
    max_connections: PositiveInt


class Traces(Strict):
    timeout: Seconds  # before finish_delay, which is checked against it
    finish_delay: Seconds
    max_pending: PositiveInt
    max_spans: PositiveInt
    max_pending_spans: PositiveInt

    @field_validator("finish_delay")
    @classmethod
    def _within_timeout(cls, v: float, info) -> float:
        if "timeout" in info.data and v > info.data["timeout"]:
            raise ValueError("must not exceed traces.timeout")
        return v


class Shutdown(Strict):
    grace: Seconds


class Scenario(Strict):
    """Toggles of one what-if scenario (feature_whatif_projected_latency_seconds)."""

    enable: Names = []
    disable: Names = []
    enable_category: str | None = None
    disable_category: str | None = None
    disable_caching: bool = False


class Guards(Strict):
    interval: Annotated[float, BeforeValidator(to_seconds), Field(gt=0), expect("seconds or a duration like 10s")]
    stage_seconds: Seconds
    min_requests_per_stage: PositiveInt


class Features(Strict):
    file: OptionalText
    state_file: OptionalText
    window: Seconds
    max_rollout_stages: PositiveInt
    max_cohort_users: PositiveInt
    max_rules: PositiveInt
    guards: Guards
    scenarios: dict[str, Annotated[Scenario, BeforeValidator(lambda v: {} if v is None else v)]]

    def scenario_specs(self) -> dict[str, dict]:
        """name -> the toggles it sets, as the what-if projection reads them."""
        return {name: s.model_dump(exclude_defaults=True) for name, s in self.scenarios.items()}


class PriceRefresh(Strict):
    url: Annotated[str | None, Field(pattern=HTTP_URL), expect("an http:// or https:// URL, or null (no refresh)")]
    interval: Annotated[float, BeforeValidator(to_seconds), Field(ge=1), expect("a duration of 1s or more, like 24h")]


class Pricing(Strict):
    file: OptionalText
    budgets_file: OptionalText
    refresh: PriceRefresh


def _not_blank(v: str | None) -> str | None:
    if v is not None and not v.strip():  # an empty secret would silently leave everything open
        raise ValueError("empty: set a value, or leave it unset (null) for none")
    return v


NotBlank = Annotated[str | None, expect("a string or null"), AfterValidator(_not_blank)]


class Auth(Strict):
    bearer_token: NotBlank
    bearer_token_file: NotBlank

    def token(self) -> str | None:
        """The bearer token required on writes and personal-data reads: the value, or the file's content."""
        if self.bearer_token:
            return self.bearer_token
        if self.bearer_token_file:
            token = read_secret(self.bearer_token_file, "auth.bearer_token_file")
            if not token:
                raise ConfigError(f"auth.bearer_token_file: {self.bearer_token_file} is empty (no token in it)")
            return token
        return None


class Feedback(Strict):
    retention: Seconds


class Store(Strict):
    enabled: Flag
    url: OptionalText
    queue_size: PositiveInt
    batch_size: PositiveInt
    flush_interval: Seconds
    retention: Seconds
    max_rows: Annotated[int | None, Field(gt=0), expect("a positive integer or null")]
    cleanup_interval: Seconds
    user_id_hash: Flag
    user_id_salt: OptionalText
    user_id_salt_file: OptionalText


class Overview(Strict):
    prometheus_url: Annotated[str | None, Field(pattern=HTTP_URL),
                              expect("an http:// or https:// URL, or null")]


class Config(Strict):
    listen: Listen
    components: Components
    dialects: Dialects
    histograms: Histograms
    limits: Limits
    traces: Traces
    shutdown: Shutdown
    features: Features
    pricing: Pricing
    auth: Auth
    feedback: Feedback
    store: Store
    overview: Overview


# Every option's dotted path (bench/common.py asks whether one exists).
def _paths(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            yield from _paths(nested, f"{prefix}{name}.")
        else:
            yield prefix + name


SCHEMA = frozenset(_paths(Config))


# --- loading -----------------------------------------------------------------------------------------

# Options for which `PATH=` with nothing after it is a mistake (an empty secret), not null.
NOT_BLANK = {"auth.bearer_token", "auth.bearer_token_file"}


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected PATH=VALUE")
    path, raw = text.split("=", 1)
    path = path.strip()
    if not raw.strip():
        return path, raw if path in NOT_BLANK else None
    return path, yaml.safe_load(raw)


def env_overrides(environ=os.environ) -> list[str]:
    """`SPANSCOPE__LIMITS__SERIES_TTL=60` -> `limits.series_ttl=60`."""
    return [f"{k[len('SPANSCOPE__'):].lower().replace('__', '.')}={v}"
            for k, v in sorted(environ.items()) if k.startswith("SPANSCOPE__")]


def _merge(tree: dict, sections: Any, origin: str) -> None:
    """Merge a file's sections over `tree` key by key, into nested sections too (`pricing.refresh`): a
    value that is not a mapping replaces the whole value."""
    if not isinstance(sections, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    for key, value in sections.items():
        if value is None and isinstance(tree.get(key), dict):
            continue  # a section whose keys are all commented out
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value, origin)
        else:
            tree[key] = value


def load(path: str | None = None, overrides: list[str] = (), environ=os.environ) -> Config:
    """Defaults, then the file at `path`, then env overrides, then `overrides` (flags)."""
    tree: dict = {}
    _merge(tree, load_embedded("config.yaml"), "embedded defaults")
    if path:
        _merge(tree, read_yaml(path, "--config") or {}, f"config file {path}")
    for text in [*env_overrides(environ), *overrides]:
        key, value = _parse_override(text)
        *parents, option = key.split(".")
        node = tree
        for part in parents:  # `pricing.refresh.url`: into the nested section
            node = node.get(part) if isinstance(node, dict) else None
        if not parents or not isinstance(node, dict):
            raise ConfigError(f"{key}: unknown option (known: {', '.join(sorted(SCHEMA))})")
        node[option] = value
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(explain(exc, Config, "unknown option", "config")) from None
