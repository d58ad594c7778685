"""The rule files are generated from one source of truth, committed, and follow the conventions.

prometheus/rules_src/thresholds.yml + prometheus/generate_rules.py -> prometheus/rules/*.yml and
docs/alerts.md. These tests fail when a committed file is stale, when the generator is not
deterministic, and when a rule breaks a convention the dashboards and alerts rely on.
"""
from __future__ import annotations

import copy
import re

import pytest
import yaml

from rules_support import PROM, REPO, alert_rules, all_rules, explain, recording_rules, run

GENERATED = ["prometheus/rules/recording.yml", "prometheus/rules/alerts.yml", "prometheus/rules/slo.yml",
             "docs/alerts.md"]


def test_committed_files_match_the_generator(generator):
    files = generator.generate()
    assert sorted(files) == sorted(GENERATED)
    stale = [rel for rel, text in files.items() if (REPO / rel).read_text() != text]
    assert not stale, f"stale generated files {stale}: run .venv/bin/python prometheus/generate_rules.py"


def test_check_mode_reports_stale_files(tmp_path, generator, monkeypatch):
    proc = run([__import__("sys").executable, str(PROM / "generate_rules.py"), "--check"])
    assert proc.returncode == 0, explain(proc)
    # Against a copy of the repository layout with one edited rule file, --check must fail.
    monkeypatch.setattr(generator, "REPO", tmp_path)
    for rel, text in generator.generate().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert generator.main(["--check"]) == 0
    alerts = tmp_path / "prometheus/rules/alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 5m", "for: 6m", 1))
    assert generator.main(["--check"]) == 1


def test_generation_is_deterministic(generator):
    assert generator.generate() == generator.generate()


def test_labels_and_annotations_are_sorted():
    for rule in alert_rules():
        for key in ("labels", "annotations"):
            assert list(rule[key]) == sorted(rule[key]), (rule["alert"], key)


def test_override_changes_only_the_overridden_value(generator):
    base = generator.generate(with_docs=False)
    changed = generator.generate({"alerts.PipelineHighErrorRate.critical.for": "2s"}, with_docs=False)
    assert changed["prometheus/rules/recording.yml"] == base["prometheus/rules/recording.yml"]
    assert changed["prometheus/rules/slo.yml"] == base["prometheus/rules/slo.yml"]
    old = yaml.safe_load(base["prometheus/rules/alerts.yml"])
    new = yaml.safe_load(changed["prometheus/rules/alerts.yml"])
    diffs = [(o, n) for go, gn in zip(old["groups"], new["groups"]) for o, n in zip(go["rules"], gn["rules"])
             if o != n]
    assert len(diffs) == 1
    o, n = diffs[0]
    assert (n["alert"], n["labels"]["severity"], o["for"], n["for"]) == \
        ("PipelineHighErrorRate", "critical", "5m", "2s")


@pytest.mark.parametrize("override, message", [
    ({"alerts.NoSuchAlert.warning.for": "1m"}, "no key alerts.NoSuchAlert"),
    ({"alerts.PipelineHighErrorRate.critical.for": "soon"}, "must be a duration"),
    ({"alerts.PipelineHighErrorRate.critical.threshold": "high"}, "must be a number"),
    ({"slo.objectives.availability.services": {"checkout.api": 1.5}},
     r"slo.objectives.availability.services\['checkout.api'\] must be a number between 0 and 1"),
    ({"slo.objectives.latency.services": ["checkout-api"]}, "must map service names to objectives"),
    ({"slo.objectives.latency.services": {'check"out': 0.99}}, "is not a service name"),
])
def test_bad_overrides_are_rejected(generator, override, message):
    with pytest.raises(generator.GeneratorError, match=message):
        generator.generate(override)


def test_unused_and_missing_threshold_keys_are_errors(generator):
    cfg = generator.load_thresholds()
    extra = copy.deepcopy(cfg)
    extra["alerts"]["PipelineHighErrorRate"]["typo_threshold"] = 3
    with pytest.raises(generator.GeneratorError, match="keys no rule reads.*typo_threshold"):
        generator.build(extra)
    missing = copy.deepcopy(cfg)
    del missing["alerts"]["PipelineCacheNearCapacity"]["warning"]["threshold"]
    with pytest.raises(generator.GeneratorError, match="missing key alerts.PipelineCacheNearCapacity"):
        generator.build(missing)
    orphan = copy.deepcopy(cfg)
    orphan["alerts"]["RetiredAlert"] = {"warning": {"threshold": 1, "for": "5m"}}
    with pytest.raises(generator.GeneratorError, match="alerts without a rule: RetiredAlert"):
        generator.build(orphan)


