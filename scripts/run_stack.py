#!/usr/bin/env python3
"""`make run`: the spanscope stack on loopback, with live numbers, until Ctrl-C.

Starts the exporter, the demo service and, when installed, Prometheus and Alertmanager with the
project's own configuration (a loopback copy rendered into the run directory; the files in
prometheus/ and alertmanager/ are not touched). Each waits for the previous one to answer its
readiness endpoint. Then it prints the URLs and every few seconds a summary read from the
exporter's /metrics. SIGINT or SIGTERM stops every process it started (their process groups)
and exits 0.

Environment (all optional):
  SPANSCOPE_RUN_OTLP_GRPC_PORT  4317      SPANSCOPE_RUN_PROMETHEUS_PORT    9090
  SPANSCOPE_RUN_OTLP_HTTP_PORT  4318      SPANSCOPE_RUN_ALERTMANAGER_PORT  9093
  SPANSCOPE_RUN_WEB_PORT        8889      SPANSCOPE_RUN_DIR  logs, configs and state (default: .run/)
  SPANSCOPE_RUN_RATE            10        SPANSCOPE_RUN_SCENARIO   normal
  SPANSCOPE_RUN_SUMMARY_SECONDS 5         SPANSCOPE_RUN_SCRAPE_INTERVAL  override Prometheus' (e.g. 5s)
  The run directory keeps the feature toggles, the interaction store and Prometheus' data across
  restarts; remove it to start fresh. A scenario other than `normal` speeds alerting up (scrape and
  rule evaluation every 5s, every alert's `for` at most 1m) so its alert fires within minutes.
  SPANSCOPE_RUN_NOTIFY=1        let Alertmanager deliver notifications, with secrets from
                                SPANSCOPE_RUN_SECRETS_DIR (default alertmanager/secrets/);
                                by default the loopback copy has receivers without integrations,
                                so nothing leaves the machine.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from spanscope_demo.scenarios import SCENARIOS

from processes import (
    ALERTMANAGER_BINARIES,
    PYTHON,
    REPO,
    Process,
    binary,
    http_ok,
    port_free,
    spawn,
    wait_http_ok,
    wait_until,
)

APT_HINT = "sudo apt-get install prometheus prometheus-alertmanager"
DEFAULT_RUN_DIR = REPO / ".run"
GENERATE_RULES = REPO / "prometheus/generate_rules.py"
THRESHOLDS = REPO / "prometheus/rules_src/thresholds.yml"
# A fault scenario is there to watch an alert fire: Prometheus scrapes and evaluates every
# FAST_INTERVAL and no alert waits longer than FAST_FOR, so a page arrives within about two minutes.
FAST_INTERVAL, FAST_FOR = "5s", "1m"
# The graph linked from the banner: end-to-end p95 per service (a recording rule of the project's).
P95_QUERY = "service:pipeline_request_duration_seconds:p95_rate5m"


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    otlp_grpc: int
    otlp_http: int
    web: int
    prometheus: int
    alertmanager: int

    @classmethod
    def from_env(cls) -> Ports:
        def port(name: str, default: int) -> int:
            return int(os.environ.get(f"SPANSCOPE_RUN_{name}_PORT", default))
        return cls(port("OTLP_GRPC", 4317), port("OTLP_HTTP", 4318), port("WEB", 8889),
                   port("PROMETHEUS", 9090), port("ALERTMANAGER", 9093))


def loopback_target(target: str, ports: Ports, with_alertmanager: bool) -> str | None:
    """A compose-network target (exporter:8889, localhost:9090, alertmanager:9093) on loopback."""
    host, _, port = target.rpartition(":")
    by_port = {"8889": ports.web, "9090": ports.prometheus}
    if with_alertmanager:
        by_port["9093"] = ports.alertmanager
    by_host = {"exporter": ports.web, "spanscope": ports.web, "prometheus": ports.prometheus}
    if with_alertmanager:
        by_host["alertmanager"] = ports.alertmanager
    mapped = by_port.get(port) or by_host.get(host)
    return f"127.0.0.1:{mapped}" if mapped else None


def render_prometheus_config(src: Path, ports: Ports, with_alertmanager: bool,
                             scrape_interval: str | None = None,
                             rule_files: list[str] | None = None) -> tuple[dict, list[str]]:
    """The project's prometheus.yml with loopback targets and absolute rule paths (or `rule_files`); and notes."""
    cfg = yaml.safe_load(src.read_text()) or {}
    notes = []
    cfg["rule_files"] = rule_files or [str((src.parent / p).resolve()) if not os.path.isabs(p) else p
                                       for p in cfg.get("rule_files") or []]
    if scrape_interval:
        cfg.setdefault("global", {})["scrape_interval"] = scrape_interval
        cfg["global"]["evaluation_interval"] = scrape_interval
        # A timeout longer than the interval is a config error.
        cfg["global"].pop("scrape_timeout", None)
    alerting = cfg.get("alerting", {}).get("alertmanagers", [])
    if with_alertmanager:
        for am in alerting:
            for sc in am.get("static_configs", []):
                sc["targets"] = [f"127.0.0.1:{ports.alertmanager}"]
    else:
        cfg.pop("alerting", None)
    jobs = []
    for job in cfg.get("scrape_configs", []):
        targets_ok = True
        for sc in job.get("static_configs", []):
            mapped = [loopback_target(t, ports, with_alertmanager) for t in sc.get("targets", [])]
            targets_ok &= all(mapped)
            sc["targets"] = [m for m in mapped if m]
        if targets_ok:
            jobs.append(job)
        else:
            notes.append(f"scrape job {job.get('job_name')!r} skipped: its target does not run on loopback here")
    cfg["scrape_configs"] = jobs
    return cfg, notes


