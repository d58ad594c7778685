"""Request pacing in real time: Poisson arrivals at `rate` per second until stopped.

Only the pacing waits for real; each request's latency is simulated (see pipeline.py), so the
loop keeps up with hundreds of requests per second. Between arrivals it hands spans whose
simulated end has come to the SDK (clock.EndOnTime).
"""
from __future__ import annotations

import logging
import os
import threading
import time

from .pipeline import RagService

log = logging.getLogger("spanscope_demo")

MAX_LAG_S = 1.0          # further behind than this and the backlog is dropped, not burst out
PROGRESS_EVERY_S = 10.0
HEARTBEAT_EVERY_S = 2.0


class Stats:
    def __init__(self):
        self.requests = self.errors = self.cache_hits = 0

    def add(self, outcome) -> None:
        self.requests += 1
        self.errors += outcome.status == "error"
        self.cache_hits += outcome.cache_status == "hit"

    def merge(self, other: Stats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.cache_hits += other.cache_hits


def run(service: RagService, rate: float, stop: threading.Event, duration: float | None = None,
        heartbeat_file: str | None = None) -> Stats:
    stats = Stats()
    started = time.monotonic()
    deadline = started + duration if duration else None
    next_at = started
    last_progress = last_beat = started
    shown = 0
    closer = service.closer
    if heartbeat_file:
        touch(heartbeat_file)
    while not stop.is_set():
        closer.end_due()
        now = time.monotonic()
        if heartbeat_file and now - last_beat >= HEARTBEAT_EVERY_S:
            touch(heartbeat_file)
            last_beat = now
        if deadline is not None and now >= deadline:
            break
        if next_at > now:
            # Sleep until the next arrival, span due to end or heartbeat, whichever is first.
            wake = min(next_at, deadline or next_at)
            due_ns = closer.next_due_ns()
            if due_ns is not None:
                wake = min(wake, now + max(0.0, (due_ns - time.time_ns()) / 1e9))
            if heartbeat_file:
                wake = min(wake, last_beat + HEARTBEAT_EVERY_S)
            if stop.wait(max(0.0, wake - now)):
                break
            continue
        if now - next_at > MAX_LAG_S:
            next_at = now
        stats.add(service.handle())
        next_at += service.rng.expovariate(rate)
        if now - last_progress >= PROGRESS_EVERY_S:
            log.info("%d requests (%.1f/s), %.1f%% errors, %.0f%% cache hits, scenario %s",
                     stats.requests, (stats.requests - shown) / (now - last_progress),
                     100 * stats.errors / stats.requests, 100 * stats.cache_hits / stats.requests,
                     service.scenario.name)
            last_progress, shown = now, stats.requests
    return stats


def touch(path: str) -> None:
    # The container HEALTHCHECK reads this file's age: a stuck or dead loop turns it unhealthy.
    with open(path, "a"):
        os.utime(path)
