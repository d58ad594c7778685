"""spanscope benchmark harness (`make bench`): the exporter side by side with a plain baseline and
the bare decode ceiling, on the same payloads, in one run. See docs/performance.md.

Sections:
  throughput   closed-loop load (OTLP/HTTP and OTLP/gRPC) against the exporter with every feature
               on (default config) and against bench/baseline_server.py (aiohttp + prometheus_client,
               one labels().observe() per span); the ceiling (decode + walk every attribute,
               in-process). Per target: spans/s, server CPU seconds, spans per CPU second (per core),
               p50/p99 request latency, peak RSS, and the latency of a scrape every 0.5 s during the
               measured window. Ratios exporter/baseline and exporter/ceiling per core; with
               --reference PYTHON also the exporter installed in that interpreter's venv (an
               earlier build, reference-http), for the ratio exporter / reference. The targets run
               in --rounds passes (3), every other one in
               reverse order; per target the median round is reported, each ratio is the median of
               the ratios within each round, and results["throughput_rounds"] holds every round.
  scrape       /metrics scrape time (text and OpenMetrics) at 10 000 and 100 000 series.
  cardinality  RSS while 1 000 000 distinct label values hit the exporter with default limits, and
               the baseline under the same attack for context.

Results go to bench/results/latest.json (and latest.md); a markdown summary is printed.
Everything runs on loopback, in bounded loops; servers and load generators are separate processes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payloads as payload_gen
import scrape as scrape_bench
from common import (
    BENCH,
    PYTHON,
    loadavg,
    percentile,
    ratio,
    span_count,
    start_baseline,
    start_exporter,
    write_payloads,
)
from spanscope.store.db import redact

ALL_TARGETS = ["ceiling", "baseline-http", "exporter-http", "reference-http", "baseline-grpc", "exporter-grpc",
               "reference-grpc"]
# reference-http, reference-grpc: the exporter of another venv (--reference PYTHON, e.g. an earlier
# commit's build) with the same payloads, config and rounds, for the ratio exporter / reference per
# protocol. Only with --reference.
REFERENCES = ("reference-http", "reference-grpc")
OTLP_URL = {"http": "traces", "grpc": "grpc"}  # which of a server's urls a protocol's load goes to
SECTIONS = ["throughput", "scrape", "cardinality"]
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

# Defaults of a full run, and of --quick (explicit options override either).
FULL = {"duration": 10.0, "warmup": 3.0, "rounds": 3, "batches": 64, "scrapes": 20, "scrape_series": "10000,100000",
        "attack_values": 1_000_000, "attack_time_limit": 300.0}
QUICK = {"duration": 2.0, "warmup": 0.5, "rounds": 1, "batches": 16, "scrapes": 5, "scrape_series": "10000,100000",
         "attack_values": 200_000, "attack_time_limit": 60.0}

# The attack measures what distinct label values cost. Pending traces are a working set of about
# (spans per second x traces.finish_delay); at the default 1 s and the attack's ~90 000 spans/s its
# high-water mark (~150 MB, bounded by traces.max_pending) creeps up over a run and would hide
# the label values' effect, so the attack finishes traces after 0.1 s.
ATTACK_FINISH_DELAY = 0.1

MIN_JUDGED_DURATION = 5.0  # seconds measured per throughput target before its ratios are judged

TARGETS = {  # the targets: (description, check)
    "throughput_vs_baseline": "exporter / baseline spans per core >= 1.5 (every feature on)",
    "throughput_vs_ceiling": "exporter / ceiling spans per core >= 0.5",
    "scrape_10k": "scrape of 10 000 series < 100 ms (p99, text and OpenMetrics)",
    "cardinality_rss_flat": "RSS flat under a cardinality attack with default limits",
    "metrics_api_10k": "metrics API p99 < 50 ms with 10 000 active series (24 h window, every view)",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/run.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog="Full-run defaults: --duration 10 --warmup 3 --rounds 3 --batches 64 --scrapes 20 "
               "--attack-values 1000000.\n"
               "--quick defaults:   --duration 2 --warmup 0.5 --rounds 1 --batches 16 --scrapes 5 "
               "--attack-values 200000.\n"
               "Targets judged: " + "; ".join(TARGETS.values()) + ".")
    p.add_argument("--quick", action="store_true", help="short run (~2 s per target) for a smoke check")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")
    p.add_argument("--targets",
                   help=f"throughput targets (default: {','.join(ALL_TARGETS)}; {' and '.join(REFERENCES)} only "
                        f"with --reference)")
    p.add_argument("--reference", metavar="PYTHON",
                   help=f"the python executable of a venv with another spanscope installed (e.g. an earlier "
                        f"commit's): runs it as targets {' and '.join(REFERENCES)}, beside the others in every round")
    p.add_argument("--duration", type=float, help="seconds measured per throughput target (10; quick 2)")
    p.add_argument("--warmup", type=float, help="seconds of load before measuring (3; quick 0.5)")
    p.add_argument("--rounds", type=int,
                   help="passes over the throughput targets, in alternating order; per target the median round "
                        "is reported, and each ratio is the median of its rounds' ratios (3; quick 1)")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent connections of the load generator (4)")
    p.add_argument("--batches", type=int, help="distinct payloads cycled through (64; quick 16)")
    p.add_argument("--spans-per-batch", type=int, default=512, help="spans per export request (512)")
    p.add_argument("--finish-delay", type=float,
                   help="traces.finish_delay of the exporter throughput targets, in seconds "
                        "(default: the exporter's, 1.0)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="exporter_set",
                   help="a config setting of the exporter throughput targets, e.g. store.url=postgresql://... "
                        "(repeatable; default: the embedded defaults, every feature on)")
    p.add_argument("--scrape-series", help="series counts to time scrapes at (10000,100000)")
    p.add_argument("--scrapes", type=int, help="timed scrapes per size and format (20; quick 5)")
    p.add_argument("--attack-values", type=int, help="distinct label values of the cardinality attack (1000000)")
    p.add_argument("--attack-reference", type=int,
                   help="values after which RSS is the reference for flatness (half of the attack: bounded "
                        "structures such as per-label value sets and the interaction writer's queue fill first; "
                        "flat means no growth after that)")
    p.add_argument("--flat-tolerance", type=float, default=10.0,
                   help="RSS is flat when RSS at the end is within this %% of RSS at the reference (10)")
    p.add_argument("--attack-time-limit", type=float, help="seconds after which an attack stops (300; quick 60)")
    p.add_argument("--attack-rss-limit-mb", type=float, default=4096,
                   help="safety stop of the exporter attack when its RSS exceeds this (4096)")
    p.add_argument("--baseline-attack", choices=["on", "off"], default="on",
                   help="also attack the baseline, for context (on)")
    p.add_argument("--baseline-rss-limit-mb", type=float, default=2048,
                   help="stop the baseline attack when its RSS exceeds this (2048)")
    p.add_argument("--out", default=str(BENCH / "results" / "latest.json"), help="JSON results file")
    p.add_argument("--workdir", help="where payloads and server logs go (default: a temporary directory)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sections = [s for s in args.sections.split(",") if s]
    args.targets = ([t for t in args.targets.split(",") if t] if args.targets
                    else [t for t in ALL_TARGETS if t not in REFERENCES or args.reference])
    args.scrape_series = [int(x) for x in str(args.scrape_series).split(",") if x]
    for s in args.sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s!r}; choose from {SECTIONS}")
    for t in args.targets:
        if t not in ALL_TARGETS:
            p.error(f"unknown target {t!r}; choose from {ALL_TARGETS}")
    for t in REFERENCES:
        if t in args.targets and not args.reference:
            p.error(f"target {t}: give the reference's python with --reference PYTHON")
    for setting in args.exporter_set:
        if "=" not in setting:
            p.error(f"--set {setting!r}: expected PATH=VALUE")
    if args.rounds < 1:
        p.error("--rounds: at least 1")
    if args.attack_reference is None:
        args.attack_reference = args.attack_values // 2
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd: list[str], timeout: float) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def metric_sums(metrics_url: str, names: list[str]) -> dict:
    """Sum of the samples of each named metric in a text scrape; `name{label="value"}` sums only
    the samples with that label value."""
    with urllib.request.urlopen(metrics_url, timeout=60) as resp:
        text = resp.read().decode()
    wanted = [(key, *key.rstrip("}").split("{", 1)) if "{" in key else (key, key, None) for key in names]
    sums = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        for key, metric, matcher in wanted:
            if name == metric and (matcher is None or matcher in line):
                sums[key] += float(line.rsplit(" ", 1)[1])
    return sums


def build_info(metrics_url: str) -> dict:
    """The labels of spanscope_build_info: version, Python, which span reader (and whatever else an
    earlier build labelled it with)."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(metrics_url, timeout=60) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "spanscope_build_info":
            return dict(family.samples[0].labels)
    return {}


