"""A guarded rollout end to end: the demo service (real OpenFeature SDK, the spanscope provider and the
OpenTelemetry TracingHook) sends its traffic to a real exporter with a SQLite store; a real Prometheus
scrapes the exporter and evaluates prometheus/rules/. On healthy traffic the rollout of mlx_backend
advances stage by stage by itself; with the demo's `bad_rollout` scenario (mlx_backend broken) it rolls
back by itself within its first stage, the FeatureRolloutRolledBack alert fires, and the Experiments
dashboard's rollout panels show both runs.
"""
from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path

import pytest
from http_helpers import call
from processes import binary, spawn, start_exporter, start_prometheus, wait_until
from sdk import scrape, value

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/dashboards"))
import dashboard_lint as dl  # noqa: E402 - how the dashboard tests read panel queries
FEATURE = "mlx_backend"
GUARD = {"max_error_ratio_increase": 0.05, "max_p95_latency_increase": 0.5, "min_requests_per_stage": 150}
ROLLOUT = {"strategy": "linear", "step": 25, "auto_advance": True, "stage_seconds": 2, "guard": GUARD}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not binary("prometheus"), reason="prometheus not installed (make system-deps)")]


def feature(exporter) -> dict:
    status, doc = call("GET", exporter.urls["web"] + f"/api/features/{FEATURE}")
    assert status == 200, doc
    return doc


def demo(tmp_path, exporter, scenario: str):
    return spawn([sys.executable, "-m", "spanscope_demo", "--endpoint", exporter.urls["http"],
                  "--api", exporter.urls["web"], "--rate", "100", "--scenario", scenario, "--seed", "7",
                  "--feature-refresh", "0.2", "--feedback-rate", "0"], tmp_path, f"demo-{scenario}")


def prom_query(base: str, expr: str) -> list:
    body = urllib.parse.urlencode({"query": expr}).encode()
    status, doc = call("POST", base + "/api/v1/query", raw=body, content_type="application/x-www-form-urlencoded")
    assert status == 200 and doc["status"] == "success", doc
    return doc["data"]["result"]


def rollout_panels() -> dict[str, str]:
    """Title -> expression of the Experiments dashboard's guarded-rollout panels, for flag mlx_backend
    over the last 10 minutes."""
    dash = json.loads((REPO / "grafana/dashboards/spanscope-experiments.json").read_text())
    values = {"flag": FEATURE, "service": ".*", "__rate_interval": "10m"}
    return {panel["title"]: dl.expand(target["expr"], values) for panel, target in dl.queries(dash)
            if panel["title"].startswith("Rollout")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guarded")
    procs = []
    try:
        exporter = start_exporter(tmp, {
            "traces": {"finish_delay": 0.2},
            "store": {"url": f"sqlite:///{tmp / 'interactions.db'}", "flush_interval": 0.1},
            "features": {"guards": {"interval": "0.25s"}},
        })
        procs.append(exporter)
        prom = start_prometheus(tmp, {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "spanscope", "static_configs": [
                {"targets": [urllib.parse.urlsplit(exporter.urls["web"]).netloc]}]}],
        }, rule_files=sorted((REPO / "prometheus/rules").glob("*.yml")))
        procs.append(prom)
        yield {"exporter": exporter, "prom": prom.urls["web"], "tmp": tmp}
    finally:
        for p in reversed(procs):
            p.stop()


def run_rollout(stack, scenario: str, done) -> dict:
    """Start the demo in `scenario`, then the guarded rollout; wait until `done(feature doc)`."""
    exporter = stack["exporter"]
    service = demo(stack["tmp"], exporter, scenario)
    try:
        # The demo evaluates mlx_backend for every request: wait until its requests arrive.
        def evaluations():
            return value(scrape(exporter.urls["web"]), "feature_flag_evaluations_total", flag=FEATURE)
        before = evaluations()
        wait_until(lambda: evaluations() > before + 50, timeout=60, what="flag evaluations from the demo",
                   process=service)
        status, doc = call("POST", exporter.urls["web"] + f"/api/features/{FEATURE}/rollout", ROLLOUT)
        assert status == 200 and doc["rollout"]["stage"] == 1 and doc["rollout_percentage"] == 25, doc
        return wait_until(lambda: (d := feature(exporter)) and done(d) and d, timeout=120, interval=0.25,
                          what=f"the guarded rollout to finish ({scenario})", process=service)
    finally:
        service.stop()


def guard_decisions(doc: dict, kind: str) -> list[dict]:
    return [d for d in doc["decisions"] if d["by"] == "guard" and d["decision"] == kind]


