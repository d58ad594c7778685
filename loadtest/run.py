#!/usr/bin/env python3
"""`make loadtest`: one load scenario, headless and bounded in time, then its report.

    python loadtest/run.py --scenario baseline [--users N] [--duration SECONDS] [--ramp SECONDS]
                           [--beyond-users N --beyond SECONDS]
                           [--target http://demo:8000 --exporter http://exporter:8889 --prometheus URL]
                           [--out DIR]

Without --target it starts the stack on free loopback ports (scripts/processes.py): the exporter,
the demo in serve mode and, when installed, Prometheus with the project's rules scraping every 5 s.
Locust runs headless with a run-time limit (and is killed if it overruns); a scenario that goes
beyond its load (stress) follows its load curve (scenarios.Scenario.stages) as a Locust shape. After the run it waits
until the exporter has counted every request the demo answered, reads the stack's figures over
the run's window (report.py) and writes report.md, report.json and charts to --out.
Exit status: 0 when the scenario's thresholds held, 1 when one failed, 2 when the run did not happen.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "scripts")]

import report  # noqa: E402
from sampler import Sampler  # noqa: E402
from processes import (  # noqa: E402
    PYTHON,
    Process,
    binary,
    free_port,
    spawn,
    start_exporter,
    start_prometheus,
    start_server,
    wait_until,
)
from run_stack import Ports, python_env, render_prometheus_config  # noqa: E402
from scenarios import SCENARIOS  # noqa: E402

from spanscope_demo.scenarios import SCENARIOS as FAULTS  # noqa: E402

# Past its run time Locust lets users finish (up to 35 s: an LLM call's longest) and writes its files.
LOCUST_GRACE_S = 90


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default=env("SCENARIO", "baseline"), choices=list(SCENARIOS))
    p.add_argument("--users", type=int, default=int(env("USERS") or 0) or None, help="override the user count")
    p.add_argument("--duration", type=float, default=float(env("DURATION") or 0) or None,
                   help="override the run time, seconds (ramp included)")
    p.add_argument("--ramp", type=float, default=float(env("RAMP") or 0) or None,
                   help="override the ramp, seconds (at most half the run time)")
    p.add_argument("--beyond-users", type=int, default=int(env("BEYOND_USERS") or -1),
                   help="after the run, add users up to this many (stress: 4000; 0: do not)")
    p.add_argument("--beyond", type=float, default=float(env("BEYOND") or -1),
                   help="over this many seconds (stress: 360)")
    p.add_argument("--target", default=env("TARGET") or None, help="the demo's chat API; default: start a stack")
    p.add_argument("--exporter", default=env("EXPORTER") or None, help="the exporter's web URL (with --target)")
    p.add_argument("--prometheus", default=env("PROMETHEUS") or None, help="Prometheus URL (with --target)")
    p.add_argument("--fault", default="normal", choices=list(FAULTS), help="the demo's fault scenario")
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="PATH=VALUE",
                   help="an exporter setting for the stack this run starts (e.g. limits.max_connections=4000)")
    p.add_argument("--out", default=env("OUT") or None, help="report directory (default loadtest/results/...)")
    p.add_argument("--seed", default="26")
    args = p.parse_args(argv)
    if args.target and not args.exporter:
        p.error("--target needs --exporter: the report is read from the exporter")
    if args.target and args.settings:
        p.error("--set applies to the stack this run starts, not to --target's")
    try:
        args.settings = dict(item.split("=", 1) for item in args.settings)
    except ValueError:
        p.error("--set takes PATH=VALUE")
    return args


def get_json(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


class Stack:
    """The processes this run started; stopped demo first, so its spans reach a running exporter."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.children: list[Process] = []

    def start(self, fault: str, with_prometheus: bool, settings: dict) -> dict:
        exporter = start_exporter(self.log_dir, name="exporter", env=python_env(),
                                  settings={"shutdown.grace": 5, **settings})
        self.children.append(exporter)
        urls = {"exporter": exporter.urls["web"], "prometheus": None, "pids": {"exporter": exporter.pid}}
        prometheus_bin = binary("prometheus") if with_prometheus else None
        if prometheus_bin:
            web_port = int(exporter.urls["web"].rsplit(":", 1)[1])
            ports = Ports(otlp_grpc=0, otlp_http=0, web=web_port, prometheus=0, alertmanager=0)
            cfg, _notes = render_prometheus_config(HERE.parent / "prometheus/prometheus.yml", ports, False, "5s")
            prom = start_prometheus(self.log_dir, cfg)
            self.children.append(prom)
            urls["prometheus"] = prom.urls["web"]
            urls["pids"]["prometheus"] = prom.pid
        port = free_port()
        demo = start_server([PYTHON, "-m", "spanscope_demo", "--mode", "serve", "--listen", f"127.0.0.1:{port}",
                             "--endpoint", exporter.urls["http"], "--api", exporter.urls["web"],
                             "--scenario", fault], self.log_dir, "demo", f"http://127.0.0.1:{port}/healthz",
                            env=python_env())
        self.children.insert(0, demo)
        urls["target"] = f"http://127.0.0.1:{port}"
        urls["pids"]["demo"] = demo.pid
        return urls

    def stop(self) -> None:
        for child in self.children:
            child.stop(timeout=20)


