"""Live proof: every query of every panel returns data from a real Prometheus scraping real exporters.

The exporter gets continuous pipeline traffic from the OpenTelemetry SDK (HTTP protobuf, gRPC and
HTTP JSON) and user ratings. Its limits are set so that the rare events the System Health and
Exporter dashboards watch happen too, each caused by the traffic that causes it in production: an
invalid span and a malformed export (rejections), four tenants under a cap of three (capped label
values), a storm of new route names (overflow, then expiry once idle), and bursts of concurrent
exports into a two-slot ingest queue (throttling). Prometheus scrapes it every second and loads
prometheus/rules/*.yml. Each dashboard's variables
are resolved the way Grafana does (label_values against Prometheus), then each panel query is run
with the variables substituted, once with the dashboards' default selection (All) and once with
the first value of every variable; each must return a series with a number (not NaN).
"""
from __future__ import annotations

import json
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import dashboard_lint as dl
import pytest
from processes import binary, start_exporter, start_prometheus, wait_until
from traffic import Traffic

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not binary("prometheus"), reason="prometheus not installed (make system-deps)")]

RATE_INTERVAL = "15s"   # what Grafana computes from a 1s scrape interval with some margin
INTERVAL = "5s"
WAVE = 36               # requests per traffic wave
WAVE_PERIOD = 0.5       # seconds between waves
SETTLE = 60.0           # seconds a dashboard may take, after the first scrapes, until all panels show data
EXPORTER_CONFIG = {
    "traces": {"finish_delay": 0.05},   # request metrics right after the root span arrives
    "limits": {
        "tenant_values": 3,             # TENANTS has four: one becomes __other__
        "ingest_queue": 2,              # a burst of concurrent exports gets 503s
        "max_series_per_metric": 100,   # above every regular family, below the route storm
        "series_ttl": 8,                # storm routes expire; regular label sets recur every ~3s
    },
}
ROUTE_STORM = 150
# Budgets of a tenant and a service that the traffic spends on: the cost dashboard's budget panels.
BUDGETS = "tenants:\n  acme: {day: 5, month: 100}\nservices:\n  rag-api: {month: 1000}\n"


def prom_get(base: str, path: str, **params) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.load(resp)
    if doc.get("status") != "success":
        raise AssertionError(f"{path} {params}: {doc}")
    return doc["data"]