def test_every_alert_has_for_severity_team_and_annotations(generator):
    thresholds = generator.load_thresholds()
    base = thresholds["links"]["runbooks"]
    for rule in alert_rules():
        name, labels, ann = rule["alert"], rule["labels"], rule["annotations"]
        assert labels["severity"] in ("critical", "warning", "info"), name
        assert labels.get("team"), name
        if labels["team"] == "finops":
            assert labels.get("category") == "cost", name
        assert set(ann) == {"summary", "description", "runbook_url", "dashboard_url"}, name
        assert "{{" not in ann["summary"], f"{name}: the summary is static, the description carries values"
        assert ann["runbook_url"] == f"{base}#{name.lower()}", name
        assert ann["dashboard_url"].startswith(thresholds["links"]["grafana"] + "/d/"), name
        if name != "Watchdog":
            assert "for" in rule, f"{name} has no for"
            # The description shows the value, or names the labels and duration for presence alerts.
            assert "$value" in ann["description"] or "more than" in ann["description"], name


def test_severity_pairs_share_the_name_so_critical_inhibits_warning():
    by_name: dict[str, set] = {}
    for rule in alert_rules():
        by_name.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert by_name["PipelineHighErrorRate"] == {"warning", "critical"}
    assert by_name["PipelineErrorBudgetBurn"] == {"warning", "critical"}
    assert by_name["PipelineLatencyBudgetBurn"] == {"warning", "critical"}


# --- conventions of the PromQL -------------------------------------------------------------

RAW_COUNTER = re.compile(r"(?<![:\w])([a-z_][a-z0-9_]*(?:_total|_count|_sum|_bucket))\b(?!:)")
WINDOW = re.compile(r"\[([^\]]+)\]")


def _raw_counter_uses(expr: str):
    for m in RAW_COUNTER.finditer(expr):
        yield m.group(1), expr[max(0, m.start() - 40):m.start()]


# group() keeps only the label sets (the services a counter has), never its value.
LABELS_ONLY = re.compile(r"group(?: by \([^)]*\))? \($")


def test_counters_only_inside_rate_or_increase():
    for rule in all_rules():
        for name, before in _raw_counter_uses(rule["expr"]):
            assert before.endswith(("rate(", "increase(", "absent(")) or LABELS_ONLY.search(before), \
                f"{rule.get('record') or rule.get('alert')}: counter {name} outside rate()/increase()"


def test_recording_rules_aggregate_instances_away():
    for rule in recording_rules():
        expr = rule["expr"]
        assert "instance" not in expr and "pod" not in expr, rule["record"]
        for m in re.finditer(r"\b(rate|increase)\(", expr):
            before = expr[:m.start()].rstrip()
            assert re.search(r"(sum by \([^)]*\) \(|sum\()$", before), \
                f"{rule['record']}: {m.group(1)}() not directly summed over instances"
        # Gauges of external things are max()ed; raw gauges never appear unaggregated.
        for gauge in ("pipeline_cache_size_entries", "pipeline_cache_capacity_entries", "circuit_breaker_state",
                      "spanscope_active_series", "spanscope_traces_pending"):
            if re.search(rf"(?<![:\w]){gauge}(?![:\w])", expr):
                assert re.search(rf"(max|sum) by \([^)]*\) \({gauge}\)", expr), rule["record"]


