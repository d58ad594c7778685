"""Alertmanager configuration, routing and templates, checked with the real amtool (0.25)."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from rules_support import AM_CONFIG, AM_DIR, REPO, alert_rules, explain, run


@pytest.fixture(scope="module")
def am() -> dict:
    return yaml.safe_load(AM_CONFIG.read_text())


def test_check_config(amtool):
    proc = run([amtool, "check-config", str(AM_CONFIG)])
    assert proc.returncode == 0, explain(proc)
    assert "SUCCESS" in proc.stdout and "3 inhibit rules" in proc.stdout, explain(proc)


def test_check_config_catches_a_broken_config(amtool, tmp_path):
    """check-config is a real gate: a route to an undefined receiver fails it."""
    cfg = yaml.safe_load(AM_CONFIG.read_text())
    cfg["route"]["routes"][0]["receiver"] = "nobody"
    bad = tmp_path / "alertmanager.yml"
    bad.write_text(yaml.safe_dump(cfg))
    (tmp_path / "templates").symlink_to(AM_DIR / "templates")
    proc = run([amtool, "check-config", str(bad)])
    assert proc.returncode != 0 and "nobody" in proc.stdout + proc.stderr, explain(proc)


def test_check_config_parses_the_templates(amtool, tmp_path):
    """templates/*.tmpl is resolved next to the config file (as mounted in the container) and
    parsed by check-config: a broken template fails it."""
    import shutil
    shutil.copytree(AM_DIR, tmp_path / "am", ignore=shutil.ignore_patterns("secrets.example"))
    with open(tmp_path / "am" / "templates" / "slack.tmpl", "a") as f:
        f.write('{{ define "broken" }}{{ if }}{{ end }}\n')
    proc = run([amtool, "check-config", str(tmp_path / "am" / "alertmanager.yml")], cwd="/")
    assert proc.returncode != 0 and "slack.tmpl" in proc.stdout + proc.stderr, explain(proc)


# --- routing: one case per severity/team pair --------------------------------------------------

ROUTES = [
    # (labels, receivers) - why
    ({"alertname": "PipelineHighErrorRate", "severity": "critical", "team": "pipeline", "service": "rag-api"},
     ["critical-pipeline"]),
    ({"alertname": "PipelineErrorBudgetBurn", "severity": "critical", "team": "pipeline", "service": "rag-api"},
     ["critical-pipeline"]),
    ({"alertname": "SpanscopeExporterAbsent", "severity": "critical", "team": "observability"},
     ["critical-observability"]),
    # The pipeline on-call owns pages of teams without their own rotation, and of unlabelled alerts.
    ({"alertname": "X", "severity": "critical", "team": "ml"}, ["critical-pipeline"]),
    ({"alertname": "X", "severity": "critical"}, ["critical-pipeline"]),
    ({"alertname": "PipelineHighErrorRate", "severity": "warning", "team": "pipeline"}, ["slack-pipeline"]),
    ({"alertname": "PipelineQualityScoreLow", "severity": "warning", "team": "ml"}, ["slack-ml"]),
    ({"alertname": "SpanscopeSpansRejected", "severity": "warning", "team": "observability"},
     ["slack-observability"]),
    ({"alertname": "X", "severity": "warning", "team": "unknown"}, ["slack-default"]),
    ({"alertname": "X", "severity": "warning"}, ["slack-default"]),
    # Cost goes to FinOps by e-mail whatever its severity: never paged, never in a team channel.
    ({"alertname": "LLMDailyCostOverBudget", "severity": "warning", "team": "finops", "category": "cost"},
     ["email-finops"]),
    ({"alertname": "LLMUnpricedTokens", "severity": "info", "team": "finops", "category": "cost"},
     ["email-finops"]),
    ({"alertname": "X", "severity": "critical", "team": "finops", "category": "cost"}, ["email-finops"]),
    # A budget burning fast pages (and FinOps is mailed); burning slowly it is FinOps' ticket.
    ({"alertname": "LLMBudgetBurn", "severity": "critical", "team": "finops", "category": "cost"},
     ["critical-pipeline", "email-finops"]),
    ({"alertname": "LLMBudgetBurn", "severity": "warning", "team": "finops", "category": "cost"},
     ["email-finops"]),
    ({"alertname": "X", "severity": "info", "team": "observability"}, ["slack-info"]),
    ({"alertname": "X", "severity": "info", "team": "pipeline"}, ["slack-info"]),
    # Watchdog goes only to the heartbeat, whatever else it carries.
    ({"alertname": "Watchdog", "severity": "info", "team": "observability"}, ["heartbeat"]),
    ({"alertname": "Watchdog", "severity": "critical"}, ["heartbeat"]),
    ({}, ["slack-default"]),
]


def _route_test(amtool, labels: dict, receivers: list[str]):
    args = [f"{k}={v}" for k, v in sorted(labels.items())]
    return run([amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}",
                f"--verify.receivers={','.join(receivers)}", *args])


@pytest.mark.parametrize("labels, receivers", ROUTES,
                         ids=[f"{lb.get('severity', '-')}/{lb.get('team', '-')}/{lb.get('alertname', '-')}"
                              for lb, _ in ROUTES])
def test_route(amtool, labels, receivers):
    proc = _route_test(amtool, labels, receivers)
    assert proc.returncode == 0, explain(proc)


def test_route_verification_can_fail(amtool):
    proc = _route_test(amtool, {"severity": "critical", "team": "pipeline"}, ["slack-pipeline"])
    assert proc.returncode != 0, explain(proc)


def test_every_generated_alert_routes_as_docs_alerts_md_says(amtool, generator, am):
    """docs/alerts.md's route column (computed by the generator) equals what amtool resolves."""
    doc = (REPO / "docs" / "alerts.md").read_text()
    seen = set()
    for rule in alert_rules():
        labels = {"alertname": rule["alert"], **{k: str(v) for k, v in rule["labels"].items()}}
        key = tuple(sorted(labels.items()))
        if key in seen:
            continue
        seen.add(key)
        expected = generator.route_receivers(am["route"], labels)
        proc = _route_test(amtool, labels, expected)
        assert proc.returncode == 0, f"generator says {expected}:\n{explain(proc)}"
        row = next(line for line in doc.splitlines()
                   if line.startswith(f"| [{rule['alert']}](")
                   and f"| {rule['labels']['severity']} |" in line
                   and all(f"`{k}={rule['labels'][k]}`" in line for k in ("long_window",) if k in rule["labels"]))
        assert f"| {', '.join(expected)} |" in row, row


def test_critical_inhibits_warning_of_the_same_alert_and_service(am):
    rules = am["inhibit_rules"]
    crit = [r for r in rules if r.get("source_matchers") == ['severity="critical"']]
    assert crit and 'severity=~"warning|info"' in crit[0]["target_matchers"]
    assert crit[0]["equal"] == ["alertname", "service"]


def test_grouping_and_timers_are_set_and_sane(am):
    route = am["route"]
    assert route["group_by"] == ["alertname", "service"]
    seconds = {"s": 1, "m": 60, "h": 3600}

    def dur(v):
        return sum(int(n) * seconds[u] for n, u in re.findall(r"(\d+)([smh])", v))

    def walk(node, inherited):
        timers = {k: node.get(k, inherited[k]) for k in ("group_wait", "group_interval", "repeat_interval")}
        assert dur(timers["group_wait"]) <= dur(timers["group_interval"]) <= dur(timers["repeat_interval"]), \
            (node.get("receiver"), timers)
        for child in node.get("routes", []) or []:
            walk(child, timers)
    walk(route, {k: route[k] for k in ("group_wait", "group_interval", "repeat_interval")})


def test_every_receiver_sends_resolved(am):
    for rcv in am["receivers"]:
        for kind, configs in rcv.items():
            if kind.endswith("_configs"):
                for c in configs:
                    assert c.get("send_resolved") is True, (rcv["name"], kind)


# --- secrets ------------------------------------------------------------------------------------

def test_secrets_come_from_files(am):
    text = AM_CONFIG.read_text()
    for inline in ("api_url:", "routing_key:", "service_key:", "auth_password:", "smtp_auth_password:",
                   "slack_api_url:", "credentials:", "bearer_token:"):
        assert not re.search(rf"^\s*{inline}", text, re.M), f"inline secret {inline} in alertmanager.yml"
    files = set()
    assert am["global"]["smtp_auth_password_file"]
    files.add(am["global"]["smtp_auth_password_file"])
    for rcv in am["receivers"]:
        for c in rcv.get("slack_configs", []):
            files.add(c["api_url_file"])
        for c in rcv.get("pagerduty_configs", []):
            files.add(c["routing_key_file"])
        for c in rcv.get("webhook_configs", []):
            files.add(c["http_config"]["authorization"]["credentials_file"])
    example = AM_DIR / "secrets.example"
    for f in files:
        assert f.startswith("/etc/alertmanager/secrets/"), f
        assert (example / f.rsplit("/", 1)[1]).is_file(), f"no example for {f} in alertmanager/secrets.example/"


def test_example_secrets_are_placeholders():
    real_slack = re.compile(r"hooks\.slack\.com/services/T(?!0{8})[A-Z0-9]{8,}/B[A-Z0-9]{8,}/[A-Za-z0-9]{24}")
    for path in (AM_DIR / "secrets.example").iterdir():
        if path.name == "README.md":
            continue
        value = path.read_text()
        assert not real_slack.search(value), f"{path.name} looks like a real Slack webhook"
        assert "REPLACE" in value or "XXXXXXXX" in value, f"{path.name} should hold a placeholder"
        assert "\n" not in value, f"{path.name}: one value, no trailing newline"


# --- templates ----------------------------------------------------------------------------------

def _alert(status: str, **labels) -> dict:
    base = {"alertname": "PipelineHighErrorRate", "service": "rag-api", "severity": "critical", "team": "pipeline"}
    labels = {**base, **labels}
    return {
        "status": status, "labels": labels,
        "annotations": {
            "summary": "Pipeline requests are failing",
            "description": f"{labels['service']}: 20% of requests failed over the last 5m (threshold 10%, critical).",
            "runbook_url": "https://github.com/spanscope/spanscope/blob/main/docs/runbooks.md#pipelinehigherrorrate",
            "dashboard_url": f"http://localhost:3000/d/spanscope-performance?var-service={labels['service']}",
        },
        "startsAt": "2025-03-04T05:06:07Z",
        "endsAt": "2025-03-04T05:36:07Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=service%3Apipeline_request_errors%3Aratio_rate5m",
        "fingerprint": "0123456789abcdef",
    }


def _data(status: str, alerts: list[dict]) -> dict:
    common = dict(alerts[0]["labels"])
    return {
        "receiver": "critical-pipeline", "status": status, "alerts": alerts,
        "groupLabels": {"alertname": common["alertname"], "service": common["service"]},
        "commonLabels": common,
        "commonAnnotations": {k: v for k, v in alerts[0]["annotations"].items() if k != "description"},
        "externalURL": "http://alertmanager:9093",
    }


DATA = {
    "firing": _data("firing", [_alert("firing"), _alert("firing", component="llm_inference")]),
    "resolved": _data("resolved", [_alert("resolved")]),
}


def _render(amtool, tmp_path, template: str, data: dict, kind: str = "text") -> str:
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    proc = run([amtool, "template", "render", f"--template.glob={AM_DIR / 'templates'}/*.tmpl",
                f"--template.type={kind}", f"--template.data={data_file}",
                f"--template.text={{{{ template \"{template}\" . }}}}"])
    assert proc.returncode == 0, explain(proc)
    return proc.stdout


def test_every_template_used_by_the_config_is_defined(am):
    used = set(re.findall(r'template "([^"]+)"', AM_CONFIG.read_text()))
    defined = set()
    for path in (AM_DIR / "templates").glob("*.tmpl"):
        defined |= set(re.findall(r'define "([^"]+)"', path.read_text()))
    assert used and used <= defined, used - defined


@pytest.mark.parametrize("template, kind", [
    ("spanscope.slack.text", "text"), ("spanscope.email.text", "text"), ("spanscope.email.html", "html"),
])
def test_message_bodies_tell_the_on_call_what_to_do(amtool, tmp_path, template, kind):
    out = _render(amtool, tmp_path, template, DATA["firing"], kind)
    for needle in (
        "Pipeline requests are failing",                                  # what is wrong
        "rag-api: 20% of requests failed over the last 5m",              # how bad, with the value
        "2025-03-04 05:06:07 UTC",                                        # since when
        "component=llm_inference service=rag-api",                        # where
        "docs/runbooks.md#pipelinehigherrorrate",                         # what to do first
        "http://localhost:3000/d/spanscope-performance?var-service=rag-api",  # Grafana
        "http://prometheus:9090/graph?g0.expr=",                          # Prometheus
        "http://alertmanager:9093/#/silences/new?filter=",                # silence the group
    ):
        assert needle in out, f"{template}: missing {needle!r} in\n{out}"
    assert "<no value>" not in out
    if kind == "html":
        runbook = "https://github.com/spanscope/spanscope/blob/main/docs/runbooks.md#pipelinehigherrorrate"
        assert f'<a href="{runbook}">' in out


@pytest.mark.parametrize("template, firing, resolved", [
    ("spanscope.slack.title", "[FIRING:2] PipelineHighErrorRate critical - rag-api",
     "[RESOLVED] PipelineHighErrorRate critical - rag-api"),
    ("spanscope.email.subject", "[FIRING:2] PipelineHighErrorRate critical - rag-api: Pipeline requests are failing",
     "[RESOLVED] PipelineHighErrorRate critical - rag-api: Pipeline requests are failing"),
    ("spanscope.pagerduty.description",
     "[FIRING:2] PipelineHighErrorRate critical - rag-api: Pipeline requests are failing",
     "[RESOLVED] PipelineHighErrorRate critical - rag-api: Pipeline requests are failing"),
    ("spanscope.slack.color", "danger", "good"),
    ("spanscope.slack.title_link", "https://github.com/spanscope/spanscope/blob/main/docs/runbooks.md#pipelinehigherrorrate",
     "https://github.com/spanscope/spanscope/blob/main/docs/runbooks.md#pipelinehigherrorrate"),
])
def test_one_line_templates(amtool, tmp_path, template, firing, resolved):
    assert _render(amtool, tmp_path, template, DATA["firing"]).strip() == firing
    assert _render(amtool, tmp_path, template, DATA["resolved"]).strip() == resolved


def test_resolved_message_says_resolved_and_when(amtool, tmp_path):
    out = _render(amtool, tmp_path, "spanscope.slack.text", DATA["resolved"])
    assert "resolved" in out.lower() and "2025-03-04 05:36:07 UTC" in out, out
    out = _render(amtool, tmp_path, "spanscope.email.text", DATA["resolved"])
    assert "Resolved (1):" in out and "Firing" not in out, out


def test_default_example_data_renders(amtool):
    """amtool's built-in example alert (no annotations at all) renders without template errors."""
    for name in ("spanscope.slack.text", "spanscope.email.subject", "spanscope.email.text"):
        proc = run([amtool, "template", "render", f"--template.glob={AM_DIR / 'templates'}/*.tmpl",
                    f"--template.text={{{{ template \"{name}\" . }}}}"])
        assert proc.returncode == 0, explain(proc)