FINISHED_EARLY = {bound: f'spanscope_traces_completed_total{{reason="{bound}"}}'
                  for bound in ("traces_limit", "spans_limit")}
EXPORTER_SELF = ["spanscope_spans_received_total", "spanscope_spans_rejected_total",
                 "spanscope_requests_throttled_total", *FINISHED_EARLY.values(),
                 "spanscope_interactions_written_total", "spanscope_interactions_dropped_total"]


class LoadedScrapes(threading.Thread):
    """Scrapes a server's /metrics while the load generator saturates it, from the end of the warmup
    until stopped: what Prometheus sees of a busy sidecar (its scrape latency, against the baseline's)."""

    def __init__(self, url: str, warmup: float, every: float = 0.5):
        super().__init__(daemon=True)
        self.url, self.warmup, self.every = url, warmup, every
        self.stopped = threading.Event()
        self.latencies_ms: list[float] = []

    def run(self) -> None:
        if self.stopped.wait(self.warmup):
            return
        while not self.stopped.is_set():
            started = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=60) as resp:
                resp.read()
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.stopped.wait(self.every)

    def result(self) -> dict:
        self.stopped.set()
        self.join(70)
        lat = self.latencies_ms
        return {"scrapes": len(lat), "p50_ms": round(percentile(lat, 50), 1) if lat else None,
                "p99_ms": round(percentile(lat, 99), 1) if lat else None,
                "max_ms": round(max(lat), 1) if lat else None}


