"""Static checks of the generated dashboards and the Grafana provisioning.

The rules are those of grafana/dashboard-linter (see dashboard_lint.py); each rule is also shown to
catch a broken example, so a clean result means something.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import dashboard_lint as dl
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"

EXPECTED_UIDS = {
    "spanscope-performance", "spanscope-cache", "spanscope-cost", "spanscope-latency-breakdown",
    "spanscope-quality", "spanscope-experiments", "spanscope-circuit-breakers", "spanscope-system-health",
    "spanscope-exporter",
}
MIN_PANELS = {"spanscope-performance": 12, "spanscope-cache": 10, "spanscope-cost": 11,
              "spanscope-system-health": 10, "spanscope-latency-breakdown": 6, "spanscope-quality": 7,
              "spanscope-experiments": 5, "spanscope-circuit-breakers": 6, "spanscope-exporter": 10}


# ------------------------------------------------------------------------------------------------
# Generator
# ------------------------------------------------------------------------------------------------

def test_sdk_build_matches_grafana_version(generator):
    assert generator.GRAFANA_VERSION == "11.6.0"
    assert generator.sdk_version() == generator.GRAFANA_VERSION, (
        "grafana-foundation-sdk must be the build for the Grafana image in docker-compose")


def test_compose_runs_the_grafana_version_of_the_generator(generator):
    compose = REPO / "docker-compose.yml"
    if not compose.exists():
        pytest.skip("docker-compose.yml not written yet")
    services = yaml.safe_load(compose.read_text())["services"]
    images = [s.get("image", "") for s in services.values() if "grafana/grafana" in s.get("image", "")]
    assert images == [f"grafana/grafana:{generator.GRAFANA_VERSION}"]


def test_committed_dashboards_are_what_the_generator_writes(generator):
    problems = generator.diff()
    assert problems == [], "committed JSON is stale, run `make dashboards`:\n" + "\n".join(problems)


def test_drift_is_detected(generator, tmp_path):
    generator.write(tmp_path)
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == len(generator.DASHBOARDS)
    edited = json.loads(files[0].read_text())
    edited["title"] += " (edited in the UI)"
    files[0].write_text(json.dumps(edited, sort_keys=True, indent=2) + "\n")
    files[1].unlink()
    (tmp_path / "stray.json").write_text("{}\n")
    problems = generator.diff(tmp_path)
    assert any(files[0].name in p and "differs" in p for p in problems)
    assert any(files[1].name in p and "missing" in p for p in problems)
    assert any("stray.json" in p for p in problems)
    assert generator.main(["--check", "--out", str(tmp_path)]) == 1
    generator.write(tmp_path)
    assert generator.diff(tmp_path) == []
    assert not (tmp_path / "stray.json").exists()


def test_generation_is_deterministic(generator):
    first, second = generator.generate(), generator.generate()
    assert first == second
    for name, text in first.items():
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n", name


# ------------------------------------------------------------------------------------------------
# Lint of the real dashboards
# ------------------------------------------------------------------------------------------------

def test_dashboard_uids_are_stable_and_unique(generated):
    dashboards = list(generated.values())
    assert dl.rule_unique_uids(dashboards) == []
    assert {d["uid"] for d in dashboards} == EXPECTED_UIDS
    for name, d in generated.items():
        assert name == f"{d['uid']}.json"


@pytest.mark.parametrize("rule", dl.RULES, ids=lambda r: r.__name__)
def test_lint_rule_holds_for_every_dashboard(generated, rule):
    problems = [p for d in generated.values() for p in rule(d)]
    assert problems == [], "\n".join(problems)


def test_dashboards_have_label_variables_and_enough_panels(generated):
    for d in generated.values():
        names = [v["name"] for v in d["templating"]["list"]]
        assert names[0] == "datasource", d["uid"]
        assert "service" in names or d["uid"] == "spanscope-exporter", d["uid"]
        count = sum(1 for _ in dl.panels(d))
        assert count >= MIN_PANELS[d["uid"]], f"{d['uid']}: {count} panels"


def test_latency_panels_link_exemplars(generated):
    with_exemplars = [(d["uid"], p["title"]) for d in generated.values() for p, t in dl.queries(d)
                      if t.get("exemplar")]
    uids = {u for u, _ in with_exemplars}
    assert {"spanscope-performance", "spanscope-latency-breakdown", "spanscope-experiments",
            "spanscope-cache"} <= uids


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (make system-deps)")
def test_every_query_parses_as_promql(generated, tmp_path):
    """promtool checks the syntax: each query (variables expanded) becomes a recording rule."""
    rules = []
    for d in generated.values():
        values = {v["name"]: "x" for v in d["templating"]["list"]}
        values.update({"__rate_interval": "1m", "__interval": "15s", "__range": "1h"})
        exprs = [(dl.where(d, p, t), t["expr"]) for p, t in dl.queries(d)]
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                selector = re.fullmatch(r"label_values\((.+), *(\w+)\)", v["query"])
                assert selector, f"{d['uid']} variable {v['name']}: not label_values(selector, label)"
                exprs.append((f"{d['uid']} variable {v['name']}", selector.group(1)))
        exprs += [(f"{d['uid']} annotation", a["expr"]) for a in d["annotations"]["list"] if a.get("expr")]
        for loc, expr in exprs:
            rules.append({"record": f"dashboard:query:{len(rules)}", "expr": dl.expand(expr, values),
                          "labels": {"where": loc}})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def _rule_files() -> list[Path]:
    return sorted((REPO / "prometheus/rules").glob("*.yml"))


def test_recording_rules_used_by_dashboards_exist(generated):
    """A renamed or removed recording rule must not leave a panel silently empty."""
    if not _rule_files():
        pytest.skip("prometheus/rules not written yet")
    recorded = {r["record"] for f in _rule_files() for g in yaml.safe_load(f.read_text())["groups"]
                for r in g["rules"] if "record" in r}
    used = {(d["uid"], p["title"], name) for d in generated.values() for p, t in dl.queries(d)
            for _, _, name in dl.metric_names(t["expr"]) if ":" in name}
    assert used, "the dashboards read no recording rule (expected the SLO burn rates)"
    missing = sorted(u for u in used if u[2] not in recorded)
    assert missing == [], missing


def test_alert_dashboard_links_resolve(generated):
    """Every alert's dashboard_url names a generated dashboard and only variables it has."""
    if not _rule_files():
        pytest.skip("prometheus/rules not written yet")
    variables = {d["uid"]: {v["name"] for v in d["templating"]["list"]} for d in generated.values()}
    problems, links = [], 0
    for f in _rule_files():
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                url = rule.get("annotations", {}).get("dashboard_url")
                if not url:
                    continue
                links += 1
                m = re.search(r"/d/([\w-]+)(?:\?(.*))?$", url)
                if not m or m.group(1) not in variables:
                    problems.append(f"{f.name} {rule['alert']}: {url} is not a spanscope dashboard")
                    continue
                for param in filter(None, (m.group(2) or "").split("&")):
                    name = param.split("=")[0].removeprefix("var-")
                    if param.startswith("var-") and name not in variables[m.group(1)]:
                        problems.append(f"{f.name} {rule['alert']}: {m.group(1)} has no variable {name}")
    assert links, "no alert links a dashboard"
    assert problems == [], "\n".join(problems)