def test_healthy_rollout_advances_stage_by_stage_and_a_broken_one_rolls_back(stack):
    exporter = stack["exporter"]

    # 1. Healthy traffic: 25 → 50 → 75 → 100 %, each step decided by the guard on its stage's requests.
    healthy = run_rollout(stack, "normal", lambda d: "rollout" not in d)
    assert healthy["rollout_percentage"] == 100 and healthy["enabled"] is True
    advances = guard_decisions(healthy, "advance")[::-1]  # oldest first
    assert [(d["from_percentage"], d["to_percentage"]) for d in advances] == [(25, 50), (50, 75), (75, 100)]
    assert not guard_decisions(healthy, "rollback")
    for d in advances:
        arms = d["evidence"]["arms"]
        assert arms["on"]["requests"] >= GUARD["min_requests_per_stage"] <= arms["off"]["requests"], d
        assert d["evidence"]["stage_age_seconds"] >= ROLLOUT["stage_seconds"]
        # Every guard was tested, and none had its limit inside evidence of harm.
        errors = d["evidence"]["guards"]["error_ratio_increase"]
        assert errors["lower"] <= GUARD["max_error_ratio_increase"], errors
        assert d["evidence"]["guards"]["p95_latency"]["lower"] <= 0.05

    # Prometheus saw the rollout at 100 % before the next one starts (the dashboard check below).
    wait_until(lambda: prom_query(stack["prom"], f'max(feature_rollout_ratio{{feature="{FEATURE}"}}) == 1'),
               timeout=30, interval=0.25, what="a scrape at 100 %")

    # 2. mlx_backend broken (the demo's bad_rollout scenario): rolled back at once, in its first stage.
    broken = run_rollout(stack, "bad_rollout", lambda d: d["rollout_percentage"] == 0)
    assert "rollout" not in broken
    rollback = broken["decisions"][0]
    assert rollback["decision"] == "rollback" and rollback["by"] == "guard", rollback
    assert rollback["stage"] == 1 and rollback["from_percentage"] == 25 and rollback["to_percentage"] == 0
    errors = rollback["evidence"]["guards"]["error_ratio_increase"]
    assert errors["lower"] > GUARD["max_error_ratio_increase"] and errors["p_value"] < 0.05, errors
    arms = rollback["evidence"]["arms"]
    assert arms["on"]["error_ratio"] - arms["off"]["error_ratio"] > GUARD["max_error_ratio_increase"]
    assert "error ratio" in rollback["reason"]

    # 3. The same decisions as metrics, as log lines, as an alert and on the Experiments dashboard.
    s = scrape(exporter.urls["web"])
    assert value(s, "feature_rollout_decisions_total", feature=FEATURE, decision="advance") == 3
    assert value(s, "feature_rollout_decisions_total", feature=FEATURE, decision="rollback") == 1
    assert value(s, "feature_rollout_decisions_total", feature=FEATURE, decision="start") == 2
    assert value(s, "feature_rollout_stage", feature=FEATURE) == 0
    log = exporter.log()
    assert f"rollout decision feature={FEATURE} decision=rollback by=guard stage=1 " in log
    assert log.count(f"rollout decision feature={FEATURE} decision=advance by=guard") == 3

    base = stack["prom"]
    firing = wait_until(lambda: prom_query(base, f'ALERTS{{alertname="FeatureRolloutRolledBack",'
                                                 f'alertstate="firing",feature="{FEATURE}"}}'),
                        timeout=60, interval=0.5, what="FeatureRolloutRolledBack to fire")
    assert firing[0]["metric"]["flag"] == FEATURE

    panels = rollout_panels()
    assert set(panels) == {"Rollout share", "Rollout stage", "Rollout decisions"}

    def decided():
        got = {r["metric"]["decision"]: float(r["value"][1]) for r in prom_query(base, panels["Rollout decisions"])}
        return got if got.get("advance", 0) >= 2.5 and got.get("rollback", 0) >= 0.5 else None
    decided = wait_until(decided, timeout=60, interval=0.5, what="both runs' decisions on the dashboard")
    assert decided.get("manual_advance", 0) == 0
    share = panels["Rollout share"]
    assert float(prom_query(base, share)[0]["value"][1]) == 0  # rolled back
    assert float(prom_query(base, f"max_over_time(({share})[10m:1s])")[0]["value"][1]) == 1  # reached 100 %
    assert float(prom_query(base, f"max_over_time(({panels['Rollout stage']})[10m:1s])")[0]["value"][1]) == 3
