"""The feature catalogue and its state: enabled, rollout percentage, rollout schedules.

State changes are persisted atomically (write, fsync, rename) to the state file and survive a
restart. A state file that cannot be read is logged with its path and the catalogue defaults are
used: a bad file never stops the exporter.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field

from ..config import ConfigError, load_embedded, read_yaml
from . import targeting

log = logging.getLogger("spanscope.features")
CATEGORIES = ("processing", "rag", "optimization", "integration")
STRATEGIES = ("linear", "exponential", "canary")


class FeatureError(Exception):
    """An API-level refusal: `status` is the HTTP code (404 unknown, 409 conflict, 400 invalid)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Feature:
    name: str
    display_name: str
    description: str
    category: str
    required: bool
    default: bool
    components: tuple = ()
    caching: bool = False
    caches: tuple = ()


@dataclass
class FeatureState:
    enabled: bool
    rollout_percentage: float = 100.0
    schedule: list = field(default_factory=list)   # percentages of a running rollout
    step: int = -1                                 # index into schedule, -1 when none runs
    updated_at: float = 0.0
    cohorts: dict = field(default_factory=dict)    # variant -> targeting keys forced into it (targeting.py)
    rules: list = field(default_factory=list)      # targeting rules, first match wins (targeting.py)


def parse_catalogue(doc, source: str) -> dict[str, Feature]:
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
        raise ConfigError(f"{source}: expected a mapping with a `features:` list")
    out: dict[str, Feature] = {}
    for i, item in enumerate(doc["features"]):
        where = f"{source}: features[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ConfigError(f"{where}.name: expected a feature name")
        name = item["name"]
        if name in out:
            raise ConfigError(f"{where}.name: duplicate feature {name!r}")
        category = item.get("category")
        if category not in CATEGORIES:
            raise ConfigError(f"{where}.category: expected one of {', '.join(CATEGORIES)}, got {category!r}")
        for key in ("required", "default", "caching"):
            if key in item and not isinstance(item[key], bool):
                raise ConfigError(f"{where}.{key}: expected true or false, got {item[key]!r}")
        for key in ("components", "caches"):
            if key in item and not (isinstance(item[key], list) and all(isinstance(x, str) for x in item[key])):
                raise ConfigError(f"{where}.{key}: expected a list of names")
        out[name] = Feature(
            name=name, display_name=str(item.get("display_name", name)), description=str(item.get("description", "")),
            category=category, required=item.get("required", False),
            default=item.get("default", True) or item.get("required", False),
            components=tuple(item.get("components", ())), caching=item.get("caching", False),
            caches=tuple(item.get("caches", ())),
        )
    return out


def load_catalogue(path: str | None) -> dict[str, Feature]:
    if not path:
        return parse_catalogue(load_embedded("features.yaml"), "embedded features")
    return parse_catalogue(read_yaml(path, "features.file"), path)


def _at_most(stages: float, max_stages: int, strategy: str, step: float) -> None:
    """Refuse a schedule of more than `max_stages` before building it (a tiny step would take the
    event loop and memory for as long as it likes)."""
    if stages > max_stages:
        raise FeatureError(400, f"step: {step:g} makes a {strategy} schedule of more than {max_stages} stages "
                                f"(features.max_rollout_stages); use a larger step")


