"""scripts/run_stack.py renders loopback copies of the project's configs that the real tools accept."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from processes import binary

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("run_stack", REPO / "scripts/run_stack.py")
run_stack = importlib.util.module_from_spec(spec)
sys.modules["run_stack"] = run_stack  # dataclasses look their module up there
spec.loader.exec_module(run_stack)

PORTS = run_stack.Ports(otlp_grpc=14317, otlp_http=14318, web=18889, prometheus=19090, alertmanager=19093)
PROMETHEUS_YML = REPO / "prometheus/prometheus.yml"
ALERTMANAGER_YML = REPO / "alertmanager/alertmanager.yml"


def all_targets(cfg):
    for job in cfg.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            yield from sc["targets"]
    for am in cfg.get("alerting", {}).get("alertmanagers", []):
        for sc in am.get("static_configs", []):
            yield from sc["targets"]


@pytest.fixture
def prometheus_yml():
    if not PROMETHEUS_YML.exists():
        pytest.skip("prometheus/prometheus.yml not written yet")
    return PROMETHEUS_YML


def test_prometheus_config_points_at_loopback(prometheus_yml):
    cfg, notes = run_stack.render_prometheus_config(prometheus_yml, PORTS, with_alertmanager=True)
    targets = list(all_targets(cfg))
    assert targets and all(t.startswith("127.0.0.1:") for t in targets)
    assert "127.0.0.1:18889" in targets and "127.0.0.1:19093" in targets
    assert any(job["job_name"] == "spanscope" for job in cfg["scrape_configs"])
    for pattern in cfg["rule_files"]:
        assert Path(pattern).is_absolute() and list(Path("/").glob(pattern.lstrip("/"))), pattern
    assert not notes


def test_prometheus_config_without_alertmanager_has_no_dangling_targets(prometheus_yml):
    cfg, notes = run_stack.render_prometheus_config(prometheus_yml, PORTS, with_alertmanager=False,
                                                    scrape_interval="2s")
    assert "alerting" not in cfg
    assert "127.0.0.1:19093" not in list(all_targets(cfg))
    assert any("alertmanager" in n for n in notes)
    assert cfg["global"]["scrape_interval"] == "2s"


@pytest.mark.skipif(not binary("promtool"), reason="needs promtool (apt-get install prometheus)")
def test_promtool_accepts_the_rendered_prometheus_config(prometheus_yml, tmp_path):
    cfg, _ = run_stack.render_prometheus_config(prometheus_yml, PORTS, with_alertmanager=True, scrape_interval="2s")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([binary("promtool"), "check", "config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def alertmanager_yml():
    if not ALERTMANAGER_YML.exists():
        pytest.skip("alertmanager/alertmanager.yml not written yet")
    return ALERTMANAGER_YML


def test_alertmanager_copy_sends_nothing_by_default(alertmanager_yml):
    cfg = run_stack.render_alertmanager_config(alertmanager_yml, notify=False, secrets_dir=Path("/nowhere"))
    original = yaml.safe_load(alertmanager_yml.read_text())
    assert [r["name"] for r in cfg["receivers"]] == [r["name"] for r in original["receivers"]]
    assert all(set(r) == {"name"} for r in cfg["receivers"]), "no integration may reach the network"
    assert cfg["route"] == original["route"] and cfg.get("inhibit_rules") == original.get("inhibit_rules")
    for pattern in cfg["templates"]:
        assert list(Path("/").glob(pattern.lstrip("/"))), pattern


def test_alertmanager_copy_with_notify_reads_secrets_from_the_given_dir(alertmanager_yml, tmp_path):
    cfg = run_stack.render_alertmanager_config(alertmanager_yml, notify=True, secrets_dir=tmp_path)
    text = yaml.safe_dump(cfg)
    assert "/etc/alertmanager/secrets/" not in text
    assert str(tmp_path) in text


@pytest.mark.skipif(not binary("amtool"), reason="needs amtool (apt-get install prometheus-alertmanager)")
@pytest.mark.parametrize("notify", [False, True])
def test_amtool_accepts_the_rendered_alertmanager_config(alertmanager_yml, tmp_path, notify):
    secrets = REPO / "alertmanager/secrets.example"
    cfg = run_stack.render_alertmanager_config(alertmanager_yml, notify=notify, secrets_dir=secrets)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([binary("amtool"), "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_loopback_target_mapping():
    assert run_stack.loopback_target("exporter:8889", PORTS, True) == "127.0.0.1:18889"
    assert run_stack.loopback_target("localhost:9090", PORTS, True) == "127.0.0.1:19090"
    assert run_stack.loopback_target("alertmanager:9093", PORTS, True) == "127.0.0.1:19093"
    assert run_stack.loopback_target("alertmanager:9093", PORTS, False) is None
    assert run_stack.loopback_target("node-exporter:9100", PORTS, True) is None


def test_histogram_quantile_matches_promql():
    inf = float("inf")
    # 100 observations: 50 <= 0.1, 40 in (0.1, 1], 10 in (1, +Inf).
    cumulative = {0.1: 50, 1.0: 90, inf: 100}
    assert run_stack.histogram_quantile(0.5, cumulative) == pytest.approx(0.1)
    assert run_stack.histogram_quantile(0.7, cumulative) == pytest.approx(0.1 + 0.9 * 20 / 40)
    assert run_stack.histogram_quantile(0.95, cumulative) == 1.0  # in +Inf: the top finite bound
    assert run_stack.histogram_quantile(0.95, {0.1: 0, inf: 0}) is None


def test_a_fault_scenario_caps_every_for_and_keeps_shorter_ones():
    thresholds = {"alerts": {"A": {"min_rate": 0.1, "warning": {"threshold": 1, "for": "10m"},
                                   "critical": {"threshold": 2, "for": "30s"}},
                             "B": {"info": {"threshold": 1, "for": "1h"}}}}
    assert run_stack.shortened_fors(thresholds, "1m") == {"alerts.A.warning.for": "1m", "alerts.B.info.for": "1m"}
    assert run_stack.seconds("1h30m") == 5400 and run_stack.seconds("250ms") == 0.25


def test_make_passes_the_scenario_through():
    done = subprocess.run(["make", "-n", "-W", ".venv/.installed", "run", "SCENARIO=error_burst"], cwd=REPO,
                          capture_output=True, text=True)
    assert "scripts/run_stack.py --scenario error_burst" in done.stdout, done.stdout + done.stderr


def test_the_status_line_is_smoothed_over_the_last_minute(monkeypatch):
    """Every 5 s: 10 req/s (60 % response cache hits) for two minutes, then 40 req/s (all misses)
    for 30 s. The line reads the last 60 s (25 req/s, 12 % hits), not the last 5 s (40 req/s, none)."""
    clock, counts = [0.0], {"hit": 0.0, "miss": 0.0}

    def scrape(url):
        return {"pipeline_requests_total": [({"status": "ok", "cache_status": k}, v) for k, v in counts.items()]}
    monkeypatch.setattr(run_stack, "scrape", scrape)
    summary = run_stack.Summary("http://exporter/metrics", None, window=60, clock=lambda: clock[0])
    assert summary.line() == "collecting…"
    for step in range(1, 31):
        clock[0] = step * 5.0
        if step <= 24:
            counts["hit"] += 30
            counts["miss"] += 20
        else:
            counts["miss"] += 200
        line = summary.line()
    assert "last 60s:" in line
    assert "25.0 req/s" in line  # (30 s × 10 + 30 s × 40) / 60 s
    assert "response cache hits  12%" in line  # 6 × 30 hits of 6 × 50 + 6 × 200 requests
