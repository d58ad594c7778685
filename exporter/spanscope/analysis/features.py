"""The feature catalogue and its state: enabled, rollout percentage, rollout schedules and their guards.

State lives in a backend (analysis.feature_states: memory or `features.state_file`; the interaction
store's database when it is persistent, shared by replicas). A store of state that cannot be read is
logged, naming it, and the catalogue defaults are used: bad state never stops the exporter.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
import time
from dataclasses import dataclass, field

from ..config import ConfigError, load_embedded, read_yaml
from . import targeting
from .feature_states import MemoryStates

log = logging.getLogger("spanscope.features")
CATEGORIES = ("processing", "rag", "optimization", "integration")
STRATEGIES = ("linear", "exponential", "canary")
# feature_rollout_decisions_total{decision}: "advance"/"rollback" are the guards', the others a person's.
DECISIONS = ("start", "advance", "rollback", "manual_advance", "manual_rollback", "emergency_rollback")


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
    """What can change about a feature at run time. A running rollout walks `schedule` (percentages);
    a guarded one (`guard`) is judged on each stage's requests and may advance or roll back by itself."""

    enabled: bool
    rollout_percentage: float = 100.0
    schedule: list = field(default_factory=list)   # percentages of a running rollout
    step: int = -1                                 # index into schedule, -1 when none runs
    updated_at: float = 0.0
    strategy: str | None = None
    stage_started_at: float = 0.0                  # the running stage's requests are those started since
    auto_advance: bool = False
    stage_seconds: float = 0.0                     # a stage lasts at least this long before it advances
    guard: dict | None = None                      # analysis.guards.Guard as JSON
    evaluation: dict | None = None                 # the guard's last look at the stage (its evidence)
    cohorts: dict = field(default_factory=dict)    # variant -> targeting keys forced into it (targeting.py)
    rules: list = field(default_factory=list)      # targeting rules, first match wins (targeting.py)

    @property
    def running(self) -> bool:
        return self.step >= 0

    def end_rollout(self, percentage: float) -> None:
        self.rollout_percentage, self.schedule, self.step = percentage, [], -1
        self.strategy, self.guard, self.evaluation, self.auto_advance = None, None, None, False

    def as_json(self) -> dict:
        return {name: getattr(self, name) for name in STATE_FIELDS}


STATE_FIELDS = tuple(FeatureState.__dataclass_fields__)