# ------------------------------------------------------------------------------------------------
# The lint rules catch what they should
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr", [
    'rate(x_total[$__rate_interval])',
    'sum by (le) (rate(x_bucket{a="b_total", c=~"$c"}[$__rate_interval]))',
    'increase(x_sum[ $__rate_interval ]) / irate(x_count{}[$__rate_interval])',
    'level:x_total:rate5m / x_gauge',
    'histogram_quantile(0.95, sum by (le, component) (rate(x_duration_seconds_bucket[$__rate_interval])))',
    'sum(x) * 3600 or vector(0)',
])
def test_counter_rule_accepts(expr):
    assert dl.counter_problems(expr) == []


@pytest.mark.parametrize("expr", [
    'x_total',
    'sum(x_total)',
    'rate(x_total[5m])',
    'rate(x_total[$__interval])',
    'increase(x_sum[$__rate_interval]) / x_count',
    'delta(x_bucket[$__rate_interval])',
    'rate(sum_over_time(x_total[$__rate_interval])[$__rate_interval])',
    'avg_over_time(gauge[5m])',
])
def test_counter_rule_rejects(expr):
    assert dl.counter_problems(expr) != []


def _dash(*panels, variables=("service",)):
    ds = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "uid": "t",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
                       + [{"name": v, "type": "query", "datasource": ds, "query": "label_values(up, job)"}
                          for v in variables]},
        "annotations": {"list": [{"name": "a", "datasource": ds, "enable": True, "expr": "ALERTS"}]},
        "panels": [dict({"id": i + 1, "type": "timeseries", "title": f"p{i}", "description": "d",
                         "datasource": ds, "fieldConfig": {"defaults": {"unit": "s"}},
                         "gridPos": {"x": 0, "y": 8 * i, "w": 12, "h": 8},
                         "targets": [{"refId": "A", "datasource": ds, "expr": "up"}]}, **p)
                   for i, p in enumerate(panels)],
    }


def test_clean_example_passes_every_rule():
    assert dl.lint(_dash({}, {})) == []


