"""Scrape time of the exporter's /metrics at a given number of active series.

A series is what Prometheus stores as one: a sample line of the exposition (each histogram bucket,
_sum and _count is one), the number `prometheus_tsdb_head_series` grows by. The exporter's own
`spanscope_active_series` counts label sets instead (a histogram label set is one); both are
reported. Series are created by spans with distinct names (the component label), see
cardinality.py; then N scrapes are timed from the client (request sent → whole body read) in the
Prometheus text format and in OpenMetrics (which adds exemplars).
"""
from __future__ import annotations

import http.client
import math
import time
import urllib.parse

from cardinality import AttackBatches
from common import percentile

OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT_ACCEPT = "text/plain; version=0.0.4"


class Client:
    """A persistent loopback HTTP connection."""

    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.path = u.path or "/"
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def get(self, accept: str) -> bytes:
        self.conn.request("GET", self.path, headers={"Accept": accept})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {self.path}: HTTP {resp.status}: {body[:200]!r}")
        return body

    def post(self, body: bytes) -> None:
        self.conn.request("POST", self.path, body=body, headers={"Content-Type": "application/x-protobuf"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status == 503:
            time.sleep(float(resp.headers.get("Retry-After", "1")))
            return self.post(body)
        if resp.status != 200:
            raise RuntimeError(f"POST {self.path}: HTTP {resp.status}: {data[:200]!r}")

    def close(self):
        self.conn.close()


def count(text: bytes) -> tuple[int, int]:
    """(sample lines, label sets per spanscope_active_series) of a text exposition."""
    samples = label_sets = 0
    for line in text.split(b"\n"):
        if not line or line.startswith(b"#"):
            continue
        samples += 1
        if line.startswith(b"spanscope_active_series{"):
            label_sets += int(float(line.rsplit(b" ", 1)[1]))
    return samples, label_sets


class SeriesBuilder:
    """Grows the exporter's series to a target by sending spans with new component names."""

    def __init__(self, urls: dict, settle: float):
        self.ingest = Client(urls["traces"])
        self.metrics = Client(urls["metrics"])
        self.settle = settle
        self.sent = 0
        self.per_value = 19.0  # duration histogram (17 samples) + self time + critical path

    def current(self) -> tuple[int, int]:
        return count(self.metrics.get(TEXT_ACCEPT))

    def grow_to(self, target: int, max_rounds: int = 8) -> tuple[int, int, int]:
        samples, label_sets = self.current()
        for round_ in range(max_rounds):
            if samples >= target:
                break
            aim = target * (0.97 if round_ == 0 else 1.0) - samples
            n = max(8, math.ceil(aim / self.per_value / 8) * 8)
            batches = AttackBatches(n, prefix="series", service="scrape-bench", start=self.sent, tenants=False)
            while (item := batches.next()) is not None:
                self.ingest.post(item[0])
            self.sent += n
            time.sleep(self.settle)  # traces finish: self-time and critical-path series appear
            new_samples, label_sets = self.current()
            self.per_value = max(1.0, (new_samples - samples) / n)
            samples = new_samples
        return samples, label_sets, self.sent

    def close(self):
        self.ingest.close()
        self.metrics.close()


def time_scrapes(url: str, n: int, openmetrics: bool, warmup: int = 2) -> dict:
    client = Client(url)
    accept = OPENMETRICS_ACCEPT if openmetrics else TEXT_ACCEPT
    try:
        for _ in range(warmup):
            client.get(accept)
        times, size = [], 0
        for _ in range(n):
            started = time.perf_counter()
            body = client.get(accept)
            times.append(time.perf_counter() - started)
            size = len(body)
    finally:
        client.close()
    return {"scrapes": n, "median_ms": round(percentile(times, 50) * 1000, 2),
            "p99_ms": round(percentile(times, 99) * 1000, 2), "min_ms": round(min(times) * 1000, 2),
            "bytes": size}


API_VIEWS = ("dashboard", "performance", "costs", "quality", "cache", "health")


def fill_day(otlp_url: str, spans_per_minute: int = 128) -> int:
    """Realistic traces ending in every minute of the last 24 h, so the API adds up a full day."""
    import payloads
    client = Client(otlp_url)
    now = time.time_ns()
    try:
        for minute in range(1440, 0, -1):
            for body in payloads.batches(1, spans_per_minute, seed=minute, base_ns=now - minute * 60 * 10**9):
                client.post(body)
    finally:
        client.close()
    return 1440 * spans_per_minute


def time_api(metrics_url: str, n: int, window_minutes: int = 1440) -> dict:
    """Answer times of the metrics API views (the issue's target: p99 < 50 ms at 10 000 series)."""
    base = metrics_url.rsplit("/metrics", 1)[0]
    out = {}
    for view in API_VIEWS:
        client = Client(f"{base}/api/metrics/{view}?time_window_minutes={window_minutes}")
        try:
            client.conn.request("GET", client.path)  # warm-up
            client.conn.getresponse().read()
            times = []
            for _ in range(n):
                started = time.perf_counter()
                client.get("application/json")
                times.append(time.perf_counter() - started)
        finally:
            client.close()
        out[view] = {"median_ms": round(percentile(times, 50) * 1000, 2),
                     "p99_ms": round(percentile(times, 99) * 1000, 2)}
    out["worst_p99_ms"] = max(v["p99_ms"] for v in out.values())
    out["window_minutes"] = window_minutes
    return out


def run(urls: dict, sizes: list[int], n_scrapes: int, settle: float, log=print) -> dict:
    """Grow the exporter at `urls` to each size in turn and time scrapes there."""
    builder = SeriesBuilder(urls, settle)
    out = {}
    try:
        filled = fill_day(urls["traces"])
        log(f"  metrics API: {filled} spans spread over the last 24 h")
        for size in sorted(sizes):
            samples, label_sets, sent = builder.grow_to(size)
            log(f"  scrape: {samples} series ({label_sets} label sets, {sent} component values sent)")
            out[str(size)] = {
                "target_series": size,
                "series": samples,
                "label_sets": label_sets,
                "component_values": sent,
                "text": time_scrapes(urls["metrics"], n_scrapes, openmetrics=False),
                "openmetrics": time_scrapes(urls["metrics"], n_scrapes, openmetrics=True),
                "metrics_api": time_api(urls["metrics"], max(n_scrapes, 20)),
            }
    finally:
        builder.close()
    return out
