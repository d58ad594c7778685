"""Where the stack broke under load, and which resource ran out first: computed from the run's time
series (Locust's per-second history, the sampler's /proc figures and the demo's span counts,
Prometheus' series of the exporter), not written by hand.

The breaking point is the first moment from which, for BREAKING_HELD_S (on average), users were no
longer served as the seed asks: chat p95 seen by the client over BREAKING_P95_S, or more than
BREAKING_ERROR_RATIO of all calls failing. A resource is hit from the first moment it reaches, and
on average over HELD_S stays at, its saturation share of its limit (a one-loop process at 80 % of
a core, a queue half full, ...); events that mean a limit acted (the exporter throttling or refusing
connections, the SDK giving spans up) count from their first occurrence. The first resource hit
is the bottleneck; the breaking point says when users began to notice.
"""
from __future__ import annotations

from dataclasses import dataclass

from scenarios import BREAKING_ERROR_RATIO, BREAKING_HELD_S, BREAKING_P95_S, SCRAPE_MAX_S

HELD_S = 10.0   # a resource must stay at its saturation level this long: one busy sample is noise


@dataclass(frozen=True)
class Resource:
    key: str           # a series built by series()
    what: str
    limit: float | str  # a number, or the name of a limit passed to analyse()
    saturated: float   # share of the limit from which it counts as hit
    unit: str = ""
    context: bool = False   # shown, never named the first resource hit (other work shares it)


# One event loop (one Python process: the GIL) is saturated before 100 % of a core: past about 80 %
# busy, callbacks queue behind each other and waiting grows much faster than the load.
LOOP_BUSY = 0.8
RESOURCES = (
    Resource("cpu.demo", "CPU of the demo (one process, one event loop)", 1.0, LOOP_BUSY, " cores"),
    Resource("cpu.exporter", "CPU of the exporter (one Python process)", 1.0, LOOP_BUSY, " cores"),
    Resource("cpu.locust", "CPU of Locust (the load generator: its figures are suspect beyond)", 1.0, LOOP_BUSY,
             " cores"),
    Resource("cpu.stack", "the machine's CPUs, used by the stack's processes together", "cpus", 0.9, " cores"),
    Resource("machine", "the machine's CPUs, busy share (other work on the machine included)", 1.0, 0.95,
             context=True),
    Resource("connections.exporter", "the exporter's open HTTP connections (limits.max_connections)",
             "max_connections", 0.95),
    Resource("queue.exporter", "the exporter's ingest queue (limits.ingest_queue)", "ingest_queue", 0.5),
    Resource("queue.sdk", "the demo SDK's span queue (ended, not yet exported)", "sdk_queue", 0.5),
    Resource("scrape", "the time Prometheus takes to scrape the exporter", SCRAPE_MAX_S, 1.0, " s"),
)
# Counters whose first increase means a limit was reached: (series key, words).
EVENTS = (
    ("throttled", "the exporter throttled export requests (503 + Retry-After; the SDK retries)"),
    ("refused", "the exporter refused connections at limits.max_connections (web API and OTLP/HTTP)"),
    ("sdk_failed", "the demo's SDK gave up exporting spans (lost)"),
)


def series(history: list[dict], samples: list[dict], prom: dict | None) -> dict[str, list[tuple[float, float]]]:
    """Every time series the analysis reads, as (Unix time, value) lists."""
    out: dict[str, list[tuple[float, float]]] = {
        "users": [(r["t"], r["users"]) for r in history],
        "rps": [(r["t"], r["rps"]) for r in history],
        "client_p95_s": [(r["t"], r["chat_p95_ms"] / 1000) for r in history if r.get("chat_p95_ms") is not None],
        "client_p50_s": [(r["t"], r["chat_p50_ms"] / 1000) for r in history if r.get("chat_p50_ms") is not None],
        "error_ratio": [(r["t"], r["failures_per_s"] / r["rps"]) for r in history if r["rps"]],
        "machine": [(s["t"], s["machine_busy"]) for s in samples],
    }
    for name in sorted({n for s in samples for n in s.get("cpu", {})}):
        out[f"cpu.{name}"] = [(s["t"], s["cpu"][name]) for s in samples if name in s.get("cpu", {})]
    out["cpu.stack"] = [(s["t"], sum(s.get("cpu", {}).values())) for s in samples]
    fds = [(s["t"], s["fds"]["exporter"]) for s in samples if "exporter" in s.get("fds", {})]
    if fds:   # connections: descriptors above those the idle exporter held (listeners, store, logs)
        idle = fds[0][1]
        out["connections.exporter"] = [(t, max(0, v - idle)) for t, v in fds]
    demo = [(s["t"], s["demo"]["spans"]) for s in samples if (s.get("demo") or {}).get("spans")]
    if demo:
        out["queue.sdk"] = [(t, d["ended"] - d["exported"] - d["export_failed"]) for t, d in demo]
        out["sdk_failed"] = [(t, d["export_failed"]) for t, d in demo]
    timeline = (prom or {}).get("timeline", {})
    for key in ("queue.exporter", "scrape", "throttled", "refused", "spans_received_per_s"):
        if timeline.get(key):
            out[key] = timeline[key]
    for q in ("p50_s", "p95_s"):
        if timeline.get(q):
            out["span_" + q] = timeline[q]
    return out


def at(points: list[tuple[float, float]], t: float) -> float | None:
    """The value at or last before `t` (the first one if `t` is before them all)."""
    if not points:
        return None
    value = points[0][1]
    for pt, v in points:
        if pt > t:
            break
        value = v
    return value


