"""What a crash (kill -9) of a loaded exporter loses of the interactions it acknowledged.

    python bench/crash_loss.py [--seconds 8] [--senders 8] [--runs 3] [--set store.queue_size=10000 ...]

Starts the exporter (scripts/processes.py) with its store in a temporary SQLite file, sends the
bench payloads (512 spans each, fresh trace ids on every pass) over OTLP/HTTP from `--senders`
concurrent clients for `--seconds`, reads `spanscope_interactions_pending` (assembling, queued,
writing), SIGKILLs the exporter at once and counts the acknowledged traces (answered 200) missing
from the database. Prints one JSON line per run. docs/interactions.md quotes its figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payloads  # noqa: E402
from common import fresh_traces, start_exporter, trace_id_offsets  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402


def trace_ids(payload: bytes) -> set[bytes]:
    req = ExportTraceServiceRequest.FromString(payload)
    return {s.trace_id for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}


def pending(web: str) -> dict:
    with urllib.request.urlopen(web + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("spanscope_interactions_pending{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('"')[1]] = float(value)
    return out


async def load(url: str, bodies: list[bytes], offsets: list, senders: int, seconds: float) -> list[tuple]:
    """(payload index, replay) of every request answered 200."""
    import aiohttp
    acked, deadline, counter = [], time.monotonic() + seconds, iter(range(10**9))

    async def sender(session):
        while time.monotonic() < deadline:
            n = next(counter)
            i, replay = n % len(bodies), n // len(bodies) + 1
            body = fresh_traces(bodies[i], offsets[i], replay)
            async with session.post(url, data=body, headers={"Content-Type": "application/x-protobuf"}) as resp:
                await resp.read()
                if resp.status == 200:
                    acked.append((i, replay))
                elif resp.status == 503:
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(sender(session) for _ in range(senders)))
    return acked


def xor_stamp(trace_id: bytes, replay: int) -> bytes:
    stamp = replay.to_bytes(4, "big")
    return bytes(a ^ b for a, b in zip(trace_id[:4], stamp, strict=True)) + trace_id[4:]


def run(args, bodies, offsets, ids) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "interactions.db"
        proc = start_exporter(Path(tmp), {"store.url": f"sqlite:///{db}", **dict(s.split("=", 1) for s in args.set)})
        try:
            acked = asyncio.run(load(proc.urls["traces"], bodies, offsets, args.senders, args.seconds))
            gauge = pending(proc.urls["web"])
            os.kill(proc.pid, signal.SIGKILL)
            proc.popen.wait(10)
        finally:
            proc.stop()
        with sqlite3.connect(db) as conn:
            stored = {bytes.fromhex(r[0]) for r in conn.execute("SELECT trace_id FROM interactions")}
    sent = {xor_stamp(t, replay) for i, replay in acked for t in ids[i]}
    return {"acknowledged": len(sent), "stored": len(sent & stored), "lost": len(sent - stored),
            "pending_before_kill": gauge, "pending_sum": sum(gauge.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="exporter config overrides")
    args = p.parse_args()
    bodies = payloads.batches(64, base_ns=time.time_ns() - 60 * 10**9)
    offsets = [trace_id_offsets(b) for b in bodies]
    ids = [trace_ids(b) for b in bodies]
    for _ in range(args.runs):
        print(json.dumps(run(args, bodies, offsets, ids)), flush=True)


if __name__ == "__main__":
    main()