# --- sections --------------------------------------------------------------------------------

def throughput(args, workdir: Path, payload_file: Path) -> list[dict]:
    """Every target, args.rounds times: a list of rounds, each {target key: result}."""
    loadgen = [PYTHON, str(BENCH / "loadgen.py"), "throughput", "--payloads", str(payload_file),
               "--warmup", str(args.warmup), "--duration", str(args.duration),
               "--concurrency", str(args.concurrency)]
    timeout = args.warmup + args.duration + 120
    settings = {"limits.ingest_queue": 1024}
    if args.finish_delay is not None:
        settings["traces.finish_delay"] = args.finish_delay
    settings.update(setting.split("=", 1) for setting in args.exporter_set)

    def measure(target: str) -> dict:
        load_at_start = loadavg()
        try:
            if target == "ceiling":
                res = run_json([PYTHON, str(BENCH / "ceiling.py"), "--payloads", str(payload_file),
                                "--warmup", str(args.warmup), "--duration", str(args.duration)], timeout)
            else:
                kind, protocol = target.split("-")
                python = args.reference if kind == "reference" else PYTHON
                server = (start_baseline(workdir, DURATION_BUCKETS, name=target) if kind == "baseline"
                          else start_exporter(workdir, settings, name=target, python=python))
                with server:
                    scrapes = LoadedScrapes(server.urls["metrics"], args.warmup)
                    scrapes.start()
                    try:
                        res = run_json(loadgen + ["--protocol", protocol, "--target", server.urls[OTLP_URL[protocol]],
                                                  "--server-pid", str(server.pid)], timeout)
                    finally:
                        res_scrapes = scrapes.result()
                    res["scrape_under_load"] = res_scrapes
                    if kind != "baseline":
                        res["exporter_counters"] = metric_sums(server.urls["metrics"], EXPORTER_SELF)
                        res["build"] = build_info(server.urls["metrics"])
        except Exception as exc:  # one failed target must not lose the others
            log(f"  {target} failed: {exc}")
            res = {"error": str(exc)}
        res["loadavg_at_start"] = load_at_start
        if "error" not in res:
            log(f"  {res['spans_per_s']} spans/s, {res['spans_per_core_s']} spans per CPU second, "
                f"p99 {res['latency_p99_ms']} ms, errors {res.get('errors', 0)}, throttled {res.get('throttled', 0)}")
        return res

    rounds = []
    for n in range(args.rounds):
        results = {}
        for target in round_order(args.targets, n):
            log(f"throughput: {target}, round {n + 1} of {args.rounds} (load average {loadavg()[0]})")
            results[target.replace("-", "_")] = measure(target)
        rounds.append(results)
    return rounds


