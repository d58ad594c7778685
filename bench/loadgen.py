"""Closed-loop OTLP load generator (its own process, never the server's).

    python bench/loadgen.py throughput --protocol http --target URL --payloads FILE --server-pid PID
    python bench/loadgen.py attack --protocol http --target URL --values 1000000 --server-pid PID

N workers (one connection each: an aiohttp connection, or a gRPC channel with its own subchannel)
each send the next pre-serialized ExportTraceServiceRequest as soon as the previous answer
arrived. Only successful answers (HTTP 200, gRPC OK) count; a 503 / UNAVAILABLE is throttling:
the worker waits Retry-After (or the RetryInfo delay) and resends the same payload. Other answers
are errors: counted, the payload dropped.

`throughput` warms up, then measures a fixed window: spans/s, the server's CPU seconds in the
window (/proc/<pid>/stat), spans per server CPU second, request latency percentiles, server RSS.
`attack` sends generated spans whose names (the component label) are all distinct and whose
traces all carry a distinct tenant id, sampling the server's RSS as values accumulate.
Both print one JSON object on stdout and stop by themselves (duration, value count, time limit).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MB, cpu_seconds, fresh_traces, memory, percentile, read_payloads, span_count, trace_id_offsets

GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
OK, THROTTLED, ERROR = "ok", "throttled", "error"


# --- senders: one per worker, i.e. one connection each ---------------------------------------

class HttpSenders:
    def __init__(self, url: str, concurrency: int):
        import aiohttp
        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
            timeout=aiohttp.ClientTimeout(total=60), skip_auto_headers=("User-Agent",))
        self.headers = {"Content-Type": "application/x-protobuf"}

    def sender(self):
        async def send(payload: bytes):
            try:
                async with self.session.post(self.url, data=payload, headers=self.headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return OK, None
                    if resp.status == 503:
                        try:
                            delay = float(resp.headers.get("Retry-After", "1"))
                        except ValueError:
                            delay = 1.0
                        return THROTTLED, delay
                    return ERROR, f"HTTP {resp.status}"
            except Exception as exc:  # connection refused/reset: the server died or restarted
                await asyncio.sleep(0.05)
                return ERROR, f"{type(exc).__name__}: {exc}"
        return send

    async def close(self):
        await self.session.close()


def _grpc_retry_delay(err) -> float:
    from google.rpc import error_details_pb2, status_pb2
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return 1.0


class GrpcSenders:
    def __init__(self, target: str, concurrency: int):
        import grpc
        self.grpc = grpc
        self.target = target
        self.channels = []

    def sender(self):
        grpc = self.grpc
        # A local subchannel pool: each worker gets its own connection, as N exporters would.
        channel = grpc.aio.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1),
                                                                 ("grpc.max_send_message_length", -1)])
        self.channels.append(channel)
        call = channel.unary_unary(GRPC_METHOD)  # bytes in, bytes out: payloads are pre-serialized

        async def send(payload: bytes):
            try:
                await call(payload, timeout=60)
                return OK, None
            except grpc.aio.AioRpcError as err:
                if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED) \
                        and "connect" not in (err.details() or "").lower():
                    return THROTTLED, _grpc_retry_delay(err)
                await asyncio.sleep(0.05)
                return ERROR, f"{err.code().name}: {err.details()}"
        return send

    async def close(self):
        for ch in self.channels:
            await ch.close()


def senders(protocol: str, target: str, concurrency: int):
    return (HttpSenders if protocol == "http" else GrpcSenders)(target, concurrency)


# --- the closed loop -------------------------------------------------------------------------

class Loop:
    """Shared state of the workers: the payload source and what was counted."""

    def __init__(self, source, on_ok=None):
        self.source = source          # callable -> (payload, spans) or None when exhausted
        self.on_ok = on_ok            # callback(spans) after each counted answer
        self.counting = True
        self.stopping = False
        self.requests = self.spans = self.throttled = self.errors = 0
        self.latencies: list[float] = []
        self.last_error = None

    def reset(self):
        self.requests = self.spans = self.throttled = self.errors = 0
        self.latencies = []

    async def worker(self, send):
        perf = time.perf_counter
        while not self.stopping:
            item = self.source()
            if item is None:
                return
            payload, spans = item
            while not self.stopping:
                started = perf()
                outcome, extra = await send(payload)
                if outcome == OK:
                    if self.counting and not self.stopping:
                        self.requests += 1
                        self.spans += spans
                        self.latencies.append(perf() - started)
                        if self.on_ok:
                            self.on_ok(spans)
                    break
                if outcome == THROTTLED:
                    self.throttled += 1
                    await asyncio.sleep(min(extra, 5.0))
                    continue
                self.errors += 1
                self.last_error = extra
                break


async def run_workers(loop: Loop, senders_, concurrency: int, until: asyncio.Future, grace: float = 30.0):
    """Run `concurrency` workers until `until` resolves or every worker ran out of payloads."""
    tasks = [asyncio.create_task(loop.worker(senders_.sender())) for _ in range(concurrency)]
    all_done = asyncio.ensure_future(asyncio.wait(tasks))
    await asyncio.wait([until, all_done], return_when=asyncio.FIRST_COMPLETED)
    loop.stopping = True  # in-flight requests finish but no longer count
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    all_done.cancel()
    await senders_.close()


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 3)


# --- throughput ------------------------------------------------------------------------------

async def throughput(args) -> dict:
    payloads = read_payloads(args.payloads)
    counts = [span_count(p) for p in payloads]
    offsets = [trace_id_offsets(p) for p in payloads]
    state = {"i": 0}

    def source():
        i = state["i"]
        state["i"] = i + 1
        replay, j = divmod(i, len(payloads))
        return fresh_traces(payloads[j], offsets[j], replay), counts[j]

    loop = Loop(source)
    ev = asyncio.get_running_loop()
    window: dict = {}
    finished = ev.create_future()

    def begin():
        loop.reset()
        window["t0"], window["cpu0"] = time.perf_counter(), cpu_seconds(args.server_pid)
        window["self0"] = time.process_time()

    def end():
        window["t1"], window["cpu1"] = time.perf_counter(), cpu_seconds(args.server_pid)
        window["self1"] = time.process_time()
        loop.counting = False
        finished.set_result(None)

    ev.call_later(args.warmup, begin)
    ev.call_later(args.warmup + args.duration, end)
    await run_workers(loop, senders(args.protocol, args.target, args.concurrency), args.concurrency, finished)
    wall = window["t1"] - window["t0"]
    cpu = window["cpu1"] - window["cpu0"]
    mem = memory(args.server_pid)
    return {
        "protocol": args.protocol,
        "concurrency": args.concurrency,
        "warmup_s": args.warmup,
        "duration_s": round(wall, 3),
        "requests": loop.requests,
        "spans": loop.spans,
        "throttled": loop.throttled,
        "errors": loop.errors,
        "last_error": loop.last_error,
        "spans_per_s": round(loop.spans / wall, 1),
        "server_cpu_s": round(cpu, 3),
        "server_cores_busy": round(cpu / wall, 3),
        "spans_per_core_s": round(loop.spans / cpu, 1) if cpu > 0 else None,
        "latency_p50_ms": ms(percentile(loop.latencies, 50)),
        "latency_p99_ms": ms(percentile(loop.latencies, 99)),
        "server_rss_mb": round(mem["rss_bytes"] / MB, 1),
        "server_peak_rss_mb": round(mem["peak_rss_bytes"] / MB, 1),
        "loadgen_cpu_s": round(window["self1"] - window["self0"], 3),
    }


# --- cardinality attack ----------------------------------------------------------------------

async def attack(args) -> dict:
    from cardinality import AttackBatches
    gen = AttackBatches(args.values, args.spans_per_batch, args.spans_per_trace, prefix=args.prefix)
    samples = []
    started = time.perf_counter()
    state = {"accepted": 0, "next": args.sample_every, "stop_reason": None}
    ev = asyncio.get_running_loop()
    finished = ev.create_future()

    def sample(values):
        mem = memory(args.server_pid)
        samples.append({"values": values, "seconds": round(time.perf_counter() - started, 2),
                        "rss_mb": round(mem["rss_bytes"] / MB, 1)})
        return mem

    def stop(reason):
        if state["stop_reason"] is None:
            state["stop_reason"] = reason
        if not finished.done():
            finished.set_result(None)

    def on_ok(spans):
        state["accepted"] += spans
        if state["accepted"] >= args.values:
            stop("all values sent")
        while state["accepted"] >= state["next"]:
            mem = sample(state["next"])
            state["next"] += args.sample_every
            if args.rss_limit_mb and mem["rss_bytes"] > args.rss_limit_mb * MB:
                stop(f"server RSS above {args.rss_limit_mb} MB")

    sample(0)
    loop = Loop(gen.next, on_ok)
    ev.call_later(args.time_limit, stop, f"time limit of {args.time_limit:g}s")
    await run_workers(loop, senders(args.protocol, args.target, args.concurrency), args.concurrency, finished)
    elapsed = time.perf_counter() - started
    if state["stop_reason"] is None:
        state["stop_reason"] = "source exhausted"
    await asyncio.sleep(args.settle)  # let pending traces finish before the last sample
    mem = memory(args.server_pid)
    return {
        "protocol": args.protocol,
        "values_requested": args.values,
        "values_sent": state["accepted"],
        "tenants_sent": state["accepted"] // args.spans_per_trace,
        "stop_reason": state["stop_reason"],
        "seconds": round(elapsed, 2),
        "spans_per_s": round(state["accepted"] / elapsed, 1) if elapsed else None,
        "throttled": loop.throttled,
        "errors": loop.errors,
        "last_error": loop.last_error,
        "samples": samples,
        "rss_final_mb": round(mem["rss_bytes"] / MB, 1),
        "peak_rss_mb": round(mem["peak_rss_bytes"] / MB, 1),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Closed-loop OTLP load generator (prints JSON).")
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("throughput", "attack"):
        s = sub.add_parser(name)
        s.add_argument("--protocol", choices=["http", "grpc"], default="http")
        s.add_argument("--target", required=True, help="OTLP/HTTP URL (…/v1/traces) or gRPC HOST:PORT")
        s.add_argument("--server-pid", type=int, required=True, help="server process to account CPU/RSS of")
        s.add_argument("--concurrency", type=int, default=4, help="concurrent connections (default 4)")
    t = sub.choices["throughput"]
    t.add_argument("--payloads", required=True, help="file written by common.write_payloads")
    t.add_argument("--warmup", type=float, default=3.0)
    t.add_argument("--duration", type=float, default=10.0)
    a = sub.choices["attack"]
    a.add_argument("--values", type=int, default=1_000_000, help="distinct component values (= spans) to send")
    a.add_argument("--sample-every", type=int, default=50_000, help="sample server RSS every N values")
    a.add_argument("--spans-per-batch", type=int, default=512)
    a.add_argument("--spans-per-trace", type=int, default=8)
    a.add_argument("--prefix", default="attack", help="prefix of the distinct values")
    a.add_argument("--time-limit", type=float, default=300.0, help="stop after this many seconds")
    a.add_argument("--rss-limit-mb", type=float, default=0, help="stop when server RSS exceeds this (0: none)")
    a.add_argument("--settle", type=float, default=1.0, help="seconds to wait before the final RSS sample")
    args = p.parse_args(argv)
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    result = runner(throughput(args) if args.mode == "throughput" else attack(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["loadgen_total_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
