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
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from run_stack import buckets, histogram_quantile, scrape, total
from scenarios import BREAKING_ERROR_RATIO, BREAKING_P95_S

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


class CpuSampler:
    """CPU of the stack's processes (cores) and of the whole machine (busy share), every 2 s, from /proc."""

    def __init__(self, pids: dict[str, int], every_s: float = 2.0):
        self.pids = pids
        self.every_s = every_s
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")

    @staticmethod
    def _process_seconds(pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _machine() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    def _run(self) -> None:
        # `pids` may grow while sampling (the load generator starts after the sampler).
        prev_t, prev = time.time(), {n: self._process_seconds(p) for n, p in list(self.pids.items())}
        prev_machine = self._machine()
        while not self._stop.wait(self.every_s):
            now, cur = time.time(), {n: self._process_seconds(p) for n, p in list(self.pids.items())}
            machine = self._machine()
            dt = now - prev_t
            row = {"t": now, "machine_busy": (machine[0] - prev_machine[0]) / max(1, machine[1] - prev_machine[1])}
            row.update({n: (cur[n] - prev[n]) / dt for n in cur
                        if cur[n] is not None and prev.get(n) is not None})
            self.samples.append(row)
            prev_t, prev, prev_machine = now, cur, machine

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


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


def prometheus_figures(prometheus: str, start: float, end: float) -> dict:
    window = f"{max(1, math.ceil(end - start))}s"
    job = '{job="spanscope"}'
    p95 = "histogram_quantile(0.95, sum by (le) ({}(pipeline_request_duration_seconds_bucket[{}])))"

    def scalar(query: str) -> float | None:
        result = _prom(prometheus, "query", query=query, time=end)["result"]
        return float(result[0]["value"][1]) if result else None

    def series(query: str, step: int = 5) -> list[tuple[float, float]]:
        result = _prom(prometheus, "query_range", query=query, start=start, end=end, step=step)["result"]
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []

    # Watchdog always fires (the dead man's switch): left out, it says nothing about the run.
    fired = _prom(prometheus, "query_range", query='ALERTS{alertstate="firing", alertname!="Watchdog"}',
                  start=start, end=end + 60, step=5)
    return {
        "alerts_fired": sorted({r["metric"]["alertname"] for r in fired["result"]}),
        "p95_s": scalar(p95.format("increase", window)),
        "scrape_duration_max_s": scalar(f"max_over_time(scrape_duration_seconds{job}[{window}])"),
        "cpu_cores_max": scalar(f"max_over_time(rate(process_cpu_seconds_total{job}[30s])[{window}:5s])"),
        "memory_max_bytes": scalar(f"max_over_time(process_resident_memory_bytes{job}[{window}])"),
        "timeline": {
            "p95_s": series(p95.format("rate", "30s")),
            "requests_per_s": series("sum(rate(pipeline_requests_total[30s]))"),
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
            rows = [{"t": float(r["Timestamp"]), "users": int(r["User Count"]), "rps": float(r["Requests/s"]),
                     "failures_per_s": float(r["Failures/s"]), "p95_ms": _number(r["95%"])}
                    for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
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


def breaking_point(history: list[dict], cpu: list[dict]) -> dict | None:
    """The first moment client p95 passed BREAKING_P95_S or failures BREAKING_ERROR_RATIO, the users
    then, and which CPU was busiest around it."""
    for row in history:
        failing = row["rps"] and row["failures_per_s"] / row["rps"] > BREAKING_ERROR_RATIO
        slow = row["p95_ms"] is not None and row["p95_ms"] > BREAKING_P95_S * 1000
        if failing or slow:
            near = [s for s in cpu if abs(s["t"] - row["t"]) <= 10]
            busiest = None
            if near:
                keys = {k for sample in near for k in sample} - {"t"}
                means = {k: sum(s.get(k, 0.0) for s in near) / len(near) for k in keys}
                # A process is saturated near 1 core (one event loop each); the machine near 100 % busy.
                busiest = max(means.items(), key=lambda kv: kv[1])
            return {"users": row["users"], "at": row["t"], "why": "failures" if failing else "p95",
                    "rps": row["rps"], "busiest_cpu": busiest}
    return None


# -- the report -----------------------------------------------------------------------------------


def build(scenario, urls: dict, out: Path, start: float, end: float, before: dict, after: dict,
          cpu: list[dict], locust_status: int | None, caught_up) -> dict:
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
    prom = None
    if urls.get("prometheus"):
        try:
            prom = prometheus_figures(urls["prometheus"], start, end)
        except (OSError, ValueError, KeyError) as exc:
            prom = {"error": str(exc)}
    client = locust_figures(out)
    result = {
        "scenario": {"name": scenario.name, "users": scenario.users, "duration_s": scenario.duration_s,
                     "ramp_s": scenario.ramp_s, "user_class": scenario.user_class},
        "window": {"start": start, "end": end, "seconds": seconds, "api_minutes": minutes},
        "target": urls["target"], "locust_exit_status": locust_status,
        "client": client["requests"], "stack": stack, "demo": demo, "metrics_api": api, "prometheus": prom,
        "exporter_caught_up": caught_up, "machine": {"cpus": os.cpu_count(), "load_avg_end": os.getloadavg()},
        "cpu_samples": cpu, "explanation": EXPLANATION,
    }
    result["consistency"] = consistency(result)
    result["checks"] = checks(scenario, result)
    result["breaking_point"] = breaking_point(client["history"], cpu) if scenario.find_breaking_point else None
    result["passed"] = all(c["passed"] for c in result["checks"])
    result["charts"] = charts(out, client["history"], cpu, prom)
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
            "spans_received_by_exporter": result["stack"]["spans_received"],
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
    return out


def charts(out: Path, history: list[dict], cpu: list[dict], prom: dict | None) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:   # the report stands without pictures
        return []
    made = []
    if history:
        t0 = history[0]["t"]
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        top.plot([r["t"] - t0 for r in history], [r["rps"] for r in history],
                 label="calls/s (Locust: chat, feedback, metrics API)")
        top.plot([r["t"] - t0 for r in history], [r["users"] for r in history], label="users")
        if prom and prom.get("timeline", {}).get("requests_per_s"):
            pts = prom["timeline"]["requests_per_s"]
            top.plot([t - t0 for t, _ in pts], [v for _, v in pts], label="requests/s (exporter, 30 s rate)")
        top.legend()
        top.set_title("Load")
        p95 = [(r["t"] - t0, r["p95_ms"] / 1000) for r in history if r["p95_ms"] is not None]
        bottom.plot([t for t, _ in p95], [v for _, v in p95], label="p95 client-side (Locust)")
        if prom and prom.get("timeline", {}).get("p95_s"):
            pts = [(t - t0, v) for t, v in prom["timeline"]["p95_s"] if not math.isnan(v)]
            bottom.plot([t for t, _ in pts], [v for _, v in pts], label="p95 span-derived (Prometheus)")
        bottom.set_ylabel("seconds")
        bottom.set_xlabel("seconds since start")
        bottom.legend()
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=90)
        plt.close(fig)
        made.append("latency.png")
    if cpu:
        t0 = cpu[0]["t"]
        fig, ax = plt.subplots(figsize=(9, 3.5))
        for key in sorted({k for sample in cpu for k in sample} - {"t"}):
            scale = os.cpu_count() if key == "machine_busy" else 1.0
            ax.plot([s["t"] - t0 for s in cpu], [s.get(key, 0.0) * scale for s in cpu],
                    label="whole machine" if key == "machine_busy" else key)
        ax.set_ylabel("CPU cores")
        ax.set_xlabel("seconds since start")
        ax.set_title("CPU")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "cpu.png", dpi=90)
        plt.close(fig)
        made.append("cpu.png")
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
             f"{s['users']} users ({s['user_class']}), {s['duration_s']:g} s with a {s['ramp_s']:g} s ramp, "
             f"against {r['target']}. Machine: {r['machine']['cpus']} CPUs, load average at the end "
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
              f"| spans the SDK did not export (dropped) | {_fmt(sc['spans_not_exported_by_sdk'])} |",
              f"| spans the exporter received | {sc['spans_received_by_exporter']:.0f} |"]
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
                  f"- longest scrape of the exporter: {_fmt(prom['scrape_duration_max_s'], ' s')}"]
    elif prom:
        lines += ["", f"Prometheus could not be read: {prom['error']}"]
    else:
        lines += ["", "Prometheus: not running (alerts not evaluated)."]
    if r["breaking_point"] is not None or s["name"] == "stress":
        bp = r["breaking_point"]
        lines += ["", "## Breaking point", "",
                  f"Client p95 over {BREAKING_P95_S} s or failures over {BREAKING_ERROR_RATIO:.0%}: " +
                  (f"first at {bp['users']} users ({bp['why']}, {bp['rps']:.0f} req/s); busiest CPU then: "
                   f"{bp['busiest_cpu']}" if bp else "not reached in this run.")]
    lines += ["", "## Client-side and span-derived latency", "", r["explanation"]]
    lines += [""] + [f"![{c}]({c})" for c in r["charts"]]
    return "\n".join(lines) + "\n"


def _short(dash: dict) -> dict:
    keys = ("requests", "requests_per_second", "error_rate", "latency", "cache_hit_ratio")
    return {k: dash[k] for k in keys if k in dash}
