"""The stack's resources during a run, every 2 s: CPU, open file descriptors and resident memory of
each process (from /proc), how busy the whole machine is, and the demo's counts (requests answered,
spans its SDK ended, exported and failed to export) from its /api/v1/stats.

Prometheus holds the exporter's own series; this holds what no process exports about itself, at a
finer grain than a 5 s scrape.
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def process_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def resident_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


def machine_ticks() -> tuple[int, int]:
    """(busy, all) jiffies of every CPU since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def demo_stats(target: str | None) -> dict | None:
    if not target:
        return None
    try:
        with urllib.request.urlopen(target + "/api/v1/stats", timeout=2) as resp:
            return json.load(resp)
    except (OSError, ValueError):   # busy or not the demo: a gap in the series, not a failed run
        return None


class Sampler:
    """Samples `pids` (name -> pid; may grow while running: the load generator starts later) and the
    demo at `target`. Each sample: t, machine_busy (share), cpu (cores), fds, rss (bytes) by process
    name, and demo ({requests, spans: {ended, exported, export_failed, not_exported}} or None)."""

    def __init__(self, pids: dict[str, int], target: str | None = None, every_s: float = 2.0):
        self.pids = pids
        self.target = target
        self.every_s = every_s
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")

    def _run(self) -> None:
        prev_t, prev_machine = time.time(), machine_ticks()
        prev = {n: process_seconds(p) for n, p in list(self.pids.items())}
        while not self._stop.wait(self.every_s):
            pids = dict(self.pids)
            now, machine = time.time(), machine_ticks()
            cur = {n: process_seconds(p) for n, p in pids.items()}
            dt = now - prev_t
            self.samples.append({
                "t": now,
                "machine_busy": (machine[0] - prev_machine[0]) / max(1, machine[1] - prev_machine[1]),
                "cpu": {n: (cur[n] - prev[n]) / dt for n in cur if cur[n] is not None and prev.get(n) is not None},
                "fds": {n: v for n, p in pids.items() if (v := open_fds(p)) is not None},
                "rss": {n: v for n, p in pids.items() if (v := resident_bytes(p)) is not None},
                "demo": demo_stats(self.target),
            })
            prev_t, prev, prev_machine = now, cur, machine

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