def fallback_prometheus_config(ports: Ports, with_alertmanager: bool) -> dict:
    """Used only while prometheus/prometheus.yml does not exist yet."""
    cfg = {"global": {"scrape_interval": "15s", "evaluation_interval": "30s"},
           "rule_files": [str(REPO / "prometheus/rules/*.yml")],
           "scrape_configs": [{"job_name": "spanscope",
                               "static_configs": [{"targets": [f"127.0.0.1:{ports.web}"]}]}]}
    if with_alertmanager:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports.alertmanager}"]}]}]}
    return cfg


def render_alertmanager_config(src: Path, notify: bool, secrets_dir: Path) -> dict:
    """The project's alertmanager.yml for loopback: template paths absolute; receivers emptied
    unless `notify` (then secret files are read from `secrets_dir`)."""
    cfg = yaml.safe_load(src.read_text()) or {}
    cfg["templates"] = [str((src.parent / p).resolve()) if not os.path.isabs(p) else p
                        for p in cfg.get("templates") or []]
    if not notify:
        # A receiver with no integrations is valid and sends nothing: the route tree, grouping and
        # inhibitions still apply (amtool or the Alertmanager UI shows them), and no notification
        # leaves the machine.
        cfg["receivers"] = [{"name": r["name"]} for r in cfg.get("receivers", [])]
        return cfg

    def rewrite(node):
        if isinstance(node, dict):
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        if isinstance(node, str) and node.startswith("/etc/alertmanager/secrets/"):
            return str(secrets_dir / node.removeprefix("/etc/alertmanager/secrets/"))
        return node
    return rewrite(cfg)


def seconds(duration: str) -> float:
    """A Prometheus duration such as 90s, 5m or 1h30m in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", duration))


def shortened_fors(thresholds: dict, longest: str) -> dict[str, str]:
    """thresholds.yml overrides that cap every alert's `for` at `longest`."""
    return {f"alerts.{name}.{severity}.for": longest
            for name, alert in thresholds.get("alerts", {}).items()
            for severity, block in alert.items()
            if isinstance(block, dict) and "for" in block and seconds(block["for"]) > seconds(longest)}


def rule_overrides(overview_url: str, fast: bool) -> dict[str, str]:
    """How `make run` renders the project's rules: no Grafana here, so every dashboard_url is the
    overview page; with `fast`, no alert waits longer than FAST_FOR."""
    sets = {"links.grafana": "null", "links.overview": overview_url}
    if fast:
        sets |= shortened_fors(yaml.safe_load(THRESHOLDS.read_text()), FAST_FOR)
    return sets