def prom_query(base: str, expr: str) -> dict:
    body = urllib.parse.urlencode({"query": expr}).encode()
    req = urllib.request.Request(f"{base}/api/v1/query", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        return json.load(exc)
    except (urllib.error.URLError, OSError) as exc:  # a slow machine: reported, and polled again
        return {"status": "error", "error": f"no answer: {exc!r}"}


def answers(predicate):
    """A readiness predicate that counts a timed-out or refused request as "not yet"."""
    def guarded():
        try:
            return predicate()
        except (urllib.error.URLError, OSError):
            return None
    return guarded


class TrafficLoop(threading.Thread):
    """Waves of requests into the exporter, plus ratings of the previous wave's requests."""

    def __init__(self, exporter):
        super().__init__(daemon=True, name="traffic")
        self.previous = []
        self.exporter = exporter
        self.gen = Traffic(exporter.urls["http"], exporter.urls["grpc"])
        self.stop_event = threading.Event()
        self.error: Exception | None = None
        self.waves = 0
        self.rating_statuses: list[int] = []

    def warm_up(self) -> None:
        """Enough requests that every breaker went through every state; the rare events."""
        self.previous = self.gen.send(4 * WAVE)
        self.gen.send_invalid_span()
        self.gen.send_route_storm(ROUTE_STORM)
        self.gen.flush()
        assert Traffic.send_malformed(self.exporter.urls["http"]) == 400

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                sent = self.gen.send(WAVE)
                self.gen.flush()
                # The previous wave's traces are finished (finish_delay 0.05s): rate some of them.
                self.rating_statuses += Traffic.rate(self.exporter.urls["web"],
                                                     [s.trace_id for s in self.previous[:6]])
                self.previous = sent
                self.waves += 1
                self.stop_event.wait(WAVE_PERIOD)
        except Exception as exc:  # noqa: BLE001 - any failure is reported by the tests
            self.error = exc


def throttle(exporter) -> list[int]:
    """Concurrent exports of SDK-encoded requests until the small ingest queue refuses one (503)."""
    body = Traffic.encoded_request(60)
    statuses: list[int] = []

    def throttled():
        statuses.extend(Traffic.burst(exporter.urls["http"], body, concurrency=12))
        return 503 in statuses

    wait_until(throttled, timeout=30, interval=0.05, what="a 503 from the exporter")
    return statuses


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    procs = []
    loop = None
    try:
        (tmp / "budgets.yaml").write_text(BUDGETS)
        exporter = start_exporter(tmp, {**EXPORTER_CONFIG, "pricing": {"budgets_file": str(tmp / "budgets.yaml")}})
        procs.append(exporter)
        rule_files = sorted((REPO / "prometheus/rules").glob("*.yml"))
        prom = start_prometheus(tmp, {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "spanscope",
                                "static_configs": [{"targets": [urllib.parse.urlsplit(exporter.urls["web"]).netloc]}]}],
        }, rule_files=rule_files)
        procs.append(prom)
        base = prom.urls["web"]

        loop = TrafficLoop(exporter)
        loop.warm_up()
        throttle_statuses = throttle(exporter)
        loop.start()

        # Readiness: the exporter was scraped three times since it had traffic, so rate() over the
        # test's $__rate_interval has two samples or more.
        def scraped():
            data = prom_get(base, "/api/v1/query",
                            query='count_over_time(pipeline_requests_total{job="spanscope"}[1m]) >= 3')
            return data["result"]
        wait_until(answers(scraped), timeout=60, interval=0.2, what="3 scrapes of the exporter with traffic")
        if rule_files:
            def rules_evaluated():
                groups = prom_get(base, "/api/v1/rules", type="record")["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return rules and all(r.get("health") != "unknown" for r in rules)
            wait_until(answers(rules_evaluated), timeout=60, interval=0.2, what="recording rules evaluated")
        yield {"prom": base, "exporter": exporter, "loop": loop, "throttle_statuses": throttle_statuses,
               "ready_at": time.monotonic(), "rule_files": rule_files}
    finally:
        # Everything is stopped even when one step fails (or a timeout interrupts): the traffic first,
        # so that its last export still reaches the exporter, then the processes, then the SDK.
        errors = []
        if loop is not None and loop.is_alive():
            loop.stop_event.set()
            loop.join(30)
        for p in reversed(procs):
            try:
                p.stop()
            except BaseException as exc:  # noqa: BLE001 - stop the others, then re-raise
                errors.append(exc)
        if loop is not None:
            loop.gen.shutdown()
        if errors:
            raise errors[0]


# ------------------------------------------------------------------------------------------------

def load_dashboards() -> dict[str, dict]:
    out = {}
    for path in sorted((REPO / "grafana/dashboards").glob("*.json")):
        d = json.loads(path.read_text())
        out[d["uid"]] = d
    return out


DASHBOARDS = load_dashboards()
LABEL_VALUES = re.compile(r"label_values\((.+),\s*(\w+)\)")


def _preselected(var: dict) -> list[str]:
    """The values a variable's saved `current` selects, unless that is All."""
    value = (var.get("current") or {}).get("value")
    values = value if isinstance(value, list) else [value] if value else []
    return [] if "$__all" in values else values


def resolve_variables(base: str, dash: dict, selection: str) -> tuple[dict[str, str], list[str]]:
    """Variable values as Grafana would use them. `selection`: "default" (the preselected value, else
    All for multi-value variables, else the first value) or "first" (the first value of each)."""
    values = {"__rate_interval": RATE_INTERVAL, "__interval": INTERVAL, "__range": "1h"}
    problems = []
    for var in dash["templating"]["list"]:
        name = var["name"]
        if var["type"] == "datasource":
            values[name] = "prometheus"
            continue
        m = LABEL_VALUES.fullmatch(var["query"])
        assert m, f"{dash['uid']}: variable {name}: unsupported query {var['query']!r}"
        selector = dl.expand(m.group(1), values)
        options = sorted(prom_get(base, f"/api/v1/label/{m.group(2)}/values", **{"match[]": selector}))
        if not options:
            problems.append(f"{dash['uid']}: variable ${name} has no values: label_values({selector}, {m.group(2)})")
            values[name] = "__no_value__"
        elif selection == "first":
            values[name] = options[0]
        elif preset := _preselected(var):
            missing = [v for v in preset if v not in options]
            if missing:
                problems.append(f"{dash['uid']}: variable ${name} preselects {missing}, not among {options}")
            values[name] = preset[0] if len(preset) == 1 else "(" + "|".join(map(re.escape, preset)) + ")"
        elif var.get("includeAll"):
            values[name] = var.get("allValue") or "|".join(map(re.escape, options))
        else:
            values[name] = options[0]
    return values, problems


def failing_queries(base: str, dash: dict, values: dict[str, str]) -> list[str]:
    problems = []
    for panel, target in dl.queries(dash):
        expr = dl.expand(target["expr"], values)
        doc = prom_query(base, expr)
        where = f"{dl.where(dash, panel, target)}\n    {expr}"
        if doc.get("status") != "success":
            problems.append(f"{where}\n    -> error: {doc.get('error')}")
            continue
        data = doc["data"]
        if data["resultType"] == "scalar":
            samples = [data["result"][1]]
        else:
            samples = [s["value"][1] for s in data["result"]]
        if not samples:
            problems.append(f"{where}\n    -> no series")
        elif all(math.isnan(float(v)) for v in samples):
            problems.append(f"{where}\n    -> only NaN ({len(samples)} series)")
    return problems


@pytest.mark.parametrize("selection", ["default", "first"])
@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_every_panel_query_returns_data(stack, uid, selection):
    """Poll (Prometheus needs a few scrapes and rule evaluations) until every query of the
    dashboard returns data, or fail naming each panel and query that does not."""
    base = stack["prom"]
    dash = DASHBOARDS[uid]
    deadline = stack["ready_at"] + SETTLE
    while True:
        assert stack["loop"].error is None, f"traffic failed: {stack['loop'].error!r}"
        values, problems = resolve_variables(base, dash, selection)
        if not problems:
            problems = failing_queries(base, dash, values)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1.0)  # the next scrape (1s) is what can change the answer
    shown = {k: v for k, v in values.items() if not k.startswith("__")}
    assert not problems, (f"{len(problems)} queries without data in {uid} (variables {shown}):\n"
                          + "\n".join(problems))


