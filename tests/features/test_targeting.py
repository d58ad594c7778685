"""Cohorts and targeting rules (spanscope.analysis.targeting): the evaluation order, each operator,
and the JSON forms the API, the state file and the provider share."""
import re

import pytest
from hypothesis import given, settings, strategies as st
from spanscope.analysis.rollout import in_rollout
from spanscope.analysis.targeting import NO_TARGETING, Rule, Targeting, evaluate, parse, parse_cohorts, parse_rules

keys = st.text(min_size=1, max_size=12)
scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=6))
attributes = st.dictionaries(st.sampled_from(["tenant", "tier", "mode", "n"]), scalars, max_size=4)
percentages = st.floats(0, 100)


def rule(attribute, operator, value=None, variant="on", values=()):
    return Rule(attribute, operator, variant, value, tuple(values))


def match(r, attrs, key=None):
    return r.matches(key, attrs)


# --- the order -------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(key=keys, attrs=attributes, pct=percentages, forced=st.sampled_from(["on", "off"]))
def test_a_forced_user_gets_the_cohorts_variant_whatever_rules_and_rollout_say(key, attrs, pct, forced):
    other = "off" if forced == "on" else "on"
    aimed = parse({forced: [key]}, [{"attribute": "targeting_key", "operator": "equals", "value": key,
                                      "variant": other}])
    d = evaluate("flag", True, pct, aimed, key, attrs)
    assert (d.on, d.variant, d.reason, d.rule) == (forced == "on", forced, "TARGETING_MATCH", None)


@settings(max_examples=300, deadline=None)
@given(key=st.none() | keys, attrs=attributes, pct=percentages)
def test_a_disabled_feature_is_off_for_everyone(key, attrs, pct):
    aimed = parse({"on": [key] if key else []}, [{"attribute": "tenant", "operator": "not_in", "values": ["x"],
                                                  "variant": "on"}])
    d = evaluate("flag", False, pct, aimed, key, attrs)
    assert (d.on, d.variant, d.reason) == (False, "off", "DISABLED")


@settings(max_examples=300, deadline=None)
@given(key=keys, pct=percentages)
def test_without_targeting_it_is_the_percentage_rollout(key, pct):
    d = evaluate("flag", True, pct, NO_TARGETING, key)
    if pct >= 100:
        assert (d.on, d.reason) == (True, "STATIC")
    else:
        assert (d.on, d.reason) == (in_rollout("flag", key, pct), "SPLIT")
    assert d.variant == ("on" if d.on else "off")


def test_the_first_matching_rule_wins_and_a_partial_rollout_needs_a_key():
    aimed = parse({}, [{"attribute": "tier", "operator": "equals", "value": "free", "variant": "off"},
                       {"attribute": "tenant", "operator": "in", "values": ["acme", "globex"], "variant": "on"},
                       {"attribute": "tenant", "operator": "equals", "value": "acme", "variant": "off"}])
    d = evaluate("flag", True, 0, aimed, None, {"tenant": "acme"})
    assert (d.on, d.variant, d.reason, d.rule) == (True, "on", "TARGETING_MATCH", 1)
    d = evaluate("flag", True, 100, aimed, "u", {"tenant": "acme", "tier": "free"})
    assert (d.on, d.reason, d.rule) == (False, "TARGETING_MATCH", 0)
    # nothing matches: the rollout decides, and a partial one cannot bucket a context without a key
    assert evaluate("flag", True, 100, aimed, None, {"tenant": "initech"}).reason == "STATIC"
    assert evaluate("flag", True, 50, aimed, None, {"tenant": "initech"}) is None
    # a cohort needs the key: without one the rules still apply
    both = parse({"off": ["u1"]}, [{"attribute": "tenant", "operator": "equals", "value": "acme", "variant": "on"}])
    assert evaluate("flag", True, 0, both, None, {"tenant": "acme"}).on is True
    assert evaluate("flag", True, 0, both, "u1", {"tenant": "acme"}).on is False


