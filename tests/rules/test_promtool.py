"""Prometheus configuration and rules, checked and unit-tested with the real promtool (2.42).

- `promtool check config` / `check rules --lint=all --lint-fatal`.
- `promtool test rules` on every file in prometheus/tests/ (one per alert family).
- Coverage: every alerting rule has a case that fires at its `for` and a case one evaluation
  earlier that does not; every recording rule is evaluated by a promql_expr_test.
- Mutations: rules regenerated with a changed threshold, `for`, objective or label make the unit
  tests fail, so they test the values and not just that promtool runs.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from rules_support import (
    PROM,
    PROM_TESTS,
    RULES,
    alert_rules,
    explain,
    load_generator,
    recording_rules,
    rule_groups,
    run,
)

TEST_FILES = sorted(PROM_TESTS.glob("*_test.yml"))


def _duration(d: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", str(d)))


def test_check_config(promtool):
    proc = run([promtool, "check", "config", str(PROM / "prometheus.yml")])
    assert proc.returncode == 0, explain(proc)
    assert "3 rule files found" in proc.stdout, explain(proc)


def test_check_rules_lint_clean(promtool):
    proc = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", *map(str, sorted(RULES.glob("*.yml")))])
    assert proc.returncode == 0, explain(proc)


def test_config_scrapes_exporter_prometheus_and_alertmanager():
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in cfg["scrape_configs"]}
    assert jobs == {"spanscope": ["exporter:8889"], "prometheus": ["localhost:9090"],
                    "alertmanager": ["alertmanager:9093"]}
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert cfg["rule_files"] == ["rules/*.yml"]
    assert load_generator().load_thresholds()["exporter_job"] == "spanscope"


def test_there_is_one_test_file_per_alert_family():
    families = {g["name"].split(".")[1] for g in rule_groups("alerts.yml")}
    files = {p.name for p in TEST_FILES}
    for fam in families:
        assert f"{fam}_test.yml" in files, f"no prometheus/tests/{fam}_test.yml"
    assert {"slo_availability_test.yml", "slo_latency_test.yml", "recording_test.yml"} <= files


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool, test_file):
    proc = run([promtool, "test", "rules", test_file.name], cwd=PROM_TESTS)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, explain(proc)


def test_group_eval_order_puts_records_before_alerts():
    """Without group_eval_order promtool runs groups in random order; then an alert would read a
    record of this or of the previous evaluation at random and "fires exactly at `for`" flakes."""
    order = [g["name"] for f in ("recording.yml", "alerts.yml") for g in rule_groups(f)]
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        if any("alerts.yml" in f for f in doc["rule_files"]):
            assert doc.get("group_eval_order") == order, f"{path.name}: group_eval_order must be {order}"


def _cases():
    """(file, test group, evaluation interval, alert test case) for every alert_rule_test."""
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        interval = _duration(doc.get("evaluation_interval", "1m"))
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []) or []:
                yield path.name, group, interval, case


def _identity(labels: dict) -> tuple:
    """What tells two rules of one alert name apart: severity and the SLO window labels."""
    return tuple((k, labels.get(k)) for k in ("severity", "long_window", "short_window"))


def test_every_alert_fires_at_for_and_not_one_evaluation_before():
    cases = list(_cases())
    missing = []
    for rule in alert_rules():
        name, ident = rule["alert"], _identity(rule["labels"])
        for_s = _duration(rule.get("for", "0s"))
        ok = False
        for _fname, group, interval, case in cases:
            if case["alertname"] != name:
                continue
            fired = [a for a in case.get("exp_alerts") or [] if _identity(a.get("exp_labels", {})) == ident]
            if not fired:
                continue
            if for_s == 0:
                ok = True
                break
            t = _duration(case["eval_time"])
            before = [c for c in group["alert_rule_test"] if c["alertname"] == name
                      and _duration(c["eval_time"]) == t - interval
                      and not any(_identity(a.get("exp_labels", {})) == ident for a in c.get("exp_alerts") or [])]
            # The earlier case shows "pending, not firing"; `t` must be at least `for` after the
            # start of the data for "fires at `for`" to be meaningful.
            if before and t >= for_s:
                ok = True
                break
        if not ok:
            missing.append(f"{name} {dict(ident)} (for {rule.get('for')})")
    assert not missing, "alert rules without a firing case and a not-yet case one evaluation earlier:\n" + \
        "\n".join(missing)


def test_every_firing_case_checks_all_annotations():
    for fname, group, _, case in _cases():
        for alert in case.get("exp_alerts") or []:
            annotations = {"summary", "description", "runbook_url", "dashboard_url"}
            assert set(alert.get("exp_annotations", {})) == annotations, \
                f"{fname}: {group['name']}: {case['alertname']} at {case['eval_time']}"
            assert {"severity", "team"} <= set(alert.get("exp_labels", {})), f"{fname}: {case['alertname']}"


def test_every_recording_rule_is_evaluated_by_a_promql_test():
    exprs = []
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            exprs += [c["expr"] for c in group.get("promql_expr_test", []) or []]
    untested = sorted({r["record"] for r in recording_rules()
                       if not any(re.search(rf"(?<![\w:]){re.escape(r['record'])}(?![\w:])", e) for e in exprs)})
    assert not untested, f"recording rules no promql_expr_test evaluates: {untested}"


# --- mutations: the unit tests must notice a changed rule --------------------------------------

MUTATIONS = [
    # (override of thresholds.yml, test file that must now fail)
    ({"alerts.PipelineHighErrorRate.critical.for": "6m"}, "requests_test.yml"),
    ({"alerts.PipelineHighErrorRate.warning.threshold": 0.08}, "requests_test.yml"),
    ({"alerts.PipelineCacheNearCapacity.warning.threshold": 0.96}, "cache_test.yml"),
    ({"alerts.LLMCostSpike.baseline_offset": "2d"}, "cost_test.yml"),
    ({"alerts.FeatureVariantLatencyRegression.min_rate": 1}, "experiments_test.yml"),
    ({"alerts.SpanscopeExporterAbsent.critical.for": "10m"}, "exporter_test.yml"),
    ({"slo.objectives.availability.objective": 0.999}, "slo_availability_test.yml"),
    ({"slo.objectives.latency.threshold_seconds": 10.24}, "slo_latency_test.yml"),
    ({"slo.objectives.availability.services": {"rag-api": 0.999}}, "slo_availability_test.yml"),
    ({"teams.quality": "ml-platform"}, "quality_test.yml"),
    ({"links.runbooks": "https://example.com/runbooks.md"}, "meta_test.yml"),
    ({"alerts.PipelineLatencyAnomaly.warning.for": "20m"}, "anomaly_test.yml"),
    ({"alerts.PipelineLatencyAnomaly.min_ratio_to_baseline": 1}, "anomaly_test.yml"),
    ({"alerts.PipelineLatencyAnomaly.min_rate": 0.01}, "anomaly_test.yml"),
    ({"alerts.LLMCostGrowthWeekOverWeek.warning.threshold": 1.55}, "cost_wow_test.yml"),
    ({"alerts.LLMCostGrowthWeekOverWeek.min_daily_cost": 50}, "cost_wow_test.yml"),
    ({"alerts.InteractionsDropped.warning.for": "5m"}, "exporter_test.yml"),
    ({"alerts.SpanscopeExporterSaturated.warning.threshold": 0.96}, "exporter_test.yml"),
    ({"budgets.burn_rates": [{"severity": "critical", "long": "1h", "short": "5m", "factor": 14, "for": "2m"},
                             {"severity": "warning", "long": "1d", "short": "2h", "factor": 3, "for": "1h"}]},
     "budget_test.yml"),
    ({"budgets.burn_rates": [{"severity": "critical", "long": "1h", "short": "5m", "factor": 14.4, "for": "2m"},
                             {"severity": "warning", "long": "1d", "short": "2h", "factor": 3, "for": "50m"}]},
     "budget_test.yml"),
]


@pytest.mark.parametrize("override, test_file", MUTATIONS, ids=[f"{next(iter(o))}" for o, _ in MUTATIONS])
def test_unit_tests_fail_when_a_rule_changes(promtool, tmp_path, override, test_file):
    gen = load_generator()
    rules_dir, tests_dir = tmp_path / "rules", tmp_path / "tests"
    rules_dir.mkdir()
    for rel, text in gen.generate(override, with_docs=False).items():
        (rules_dir / Path(rel).name).write_text(text)
    shutil.copytree(PROM_TESTS, tests_dir)
    proc = run([promtool, "test", "rules", test_file], cwd=tests_dir)
    assert proc.returncode != 0, f"{test_file} still passes with {override}:\n{explain(proc)}"
    # An expectation mismatch (exp:/got:), not a broken layout or a rule that fails to load.
    out = proc.stdout + proc.stderr
    assert "FAILED" in out and "got:" in out and "err:" not in out, explain(proc)



def test_a_service_with_its_own_objective_is_paged_on_its_own_budget(promtool, tmp_path):
    gen = load_generator()
    rules_dir, tests_dir = tmp_path / "rules", tmp_path / "tests"
    rules_dir.mkdir()
    tests_dir.mkdir()
    override = {"slo.objectives.availability.services": {"checkout-api": 0.999}}
    (rules_dir / "slo.yml").write_text(gen.generate(override, with_docs=False)["prometheus/rules/slo.yml"])
    shutil.copy(Path(__file__).with_name("slo_service_objective_test.yml"), tests_dir)
    proc = run([promtool, "test", "rules", "slo_service_objective_test.yml"], cwd=tests_dir)
    assert proc.returncode == 0, explain(proc)
    # The same test against the default rules must fail: checkout-api is then not paged at 5 %.
    (rules_dir / "slo.yml").write_text((RULES / "slo.yml").read_text())
    proc = run([promtool, "test", "rules", "slo_service_objective_test.yml"], cwd=tests_dir)
    assert proc.returncode != 0 and "got:" in proc.stdout + proc.stderr, explain(proc)
