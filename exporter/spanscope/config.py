"""Configuration: embedded defaults, a user YAML file merged over them, then overrides.

Every option has a dotted path (`limits.max_series_per_metric`). It can be set in the file, by
`--set PATH=VALUE` on the command line, or by the environment variable `SPANSCOPE__PATH` with `__`
between the parts (`SPANSCOPE__LIMITS__MAX_SERIES_PER_METRIC=5000`). Errors name the path.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

import yaml


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


# --- validators: each takes (path, value) and returns the cleaned value or raises ConfigError ---

def _positive_int(path, v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(f"{path}: expected a positive integer, got {v!r}")
    return v


def _seconds(path, v):
    """Seconds as a number or a Prometheus-style duration string (`500ms`, `30s`, `5m`, `1h`)."""
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", v)
        if not m:
            raise ConfigError(f"{path}: expected seconds or a duration like 30s, got {v!r}")
        v = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
        raise ConfigError(f"{path}: expected a non-negative number of seconds, got {v!r}")
    return float(v)


def _address(path, v):
    if not isinstance(v, str) or not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}", v) \
            or not 0 <= int(v.rsplit(":", 1)[1]) <= 65535:
        raise ConfigError(f"{path}: expected HOST:PORT, got {v!r}")
    return v


def _optional_str(path, v):
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"{path}: expected a string or null, got {v!r}")
    return v or None


def _names(path, v):
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(f"{path}: expected a list of names, got {v!r}")
    return list(v)


def _buckets(path, v):
    if not isinstance(v, list) or not v or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x == x for x in v):
        raise ConfigError(f"{path}: expected a non-empty list of numbers, got {v!r}")
    if any(b <= a for a, b in zip(v, v[1:])):
        raise ConfigError(f"{path}: bucket boundaries must be strictly increasing, got {v!r}")
    return [float(x) for x in v]


def _span_names(path, v):
    if not isinstance(v, list):
        raise ConfigError(f"{path}: expected a list of {{pattern, component}}, got {v!r}")
    out = []
    for i, item in enumerate(v):
        if not isinstance(item, dict) or set(item) != {"pattern", "component"}:
            raise ConfigError(f"{path}[{i}]: expected {{pattern: REGEX, component: NAME}}, got {item!r}")
        try:
            out.append((re.compile(item["pattern"]), str(item["component"])))
        except re.error as exc:
            raise ConfigError(f"{path}[{i}].pattern: invalid regular expression: {exc}") from None
    return out


def _scenarios(path, v):
    allowed = {"enable", "disable", "enable_category", "disable_category", "disable_caching"}
    if not isinstance(v, dict):
        raise ConfigError(f"{path}: expected a mapping of scenario name to toggles, got {v!r}")
    for name, spec in v.items():
        spec = spec or {}
        if not isinstance(spec, dict) or not set(spec) <= allowed:
            raise ConfigError(f"{path}.{name}: expected keys among {sorted(allowed)}, got {spec!r}")
    return {name: dict(spec or {}) for name, spec in v.items()}


def _bool(path, v):
    if not isinstance(v, bool):
        raise ConfigError(f"{path}: expected true or false, got {v!r}")
    return v


def _optional_positive_int(path, v):
    return None if v is None else _positive_int(path, v)


SCHEMA: dict[str, Callable[[str, Any], Any]] = {
    "listen.otlp_grpc": _address,
    "listen.otlp_http": _address,
    "listen.web": _address,
    "listen.web_config_file": _optional_str,
    "components.names": _names,
    "components.span_names": _span_names,
    "histograms.duration_buckets": _buckets,
    "limits.max_body_bytes": _positive_int,
    "limits.max_grpc_message_bytes": _positive_int,
    "limits.grpc_calls": _positive_int,
    "limits.max_series_per_metric": _positive_int,
    "limits.label_values": _positive_int,
    "limits.tenant_values": _positive_int,
    "limits.label_value_length": _positive_int,
    "limits.series_ttl": _seconds,
    "limits.ingest_queue": _positive_int,
    "limits.ingest_bytes": _positive_int,
    "limits.retry_after": _seconds,
    "limits.body_timeout": _seconds,
    "shutdown.grace": _seconds,
    "traces.finish_delay": _seconds,
    "traces.timeout": _seconds,
    "traces.max_pending": _positive_int,
    "traces.max_spans": _positive_int,
    "traces.max_pending_spans": _positive_int,
    "features.file": _optional_str,
    "features.state_file": _optional_str,
    "features.window": _seconds,
    "features.scenarios": _scenarios,
    "pricing.file": _optional_str,
    "auth.bearer_token": _optional_str,
    "auth.bearer_token_file": _optional_str,
    "feedback.retention": _seconds,
    "store.enabled": _bool,
    "store.url": _optional_str,
    "store.queue_size": _positive_int,
    "store.batch_size": _positive_int,
    "store.flush_interval": _seconds,
    "store.retention": _seconds,
    "store.max_rows": _optional_positive_int,
    "store.cleanup_interval": _seconds,
    "store.user_id_hash": _bool,
    "store.user_id_salt": _optional_str,
    "store.user_id_salt_file": _optional_str,
}


@dataclass(frozen=True)
class Config:
    """Validated options, read as `config["limits.series_ttl"]`."""

    values: dict

    def __getitem__(self, path: str) -> Any:
        return self.values[path]

    def bearer_token(self) -> str | None:
        if self["auth.bearer_token"]:
            return self["auth.bearer_token"]
        if self["auth.bearer_token_file"]:
            try:
                with open(self["auth.bearer_token_file"]) as f:
                    return f.read().strip() or None
            except OSError as exc:
                raise ConfigError(f"auth.bearer_token_file: cannot read {exc.filename}: {exc.strerror}") from None
        return None


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not any(path == p for p in SCHEMA):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected PATH=VALUE")
    path, raw = text.split("=", 1)
    return path.strip(), yaml.safe_load(raw) if raw.strip() else None


def env_overrides(environ=os.environ) -> list[str]:
    """`SPANSCOPE__LIMITS__SERIES_TTL=60` -> `limits.series_ttl=60`."""
    return [f"{k[len('SPANSCOPE__'):].lower().replace('__', '.')}={v}"
            for k, v in sorted(environ.items()) if k.startswith("SPANSCOPE__")]


def load(path: str | None = None, overrides: list[str] = (), environ=os.environ) -> Config:
    """Defaults, then the file at `path`, then env overrides, then `overrides` (flags)."""
    merged = _flatten(load_embedded("config.yaml"))
    if path:
        user = read_yaml(path, "--config") or {}
        if not isinstance(user, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        merged.update(_flatten(user))
    for text in [*env_overrides(environ), *overrides]:
        key, value = _parse_override(text)
        merged[key] = value
    unknown = sorted(set(merged) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown option (known: {', '.join(sorted(SCHEMA))})")
    values = {p: SCHEMA[p](p, copy.deepcopy(merged[p])) for p in SCHEMA}
    if values["traces.finish_delay"] > values["traces.timeout"]:
        raise ConfigError("traces.finish_delay: must not exceed traces.timeout")
    return Config(values)