def test_critical_path_breakdown_sums_to_end_to_end_latency(stack):
    """The stacked breakdown panel adds up to its measured-mean line (the exporter keeps the counters
    equal; rate() extrapolates each series over its own samples, and series that expire after the
    short test TTL drop out, hence the tolerance)."""
    base = stack["prom"]
    dash = DASHBOARDS["spanscope-latency-breakdown"]
    (panel,) = [p for p in dl.panels(dash) if p["title"] == "Critical path per request, by component"]
    values, problems = resolve_variables(base, dash, "default")
    assert not problems, problems
    stacked, total = (dl.expand(t["expr"], values) for t in panel["targets"])
    doc = prom_query(base, f"sum({stacked}) / ({total})")
    assert doc["status"] == "success", doc
    (sample,) = doc["data"]["result"]
    assert float(sample["value"][1]) == pytest.approx(1.0, rel=0.05)
    components = prom_query(base, stacked)["data"]["result"]
    assert {s["metric"]["component"] for s in components} >= {
        "gateway", "cache_lookup", "intent_classification", "rag_lookup", "llm_inference", "response_assembly"}


def test_traffic_reached_the_exporters(stack):
    loop = stack["loop"]
    assert loop.error is None, repr(loop.error)
    assert loop.waves >= 1
    # 201 for each first rating; a 503 (store busy, retry later) is allowed on a loaded machine.
    assert 201 in loop.rating_statuses, loop.rating_statuses
    assert set(loop.rating_statuses) <= {201, 503}, loop.rating_statuses
    assert 503 in stack["throttle_statuses"] and 200 in stack["throttle_statuses"]
    received = prom_get(stack["prom"], "/api/v1/query",
                        query='sum by (protocol) (spanscope_spans_received_total{job="spanscope"})')["result"]
    assert {r["metric"]["protocol"] for r in received} >= {"grpc", "http_protobuf", "http_json"}


def test_latency_exemplars_carry_trace_ids(stack):
    """What the datasource's exemplarTraceIdDestinations (label trace_id) links to the trace UI."""
    now = time.time()

    def exemplars():
        data = prom_get(stack["prom"], "/api/v1/query_exemplars",
                        query='pipeline_request_duration_seconds_bucket{job="spanscope"}',
                        start=now - 300, end=time.time() + 1)
        return [e for series in data for e in series["exemplars"]]

    found = wait_until(exemplars, timeout=20, interval=0.5, what="exemplars in Prometheus")
    assert all(re.fullmatch(r"[0-9a-f]{32}", e["labels"].get("trace_id", "")) for e in found), found[:3]


def test_alert_annotation_query_is_accepted(stack):
    for dash in DASHBOARDS.values():
        for a in dash["annotations"]["list"]:
            doc = prom_query(stack["prom"], a["expr"])
            assert doc["status"] == "success", (dash["uid"], a["expr"], doc)
