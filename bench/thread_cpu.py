"""Where a running exporter's CPU goes, thread by thread, under the bench load.

    .venv/bin/python bench/thread_cpu.py [--reference PYTHON] [--rounds 3] [--duration 10] [--set PATH=VALUE ...]

Runs the exporter-http target of bench/run.py (and with --reference the same load against another
build, alternately) and reads every thread's CPU time from /proc/<pid>/task/<tid>/stat over the
measured window. The main thread is the event loop (HTTP, housekeeping: finishing traces); the others
are the ingest worker (decoding, reading and recording spans), the interaction writer (SQLite) and
idle helpers, listed by thread id. Prints spans per core and each thread's CPU microseconds per span.

Why: a sampling profiler that follows the thread holding the GIL (py-spy --gil) put most of the
server's time in finishing traces, because it charged the event loop's waits for the ingest lock to
housekeeping; the threads' own CPU time does not mislead that way.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payloads as payload_gen  # noqa: E402
from common import BENCH, CLK_TCK, PYTHON, start_exporter, write_payloads  # noqa: E402

WARMUP = 3.0


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of `pid` so far."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def measure(python: str, payload_file: Path, workdir: Path, args) -> dict:
    settings = {"limits.ingest_queue": 1024, **dict(s.split("=", 1) for s in args.set)}
    with start_exporter(workdir, settings, name="thread-cpu", python=python) as server:
        load = subprocess.Popen([PYTHON, str(BENCH / "loadgen.py"), "throughput", "--payloads", str(payload_file),
                                 "--warmup", str(WARMUP), "--duration", str(args.duration), "--protocol", "http",
                                 "--target", server.urls["traces"], "--server-pid", str(server.pid)],
                                stdout=subprocess.PIPE, text=True)
        # The window: from a second into the loadgen's measured window to a second before its end.
        time.sleep(WARMUP + 1)
        before = thread_cpu(server.pid)
        started = time.monotonic()
        time.sleep(args.duration - 2)
        after, window = thread_cpu(server.pid), time.monotonic() - started
        res = json.loads(load.communicate()[0])
    spans = res["spans_per_s"] * window
    per_span = {tid: (after[tid] - before.get(tid, 0.0)) / spans * 1e6 for tid in after}
    return {"spans_per_core_s": res["spans_per_core_s"], "main_us": per_span.pop(server.pid, 0.0),
            "others_us": sorted((round(v, 1) for v in per_span.values() if v >= 0.05), reverse=True)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", help="python of another build (its venv), measured alternately")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="loadgen's measured seconds (>= 4)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="exporter setting")
    args = p.parse_args(argv)
    builds = {"exporter": PYTHON, **({"reference": args.reference} if args.reference else {})}
    results: dict[str, list] = {name: [] for name in builds}
    with tempfile.TemporaryDirectory(prefix="thread-cpu-") as tmp:
        workdir = Path(tmp)
        payload_file = workdir / "payloads.bin"
        write_payloads(payload_file, payload_gen.batches(64, 512, base_ns=time.time_ns() - 60 * 10**9))
        for n in range(args.rounds):
            for name, python in (list(builds.items()) if n % 2 == 0 else list(builds.items())[::-1]):
                r = measure(python, payload_file, workdir, args)
                results[name].append(r)
                print(f"round {n + 1} {name}: {r['spans_per_core_s']:.0f} spans per core; CPU us per span: "
                      f"main thread {r['main_us']:.1f}, others {r['others_us']}", flush=True)
    for name, rounds in results.items():
        print(f"{name}: median {statistics.median(r['spans_per_core_s'] for r in rounds):.0f} spans per core, "
              f"main thread {statistics.median(r['main_us'] for r in rounds):.1f} us per span")
    if args.reference:
        ratios = [a["spans_per_core_s"] / b["spans_per_core_s"]
                  for a, b in zip(results["exporter"], results["reference"], strict=True)]
        print(f"exporter / reference: {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