def schedule_for(strategy: str, step: float | None = None, max_stages: int = 100) -> list[float]:
    """The percentages a rollout walks through."""
    if strategy == "linear":
        step = step or 10.0
        if not 0 < step <= 100:
            raise FeatureError(400, "step: expected a percentage between 0 (exclusive) and 100")
        _at_most(100 / step, max_stages, strategy, step)
        n = int(100 // step)
        points = [round(step * (i + 1), 6) for i in range(n)]
        return points if points and points[-1] == 100 else points + [100.0]
    if strategy == "exponential":
        start = step or 1.0
        if not 0 < start < 100:
            raise FeatureError(400, "step: expected a starting percentage between 0 and 100 (exclusive)")
        _at_most(math.log2(100 / start) + 1, max_stages, strategy, start)
        points = []
        while start < 100:
            points.append(round(start, 6))
            start *= 2
        return points + [100.0]
    if strategy == "canary":
        canary = step or 5.0
        if not 0 < canary < 100:
            raise FeatureError(400, "step: expected a canary percentage between 0 and 100 (exclusive)")
        return [canary] + [p for p in (25.0, 50.0) if p > canary] + [100.0]
    raise FeatureError(400, f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")


class Features:
    """Catalogue + state, with persistence. All mutation goes through `update`, `set_targeting` and the
    rollout calls."""

    def __init__(self, catalogue: dict[str, Feature], state_file: str | None = None, max_rollout_stages: int = 100,
                 max_cohort_users: int = 1000, max_rules: int = 50):
        self.catalogue = catalogue
        self.state_file = state_file
        self.max_rollout_stages = max_rollout_stages
        self.max_cohort_users = max_cohort_users
        self.max_rules = max_rules
        self.state = {name: FeatureState(enabled=f.default) for name, f in catalogue.items()}
        self.load_error: str | None = None
        if state_file:
            self._load()

    def get(self, name: str) -> Feature:
        try:
            return self.catalogue[name]
        except KeyError:
            raise FeatureError(404, f"unknown feature {name!r}") from None

    def component_features(self) -> dict[str, str]:
        """Component -> the feature whose work it is (for spans without pipeline.feature)."""
        return {c: f.name for f in self.catalogue.values() for c in f.components}

    def cache_owners(self) -> dict[str, str]:
        """Cache name -> the caching feature whose hits and misses its lookups are (for spans without
        pipeline.feature)."""
        return {c: f.name for f in self.catalogue.values() if f.caching for c in f.caches}

    def enabled(self, name: str) -> bool:
        s = self.state[name]
        return s.enabled and s.rollout_percentage > 0

    # --- changes -----------------------------------------------------------------------------

    def update(self, name: str, enabled: bool | None = None, rollout_percentage: float | None = None) -> FeatureState:
        feature = self.get(name)
        if enabled is False and feature.required:
            raise FeatureError(409, f"{name} is a required feature and cannot be disabled")
        if rollout_percentage is not None:
            if isinstance(rollout_percentage, bool) or not isinstance(rollout_percentage, (int, float)) \
                    or not 0 <= rollout_percentage <= 100:
                raise FeatureError(400, "rollout_percentage: expected a number from 0 to 100")
            if feature.required and rollout_percentage < 100:
                raise FeatureError(409, f"{name} is a required feature and must stay at 100%")
        state = self.state[name]
        if enabled is not None:
            state.enabled = enabled
        if rollout_percentage is not None:
            state.rollout_percentage = float(rollout_percentage)
            state.schedule, state.step = [], -1  # a manual percentage ends a running schedule
        state.updated_at = time.time()
        self._save()
        return state

    def start_rollout(self, name: str, strategy: str, step: float | None = None) -> FeatureState:
        feature = self.get(name)
        if feature.required:
            raise FeatureError(409, f"{name} is a required feature: it is always at 100%")
        state = self.state[name]
        state.schedule, state.step = schedule_for(strategy, step, self.max_rollout_stages), 0
        state.enabled, state.rollout_percentage = True, state.schedule[0]
        state.updated_at = time.time()
        self._save()
        return state

    def advance(self, name: str, delta: int) -> FeatureState:
        """Move a running rollout `delta` steps (1 forward, -1 back); back from the first step is 0%."""
        self.get(name)
        state = self.state[name]
        if state.step < 0:
            raise FeatureError(409, f"no rollout is running for {name}: start one first")
        step = min(state.step + delta, len(state.schedule) - 1)
        state.step = step
        state.rollout_percentage = state.schedule[step] if step >= 0 else 0.0
        if step < 0:
            state.schedule = []
        state.updated_at = time.time()
        self._save()
        return state

    def targeting_change(self, name: str, cohorts: dict | None = None, rules: list | None = None) -> dict:
        """The validated cohorts and/or rules to store (JSON forms); changes nothing. FeatureError 400 for
        bad or too many entries, 409 for forcing a required feature off."""
        feature = self.get(name)
        try:
            parsed = targeting.parse(cohorts, rules)
        except ValueError as exc:
            raise FeatureError(400, str(exc)) from None
        if parsed.users() > self.max_cohort_users:
            raise FeatureError(400, f"cohorts: {parsed.users()} targeting keys, at most {self.max_cohort_users} "
                                    f"per feature (features.max_cohort_users)")
        if len(parsed.rules) > self.max_rules:
            raise FeatureError(400, f"rules: {len(parsed.rules)} rules, at most {self.max_rules} per feature "
                                    f"(features.max_rules)")
        if feature.required and "off" in parsed.variants():
            raise FeatureError(409, f"{name} is a required feature: no cohort or rule can turn it off")
        change = {}
        if cohorts is not None:
            change["cohorts"] = parsed.cohorts_json()
        if rules is not None:
            change["rules"] = parsed.rules_json()
        return change

    def set_targeting(self, name: str, change: dict) -> FeatureState:
        """Store what targeting_change validated."""
        state = self.state[name]
        for key, value in change.items():
            setattr(state, key, value)
        state.updated_at = time.time()
        self._save()
        return state

    def targeting_of(self, name: str) -> targeting.Targeting:
        s = self.state[name]
        return targeting.parse(s.cohorts, s.rules)

    def emergency_rollback(self, name: str) -> FeatureState:
        if self.get(name).required:
            raise FeatureError(409, f"{name} is a required feature and cannot be rolled back")
        state = self.state[name]
        state.rollout_percentage, state.schedule, state.step = 0.0, [], -1
        state.updated_at = time.time()
        self._save()
        return state

    # --- persistence -------------------------------------------------------------------------

    def _load(self) -> None:
        path = self.state_file
        if not os.path.exists(path):
            return
        try:
            with open(path) as f:
                doc = json.load(f)
            if not isinstance(doc, dict) or not isinstance(doc.get("features"), dict):
                raise ValueError("expected {\"features\": {...}}")
            loaded = {}
            for name, s in doc["features"].items():
                if name not in self.catalogue:
                    continue  # a feature removed from the catalogue
                if not isinstance(s, dict) or not isinstance(s.get("enabled"), bool):
                    raise ValueError(f"features.{name}: expected an object with a boolean `enabled`")
                pct = s.get("rollout_percentage", 100.0)
                if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 100:
                    raise ValueError(f"features.{name}.rollout_percentage: expected 0-100")
                schedule = s.get("schedule", [])
                if not isinstance(schedule, list) or not all(isinstance(p, (int, float)) for p in schedule):
                    raise ValueError(f"features.{name}.schedule: expected a list of percentages")
                step = s.get("step", -1)
                if not isinstance(step, int) or not -1 <= step < max(len(schedule), 1):
                    raise ValueError(f"features.{name}.step: out of range")
                try:
                    aimed = targeting.parse(s.get("cohorts"), s.get("rules"))
                except ValueError as exc:
                    raise ValueError(f"features.{name}.{exc}") from None
                required = self.catalogue[name].required
                if required and "off" in aimed.variants():
                    raise ValueError(f"features.{name}: a required feature cannot be forced off")
                loaded[name] = FeatureState(enabled=s["enabled"] or required,
                                            rollout_percentage=100.0 if required else float(pct),
                                            schedule=[float(p) for p in schedule], step=step,
                                            updated_at=float(s.get("updated_at", 0)),
                                            cohorts=aimed.cohorts_json(), rules=aimed.rules_json())
        except (OSError, ValueError, TypeError) as exc:
            self.load_error = f"feature state file {path} is unusable ({exc}); using the catalogue defaults"
            log.error(self.load_error)
            return
        self.state.update(loaded)

    def _save(self) -> None:
        if not self.state_file:
            return
        doc = {"version": 1, "features": {
            name: {"enabled": s.enabled, "rollout_percentage": s.rollout_percentage, "schedule": s.schedule,
                   "step": s.step, "updated_at": s.updated_at, "cohorts": s.cohorts, "rules": s.rules}
            for name, s in self.state.items()}}
        directory = os.path.dirname(os.path.abspath(self.state_file))
        fd, tmp = tempfile.mkstemp(prefix=".features-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            os.unlink(tmp)
            raise