# --- operators ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("operator, value, attribute, expected", [
    ("equals", "acme", "acme", True),
    ("equals", "acme", "Acme", False),
    ("equals", 3, 3.0, True),
    ("equals", 1, True, False),          # a boolean is not a number
    ("equals", True, 1, False),
    ("equals", True, True, True),
    ("not_equals", "acme", "globex", True),
    ("not_equals", "acme", "acme", False),
    ("not_equals", 1, True, True),
    ("starts_with", "beta-", "beta-7", True),
    ("starts_with", "beta-", "alpha-beta-", False),
    ("starts_with", "1", 12, False),      # only strings start with something
    ("ends_with", "@example.com", "ann@example.com", True),
    ("ends_with", "@example.com", "ann@example.org", False),
    ("contains", "pro", "enterprise-pro-plan", True),
    ("contains", "pro", "basic", False),
    ("contains", "rag_weather", ["redis_caching", "rag_weather"], True),   # list attributes: membership
    ("contains", 2, [1, 2.0], True),
    ("contains", 1, [True], False),
    ("contains", "x", 5, False),
    ("matches", r"^user-\d+$", "user-42", True),
    ("matches", r"^user-\d+$", "user-42b", False),
    ("matches", "eu", "voice-eu-west", True),   # a search, not a full match: anchor it to mean that
    ("matches", "1", 1, False),
])
def test_each_operator(operator, value, attribute, expected):
    assert match(rule("a", operator, value), {"a": attribute}) is expected


@pytest.mark.parametrize("operator, values, attribute, expected", [
    ("in", ["acme", "globex"], "globex", True),
    ("in", ["acme", "globex"], "initech", False),
    ("in", [1, 2], 2.0, True),
    ("in", [1, "x"], True, False),
    ("not_in", ["acme"], "globex", True),
    ("not_in", ["acme"], "acme", False),
    ("not_in", [False], 0, True),
])
def test_list_operators(operator, values, attribute, expected):
    assert match(rule("a", operator, values=values), {"a": attribute}) is expected


@pytest.mark.parametrize("operator, value", [("equals", "x"), ("not_equals", "x"), ("not_in", None),
                                             ("in", None), ("starts_with", ""), ("contains", ""), ("matches", ".*")])
def test_a_missing_attribute_matches_no_rule(operator, value):
    r = rule("tier", operator, value, values=["x"] if value is None else ())
    assert not match(r, {"tenant": "acme"}, key="u1")
    assert not match(r, {}, key=None)


def test_targeting_key_names_the_key_unless_the_context_has_such_an_attribute():
    r = rule("targeting_key", "starts_with", "internal-")
    assert match(r, {}, key="internal-7") and not match(r, {}, key="user-7") and not match(r, {}, key=None)
    assert not match(r, {"targeting_key": "user-7"}, key="internal-7")


@settings(max_examples=300, deadline=None)
@given(attribute=scalars, value=scalars, values=st.lists(scalars, min_size=1, max_size=4))
def test_negations_are_exact_complements_when_the_attribute_is_there(attribute, value, values):
    ctx = {"a": attribute}
    assert match(rule("a", "equals", value), ctx) != match(rule("a", "not_equals", value), ctx)
    assert match(rule("a", "in", values=values), ctx) != match(rule("a", "not_in", values=values), ctx)
    # `in` is `equals` to any of the values
    assert match(rule("a", "in", values=values), ctx) == any(match(rule("a", "equals", v), ctx) for v in values)


@settings(max_examples=200, deadline=None)
@given(attribute=st.text(max_size=12), value=st.text(max_size=4))
def test_text_operators_agree_with_python_strings(attribute, value):
    ctx = {"a": attribute}
    assert match(rule("a", "starts_with", value), ctx) == attribute.startswith(value)
    assert match(rule("a", "ends_with", value), ctx) == attribute.endswith(value)
    assert match(rule("a", "contains", value), ctx) == (value in attribute)
    assert match(rule("a", "matches", re.escape(value)), ctx) == (value in attribute)