def run_locust(scenario, target: str, exporter: str, out: Path, seed: str,
               pids: dict) -> tuple[int, float, float]:
    """Locust headless for the scenario's run time; (exit status, start, end) in Unix seconds.
    Its pid goes into `pids` (the CPU sampler's): on a busy machine the load generator can be the
    bottleneck."""
    cmd = [PYTHON, "-m", "locust", "-f", str(HERE / "locustfile.py"), scenario.user_class, "--headless",
           "--host", target, "--stop-timeout", "35", "--csv", str(out / "locust"), "--csv-full-history",
           "--html", str(out / "locust.html"), "--json-file", str(out / "locust"), "--only-summary",
           "--loglevel", "WARNING"]
    env = {"LOADTEST_EXPORTER": exporter, "LOADTEST_SEED": seed,
           "LOADTEST_QUESTIONS": str(scenario.questions_per_session),
           "LOADTEST_BATCH_ITEMS": str(scenario.batch_items)}
    if scenario.beyond_users:   # the load curve as a shape: Locust then ignores users, spawn rate and run time
        env["LOADTEST_STAGES"] = json.dumps(scenario.stages())
    else:
        cmd += ["--users", str(scenario.users), "--spawn-rate", f"{scenario.spawn_rate:g}",
                "--run-time", f"{int(scenario.duration_s)}s"]
    started = time.time()
    locust = spawn(cmd, out, "locust", env=env, cwd=HERE)
    pids["locust"] = locust.pid
    try:
        locust.popen.wait(timeout=scenario.total_s + LOCUST_GRACE_S)
    except Exception:  # overran its bound (or we were interrupted): stop it, the report says so
        locust.stop(timeout=10)
    return locust.popen.returncode, started, time.time()


def wait_counted(exporter: str, target: str, before: dict, before_served: int | None, timeout: float = 60.0):
    """Until the exporter has counted as many requests as the demo answered since the start.

    The demo's batch processor exports every second and the exporter finishes a trace when its
    root arrives (or after its wait for stragglers), so the counts meet within seconds."""
    if before_served is None:
        return None

    def caught_up():
        served = get_json(target + "/api/v1/stats")["requests"] - before_served
        counted = report.requests_counted(exporter) - before["requests"]
        return counted >= served and (served, counted)
    try:
        return wait_until(caught_up, timeout, 0.5, "the exporter to count the demo's requests")
    except TimeoutError:
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    scenario = SCENARIOS[args.scenario].overridden(
        args.users, args.duration, args.ramp,
        beyond_users=None if args.beyond_users < 0 else args.beyond_users,
        beyond_s=None if args.beyond < 0 else args.beyond)
    # Absolute: Locust runs in loadtest/, where a relative OUT would name another directory.
    out = Path(args.out or HERE / "results" / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(Path(tempfile.mkdtemp(prefix="logs-", dir=out)))
    try:
        if args.target:
            urls = {"target": args.target.rstrip("/"), "exporter": args.exporter.rstrip("/"),
                    "prometheus": args.prometheus, "pids": {}}
        else:
            print(f"starting the stack (logs in {stack.log_dir}) …", flush=True)
            urls = stack.start(args.fault, with_prometheus=not args.no_prometheus, settings=args.settings)
        beyond = (f", then up to {scenario.beyond_users} users in {scenario.total_s - scenario.duration_s:g}s"
                  if scenario.beyond_users else "")
        print(f"{scenario.name}: {scenario.users} users for {scenario.duration_s:g}s{beyond} against "
              f"{urls['target']}", flush=True)
        sampler = Sampler(urls["pids"], urls["target"])
        before = report.snapshot(urls["exporter"], urls["target"])
        sampler.start()
        status, started, ended = run_locust(scenario, urls["target"], urls["exporter"], out, args.seed,
                                             sampler.pids)
        counted = wait_counted(urls["exporter"], urls["target"], before["exporter"], before["demo_requests"])
        if urls["prometheus"]:
            report.wait_scraped(urls["prometheus"], time.time())
        sampler.stop()
        after = report.snapshot(urls["exporter"], urls["target"])
        result = report.build(scenario, urls, out, started, ended, before, after, sampler.samples, args.settings,
                              locust_status=status, caught_up=counted)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"loadtest failed: {exc}", file=sys.stderr)
        return 2
    finally:
        stack.stop()
    print(report.markdown(result))
    print(f"report: {out / 'report.md'}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
