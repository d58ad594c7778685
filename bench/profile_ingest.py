"""Where the exporter's CPU goes per span: an in-process microbenchmark of the ingest path.

    python bench/profile_ingest.py [--batches 32] [--rounds 5] [--gc on|off|threshold] [--cprofile 25] [--scrapes 20]

Builds `spanscope.app.Exporter` from the embedded default config (every feature on), feeds it the
bench payloads (bench/payloads.py) without any server, and reports CPU microseconds per span for:
decode (protobuf into raw spans, decode.wire), read (interpret.contract.read_span alone), process (Ingest.process:
read + record + trace assembly), finish (Ingest.finish_traces: the summary with its breakdown, then the sinks), and each
sink of the finished requests (the recorder's request metrics among them), and then the CPU of one
scrape of what that traffic left (`/metrics` rendered as text and as OpenMetrics, the collectors
included). `--gc` compares the cyclic
garbage collector's share; `--cprofile N` prints the top N functions by own time. Single-threaded, so the
numbers add up; the server adds HTTP/gRPC handling and any thread hand-off on top (compare with run.py's
spans per core).
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payloads  # noqa: E402
from common import fresh_traces, trace_id_offsets  # noqa: E402


def measure(args) -> dict:
    from spanscope.app import Exporter
    from spanscope.config import load
    from spanscope.decode.otlp import read_protobuf
    from spanscope.interpret.contract import read_span
    from spanscope.metrics.exposition import render
    from spanscope.metrics.runtime import runtime_families

    batches = payloads.batches(args.batches, base_ns=time.time_ns() - 60 * 10**9)
    offsets = [trace_id_offsets(b) for b in batches]
    exporter = Exporter(load(None, ["traces.finish_delay=0.05"]))
    ingest = exporter.ingest
    # Every pass sends new traces, as the load generator does: a replayed span is a duplicate.
    passes = iter(range(1, 10**6))

    def fresh() -> list:
        replay = next(passes)
        return [read_protobuf(fresh_traces(b, o, replay), ingest.reader) for b, o in zip(batches, offsets, strict=True)]

    requests = fresh()
    spans = [s for r in requests for _, raw in r for s in raw]
    n = len(spans) * args.rounds
    cpu = time.process_time

    def cycle():
        for r in fresh():
            ingest.process(r, "bench")
        ingest.finish_traces(time.time() + 10)

    cycle()  # warm: first series, first service, caches
    t = cpu()
    for _ in range(args.rounds):
        for b in batches:
            read_protobuf(b, ingest.reader)
    decode = cpu() - t
    t = cpu()
    for _ in range(args.rounds):
        for s in spans:
            read_span(s, "bench", ())
    read = cpu() - t
    process = finish = 0.0
    for _ in range(args.rounds):
        requests = fresh()
        t = cpu()
        for r in requests:
            ingest.process(r, "bench")
        process += cpu() - t
        t = cpu()
        ingest.finish_traces(time.time() + 10)
        finish += cpu() - t
    scrapes = {}
    for openmetrics in (False, True):
        t = cpu()
        for _ in range(args.scrapes):
            body = render(exporter.store, openmetrics=openmetrics, tail=runtime_families(openmetrics))
        scrapes["openmetrics" if openmetrics else "text"] = round((cpu() - t) / args.scrapes * 1e3, 2)
    scrapes["lines"] = body.count(b"\n")
    sinks: dict[str, float] = {}

    def timed(f):
        name = getattr(f, "__qualname__", repr(f))

        def wrapper(summary):
            t0 = cpu()
            f(summary)
            sinks[name] = sinks.get(name, 0.0) + cpu() - t0
        return wrapper

    original = list(exporter.ingest.sinks)
    exporter.ingest.sinks[:] = [timed(f) for f in original]
    for _ in range(args.rounds):
        cycle()
    exporter.ingest.sinks[:] = original
    us = 1e6 / n
    total = decode + process + finish
    return {
        "spans": n, "gc": args.gc,
        "decode_us": round(decode * us, 2), "read_span_us": round(read * us, 2),
        "process_us": round(process * us, 2), "finish_us": round(finish * us, 2),
        "total_us": round(total * us, 2), "spans_per_cpu_s": round(n / total),
        "sinks_us": {k: round(v * us, 2) for k, v in sorted(sinks.items(), key=lambda kv: -kv[1])},
        "scrape_ms": scrapes,
        "_cycle": cycle,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=32, help="distinct payloads of 512 spans (32)")
    p.add_argument("--rounds", type=int, default=5, help="passes over the payloads per phase (5)")
    p.add_argument("--gc", choices=["on", "off", "threshold"], default="on",
                   help="cyclic GC as in the server (on), disabled (off), or gc.set_threshold(500000, 20, 100)")
    p.add_argument("--scrapes", type=int, default=20, help="renders of /metrics timed per format (20)")
    p.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print the top N functions by own time")
    args = p.parse_args(argv)
    if args.gc == "off":
        gc.disable()
    elif args.gc == "threshold":
        gc.set_threshold(500_000, 20, 100)

    async def run():  # the Exporter creates asyncio primitives: build it inside a loop
        return measure(args)

    result = asyncio.run(run())
    cycle = result.pop("_cycle")
    print(f"{result['spans']} spans, gc {result['gc']}, {result['total_us']} us/span CPU "
          f"= {result['spans_per_cpu_s']} spans per CPU second")
    print(f"  decode {result['decode_us']} us | process {result['process_us']} us "
          f"(read_span alone {result['read_span_us']} us) | finish_traces {result['finish_us']} us")
    for name, v in result["sinks_us"].items():
        print(f"  sink {name}: {v} us/span")
    sc = result["scrape_ms"]
    print(f"  scrape of the {sc['lines']} lines left: {sc['text']} ms CPU as text, "
          f"{sc['openmetrics']} ms as OpenMetrics")
    if args.cprofile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.rounds):
            cycle()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.cprofile)


if __name__ == "__main__":
    main()
