"""Cohorts and targeting rules: which variant of a boolean feature one evaluation context gets.

Evaluation order (the same in the exporter and in the OpenFeature provider):

    feature disabled                  -> off, DISABLED
    targeting key in a forced cohort  -> that cohort's variant, TARGETING_MATCH
    first rule matching the context   -> the rule's variant, TARGETING_MATCH
    rollout at 100 %                  -> on, STATIC
    partial rollout                   -> in_rollout(flag, key, pct), SPLIT (needs a targeting key)

A rule compares one evaluation-context attribute (`targeting_key` names the key itself when the
context has no attribute of that name) with a value. An attribute the context does not carry
matches no rule, `not_equals` and `not_in` included: a rule only ever speaks about contexts that
say something. Values compare by kind: a boolean never equals a number, 1 equals 1.0.

Standard library only: the exporter, the OpenFeature provider and any client can agree on it.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .rollout import in_rollout

VARIANTS = ("on", "off")
OPERATORS = ("equals", "not_equals", "in", "not_in", "starts_with", "ends_with", "contains", "matches")
LIST_OPERATORS = ("in", "not_in")
TEXT_OPERATORS = ("starts_with", "ends_with", "matches")   # their value is a string
KEY_ATTRIBUTE = "targeting_key"
# Reasons, spelled as OpenFeature's Reason values.
DISABLED, TARGETING_MATCH, STATIC, SPLIT = "DISABLED", "TARGETING_MATCH", "STATIC", "SPLIT"


def _kind(value):
    """A comparable form that keeps kinds apart (True == 1 in Python, not here); None: no scalar."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, str):
        return ("text", value)
    return None


@dataclass(frozen=True)
class Rule:
    attribute: str
    operator: str
    variant: str
    value: object = None         # the operators but in / not_in
    values: tuple = ()           # in / not_in

    def __post_init__(self):
        problem = rule_problem(self.attribute, self.operator, self.variant, self.value, self.values)
        if problem:
            raise ValueError(problem)
        object.__setattr__(self, "_set", frozenset(_kind(v) for v in self.values))
        object.__setattr__(self, "_regex", re.compile(self.value) if self.operator == "matches" else None)

    def matches(self, key: str | None, attributes: Mapping) -> bool:
        if self.attribute in attributes:
            got = attributes[self.attribute]
        elif self.attribute == KEY_ATTRIBUTE and key:
            got = key
        else:
            return False
        op = self.operator
        if op in ("equals", "not_equals"):
            kind = _kind(got)
            return kind is not None and (kind == _kind(self.value)) == (op == "equals")
        if op in LIST_OPERATORS:
            kind = _kind(got)
            return kind is not None and (kind in self._set) == (op == "in")
        if op == "contains":
            if isinstance(got, str):
                return isinstance(self.value, str) and self.value in got
            if isinstance(got, Sequence):
                return _kind(self.value) in {_kind(x) for x in got}
            return False
        if not isinstance(got, str):
            return False
        if op == "starts_with":
            return got.startswith(self.value)
        if op == "ends_with":
            return got.endswith(self.value)
        return self._regex.search(got) is not None

    def to_json(self) -> dict:
        out = {"attribute": self.attribute, "operator": self.operator}
        if self.operator in LIST_OPERATORS:
            out["values"] = list(self.values)
        else:
            out["value"] = self.value
        out["variant"] = self.variant
        return out


def rule_problem(attribute, operator, variant, value, values) -> str | None:
    """What is wrong with a rule, as `field: message`, or None. One place for the API and the file."""
    if not isinstance(attribute, str) or not attribute:
        return "attribute: expected the name of an evaluation-context attribute"
    if operator not in OPERATORS:
        return f"operator: expected one of {', '.join(OPERATORS)}, got {operator!r}"
    if variant not in VARIANTS:
        return f"variant: expected on or off, got {variant!r}"
    if operator in LIST_OPERATORS:
        if value is not None:
            return f"value: {operator} takes `values` (a list), not `value`"
        if not values or any(_kind(v) is None for v in values):
            return f"values: {operator} needs a non-empty list of strings, numbers or booleans"
        return None
    if values:
        return f"values: {operator} takes one `value`, not `values`"
    if operator in TEXT_OPERATORS and not isinstance(value, str):
        return f"value: {operator} needs a string, got {value!r}"
    if _kind(value) is None:
        return f"value: {operator} needs a string, number or boolean, got {value!r}"
    if operator == "matches":
        try:
            re.compile(value)
        except re.error as exc:
            return f"value: not a regular expression ({exc})"
    return None