def render_rules(out: Path, overrides: dict[str, str]) -> list[str]:
    """The rule files generated into `out` by prometheus/generate_rules.py; their glob for prometheus.yml."""
    sets = [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]
    done = subprocess.run([PYTHON, str(GENERATE_RULES), "--out", str(out), *sets], capture_output=True, text=True)
    if done.returncode:
        raise StartupError(f"generate_rules.py failed:\n{done.stderr}")
    return [str(out / "*.yml")]


def prometheus_pages(prom_url: str) -> dict[str, str]:
    """Links to the pages this Prometheus serves: Debian's 2.42 build has only the classic UI, under /classic/."""
    prefix = "" if http_ok(prom_url + "/alerts") else "/classic"
    graph = urllib.parse.urlencode({"g0.expr": P95_QUERY, "g0.tab": "0", "g0.range_input": "30m"})
    return {"Prometheus alerts": f"{prom_url}{prefix}/alerts",
            "Prometheus targets": f"{prom_url}{prefix}/targets",
            "p95 latency graph": f"{prom_url}{prefix}/graph?{graph}"}


def alertmanager_has_ui(am_url: str) -> bool:
    """Debian's Alertmanager serves a page saying it has no web UI; the real UI loads a script."""
    try:
        with urllib.request.urlopen(am_url + "/", timeout=5) as resp:
            return b"<script" in resp.read()
    except OSError:
        return False


def amtool_commands(am_url: str) -> dict[str, str]:
    """What the Alertmanager UI would show, from the command line."""
    return {"alerts (amtool)": f"amtool --alertmanager.url={am_url} alert query",
            "routes (amtool)": f"amtool --alertmanager.url={am_url} config routes"}


# -- processes --------------------------------------------------------------------------------------


class StartupError(Exception):
    pass


class Stack:
    """The processes `make run` started (scripts/processes.py), each in its own process group."""

    def __init__(self, run_dir: Path, stop: threading.Event):
        self.run_dir = run_dir
        self.stop_event = stop
        self.children: list[Process] = []

    def spawn(self, name: str, cmd: list[str], env: dict | None = None) -> Process:
        child = spawn(cmd, self.run_dir, name, env=env, cwd=self.run_dir)
        self.children.append(child)
        (self.run_dir / "pids.json").write_text(json.dumps({c.name: c.popen.pid for c in self.children}))
        return child

    def wait_ready(self, child: Process, url: str, timeout: float = 60.0) -> None:
        """Poll `url` until 2xx; fail early if the process exits or we are told to stop."""
        with self.starting(child):
            wait_http_ok(url, timeout, child, self.stop_event)

    @contextlib.contextmanager
    def starting(self, child: Process):
        """A failed wait for `child` (it exited, or the time was up) as StartupError with the end of its log."""
        try:
            yield
        except (RuntimeError, TimeoutError) as exc:
            raise StartupError(f"{child.name} did not become ready: {exc}\n{child.tail()}") from None

    def exited(self) -> Process | None:
        return next((c for c in self.children if c.popen.poll() is not None), None)

    # The demo flushes its spans into a running exporter; the exporter is then scraped one last
    # time by a running Prometheus; Alertmanager goes last so Prometheus can still reach it.
    STOP_ORDER = ("demo", "exporter", "prometheus", "alertmanager")

    def stop_all(self, timeout: float = 20.0) -> None:
        rank = {name: i for i, name in enumerate(self.STOP_ORDER)}
        for child in sorted(self.children, key=lambda c: rank.get(c.name, -1)):
            child.stop(timeout=timeout)


