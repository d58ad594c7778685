"""The load report, read from the stack: the exporter's /metrics and metrics API, Prometheus, the
demo's span counts, beside Locust's own client-side figures.

Stack figures cover the run's window exactly where they can: counters and histogram buckets of the
exporter's /metrics are read before and after the run and subtracted (percentiles interpolated in
the difference as PromQL's histogram_quantile does). The metrics API answers in whole minutes (its
window therefore also holds the minute before and after the run), Prometheus over [start, end].
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import breaking
from run_stack import buckets, histogram_quantile, scrape, total
from scenarios import SCRAPE_MAX_S

from spanscope.config import load_embedded
from spanscope.web.connections import connection_cap
from spanscope_demo.telemetry import SPAN_QUEUE_SIZE

QUANTILES = (0.5, 0.95, 0.99)
API_VIEWS = ("dashboard", "performance", "costs", "cache", "health")
COUNTERS = {   # report key -> (sample name, label match)
    "requests": ("pipeline_requests_total", {}),
    "errors": ("pipeline_requests_total", {"status": "error"}),
    "cache_hits": ("pipeline_requests_total", {"cache_status": "hit"}),
    "cache_misses": ("pipeline_requests_total", {"cache_status": "miss"}),
    "llm_cost_usd": ("llm_cost_usd_total", {}),
    "spans_received": ("spanscope_spans_received_total", {}),
    "spans_rejected": ("spanscope_spans_rejected_total", {}),
    "requests_throttled": ("spanscope_requests_throttled_total", {}),
    "trace_spans_dropped": ("spanscope_trace_spans_dropped_total", {}),
    "connections_refused": ("spanscope_connections_refused_total", {}),
    "interactions_dropped": ("spanscope_interactions_dropped_total", {}),
    "cpu_seconds": ("process_cpu_seconds_total", {}),
}
EXPLANATION = (
    "Client-side latency (Locust) is measured from the moment Locust sends the request to the moment it "
    "has read the answer; span-derived latency is the `gateway` root span, from the moment the demo "
    "started handling the parsed request to its simulated end. The difference is what no span covers: "
    "the HTTP round trip and connection handling, waiting in the demo's event loop before the request "
    "is handled and after its simulated end before the answer is written (one loop serves every user, "
    "so this grows with load and with CPU contention), JSON encoding, and the load generator's own "
    "scheduling (Locust's greenlets on a shared CPU). Span-derived percentiles are also interpolated "
    "inside histogram buckets (as histogram_quantile does); Locust's are from its own rounded samples. "
    "When client-side p95 is far above span-derived p95, the time goes to the serving path and the "
    "machine, not to the pipeline."
)


# -- reading the stack ------------------------------------------------------------------------------


def requests_counted(exporter: str) -> float:
    return total(scrape(exporter + "/metrics"), "pipeline_requests_total")


def _get_json(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


def snapshot(exporter: str, target: str) -> dict:
    """The exporter's counters and latency buckets and the demo's counts, now."""
    samples = scrape(exporter + "/metrics")
    exp = {key: total(samples, name, **match) for key, (name, match) in COUNTERS.items()}
    exp["memory_bytes"] = total(samples, "process_resident_memory_bytes")
    exp["refused_by_listener"] = {labels["listener"]: value
                                  for labels, value in samples.get("spanscope_connections_refused_total", [])}
    exp["latency"] = buckets(samples, "pipeline_request_duration_seconds")
    family = "pipeline_component_duration_seconds"
    components = sorted({labels["component"] for labels, _ in samples.get(family + "_bucket", [])})
    exp["components"] = {c: buckets(samples, family, component=c) for c in components}
    try:
        demo = _get_json(target + "/api/v1/stats")
    except (OSError, ValueError):   # a --target that is not the demo: no server-side counts
        demo = {}
    return {"time": time.time(), "exporter": exp, "demo_requests": demo.get("requests"),
            "demo_spans": demo.get("spans")}


def _quantiles(after: dict, before: dict) -> dict:
    diff = {le: c - before.get(le, 0.0) for le, c in after.items()}
    return {f"p{round(q * 100)}": histogram_quantile(q, diff) for q in QUANTILES}


def _prom(prometheus: str, path: str, **params):
    return _get_json(f"{prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}")["data"]


def wait_scraped(prometheus: str, after: float, timeout: float = 20.0) -> None:
    """Until Prometheus has scraped the exporter once more (the run's last counts are in it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = _prom(prometheus, "query", query='max(timestamp(up{job="spanscope"}))')["result"]
        if result and float(result[0]["value"][1]) > after:
            return
        time.sleep(0.5)


def prometheus_figures(prometheus: str, start: float, end: float, hold: tuple[float, float] | None = None) -> dict:
    """Prometheus over [start, end]: alerts, p95, the exporter's peaks and its series for the charts and
    the breaking point (`hold`: the window of the scenario's full load, Unix seconds)."""
    window = f"{max(1, math.ceil(end - start))}s"
    job = '{job="spanscope"}'
    p95 = "histogram_quantile(0.95, sum by (le) ({}(pipeline_request_duration_seconds_bucket[{}])))"
    p50 = p95.replace("0.95", "0.5")

    def scalar(query: str, at: float = end) -> float | None:
        result = _prom(prometheus, "query", query=query, time=at)["result"]
        return float(result[0]["value"][1]) if result else None

    def series(query: str, step: int = 5) -> list[tuple[float, float]]:
        result = _prom(prometheus, "query_range", query=query, start=start, end=end, step=step)["result"]
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []

    # Watchdog always fires (the dead man's switch): left out, it says nothing about the run.
    fired = _prom(prometheus, "query_range", query='ALERTS{alertstate="firing", alertname!="Watchdog"}',
                  start=start, end=end + 60, step=5)
    held = None
    if hold:
        held_window = f"{max(1, math.ceil(hold[1] - hold[0]))}s"
        held = {"scrape_duration_max_s": scalar(f"max_over_time(scrape_duration_seconds{job}[{held_window}])",
                                                hold[1]),
                "p95_s": scalar(p95.format("increase", held_window), hold[1])}
    return {
        "alerts_fired": sorted({r["metric"]["alertname"] for r in fired["result"]}),
        "p95_s": scalar(p95.format("increase", window)),
        "scrape_duration_max_s": scalar(f"max_over_time(scrape_duration_seconds{job}[{window}])"),
        "scrapes": scalar(f"count_over_time(scrape_duration_seconds{job}[{window}])"),
        "cpu_cores_max": scalar(f"max_over_time(rate(process_cpu_seconds_total{job}[30s])[{window}:5s])"),
        "memory_max_bytes": scalar(f"max_over_time(process_resident_memory_bytes{job}[{window}])"),
        "queue_depth_max": scalar(f"max_over_time(spanscope_ingest_queue_depth{job}[{window}])"),
        "processing_p99_max_s": scalar("max_over_time(histogram_quantile(0.99, sum by (le) "
                                       f"(rate(spanscope_processing_seconds_bucket[30s])))[{window}:5s])"),
        "at_scenario_load": held,
        "timeline": {
            "p95_s": series(p95.format("rate", "30s")),
            "p50_s": series(p50.format("rate", "30s")),
            "requests_per_s": series("sum(rate(pipeline_requests_total[30s]))"),
            "spans_received_per_s": series("sum(rate(spanscope_spans_received_total[30s]))"),
            "scrape": series(f"scrape_duration_seconds{job}"),
            "queue.exporter": series(f"spanscope_ingest_queue_depth{job}"),
            "throttled": series("sum(spanscope_requests_throttled_total)"),
            "refused": series("sum(spanscope_connections_refused_total)"),
        },
    }


# -- Locust's own figures ----------------------------------------------------------------------------


def locust_figures(out: Path) -> dict:
    """Per request name: count, failures, rps and percentiles (ms) from Locust's final JSON stats
    (written after the last user stopped; the CSV totals are taken at the run-time limit, before
    requests still in flight have answered), and its per-second history (CSV) for the charts."""
    stats, history = out / "locust.json", out / "locust_stats_history.csv"
    if not stats.exists():
        return {"requests": {}, "history": []}
    by_name = {}
    for entry in json.loads(stats.read_text()):
        times = {float(ms): n for ms, n in entry["response_times"].items()}
        seconds = max(entry["last_request_timestamp"] - entry["start_time"], 1e-9)
        by_name[entry["name"]] = {"count": entry["num_requests"], "failures": entry["num_failures"],
                                  "rps": entry["num_requests"] / seconds,
                                  **{f"p{round(q * 100)}_ms": _percentile(times, q) for q in QUANTILES}}
    rows = []
    if history.exists():
        with history.open() as f:
            lines = list(csv.DictReader(f))
        chat = {r["Timestamp"]: r for r in lines if r["Name"] in ("chat", "chat batch")}
        rows = [{"t": float(r["Timestamp"]), "users": int(r["User Count"]), "rps": float(r["Requests/s"]),
                 "failures_per_s": float(r["Failures/s"]), "p95_ms": _number(r["95%"]),
                 "chat_p50_ms": _number(chat.get(r["Timestamp"], {}).get("50%")),
                 "chat_p95_ms": _number(chat.get(r["Timestamp"], {}).get("95%"))}
                for r in lines if r["Name"] == "Aggregated"]
    return {"requests": by_name, "history": rows}


def _percentile(counts: dict[float, int], q: float) -> float | None:
    """The smallest recorded time with at least q of the requests at or below it (Locust's own
    response times are rounded to two significant digits above 100 ms)."""
    n = sum(counts.values())
    if not n:
        return None
    rank, seen = math.ceil(q * n), 0
    for ms in sorted(counts):
        seen += counts[ms]
        if seen >= rank:
            return ms
    return max(counts)


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):   # "N/A" before the first answer
        return None