def _number(value, what: str, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{what}: expected a number from {low:g} to {high:g}")
    return float(value)


def state_from_json(doc, feature: Feature, where: str) -> FeatureState:
    """A FeatureState from its stored JSON (ValueError naming the field); a required feature stays at 100 %."""
    if not isinstance(doc, dict) or not isinstance(doc.get("enabled"), bool):
        raise ValueError(f"{where}: expected an object with a boolean `enabled`")
    pct = _number(doc.get("rollout_percentage", 100.0), f"{where}.rollout_percentage", 0, 100)
    schedule = doc.get("schedule", [])
    if not isinstance(schedule, list) or not all(isinstance(p, (int, float)) for p in schedule):
        raise ValueError(f"{where}.schedule: expected a list of percentages")
    step = doc.get("step", -1)
    if not isinstance(step, int) or not -1 <= step < max(len(schedule), 1):
        raise ValueError(f"{where}.step: out of range")
    for key in ("guard", "evaluation"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise ValueError(f"{where}.{key}: expected an object")
    try:
        aimed = targeting.parse(doc.get("cohorts"), doc.get("rules"))
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None
    aiming = {"cohorts": aimed.cohorts_json(), "rules": aimed.rules_json()}
    if feature.required:
        if "off" in aimed.variants():
            raise ValueError(f"{where}: a required feature cannot be forced off")
        return FeatureState(enabled=True, updated_at=_number(doc.get("updated_at", 0), f"{where}.updated_at"),
                            **aiming)
    return FeatureState(**aiming,
        enabled=doc["enabled"], rollout_percentage=pct, schedule=[float(p) for p in schedule], step=step,
        updated_at=_number(doc.get("updated_at", 0), f"{where}.updated_at"),
        strategy=doc.get("strategy") if doc.get("strategy") in STRATEGIES else None,
        stage_started_at=_number(doc.get("stage_started_at", 0), f"{where}.stage_started_at"),
        auto_advance=doc.get("auto_advance") is True,
        stage_seconds=_number(doc.get("stage_seconds", 0), f"{where}.stage_seconds"),
        guard=doc.get("guard"), evaluation=doc.get("evaluation"))


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


def _still_at(name: str, state: FeatureState, stage: tuple | None) -> None:
    """Refuse (409) a decision on `stage` (step, stage_started_at) once the rollout moved on; None: any."""
    if stage is not None and stage != (state.step, state.stage_started_at):
        raise FeatureError(409, f"the rollout of {name} moved since it was judged")


def decision_record(name: str, decision: str, by: str, before: FeatureState, after: FeatureState, at: float,
                    reason: str = "", evidence: dict | None = None) -> dict:
    """One rollout decision as it is stored, logged and shown (`GET /api/features/{name}`)."""
    return {"feature": name, "decision": decision, "by": by, "at": at,
            "stage": before.step + 1 if before.running else None, "from_percentage": before.rollout_percentage,
            "to_percentage": after.rollout_percentage, "reason": reason, "evidence": evidence}


class Features:
    """Catalogue + state. All change goes through `_change`: a read-modify-write of one feature in the
    state backend (analysis.feature_states; the store's database when replicas share one), then the
    in-memory copy that evaluations and the API read. `sync` takes other replicas' changes."""

    def __init__(self, catalogue: dict[str, Feature], states=None, max_rollout_stages: int = 100,
                 max_cohort_users: int = 1000, max_rules: int = 50, clock=time.time, on_decision=None):
        self.catalogue = catalogue
        self.states = states or MemoryStates()
        self.max_rollout_stages = max_rollout_stages
        self.max_cohort_users = max_cohort_users
        self.max_rules = max_rules
        self.clock = clock
        self.on_decision = on_decision  # called with each decision record this replica makes
        self.state = {name: FeatureState(enabled=f.default) for name, f in catalogue.items()}
        self.load_error: str | None = None
        self.reload()

    def use(self, states) -> None:
        """Keep state in `states` from now on (the store's database, once it is open)."""
        self.states = states
        self.reload()

    def reload(self) -> None:
        """Take the stored state; an unusable store of state is logged and the catalogue defaults kept."""
        try:
            docs = self.states.load()
            loaded = {name: state_from_json(doc, self.catalogue[name], f"features.{name}")
                      for name, doc in docs.items() if name in self.catalogue}  # unknown: removed from it
        except (OSError, ValueError, TypeError) as exc:
            self.load_error = f"{self.states.describe()} is unusable ({exc}); using the catalogue defaults"
            log.error(self.load_error)
            return
        self.state.update(loaded)

    async def sync(self) -> None:
        """Take the changes other replicas stored (shared backends only)."""
        if self.states.shared:
            await self.states.run(self.reload)

    async def run(self, method, *args):
        """Run a change method where the backend may block (the store's thread), not on the event loop."""
        return await self.states.run(functools.partial(method, *args))

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

    def decisions(self, name: str, limit: int = 20) -> list[dict]:
        """The feature's latest rollout decisions, newest first."""
        return self.states.decisions(name, limit)

    def latest_decisions(self) -> dict[str, dict]:
        """Each feature's last rollout decision (features without one are left out)."""
        return self.states.latest_decisions()

    # --- changes -----------------------------------------------------------------------------

    def _change(self, name: str, mutate, decision: str | None = None, by: str = "api", reason: str = "",
                evidence: dict | None = None) -> FeatureState:
        """Apply `mutate(feature, state)` to the stored state (it raises FeatureError to refuse);
        record `decision` with it when given."""
        feature = self.get(name)
        made: dict = {}

        def change(doc):
            before = state_from_json(doc, feature, name) if doc is not None else FeatureState(enabled=feature.default)
            after = copy.deepcopy(before)
            mutate(feature, after)
            after.updated_at = self.clock()
            made["before"], made["after"] = before, after
            return after.as_json()

        def decision_of(_doc):
            if decision is None:
                return None
            made["decision"] = decision_record(name, decision, by, made["before"], made["after"], self.clock(),
                                               reason, evidence)
            return made["decision"]

        doc = self.states.apply(name, change, decision_of)
        self.state[name] = state_from_json(doc, feature, name)
        if made.get("decision") and self.on_decision:
            self.on_decision(made["decision"])
        return self.state[name]

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

    def targeting_of(self, name: str) -> targeting.Targeting:
        s = self.state[name]
        return targeting.parse(s.cohorts, s.rules)

    def update(self, name: str, enabled: bool | None = None, rollout_percentage: float | None = None,
               aimed: dict | None = None) -> FeatureState:
        """`aimed`: cohorts and/or rules as targeting_change validated them, stored in the same change."""
        def mutate(feature: Feature, state: FeatureState) -> None:
            if enabled is False and feature.required:
                raise FeatureError(409, f"{name} is a required feature and cannot be disabled")
            if rollout_percentage is not None:
                if isinstance(rollout_percentage, bool) or not isinstance(rollout_percentage, (int, float)) \
                        or not 0 <= rollout_percentage <= 100:
                    raise FeatureError(400, "rollout_percentage: expected a number from 0 to 100")
                if feature.required and rollout_percentage < 100:
                    raise FeatureError(409, f"{name} is a required feature and must stay at 100%")
            if enabled is not None:
                state.enabled = enabled
            if rollout_percentage is not None:
                state.end_rollout(float(rollout_percentage))  # a manual percentage ends a running schedule
            for key, value in (aimed or {}).items():
                setattr(state, key, value)

        return self._change(name, mutate)

    def start_rollout(self, name: str, strategy: str, step: float | None = None, guard: dict | None = None,
                      auto_advance: bool = False, stage_seconds: float = 0.0) -> FeatureState:
        schedule = schedule_for(strategy, step, self.max_rollout_stages)

        def mutate(feature: Feature, state: FeatureState) -> None:
            if feature.required:
                raise FeatureError(409, f"{name} is a required feature: it is always at 100%")
            state.end_rollout(schedule[0])
            state.enabled, state.schedule, state.step, state.strategy = True, schedule, 0, strategy
            state.guard, state.auto_advance, state.stage_seconds = guard, auto_advance, stage_seconds
            state.stage_started_at = self.clock()

        return self._change(name, mutate, "start", reason=f"{strategy} rollout through {schedule}")

    def advance(self, name: str, delta: int, by: str = "api", reason: str = "", evidence: dict | None = None,
                stage: tuple | None = None) -> FeatureState:
        """Move a running rollout `delta` steps (1 forward, -1 back); back from the first step is 0%.
        `stage`: (step, stage_started_at) the caller judged; refused (409) when the rollout moved since."""
        def mutate(feature: Feature, state: FeatureState) -> None:
            if not state.running:
                raise FeatureError(409, f"no rollout is running for {name}: start one first")
            _still_at(name, state, stage)
            step = min(state.step + delta, len(state.schedule) - 1)
            if step < 0:
                state.end_rollout(0.0)
                return
            state.step, state.rollout_percentage = step, state.schedule[step]
            state.stage_started_at, state.evaluation = self.clock(), None
            if by == "guard" and step == len(state.schedule) - 1:
                state.end_rollout(100.0)  # the last stage has no control group left to judge against

        if by == "guard":
            decision = "rollback" if delta < 0 else "advance"
        else:
            decision = "manual_rollback" if delta < 0 else "manual_advance"
        return self._change(name, mutate, decision, by, reason, evidence)

    def roll_back(self, name: str, by: str, reason: str, evidence: dict | None = None,
                  stage: tuple | None = None) -> FeatureState:
        """To 0 % at once, ending the rollout (a breached guard, or an emergency)."""
        def mutate(feature: Feature, state: FeatureState) -> None:
            if feature.required:
                raise FeatureError(409, f"{name} is a required feature and cannot be rolled back")
            _still_at(name, state, stage)
            state.end_rollout(0.0)

        return self._change(name, mutate, "rollback" if by == "guard" else "emergency_rollback", by, reason, evidence)

    def emergency_rollback(self, name: str) -> FeatureState:
        return self.roll_back(name, "api", "emergency rollback")

    def record_evaluation(self, name: str, evaluation: dict, stage: tuple) -> None:
        """Keep the guard's last look at a stage (shown by the API on every replica)."""
        def mutate(feature: Feature, state: FeatureState) -> None:
            _still_at(name, state, stage)
            state.evaluation = evaluation

        self._change(name, mutate)