def python_env() -> dict:
    # The Makefile installs both packages; the source paths make a bare checkout work too.
    paths = [str(REPO / "exporter"), str(REPO / "demo"), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1"}


# -- the live summary -------------------------------------------------------------------------------


def scrape(url: str) -> dict[str, list]:
    """Samples of the exporter's /metrics by sample name, parsed with prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def requests_counted(metrics_url: str) -> float:
    try:
        return total(scrape(metrics_url), "pipeline_requests_total")
    except (urllib.error.URLError, OSError, ValueError):
        return 0.0


def total(samples: dict, name: str, **match) -> float:
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == m for k, m in match.items()))


def buckets(samples: dict, name: str, **match) -> dict[float, float]:
    """Cumulative bucket counts of histogram `name` by bound, summed over the series matching `match`."""
    out: dict[float, float] = {}
    for labels, v in samples.get(name + "_bucket", []):
        if any(labels.get(k) != m for k, m in match.items()):
            continue
        le = float(labels["le"])
        out[le] = out.get(le, 0.0) + v
    return out


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """As PromQL's histogram_quantile: linear inside the bucket, the top finite bound in +Inf."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        if cumulative[b] >= rank:
            if b == float("inf"):
                return prev_bound
            width = cumulative[b] - prev_count
            return prev_bound + (b - prev_bound) * ((rank - prev_count) / width if width else 0.0)
        prev_bound, prev_count = b, cumulative[b]
    return prev_bound


class Summary:
    """Rates over the last `window` seconds of scrapes of the exporter, as one line (or one screen on
    a terminal). Smoothed as Prometheus' rate() over a window: the demo's traffic is bursty, and
    rates between two scrapes five seconds apart jump."""

    def __init__(self, metrics_url: str, prometheus_url: str | None, window: float = 60.0,
                 clock=time.monotonic):
        self.metrics_url = metrics_url
        self.prometheus_url = prometheus_url
        self.window = window
        self.clock = clock
        self.scrapes: collections.deque[tuple[float, dict]] = collections.deque()

    def firing_alerts(self) -> list[str] | None:
        if not self.prometheus_url:
            return None
        try:
            with urllib.request.urlopen(self.prometheus_url + "/api/v1/alerts", timeout=3) as resp:
                alerts = json.load(resp)["data"]["alerts"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return None
        return sorted({a["labels"]["alertname"] for a in alerts if a.get("state") == "firing"})

    def line(self) -> str:
        now = self.clock()
        try:
            current = scrape(self.metrics_url)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return f"exporter /metrics unavailable: {exc}"
        self.scrapes.append((now, current))
        while len(self.scrapes) > 2 and now - self.scrapes[1][0] >= self.window:
            self.scrapes.popleft()
        t0, before = self.scrapes[0]
        if t0 == now:
            return "collecting…"
        dt = now - t0

        def delta(name, **match):
            return total(current, name, **match) - total(before, name, **match)

        requests = delta("pipeline_requests_total")
        errors = delta("pipeline_requests_total", status="error")
        hits = delta("pipeline_requests_total", cache_status="hit")
        misses = delta("pipeline_requests_total", cache_status="miss")
        b_now = buckets(current, "pipeline_request_duration_seconds")
        b_before = buckets(before, "pipeline_request_duration_seconds")
        p95 = histogram_quantile(0.95, {le: c - b_before.get(le, 0.0) for le, c in b_now.items()})
        cost_per_h = delta("llm_cost_usd_total") / dt * 3600
        spans = delta("spanscope_spans_received_total") / dt
        parts = [
            time.strftime("%H:%M:%S") + f" last {dt:.0f}s:",
            f"{requests / dt:6.1f} req/s",
            f"errors {100 * errors / requests:5.1f}%" if requests else "errors     -",
            f"p95 {p95:5.2f}s" if p95 is not None else "p95     -",
            f"cost ${cost_per_h:,.2f}/h",
            # Per request, as the API's request_hit_ratio and the dashboards' response cache hit ratio.
            f"response cache hits {100 * hits / (hits + misses):3.0f}%" if hits + misses
            else "response cache hits   -",
            f"spans {spans:,.0f}/s",
        ]
        alerts = self.firing_alerts()
        if alerts is not None:
            parts.append("firing: " + (", ".join(alerts) if alerts else "none"))
        return "  ".join(parts)


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=float(env("SPANSCOPE_RUN_RATE", "10")), help="demo requests/s")
    p.add_argument("--scenario", default=env("SPANSCOPE_RUN_SCENARIO", "normal"), choices=list(SCENARIOS))
    p.add_argument("--summary-seconds", type=float, default=float(env("SPANSCOPE_RUN_SUMMARY_SECONDS", "5")))
    p.add_argument("--no-prometheus", action="store_true", help="exporter and demo only")
    return p.parse_args(argv)


def start(stack: Stack, args, ports: Ports) -> dict:
    """Start everything in dependency order; returns the URLs to show."""
    run_dir = stack.run_dir
    prometheus_bin = None if args.no_prometheus else binary("prometheus")
    alertmanager_bin = None if args.no_prometheus else binary(*ALERTMANAGER_BINARIES)
    wanted = {"OTLP gRPC": ports.otlp_grpc, "OTLP HTTP": ports.otlp_http, "web": ports.web}
    if prometheus_bin:
        wanted["Prometheus"] = ports.prometheus
    if alertmanager_bin:
        wanted["Alertmanager"] = ports.alertmanager
    busy = [f"{what} port {port}" for what, port in wanted.items() if not port_free(port)]
    if busy:
        raise StartupError("in use: " + ", ".join(busy) + " (set SPANSCOPE_RUN_*_PORT, see --help)")

    web = f"http://127.0.0.1:{ports.web}"
    exporter = stack.spawn("exporter", [PYTHON, "-m", "spanscope.cli",
                                        "--otlp-grpc", f"127.0.0.1:{ports.otlp_grpc}",
                                        "--otlp-http", f"127.0.0.1:{ports.otlp_http}",
                                        "--web", f"127.0.0.1:{ports.web}",
                                        # Ctrl-C should be quick: wait at most 2s for a last scrape.
                                        "--set", "shutdown.grace=2",
                                        # Kept across restarts in the run directory (with the feature state).
                                        "--set", f"store.url=sqlite:///{run_dir / 'interactions.db'}"],
                           env=python_env())
    stack.wait_ready(exporter, web + "/readyz")
    urls = {"overview (open this first)": web + "/", "features page": web + "/features",
            "API": web + "/api/features", "metrics": web + "/metrics"}
    notes = []
    fast = args.scenario != "normal"

    if alertmanager_bin:
        notify = os.environ.get("SPANSCOPE_RUN_NOTIFY") == "1"
        src = REPO / "alertmanager/alertmanager.yml"
        if src.exists():
            secrets = Path(os.environ.get("SPANSCOPE_RUN_SECRETS_DIR", REPO / "alertmanager/secrets"))
            if notify and not secrets.is_dir():
                raise StartupError(f"SPANSCOPE_RUN_NOTIFY=1 needs the secret files in {secrets} "
                                   "(copy alertmanager/secrets.example/ and fill it in)")
            cfg = render_alertmanager_config(src, notify, secrets)
        else:
            cfg = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
            notes.append("alertmanager/alertmanager.yml not found: Alertmanager runs with a null receiver")
        (run_dir / "alertmanager.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        am_url = f"http://127.0.0.1:{ports.alertmanager}"
        am = stack.spawn("alertmanager", [alertmanager_bin, f"--config.file={run_dir / 'alertmanager.yml'}",
                                          f"--storage.path={run_dir / 'alertmanager-data'}",
                                          f"--web.listen-address=127.0.0.1:{ports.alertmanager}",
                                          f"--web.external-url={am_url}",
                                          "--cluster.listen-address="])  # no gossip port: one instance
        stack.wait_ready(am, am_url + "/-/ready")
        if alertmanager_has_ui(am_url):
            urls["Alertmanager"] = am_url
        else:
            urls |= amtool_commands(am_url)
        if not notify:
            notes.append("Alertmanager delivers nothing (receivers emptied in the loopback copy); "
                         "SPANSCOPE_RUN_NOTIFY=1 sends for real with alertmanager/secrets/")

    if prometheus_bin:
        src = REPO / "prometheus/prometheus.yml"
        if src.exists():
            rules = render_rules(run_dir / "rules", rule_overrides(web + "/", fast))
            interval = os.environ.get("SPANSCOPE_RUN_SCRAPE_INTERVAL") or (FAST_INTERVAL if fast else None)
            cfg, more = render_prometheus_config(src, ports, bool(alertmanager_bin), interval, rules)
            notes += more
            if fast:
                notes.append(f"alerting sped up for the {args.scenario} scenario: scrape and rule evaluation "
                             f"every {interval}, no alert's `for` longer than {FAST_FOR}")
        else:
            cfg = fallback_prometheus_config(ports, bool(alertmanager_bin))
            notes.append("prometheus/prometheus.yml not found: Prometheus scrapes the exporter with a minimal config")
        (run_dir / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        prom_url = f"http://127.0.0.1:{ports.prometheus}"
        prom = stack.spawn("prometheus", [prometheus_bin, f"--config.file={run_dir / 'prometheus.yml'}",
                                          f"--storage.tsdb.path={run_dir / 'prometheus-data'}",
                                          f"--web.listen-address=127.0.0.1:{ports.prometheus}",
                                          f"--web.external-url={prom_url}",
                                          "--web.enable-lifecycle",
                                          "--enable-feature=exemplar-storage",
                                          # The first rule evaluation can run before Prometheus has
                                          # discovered Alertmanager; resend after 10s, not 1m.
                                          "--rules.alert.resend-delay=10s"])
        stack.wait_ready(prom, prom_url + "/-/ready")
        urls["Prometheus"] = prom_url
        urls |= prometheus_pages(prom_url)
    else:
        notes.append(f"Prometheus and Alertmanager are not installed: {APT_HINT} (then make run again)")

    demo = stack.spawn("demo", [PYTHON, "-m", "spanscope_demo",
                                "--endpoint", f"http://127.0.0.1:{ports.otlp_http}", "--api", web,
                                "--rate", str(args.rate), "--scenario", args.scenario], env=python_env())
    # The demo is ready when its first requests are counted by the exporter.
    with stack.starting(demo):
        wait_until(lambda: requests_counted(urls["metrics"]) > 0, 60, 0.25, "the demo's first requests at the exporter",
                   demo, stack.stop_event)
    urls["OTLP"] = f"grpc 127.0.0.1:{ports.otlp_grpc} · http http://127.0.0.1:{ports.otlp_http}"
    return {"urls": urls, "notes": notes}


def banner(info: dict, stack: Stack, args) -> str:
    lines = ["spanscope is running on loopback:"]
    width = max(len(k) for k in info["urls"])
    lines += [f"  {name:<{width}}  {url}" for name, url in info["urls"].items()]
    lines.append(f"  {'demo':<{width}}  {args.scenario} traffic at {args.rate:g} req/s")
    lines += [f"  note: {n}" for n in info["notes"]]
    lines.append("  pids: " + ", ".join(f"{c.name}={c.popen.pid}" for c in stack.children))
    lines.append(f"  logs and state: {stack.run_dir} (kept across restarts; remove it to start fresh)")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    ports = Ports.from_env()
    run_dir = Path(os.environ.get("SPANSCOPE_RUN_DIR") or DEFAULT_RUN_DIR).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack(run_dir, stop)
    status = 0
    try:
        print(f"starting spanscope (logs in {run_dir}) …", flush=True)
        info = start(stack, args, ports)
        header = banner(info, stack, args)
        print(header, flush=True)
        summary = Summary(info["urls"]["metrics"], info["urls"].get("Prometheus"))
        tty = sys.stdout.isatty()
        summary.line()  # the first scrape is the baseline for rates
        while not stop.wait(args.summary_seconds):
            dead = stack.exited()
            if dead is not None:
                print(f"\n{dead.name} exited with {dead.popen.returncode}:\n{dead.tail()}", file=sys.stderr)
                status = 1
                break
            line = summary.line()
            if tty:
                # One screen: the URLs stay on top, the latest numbers below.
                sys.stdout.write("\x1b[H\x1b[2J" + header + "\n\n" + line + "\n")
                sys.stdout.flush()
            else:
                print(line, flush=True)
    except KeyboardInterrupt:
        pass
    except StartupError as exc:
        print(f"make run failed: {exc}", file=sys.stderr)
        status = 1
    finally:
        print("stopping …", flush=True)
        stack.stop_all()
        print("stopped.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