def test_recording_rule_names_follow_level_metric_operations():
    """`level:metric:operations`, or `level:metric:operations:operation` for a rule over the recorded
    series named by its first three parts (`x:y:mean5m:avg_over_time1d`, the anomaly baselines).
    The windows the name states are exactly the windows the expression reads."""
    recorded = {r["record"] for r in recording_rules()}
    for rule in recording_rules():
        parts = rule["record"].split(":")
        assert len(parts) in (3, 4) and all(parts[1:]), rule["record"]
        if len(parts) == 4:
            base = ":".join(parts[:3])
            assert base in recorded and re.search(rf"(?<![\w:]){re.escape(base)}(?![\w:])", rule["expr"]), \
                f"{rule['record']}: a four-part name must be an operation on the record {base}"
        named = {m.group(1) for p in parts[2:] for m in [re.search(r"(\d+[mhd])$", p)] if m}
        # The windows an expression reads: its own range selectors and those of the records it uses.
        windows = set(WINDOW.findall(rule["expr"])) | set(
            re.findall(r"\b[a-z_]*:[a-z0-9_]+:[a-z0-9_]*?(\d+[mhd])\b", rule["expr"]))
        if named:
            assert windows == named, f"{rule['record']}: name says {named}, expr uses {windows}"
        else:
            assert not windows, f"{rule['record']}: reads windows {windows} but its name has none"


def test_over_time_baselines_read_series_that_are_never_nan():
    """avg_over_time()/stddev_over_time() are NaN if one sample in the window is: the means they
    read must divide by `(count > 0)` (no observations = no sample), and a z-score must not divide
    by a zero standard deviation."""
    by_name = {r["record"]: r["expr"] for r in recording_rules()}
    baselines = [r for r in recording_rules() if "_over_time(" in r["expr"]]
    assert baselines
    for rule in baselines:
        for inner in re.findall(r"_over_time\(([a-z_:0-9]+)\[", rule["expr"]):
            assert inner in by_name, f"{rule['record']}: reads {inner}, not a recorded series"
            assert by_name[inner].rstrip().endswith("> 0)"), f"{inner} can be NaN (0/0)"
    for name, expr in by_name.items():
        if ":zscore" in name:
            assert re.search(r"/\n\(\S+:stddev_over_time\w+ > 0\)$", expr), name


def test_rules_use_fixed_windows_only():
    allowed = {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}  # 30d: a month budget's period
    for rule in all_rules():
        for w in WINDOW.findall(rule["expr"]):
            assert w in allowed, f"{rule.get('record') or rule.get('alert')}: window [{w}]"


def test_metric_names_exist_in_the_catalogue():
    """Every raw metric a rule reads is in docs/metrics.md (or is Prometheus' own `up`)."""
    catalogue = set(re.findall(r"^\| `([a-z_:][a-z0-9_:]*)` \|", (REPO / "docs/metrics.md").read_text(), re.M))
    known = set(catalogue) | {"up"}
    for fam in catalogue:
        known |= {fam + s for s in ("_bucket", "_sum", "_count")}
    recorded = {r["record"] for r in recording_rules()}
    functions = {"sum", "max", "by", "on", "and", "or", "rate", "increase", "histogram_quantile", "absent",
                 "vector", "count", "group", "ignoring", "group_left", "offset", "le", "unless",
                 "avg_over_time", "stddev_over_time", "label_replace", "clamp_min"}
    for rule in all_rules():
        expr = re.sub(r'\{[^}]*\}', "", rule["expr"])   # drop label matchers
        expr = re.sub(r'"[^"]*"', "", expr)                # and strings (label_replace's arguments)
        expr = re.sub(r"\b(by|on|ignoring|without|group_left|group_right) \([^)]*\)", "", expr)  # label lists
        expr = re.sub(r"\[[^\]]*\]", "", expr)
        expr = re.sub(r"\b\d+(\.\d+)?[smhdwy]?\b", "", expr)              # numbers, offset durations
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
            if token in functions or token in recorded:
                continue
            assert token in known, f"{rule.get('record') or rule.get('alert')}: {token} is not in docs/metrics.md"


def test_without_grafana_every_dashboard_url_is_the_overview_page(generator):
    """`make run` has no Grafana: its rules link each alert to the exporter's overview page."""
    overview = "http://127.0.0.1:18889/"
    files = generator.generate({"links.grafana": "null", "links.overview": overview}, with_docs=False)
    rules = [r for text in files.values() for g in yaml.safe_load(text)["groups"] for r in g["rules"]
             if "alert" in r]
    assert rules and {r["annotations"]["dashboard_url"] for r in rules} == {overview}