@pytest.mark.parametrize("rule, broken", [
    (dl.rule_panel_metadata, {"title": ""}),
    (dl.rule_panel_metadata, {"description": ""}),
    (dl.rule_panel_metadata, {"fieldConfig": {"defaults": {}}}),
    (dl.rule_panel_metadata, {"targets": []}),
    (dl.rule_datasource, {"datasource": {"type": "prometheus", "uid": "prometheus"}}),
    (dl.rule_datasource, {"targets": [{"refId": "A", "expr": "up"}]}),
    (dl.rule_counters, {"targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                                     "expr": "sum(requests_total)"}]}),
    (dl.rule_variables_defined, {"targets": [{"refId": "A", "datasource": {"type": "prometheus",
                                                                           "uid": "${datasource}"},
                                              "expr": 'up{tenant=~"$tenant"}'}]}),
    (dl.rule_grid, {"gridPos": {"x": 18, "y": 0, "w": 12, "h": 8}}),
    (dl.rule_grid, {"gridPos": {"x": 6, "y": 4, "w": 12, "h": 8}}),
    (dl.rule_panel_ids, {"id": 1}),
    (dl.rule_exemplars, {"targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                                      "expr": "histogram_quantile(0.9, sum by (le) "
                                              "(rate(x_duration_seconds_bucket[$__rate_interval])))"}]}),
])
def test_rule_catches_broken_panel(rule, broken):
    dash = _dash({}, broken)
    assert rule(_dash({}, {})) == []
    assert rule(dash) != []


def test_rules_catch_broken_dashboard_level_parts():
    no_ds_var = _dash({})
    no_ds_var["templating"]["list"].pop(0)
    assert dl.rule_datasource(no_ds_var)
    no_alerts = _dash({})
    no_alerts["annotations"]["list"] = []
    assert dl.rule_alert_annotation(no_alerts)
    assert dl.rule_unique_uids([_dash({}), _dash({})]) == ["duplicate dashboard uid t"]


def test_expand_substitutes_like_grafana():
    values = {"service": "api", "__rate_interval": "15s", "flag": "rerank"}
    assert dl.expand('rate(x{service=~"$service",flag="${flag}"}[$__rate_interval])', values) == \
        'rate(x{service=~"api",flag="rerank"}[15s])'
    assert dl.expand("${service:regex}", values) == "api"
    with pytest.raises(KeyError):
        dl.expand("$nope", values)


# ------------------------------------------------------------------------------------------------
# Provisioning
# ------------------------------------------------------------------------------------------------

def _datasources() -> dict[str, dict]:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    assert doc["apiVersion"] == 1
    return {d["uid"]: d for d in doc["datasources"]}


def test_datasources_have_fixed_uids():
    ds = _datasources()
    assert set(ds) == {"prometheus", "alertmanager"}
    prom, am = ds["prometheus"], ds["alertmanager"]
    assert (prom["type"], prom["url"], prom["editable"], prom["isDefault"]) == \
        ("prometheus", "http://prometheus:9090", False, True)
    assert (am["type"], am["url"], am["editable"]) == ("alertmanager", "http://alertmanager:9093", False)
    assert am["jsonData"]["implementation"] == "prometheus"


def test_exemplars_link_to_the_trace_ui():
    destinations = _datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert len(destinations) == 1
    dest = destinations[0]
    # The label the exporter puts on its exemplars (docs/metrics.md).
    assert dest["name"] == "trace_id"
    assert "trace_id=" in (REPO / "docs/metrics.md").read_text()
    # A configurable trace UI, with Grafana's `$$` escape so ${__value.raw} reaches the dashboard.
    assert dest["url"] == "${SPANSCOPE_TRACE_UI_URL}$${__value.raw}"
    assert "datasourceUid" not in dest


def test_prometheus_time_interval_matches_the_scrape_interval():
    interval = _datasources()["prometheus"]["jsonData"]["timeInterval"]
    prom_cfg = REPO / "prometheus/prometheus.yml"
    if not prom_cfg.exists():
        pytest.skip("prometheus/prometheus.yml not written yet")
    cfg = yaml.safe_load(prom_cfg.read_text())
    default = cfg.get("global", {}).get("scrape_interval", "1m")
    intervals = {job.get("scrape_interval", default) for job in cfg.get("scrape_configs", [])}
    assert intervals == {interval}, f"Grafana timeInterval {interval}, Prometheus scrapes every {intervals}"


def test_dashboard_provider_points_at_the_generated_files(generator):
    doc = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    assert provider["options"] == {"path": "/var/lib/grafana/dashboards", "foldersFromFilesStructure": True}
    # Folders come from subdirectories: the generator writes flat files, all of them JSON dashboards.
    assert Path(generator.OUT_DIR) == DASHBOARD_DIR
    assert [p for p in DASHBOARD_DIR.iterdir() if p.is_dir()] == []
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == sorted(generator.generate())