# --- the JSON forms ------------------------------------------------------------------------------------

rules_json = st.lists(st.one_of(
    st.fixed_dictionaries({"attribute": st.sampled_from(["tenant", "tier"]),
                           "operator": st.sampled_from(["equals", "not_equals", "contains"]),
                           "value": scalars, "variant": st.sampled_from(["on", "off"])}),
    st.fixed_dictionaries({"attribute": st.just("tenant"), "operator": st.sampled_from(["in", "not_in"]),
                           "values": st.lists(scalars, min_size=1, max_size=3),
                           "variant": st.sampled_from(["on", "off"])})), max_size=5)


@settings(max_examples=200, deadline=None)
@given(on=st.sets(keys, max_size=5), off=st.sets(keys, max_size=5), rules=rules_json)
def test_json_forms_round_trip(on, off, rules):
    off -= on
    aimed = parse({"on": sorted(on), "off": sorted(off)}, rules)
    assert aimed.cohorts_json() == {v: sorted(k) for v, k in (("on", on), ("off", off)) if k}
    assert aimed.rules_json() == rules
    assert parse(aimed.cohorts_json(), aimed.rules_json()) == aimed
    assert aimed.users() == len(on) + len(off)


@pytest.mark.parametrize("cohorts, message", [
    ([], "cohorts: expected an object"),
    ({"maybe": ["u"]}, "cohorts: expected the variants on and off, got 'maybe'"),
    ({"on": "u1"}, "cohorts.on: expected a list"),
    ({"on": ["u1", ""]}, "cohorts.on: expected a list of non-empty"),
    ({"on": ["u1"], "off": ["u1"]}, "cohorts: 'u1' is forced into both on and off"),
])
def test_bad_cohorts_name_what_is_wrong(cohorts, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_cohorts(cohorts)


@pytest.mark.parametrize("rules, message", [
    ({}, "rules: expected a list"),
    (["x"], "rules[0]: expected an object"),
    ([{"attribute": "a", "operator": "equals", "value": 1, "variant": "on", "extra": 1}], "rules[0].extra: unknown"),
    ([{"attribute": "", "operator": "equals", "value": 1, "variant": "on"}], "rules[0].attribute: expected"),
    ([{"attribute": "a", "operator": "like", "value": 1, "variant": "on"}], "rules[0].operator: expected one of"),
    ([{"attribute": "a", "operator": "equals", "value": 1, "variant": "yes"}], "rules[0].variant: expected on or off"),
    ([{"attribute": "a", "operator": "in", "value": 1, "variant": "on"}], "rules[0].value: in takes `values`"),
    ([{"attribute": "a", "operator": "in", "values": [], "variant": "on"}], "rules[0].values: in needs a non-empty"),
    ([{"attribute": "a", "operator": "in", "values": [[1]], "variant": "on"}], "rules[0].values: in needs"),
    ([{"attribute": "a", "operator": "equals", "values": [1], "variant": "on"}], "rules[0].values: equals takes one"),
    ([{"attribute": "a", "operator": "equals", "value": None, "variant": "on"}], "rules[0].value: equals needs"),
    ([{"attribute": "a", "operator": "ends_with", "value": 1, "variant": "on"}], "rules[0].value: ends_with needs"),
    ([{"attribute": "a", "operator": "matches", "value": "(", "variant": "on"}], "rules[0].value: not a regular"),
])
def test_bad_rules_name_the_rule_and_field(rules, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rules(rules)


def test_variants_lists_what_cohorts_and_rules_hand_out():
    assert NO_TARGETING.variants() == set()
    assert parse({"on": ["u"]}, []).variants() == {"on"}
    assert parse({"on": []}, [{"attribute": "a", "operator": "equals", "value": 1, "variant": "off"}]).variants() \
        == {"off"}
    assert Targeting() == parse(None, None) == parse({}, [])