@dataclass(frozen=True)
class Targeting:
    """A feature's forced cohorts (variant -> targeting keys) and ordered rules."""

    cohorts: tuple = ()          # ((variant, frozenset of keys), ...) in VARIANTS order
    rules: tuple = ()            # Rule, ...

    def forced(self, key: str | None) -> str | None:
        if key:
            for variant, keys in self.cohorts:
                if key in keys:
                    return variant
        return None

    def users(self) -> int:
        return sum(len(keys) for _, keys in self.cohorts)

    def variants(self) -> set[str]:
        """Every variant a cohort or a rule hands out."""
        return {v for v, keys in self.cohorts if keys} | {r.variant for r in self.rules}

    def cohorts_json(self) -> dict:
        return {variant: sorted(keys) for variant, keys in self.cohorts if keys}

    def rules_json(self) -> list:
        return [r.to_json() for r in self.rules]


NO_TARGETING = Targeting()


def parse_cohorts(doc) -> tuple:
    """{"on": [keys], "off": [keys]} -> Targeting.cohorts; ValueError naming what is wrong."""
    if doc is None:
        return ()
    if not isinstance(doc, Mapping):
        raise ValueError("cohorts: expected an object of variant -> list of targeting keys")
    seen: dict[str, str] = {}
    out = []
    for variant in doc:
        if variant not in VARIANTS:
            raise ValueError(f"cohorts: expected the variants on and off, got {variant!r}")
    for variant in VARIANTS:
        keys = doc.get(variant, [])
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ValueError(f"cohorts.{variant}: expected a list of non-empty targeting keys")
        for k in keys:
            if seen.setdefault(k, variant) != variant:
                raise ValueError(f"cohorts: {k!r} is forced into both on and off")
        if keys:
            out.append((variant, frozenset(keys)))
    return tuple(out)


def parse_rules(doc) -> tuple:
    """[{attribute, operator, value | values, variant}, ...] -> Targeting.rules; ValueError naming the rule."""
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise ValueError("rules: expected a list of rules")
    rules = []
    for i, r in enumerate(doc):
        if not isinstance(r, Mapping):
            raise ValueError(f"rules[{i}]: expected an object")
        unknown = set(r) - {"attribute", "operator", "value", "values", "variant"}
        if unknown:
            raise ValueError(f"rules[{i}].{sorted(unknown)[0]}: unknown field")
        values = r.get("values", [])
        if not isinstance(values, list):
            raise ValueError(f"rules[{i}].values: expected a list")
        try:
            rules.append(Rule(r.get("attribute"), r.get("operator"), r.get("variant"), r.get("value"), tuple(values)))
        except ValueError as exc:
            raise ValueError(f"rules[{i}].{exc}") from None
    return tuple(rules)


def parse(cohorts, rules) -> Targeting:
    """Targeting from its JSON form (`GET /api/features` rows, the state file)."""
    return Targeting(parse_cohorts(cohorts), parse_rules(rules))


@dataclass(frozen=True)
class Decision:
    on: bool
    variant: str
    reason: str
    rule: int | None = None      # index of the rule that matched


def evaluate(flag: str, enabled: bool, percentage: float, targeting: Targeting, key: str | None,
             attributes: Mapping | None = None) -> Decision | None:
    """The variant for one context, in the order of the module docstring; None when the answer
    depends on the percentage and there is no targeting key to bucket."""
    if not enabled:
        return Decision(False, "off", DISABLED)
    forced = targeting.forced(key)
    if forced:
        return Decision(forced == "on", forced, TARGETING_MATCH)
    attributes = attributes or {}
    for i, rule in enumerate(targeting.rules):
        if rule.matches(key, attributes):
            return Decision(rule.variant == "on", rule.variant, TARGETING_MATCH, i)
    if percentage >= 100.0:
        return Decision(True, "on", STATIC)
    if not key:
        return None
    on = in_rollout(flag, key, percentage)
    return Decision(on, "on" if on else "off", SPLIT)