# -- the report -----------------------------------------------------------------------------------


def limits(settings: dict | None = None) -> dict:
    """The limits the breaking point is measured against: the exporter's defaults with the run's
    settings (`--set limits.x=n`), its connection cap lowered as it lowers it under this machine's
    file-descriptor limit, the demo SDK's span queue and the machine's CPUs."""
    exporter = load_embedded("config.yaml")["limits"]
    exporter.update({k.split(".", 1)[1]: int(v) for k, v in (settings or {}).items() if k.startswith("limits.")})
    return {"max_connections": connection_cap(exporter["max_connections"]), "ingest_queue": exporter["ingest_queue"],
            "sdk_queue": SPAN_QUEUE_SIZE, "cpus": os.cpu_count() or 1}


def build(scenario, urls: dict, out: Path, start: float, end: float, before: dict, after: dict,
          samples: list[dict], settings: dict, locust_status: int | None, caught_up) -> dict:
    exp_b, exp_a = before["exporter"], after["exporter"]
    stack = {key: exp_a[key] - exp_b[key] for key in COUNTERS}
    seconds = max(end - start, 1e-9)
    requests = stack["requests"]
    lookups = stack["cache_hits"] + stack["cache_misses"]
    stack.update({
        "latency_s": _quantiles(exp_a["latency"], exp_b["latency"]),
        "components_s": {c: _quantiles(b, exp_b["components"].get(c, {})) for c, b in exp_a["components"].items()},
        "throughput_rps": requests / seconds,
        "error_ratio": stack["errors"] / requests if requests else None,
        "cache_hit_ratio": stack["cache_hits"] / lookups if lookups else None,
        "cost_per_1000_requests_usd": 1000 * stack["llm_cost_usd"] / requests if requests else None,
        "cpu_cores_mean": stack["cpu_seconds"] / seconds,
        "memory_bytes_end": exp_a["memory_bytes"],
        "refused_by_listener": {k: v - exp_b["refused_by_listener"].get(k, 0.0)
                                for k, v in exp_a["refused_by_listener"].items()},
    })
    demo = None
    if after["demo_requests"] is not None and before["demo_requests"] is not None:
        spans_b, spans_a = before["demo_spans"] or {}, after["demo_spans"] or {}
        demo = {"requests_answered": after["demo_requests"] - before["demo_requests"],
                **{f"spans_{k}": spans_a.get(k, 0) - spans_b.get(k, 0) for k in spans_a}}
    minutes = min(1440, max(5, math.ceil(seconds / 60) + 1))
    api = {}
    for view in API_VIEWS:
        try:
            api[view] = _get_json(f"{urls['exporter']}/api/metrics/{view}?time_window_minutes={minutes}")["data"]
        except (OSError, ValueError, KeyError) as exc:
            api[view] = {"error": str(exc)}
    hold = (scenario.ramp_s, scenario.duration_s)   # the scenario's full load, seconds since start
    prom = None
    if urls.get("prometheus"):
        try:
            prom = prometheus_figures(urls["prometheus"], start, end, (start + hold[0], start + hold[1]))
        except (OSError, ValueError, KeyError) as exc:
            prom = {"error": str(exc)}
    client = locust_figures(out)
    result = {
        "scenario": {"name": scenario.name, "users": scenario.users, "duration_s": scenario.duration_s,
                     "ramp_s": scenario.ramp_s, "user_class": scenario.user_class, "stages": scenario.stages(),
                     "beyond_users": scenario.beyond_users, "total_s": scenario.total_s},
        "window": {"start": start, "end": end, "seconds": seconds, "api_minutes": minutes},
        "target": urls["target"], "exporter_settings": settings, "locust_exit_status": locust_status,
        "client": client["requests"], "stack": stack, "demo": demo, "metrics_api": api, "prometheus": prom,
        "exporter_caught_up": caught_up, "machine": {"cpus": os.cpu_count(), "load_avg_end": os.getloadavg()},
        "samples": samples, "explanation": EXPLANATION,
    }
    result["consistency"] = consistency(result)
    result["checks"] = checks(scenario, result)
    result["breaking_point"] = None
    if scenario.find_breaking_point:
        result["breaking_point"] = breaking.analyse(breaking.series(client["history"], samples, prom), start,
                                                    hold, limits(settings))
    result["passed"] = all(c["passed"] for c in result["checks"])
    result["charts"] = charts(out, client["history"], samples, prom)
    (out / "report.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "report.md").write_text(markdown(result))
    return result


def sent_traces(client: dict, batch_items: int) -> int:
    """Requests the demo should have traced: each chat call one, each batch call `batch_items`."""
    chat = client.get("chat", {}).get("count", 0)
    batch = client.get("chat batch", {}).get("count", 0)
    return chat + batch * batch_items


def consistency(result: dict) -> dict:
    sent = sent_traces(result["client"], 10 if result["scenario"]["user_class"] == "BatchUser" else 1)
    answered = (result["demo"] or {}).get("requests_answered")
    return {"client_requests": sent, "demo_answered": answered, "exporter_counted": result["stack"]["requests"],
            "spans_ended_by_sdk": (result["demo"] or {}).get("spans_ended"),
            "spans_exported_by_sdk": (result["demo"] or {}).get("spans_exported"),
            "spans_export_failed_by_sdk": (result["demo"] or {}).get("spans_export_failed"),
            "spans_received_by_exporter": result["stack"]["spans_received"],
            "spans_rejected_by_exporter": result["stack"]["spans_rejected"],
            "spans_not_exported_by_sdk": (result["demo"] or {}).get("spans_not_exported")}


def checks(scenario, result: dict) -> list[dict]:
    out = []
    client = result["client"].get("chat") or result["client"].get("chat batch") or {}
    if scenario.p95_max_s is not None:
        p95_client = (client.get("p95_ms") or math.inf) / 1000
        p95_spans = result["stack"]["latency_s"]["p95"]
        out.append({"check": "client p95 (Locust)", "value": p95_client, "limit": f"< {scenario.p95_max_s} s",
                    "passed": p95_client < scenario.p95_max_s})
        out.append({"check": "span-derived p95 (exporter)", "value": p95_spans, "limit": f"< {scenario.p95_max_s} s",
                    "passed": p95_spans is not None and p95_spans < scenario.p95_max_s})
    if scenario.cache_hit_min is not None:
        ratio = result["stack"]["cache_hit_ratio"]
        out.append({"check": "cache hit ratio (exporter)", "value": ratio, "limit": f">= {scenario.cache_hit_min:.0%}",
                    "passed": ratio is not None and ratio >= scenario.cache_hit_min})
    exporter_calls = [result["client"][n] for n in ("feedback", "metrics api") if n in result["client"]]
    if exporter_calls:
        failed = sum(x["failures"] for x in exporter_calls)
        out.append({"check": "feedback and metrics API calls answered", "value": failed, "limit": "0 failed",
                    "passed": failed == 0})
    c = result["consistency"]
    if c["demo_answered"] is not None:
        out.append({"check": "every answered request counted by the exporter", "value": c["exporter_counted"],
                    "limit": f"= {c['demo_answered']}", "passed": c["exporter_counted"] == c["demo_answered"]})
    if c["spans_ended_by_sdk"] is not None:
        out.append({"check": "spans received = spans the SDK ended", "value": c["spans_received_by_exporter"],
                    "limit": f"= {c['spans_ended_by_sdk']}",
                    "passed": c["spans_received_by_exporter"] == c["spans_ended_by_sdk"]})
    if c["spans_exported_by_sdk"] is not None:
        # No span lost on the way: what the SDK says it delivered, the exporter took or turned down.
        taken = c["spans_received_by_exporter"] + c["spans_rejected_by_exporter"]
        out.append({"check": "spans the SDK exported = received + rejected by the exporter", "value": taken,
                    "limit": f"= {c['spans_exported_by_sdk']}", "passed": taken == c["spans_exported_by_sdk"]})
        st = result["stack"]
        # Pushed back on the SDK's way in: export requests throttled, OTLP/HTTP connections refused.
        pushed_back = st["requests_throttled"] + st["refused_by_listener"].get("otlp_http", 0.0)
        out.append({"check": "spans the SDK gave up on after its retries"
                             + (f" ({pushed_back:.0f} exports throttled or refused)" if pushed_back else ""),
                    "value": c["spans_export_failed_by_sdk"], "limit": "0",
                    "passed": c["spans_export_failed_by_sdk"] == 0})
    prom = result["prometheus"]
    if prom and "error" not in prom and prom.get("scrape_duration_max_s") is not None:
        out.append({"check": "longest scrape of the exporter (Prometheus)", "value": prom["scrape_duration_max_s"],
                    "limit": f"< {SCRAPE_MAX_S:g} s", "passed": prom["scrape_duration_max_s"] < SCRAPE_MAX_S})
    return out


def charts(out: Path, history: list[dict], samples: list[dict], prom: dict | None) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:   # the report stands without pictures
        return []
    made = []
    timeline = (prom or {}).get("timeline", {}) if prom and "error" not in prom else {}
    t0 = history[0]["t"] if history else samples[0]["t"] if samples else 0.0

    def line(ax, points, label, **kw):
        pts = [(t - t0, v) for t, v in points if v == v]   # NaN: a quantile with no requests
        if pts:
            ax.plot([t for t, _ in pts], [v for _, v in pts], label=label, **kw)

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        made.append(name)

    if history:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        line(top, [(r["t"], r["rps"]) for r in history], "calls/s (Locust: chat, feedback, metrics API)")
        line(top, [(r["t"], r["users"]) for r in history], "users")
        line(top, timeline.get("requests_per_s", []), "requests/s (exporter, 30 s rate)")
        top.legend()
        top.set_title("Load")
        key = "chat_p95_ms" if any(r.get("chat_p95_ms") is not None for r in history) else "p95_ms"
        line(bottom, [(r["t"], r[key] / 1000) for r in history if r.get(key) is not None],
             "p95 client-side (Locust, last 10 s)")
        line(bottom, timeline.get("p95_s", []), "p95 span-derived (Prometheus, 30 s rate)")
        bottom.set_ylabel("seconds")
        bottom.set_xlabel("seconds since start")
        bottom.legend()
        save(fig, "latency.png")
    if samples:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        line(ax, [(x["t"], x["machine_busy"] * (os.cpu_count() or 1)) for x in samples], "whole machine")
        for name in sorted({n for x in samples for n in x.get("cpu", {})}):
            line(ax, [(x["t"], x["cpu"][name]) for x in samples if name in x.get("cpu", {})], name)
        ax.set_ylabel("CPU cores")
        ax.set_xlabel("seconds since start")
        ax.set_title("CPU")
        ax.legend()
        save(fig, "cpu.png")
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
        for name in sorted({n for x in samples for n in x.get("fds", {})}):
            line(top, [(x["t"], x["fds"][name]) for x in samples if name in x.get("fds", {})],
                 f"open descriptors: {name}")
        line(top, [(x["t"], x["demo"]["spans"]["ended"] - x["demo"]["spans"]["exported"])
                   for x in samples if (x.get("demo") or {}).get("spans")], "SDK: spans ended, not yet exported")
        top.set_yscale("symlog")
        top.legend(fontsize="small")
        top.set_title("Connections and queues")
        line(bottom, timeline.get("scrape", []), "scrape of the exporter (s)")
        line(bottom, timeline.get("queue.exporter", []), "exporter ingest queue (requests)")
        bottom.set_xlabel("seconds since start")
        bottom.legend(fontsize="small")
        save(fig, "resources.png")
    return made


def _fmt(value, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}{unit}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def markdown(r: dict) -> str:
    s, st, sc = r["scenario"], r["stack"], r["consistency"]
    lines = [f"# Load scenario `{s['name']}`: {'PASSED' if r['passed'] else 'FAILED'}", "",
             f"{s['users']} users ({s['user_class']}), {s['duration_s']:g} s with a {s['ramp_s']:g} s ramp"
             + (f", then up to {s['beyond_users']} users over {s['total_s'] - s['duration_s']:g} s more"
                if s.get("beyond_users") else "") +
             f", against {r['target']}"
             + (f" (exporter with {', '.join(f'{k}={v}' for k, v in r['exporter_settings'].items())})"
                if r.get("exporter_settings") else "") +
             f". Machine: {r['machine']['cpus']} CPUs, load average at the end "
             f"{', '.join(f'{x:.1f}' for x in r['machine']['load_avg_end'])} (shared: other work runs beside).", "",
             "## Thresholds", "", "| check | value | limit | |", "|---|---|---|---|"]
    lines += [f"| {c['check']} | {_fmt(c['value'])} | {c['limit']} | {'pass' if c['passed'] else '**FAIL**'} |"
              for c in r["checks"]]
    lines += ["", "## Client side (Locust)", "", "| request | count | failures | req/s | p50 ms | p95 ms | p99 ms |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {c['count']} | {c['failures']} | {c['rps']:.1f} | {_fmt(c['p50_ms'])} | "
              f"{_fmt(c['p95_ms'])} | {_fmt(c['p99_ms'])} |" for name, c in r["client"].items()]
    lat = st["latency_s"]
    lines += ["", "## From the stack", "",
              f"Exporter /metrics, before and after the run ({r['window']['seconds']:.0f} s):", "",
              "| figure | value |", "|---|---|",
              f"| requests counted | {st['requests']:.0f} ({st['throughput_rps']:.1f}/s) |",
              f"| end to end p50 / p95 / p99 | {' / '.join(_fmt(lat[p], ' s') for p in ('p50', 'p95', 'p99'))} |",
              f"| error ratio | {_fmt(st['error_ratio'])} |",
              f"| cache hit ratio | {_fmt(st['cache_hit_ratio'])} |",
              f"| LLM cost per 1 000 requests | {_fmt(st['cost_per_1000_requests_usd'], ' USD')} |",
              f"| exporter CPU (mean) | {_fmt(st['cpu_cores_mean'], ' cores')} |",
              f"| exporter memory at the end | {st['memory_bytes_end'] / 2**20:.0f} MiB |",
              f"| spans received / rejected | {st['spans_received']:.0f} / {st['spans_rejected']:.0f} |",
              f"| requests throttled / trace spans dropped / interactions dropped | {st['requests_throttled']:.0f} / "
              f"{st['trace_spans_dropped']:.0f} / {st['interactions_dropped']:.0f} |",
              "", "Per component (seconds):", "", "| component | p50 | p95 | p99 |", "|---|---|---|---|"]
    lines += [f"| {c} | {' | '.join(_fmt(q[p]) for p in ('p50', 'p95', 'p99'))} |"
              for c, q in st["components_s"].items()]
    lines += ["", "Requests and spans, end to end:", "", "| | count |", "|---|---|",
              f"| requests sent by Locust (batch items counted) | {sc['client_requests']} |",
              f"| requests the demo answered | {_fmt(sc['demo_answered'])} |",
              f"| requests the exporter counted | {sc['exporter_counted']:.0f} |",
              f"| spans the SDK ended | {_fmt(sc['spans_ended_by_sdk'])} |",
              f"| spans the SDK exported (after retries) | {_fmt(sc['spans_exported_by_sdk'])} |",
              f"| spans the SDK gave up on / did not export at the end | {_fmt(sc['spans_export_failed_by_sdk'])} / "
              f"{_fmt(sc['spans_not_exported_by_sdk'])} |",
              f"| spans the exporter received / rejected | {sc['spans_received_by_exporter']:.0f} / "
              f"{sc['spans_rejected_by_exporter']:.0f} |",
              f"| export requests the exporter throttled | {st['requests_throttled']:.0f} |",
              "| connections the exporter refused (limits.max_connections) | "
              + (", ".join(f"{k} {v:.0f}" for k, v in st["refused_by_listener"].items()) or "0") + " |"]
    dash = r["metrics_api"].get("dashboard", {})
    lines += ["", f"Metrics API (`/api/metrics/...`, last {r['window']['api_minutes']} whole minutes): "
              f"`dashboard` says {json.dumps(_short(dash))}."]
    prom = r["prometheus"]
    if prom and "error" not in prom:
        lines += ["", "Prometheus over the run's window:", "",
                  f"- alerts that fired: {', '.join(prom['alerts_fired']) or 'none'}",
                  f"- p95 (increase over the window): {_fmt(prom['p95_s'], ' s')}",
                  f"- exporter CPU at most {_fmt(prom['cpu_cores_max'], ' cores')} (30 s rate), "
                  f"memory at most {_fmt((prom['memory_max_bytes'] or 0) / 2**20, ' MiB')}",
                  f"- longest scrape of the exporter: {_fmt(prom['scrape_duration_max_s'], ' s')} "
                  f"({_fmt(prom.get('scrapes'))} scrapes)",
                  f"- exporter ingest queue at most {_fmt(prom.get('queue_depth_max'))} requests; processing an "
                  f"export request p99 at most {_fmt(prom.get('processing_p99_max_s'), ' s')} (30 s windows)"]
        held = prom.get("at_scenario_load")
        if held:
            lines += [f"- at the scenario's full load ({s['users']} users, from {s['ramp_s']:g} to "
                      f"{s['duration_s']:g} s): p95 {_fmt(held['p95_s'], ' s')}, "
                      f"longest scrape {_fmt(held['scrape_duration_max_s'], ' s')}"]
    elif prom:
        lines += ["", f"Prometheus could not be read: {prom['error']}"]
    else:
        lines += ["", "Prometheus: not running (alerts not evaluated)."]
    if r["breaking_point"] is not None:
        lines += breaking_markdown(r["breaking_point"], s)
    lines += ["", "## Client-side and span-derived latency", "", r["explanation"]]
    lines += [""] + [f"![{c}]({c})" for c in r["charts"]]
    return "\n".join(lines) + "\n"


def breaking_markdown(bp: dict, s: dict) -> list[str]:
    th, load = bp["thresholds"], bp["scenario_load"]
    lines = ["", "## Breaking point", "",
             f"Users are no longer served as the seed asks from the first moment chat p95 (client side) stays "
             f"over {th['client_p95_s']:g} s, or more than {th['error_ratio']:.0%} of calls fail, for "
             f"{th['held_s']:g} s (on average). A resource is hit when it reaches its saturation level and stays "
             f"there (on average) for {th['resource_held_s']:g} s, or when a limit acts (throttling, refused "
             f"connections, spans given up).", ""]
    names = {x["key"]: x["what"] for x in bp["resources"]}
    b = bp["breaking"]
    if b:
        lines.append(f"**Broke at {b['users']} users** ({b['t_s']:g} s into the run, {_fmt(b['rps'])} calls/s): "
                     f"{b['why']}.")
    else:
        lines.append(f"**Not broken** up to {max(u for _, u in s['stages'])} users.")
    for why, c in bp["criteria"].items():
        if c is None:
            lines += ["", f"- {why}: never past its threshold."]
            continue
        near = ", ".join(f"{names.get(k, k)} {share:.0%}" for k, share in c["resources_vs_saturation"][:3])
        lines += ["", f"- {why}: from {c['users']} users ({c['t_s']:g} s, {_fmt(c['rps'])} calls/s): chat p95 "
                  f"{_fmt(c['client_p95_s'], ' s')} client side against {_fmt(c['span_p95_s'], ' s')} span-derived, "
                  f"p50 {_fmt(c['client_p50_s'], ' s')} against {_fmt(c['span_p50_s'], ' s')} (the difference waits "
                  f"outside the pipeline), failures {_fmt(c['error_ratio'])}. Nearest their saturation level "
                  f"then: {near}."]
    f = bp["first_resource"]
    lines.append("")
    if f:
        lines.append(f"**First resource hit: {f['what']}**, at {f['users']} users ({f['t_s']:g} s).")
    else:
        n = bp["nearest_at_scenario_load"]
        nearest = f"; nearest at the scenario's load: {n['what']} ({n['share']:.0%} of its limit)" if n else ""
        lines.append(f"No resource stayed at its saturation level{nearest}.")
    a, b = load["window_s"]
    lines += ["", f"At the scenario's full load ({load['users']} users, {a:g}–{b:g} s): "
              f"{_fmt(load['rps'])} calls/s, chat p95 {_fmt(load['client_p95_s'], ' s')} client side, "
              f"{_fmt(load['span_p95_s'], ' s')} span-derived, p50 {_fmt(load['client_p50_s'], ' s')} against "
              f"{_fmt(load['span_p50_s'], ' s')}, failures {_fmt(load['error_ratio'])}.", "",
              "| resource | limit | saturated at | at full load | peak | hit at |", "|---|---|---|---|---|---|"]
    for x in bp["resources"]:
        hit = f"{x['users_at_hit']} users ({x['hit_s']:g} s)" if x["hit_s"] is not None else "–"
        lines.append(f"| {x['what']} | {_fmt(x['limit'], x['unit'])} | {_fmt(x['saturated_at'], x['unit'])} | "
                     f"{_fmt(x['at_scenario_load'], x['unit'])} | {_fmt(x['peak'], x['unit'])} | {hit} |")
    for e in bp["events"]:
        hit = f"from {e['users']} users ({e['first_s']:g} s)" if e["first_s"] is not None else "never"
        lines.append(f"| {e['what']} | | | | | {hit} |")
    return lines


def _short(dash: dict) -> dict:
    keys = ("requests", "requests_per_second", "error_rate", "latency", "cache_hit_ratio")
    return {k: dash[k] for k in keys if k in dash}