def mean_between(points: list[tuple[float, float]], a: float, b: float) -> float | None:
    inside = [v for t, v in points if a <= t <= b and v == v]   # NaN: a quantile with no requests
    return sum(inside) / len(inside) if inside else None


def first_held(points: list[tuple[float, float]], level: float, held_s: float) -> float | None:
    """The first time at which the value is at or above `level` and stays there, on average, for
    `held_s` (a brief dip does not reset it; a brief peak does not count)."""
    if not points:
        return None
    last = points[-1][0]
    for t, v in points:
        if t + held_s > last:
            return None
        if not v >= level:
            continue
        mean = mean_between(points, t, t + held_s)
        if mean is not None and mean >= level:
            return t
    return None


def first_increase(points: list[tuple[float, float]]) -> float | None:
    """The first time a counter's series is above where it started."""
    if not points:
        return None
    base = points[0][1]
    for t, v in points:
        if v > base:
            return t
    return None


def analyse(s: dict, start: float, hold: tuple[float, float], limits: dict) -> dict:
    """`s`: series(); `start`: the run's start (Unix); `hold`: the window of the scenario's full
    load, seconds since start; `limits`: the limits named by RESOURCES (max_connections,
    ingest_queue, sdk_queue, cpus)."""
    def users(t):
        u = at(s["users"], t)
        return None if u is None else int(u)

    def rel(t):
        return None if t is None else round(t - start, 1)

    hold_a, hold_b = start + hold[0], start + hold[1]
    resources, levels = [], {}
    for r in RESOURCES:
        points = s.get(r.key)
        limit = limits.get(r.limit) if isinstance(r.limit, str) else r.limit
        if not points or not limit:
            continue
        hit = first_held(points, r.saturated * limit, HELD_S)
        peak = max(v for _, v in points if v == v) if any(v == v for _, v in points) else None
        at_load = mean_between(points, hold_a, hold_b)
        resources.append({"key": r.key, "what": r.what, "limit": limit, "unit": r.unit, "context": r.context,
                          "saturated_at": r.saturated * limit, "hit_s": rel(hit),
                          "users_at_hit": users(hit) if hit else None,
                          "peak": peak, "at_scenario_load": at_load,
                          "share_at_scenario_load": None if at_load is None else at_load / limit})
        levels[r.key] = (points, r.saturated * limit)

    def moment(t: float, why: str) -> dict:
        """The breaking point at `t`: what users saw over the held window, and how near each resource
        was to its saturation level then (1: at it), nearest first."""
        window = (t, t + BREAKING_HELD_S)
        near = [(key, v / level) for key, (points, level) in levels.items()
                if (v := mean_between(points, *window)) is not None]
        return {"t_s": rel(t), "users": users(t), "why": why, "rps": mean_between(s["rps"], *window),
                "client_p95_s": mean_between(s["client_p95_s"], *window),
                "error_ratio": mean_between(s["error_ratio"], *window),
                "span_p95_s": mean_between(s.get("span_p95_s", []), t - 15, t + BREAKING_HELD_S + 15),
                "client_p50_s": mean_between(s.get("client_p50_s", []), *window),
                "span_p50_s": mean_between(s.get("span_p50_s", []), t - 15, t + BREAKING_HELD_S + 15),
                "resources_vs_saturation": sorted(near, key=lambda x: -x[1])}

    criteria = {}
    for key, points, level in (("client p95", s["client_p95_s"], BREAKING_P95_S),
                               ("failures", s["error_ratio"], BREAKING_ERROR_RATIO)):
        t = first_held(points, level, BREAKING_HELD_S)
        criteria[key] = None if t is None else moment(t, key)
    broken = [c for c in criteria.values() if c is not None]
    breaking = min(broken, key=lambda c: c["t_s"]) if broken else None
    events = []
    for key, what in EVENTS:
        t = first_increase(s.get(key, []))
        events.append({"key": key, "what": what, "first_s": rel(t), "users": users(t) if t else None})
    hits = sorted([(r["hit_s"], r["what"], r["users_at_hit"]) for r in resources
                   if r["hit_s"] is not None and not r["context"]] +
                  [(e["first_s"], e["what"], e["users"]) for e in events if e["first_s"] is not None])
    first = {"what": hits[0][1], "t_s": hits[0][0], "users": hits[0][2]} if hits else None
    # With nothing hit, the resource nearest its limit at the scenario's load is the one to watch.
    loaded = [r for r in resources if r["share_at_scenario_load"] is not None and not r["context"]]
    nearest = max(loaded, key=lambda r: r["share_at_scenario_load"] / (r["saturated_at"] / r["limit"]),
                  default=None)
    return {"thresholds": {"client_p95_s": BREAKING_P95_S, "error_ratio": BREAKING_ERROR_RATIO,
                           "held_s": BREAKING_HELD_S, "resource_held_s": HELD_S},
            "breaking": breaking, "criteria": criteria, "first_resource": first, "resources": resources,
            "events": events,
            "nearest_at_scenario_load": nearest and {"what": nearest["what"],
                                                     "share": nearest["share_at_scenario_load"]},
            "scenario_load": {"window_s": list(hold), "users": users(hold_b),
                              "rps": mean_between(s["rps"], hold_a, hold_b),
                              "client_p95_s": mean_between(s["client_p95_s"], hold_a, hold_b),
                              "span_p95_s": mean_between(s.get("span_p95_s", []), hold_a, hold_b),
                              "client_p50_s": mean_between(s.get("client_p50_s", []), hold_a, hold_b),
                              "span_p50_s": mean_between(s.get("span_p50_s", []), hold_a, hold_b),
                              "error_ratio": mean_between(s["error_ratio"], hold_a, hold_b)}}