def round_order(targets: list[str], n: int) -> list[str]:
    """Every other round backwards: the machine's drift over the run falls on every target alike."""
    return targets if n % 2 == 0 else targets[::-1]


def per_core(results: dict, key: str) -> float | None:
    return (results.get(key) or {}).get("spans_per_core_s")


def median_rounds(rounds: list[dict]) -> dict:
    """Per target, its round with the median spans per core (the lower median for an even count; any
    round when all failed), with `spans_per_core_rounds`: the rate of each round, in round order."""
    out = {}
    for key in rounds[0]:
        measured = [r[key] for r in rounds if per_core(r, key)]
        chosen = sorted(measured, key=lambda r: r["spans_per_core_s"])[(len(measured) - 1) // 2] if measured \
            else rounds[0][key]
        out[key] = {**chosen, "spans_per_core_rounds": [per_core(r, key) for r in rounds]}
    return out


RATIOS = {  # name: (numerator, denominator), spans per core of targets measured in the same round
    "exporter_vs_baseline_http": ("exporter_http", "baseline_http"),
    "exporter_vs_baseline_grpc": ("exporter_grpc", "baseline_grpc"),
    "exporter_vs_ceiling_http": ("exporter_http", "ceiling"),
    "exporter_vs_ceiling_grpc": ("exporter_grpc", "ceiling"),
    "baseline_vs_ceiling_http": ("baseline_http", "ceiling"),
    "exporter_vs_reference_http": ("exporter_http", "reference_http"),
    "exporter_vs_reference_grpc": ("exporter_grpc", "reference_grpc"),
}


def ratio_rounds(rounds: list[dict]) -> dict:
    """Each ratio in each round (None where a target failed or did not run)."""
    return {name: [ratio(per_core(r, a), per_core(r, b)) for r in rounds] for name, (a, b) in RATIOS.items()}


def ratios(rounds: list[dict]) -> dict:
    """Each ratio as the median of its rounds' ratios: within a round its two targets ran at most a
    minute or two apart, across rounds several minutes."""
    out = {}
    for name, values in ratio_rounds(rounds).items():
        values = [v for v in values if v is not None]
        out[name] = round(statistics.median(values), 4) if values else None
    return out


def scrape(args, workdir: Path) -> dict:
    biggest = max(args.scrape_series)
    # Series are made of distinct component names: lift the per-label value cap along with the series limit.
    settings = {"traces.finish_delay": 0.05, "limits.max_series_per_metric": max(1_000_000, biggest),
                "limits.label_values": max(1_000_000, biggest)}
    log(f"scrape: series {args.scrape_series} (load average {loadavg()[0]})")
    with start_exporter(workdir, settings, name="exporter-scrape") as server:
        return scrape_bench.run(server.urls, args.scrape_series, args.scrapes, settle=0.4,
                                log=log)


def _assess_attack(res: dict, reference: int, tolerance: float) -> dict:
    samples = res["samples"]
    ref = next((s for s in samples if s["values"] >= reference), None)
    last = samples[-1] if samples else None
    out = {"reference_values": reference}
    if ref and last and last["values"] > ref["values"]:
        final = max(last["rss_mb"], res["rss_final_mb"])
        out["rss_at_reference_mb"] = ref["rss_mb"]
        out["rss_at_end_mb"] = final
        out["growth_pct"] = round((final - ref["rss_mb"]) / ref["rss_mb"] * 100, 1)
        out["mb_per_100k_values"] = round((final - ref["rss_mb"]) / (last["values"] - ref["values"]) * 100_000, 2)
        out["flat"] = out["growth_pct"] <= tolerance
    return out


def cardinality(args, workdir: Path) -> dict:
    sample_every = max(1, args.attack_values // 8)
    base = [PYTHON, str(BENCH / "loadgen.py"), "attack", "--protocol", "http",
            "--concurrency", str(args.concurrency), "--sample-every", str(sample_every),
            "--time-limit", str(args.attack_time_limit), "--spans-per-batch", str(args.spans_per_batch)]
    timeout = args.attack_time_limit + 120
    out = {"values": args.attack_values, "reference_values": args.attack_reference,
           "tolerance_pct": args.flat_tolerance}
    log(f"cardinality: {args.attack_values} distinct values against the exporter (default limits; "
        f"load average {loadavg()[0]})")
    try:
        with start_exporter(workdir, {"traces.finish_delay": ATTACK_FINISH_DELAY}, name="exporter-attack") as server:
            res = run_json(base + ["--target", server.urls["traces"], "--server-pid", str(server.pid),
                                   "--values", str(args.attack_values), "--settle", str(ATTACK_FINISH_DELAY + 1),
                                   "--rss-limit-mb", str(args.attack_rss_limit_mb)],
                           timeout)
            res["exporter_counters"] = metric_sums(server.urls["metrics"], EXPORTER_SELF + [
                "spanscope_series_overflowed_total", "spanscope_label_values_capped_total",
                "spanscope_active_series"])
        res.update(_assess_attack(res, args.attack_reference, args.flat_tolerance))
        out["exporter"] = res
        log(f"  exporter: {res['values_sent']} values, RSS {res.get('rss_at_reference_mb')} -> "
            f"{res.get('rss_at_end_mb')} MB ({res.get('growth_pct')}%), stop: {res['stop_reason']}")
    except Exception as exc:
        log(f"  exporter attack failed: {exc}")
        out["exporter"] = {"error": str(exc)}
    if args.baseline_attack == "on":
        log(f"cardinality: the same attack against the baseline (stops above {args.baseline_rss_limit_mb:g} MB RSS)")
        try:
            with start_baseline(workdir, DURATION_BUCKETS, name="baseline-attack") as server:
                res = run_json(base + ["--target", server.urls["traces"], "--server-pid", str(server.pid),
                                       "--values", str(args.attack_values), "--settle", "0.5",
                                       "--rss-limit-mb", str(args.baseline_rss_limit_mb)], timeout)
            # It usually hits the RSS limit before the exporter's reference: judge its growth from a
            # quarter of what it took.
            res.update(_assess_attack(res, min(args.attack_reference, res["values_sent"] // 4), args.flat_tolerance))
            out["baseline"] = res
            log(f"  baseline: {res['values_sent']} values, RSS {res.get('rss_at_reference_mb')} -> "
                f"{res.get('rss_at_end_mb')} MB ({res.get('growth_pct')}%), stop: {res['stop_reason']}")
        except Exception as exc:
            log(f"  baseline attack failed: {exc}")
            out["baseline"] = {"error": str(exc)}
    return out


# --- verdicts and report ---------------------------------------------------------------------

def verdicts(result: dict) -> list[dict]:
    out = []
    r = result.get("ratios") or {}

    def add(key, value, met, detail=""):
        out.append({"target": key, "description": TARGETS[key], "value": value,
                    "met": met, "detail": detail})

    if result.get("throughput"):
        # A short run ends before most of its traces are finished (traces.finish_delay) and their
        # interactions written: it measures less than every feature's work, and is not judged.
        judged = result["options"]["duration"] >= MIN_JUDGED_DURATION
        detail = "" if judged else f"not judged: runs shorter than {MIN_JUDGED_DURATION:g} s flatter the exporter"
        vals = [v for v in (r.get("exporter_vs_baseline_http"), r.get("exporter_vs_baseline_grpc")) if v]
        add("throughput_vs_baseline", {"http": r.get("exporter_vs_baseline_http"),
                                       "grpc": r.get("exporter_vs_baseline_grpc")},
            min(vals) >= 1.5 if vals and judged else None, detail)
        vals = [v for v in (r.get("exporter_vs_ceiling_http"), r.get("exporter_vs_ceiling_grpc")) if v]
        add("throughput_vs_ceiling", {"http": r.get("exporter_vs_ceiling_http"),
                                      "grpc": r.get("exporter_vs_ceiling_grpc")},
            min(vals) >= 0.5 if vals and judged else None, detail)
    sc = (result.get("scrape") or {}).get("10000")
    if sc:
        worst = max(sc["text"]["p99_ms"], sc["openmetrics"]["p99_ms"])
        add("scrape_10k", worst, worst < 100, f"{sc['series']} series, worst p99 of the two formats in ms")
        api = sc.get("metrics_api")
        if api:
            add("metrics_api_10k", api["worst_p99_ms"], api["worst_p99_ms"] < 50, "worst p99 over the views in ms")
    att = (result.get("cardinality") or {}).get("exporter") or {}
    if "flat" in att:
        add("cardinality_rss_flat", att["growth_pct"], att["flat"],
            f"RSS {att['rss_at_reference_mb']} MB after {att['reference_values']} values, "
            f"{att['rss_at_end_mb']} MB after {att['values_sent']}; growth in % "
            f"(tolerance {result['cardinality']['tolerance_pct']:g}%)")
    return out


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(result: dict) -> str:
    host, git = result["host"], result["host"].get("git") or {}
    commit = f"{git.get('commit')}{' + uncommitted exporter changes' if git.get('exporter_modified') else ''}"
    lines = [f"spanscope bench — {result['date']} — commit {commit} — {host['cpus']} CPUs, "
             f"load average at start {' / '.join(map(str, host['loadavg_start']))}", ""]
    tp = result.get("throughput") or {}
    if result["options"].get("exporter_set"):
        settings = ", ".join(result["options"]["exporter_set"])
        lines += [f"Exporter settings: {settings} (on top of the embedded defaults).", ""]
    if tp:
        lines += ["| target | spans/s | server CPU s | spans/s per core | p50 ms | p99 ms | peak RSS MB "
                  "| scrape under load p50 / p99 ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for key, r in tp.items():
            if "error" in r:
                lines.append(f"| {key} | error: {r['error'][:60]} | | | | | | |")
                continue
            loaded = r.get("scrape_under_load") or {}
            lines.append(f"| {key.replace('_', ' ')} | {fmt(r['spans_per_s'])} | {fmt(r['server_cpu_s'], 2)} | "
                         f"{fmt(r['spans_per_core_s'])} | {fmt(r['latency_p50_ms'], 1)} | "
                         f"{fmt(r['latency_p99_ms'], 1)} | {fmt(r['server_peak_rss_mb'])} | "
                         f"{fmt(loaded.get('p50_ms'), 1)} / {fmt(loaded.get('p99_ms'), 1)} |")
        n_rounds = result["options"]["rounds"]
        if n_rounds > 1:
            each = [f"{key.replace('_', ' ')} {' / '.join(fmt(v) for v in r['spans_per_core_rounds'])}"
                    for key, r in tp.items()]
            lines += ["", f"Each target ran {n_rounds} times, every other round in reverse order; the table "
                          f"shows its median round. Spans/s per core in each round: " + "; ".join(each) + "."]
        stored = [f"{key.replace('_', ' ')} {fmt(c['spanscope_interactions_written_total'])} written, "
                  f"{fmt(c['spanscope_interactions_dropped_total'])} dropped"
                  for key, r in tp.items() for c in [r.get("exporter_counters")] if c]
        if stored:  # every feature on means the interaction store keeps up too, or says it did not
            lines += ["", "Interaction store during the run: " + "; ".join(stored) + "."]
        assembly = [f"{key.replace('_', ' ')} {fmt(c[FINISHED_EARLY['traces_limit']])} finished early at "
                    f"traces.max_pending, {fmt(c[FINISHED_EARLY['spans_limit']])} at traces.max_pending_spans"
                    for key, r in tp.items() for c in [r.get("exporter_counters")] if c]
        if assembly:
            lines += ["", "Trace assembly during the run: " + "; ".join(assembly) + "."]
        r, spread = result["ratios"], result["ratio_rounds"]

        def cell(name):  # the median, and with several rounds the range of the rounds' ratios
            values = [v for v in spread[name] if v is not None]
            rng = f" ({fmt(min(values), 2)}–{fmt(max(values), 2)})" if len(values) > 1 else ""
            return fmt(r[name], 2) + rng

        title = "ratio (spans/s per core)" + (", median (range) of the rounds" if n_rounds > 1 else "")
        lines += ["", f"| {title} | HTTP | gRPC |", "|---|---:|---:|",
                  f"| exporter / baseline | {cell('exporter_vs_baseline_http')} "
                  f"| {cell('exporter_vs_baseline_grpc')} |",
                  f"| exporter / ceiling | {cell('exporter_vs_ceiling_http')} | {cell('exporter_vs_ceiling_grpc')} |",
                  *(["| exporter / reference | "
                     + " | ".join(cell(f"exporter_vs_reference_{p}") if f"reference_{p}" in tp else "–"
                                  for p in ("http", "grpc")) + " |"]
                    if "reference_http" in tp or "reference_grpc" in tp else []), ""]
        builds = [f"{key.replace('_', ' ')}: " + ", ".join(f"{label} {value}" for label, value in b.items())
                  for key, r in tp.items() for b in [r.get("build")] if b]
        if builds:
            lines += ["Exporter builds: " + "; ".join(builds) + ".", ""]
        ref = result.get("reference")
        if ref:
            git = ref["git"]
            modified = " + uncommitted exporter changes" if git.get("exporter_modified") else ""
            lines += [f"Reference: spanscope {ref['version']} of {ref['path']} (commit {git.get('commit')}{modified}), "
                      f"Python {ref['python_version']} ({ref['python']}).", ""]
    sc = result.get("scrape") or {}
    if sc:
        lines += ["| scrape | series (label sets) | text median / p99 ms | OpenMetrics median / p99 ms | text bytes |",
                  "|---|---:|---:|---:|---:|"]
        for size, s in sc.items():
            lines.append(f"| {int(size):,} | {s['series']:,} ({s['label_sets']:,}) | "
                         f"{s['text']['median_ms']} / {s['text']['p99_ms']} | "
                         f"{s['openmetrics']['median_ms']} / {s['openmetrics']['p99_ms']} | {s['text']['bytes']:,} |")
        lines.append("")
    card = result.get("cardinality") or {}
    if card:
        lines += ["| cardinality attack | values sent | RSS at reference MB | RSS at end MB | growth "
                  "| MB per 100k values | stop |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for who in ("exporter", "baseline"):
            a = card.get(who)
            if not a:
                continue
            if "error" in a:
                lines.append(f"| {who} | error: {a['error'][:60]} | | | | | |")
                continue
            lines.append(f"| {who} | {a['values_sent']:,} | {fmt(a.get('rss_at_reference_mb'), 1)} | "
                         f"{fmt(a.get('rss_at_end_mb'), 1)} | {fmt(a.get('growth_pct'), 1)}% | "
                         f"{fmt(a.get('mb_per_100k_values'), 2)} | {a['stop_reason']} |")
        lines.append("")
    if result.get("targets"):
        lines += ["| target | value | met |", "|---|---|---|"]
        for t in result["targets"]:
            v = t["value"]
            v = ", ".join(f"{k} {fmt(x, 2)}" for k, x in v.items()) if isinstance(v, dict) else fmt(v, 1)
            met = "yes" if t["met"] else "no" if t["met"] is False else f"– ({t['detail']})" if t["detail"] else "–"
            lines.append(f"| {t['description']} | {v} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    host = {"cpus": os.cpu_count(), "loadavg_start": loadavg(), "python": platform.python_version(),
            "platform": platform.platform(), "protobuf": _protobuf_info(), "uvloop": _has("uvloop"),
            "git": _git()}
    log(f"spanscope bench: load average at start {host['loadavg_start']}")
    reference = (reference_info(args.reference) if set(REFERENCES) & set(args.targets) and "throughput" in args.sections
                 else None)
    tmp = tempfile.TemporaryDirectory(prefix="spanscope-bench-") if not args.workdir else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "schema": 1,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": host,
        "options": {k: [redact(x) for x in v] if k == "exporter_set" else v
                    for k, v in vars(args).items() if k not in ("out", "workdir")},
    }
    if reference:
        result["reference"] = reference
    try:
        if "throughput" in args.sections:
            batches = payload_gen.batches(args.batches, args.spans_per_batch, base_ns=time.time_ns() - 60 * 10**9)
            payload_file = workdir / "payloads.bin"
            write_payloads(payload_file, batches)
            counts = [span_count(b) for b in batches]
            result["payloads"] = {"batches": len(batches), "spans": sum(counts),
                                  "spans_per_request_mean": round(sum(counts) / len(counts), 1),
                                  "bytes_per_request_mean": round(sum(map(len, batches)) / len(batches))}
            rounds = throughput(args, workdir, payload_file)
            result["throughput"] = median_rounds(rounds)
            result["ratios"] = ratios(rounds)
            result["ratio_rounds"] = ratio_rounds(rounds)
            result["throughput_rounds"] = rounds
        if "scrape" in args.sections:
            try:
                result["scrape"] = scrape(args, workdir)
            except Exception as exc:
                log(f"scrape failed: {exc}")
                result["scrape_error"] = str(exc)
        if "cardinality" in args.sections:
            result["cardinality"] = cardinality(args, workdir)
    finally:
        if tmp is not None:
            tmp.cleanup()
    host["loadavg_end"] = loadavg()
    result["elapsed_s"] = round(time.time() - started, 1)
    result["targets"] = verdicts(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    out.with_suffix(".md").write_text(report)
    print(report)
    log(f"results: {out} ({result['elapsed_s']} s)")
    return 0


def reference_info(python: str) -> dict:
    """Which spanscope the reference's interpreter runs: its version, where it is installed, and the
    commit of that checkout (None when it is not one)."""
    probe = ("import json, os, platform, spanscope; print(json.dumps({'version': spanscope.__version__, "
             "'python_version': platform.python_version(), 'path': os.path.dirname(spanscope.__file__)}))")
    try:
        info = run_json([python, "-c", probe], 60)
    except (OSError, RuntimeError) as exc:
        raise SystemExit(f"--reference {python}: cannot import spanscope with it: {exc}") from None
    return {"python": python, **info, "git": _git(Path(info["path"]).parent)}


def _git(exporter: Path = BENCH.parent / "exporter") -> dict:
    """The commit of the checkout that holds `exporter` (the package's parent directory), and whether
    its working tree there differs from it (read-only)."""
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=exporter, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.strip()
        except OSError:
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "exporter_modified": bool(git("status", "--porcelain", "--", "."))}


def _has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _protobuf_info() -> str:
    import google.protobuf
    from google.protobuf.internal import api_implementation
    return f"{google.protobuf.__version__} ({api_implementation.Type()})"


if __name__ == "__main__":
    sys.exit(main())
