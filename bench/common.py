"""Shared helpers of the benchmark: servers, /proc accounting, payload files, percentiles.

Servers are started and stopped by scripts/processes.py, as the tests and `make run` start theirs.
No psutil: CPU time comes from /proc/<pid>/stat (utime + stime of all threads), memory from
/proc/<pid>/status (VmRSS, VmHWM).
"""
from __future__ import annotations

import math
import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import processes
from processes import PYTHON, Process, free_port, on_free_ports, start_server

BENCH = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


# --- /proc accounting ------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by every thread of process `pid`."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def memory(pid: int) -> dict:
    """Current (VmRSS) and peak (VmHWM) resident set size of `pid`, in bytes."""
    out = {"rss_bytes": 0, "peak_rss_bytes": 0}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_bytes"] = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                out["peak_rss_bytes"] = int(line.split()[1]) * 1024
    return out


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- statistics ------------------------------------------------------------------------------

def percentile(values, q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ratio(a, b) -> float | None:
    return round(a / b, 4) if a and b else None


# --- payload files: the same serialized requests for every target --------------------------

def write_payloads(path: Path, payloads: list[bytes]) -> None:
    with open(path, "wb") as f:
        for p in payloads:
            f.write(struct.pack(">I", len(p)))
            f.write(p)


def read_payloads(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from(">I", data, i)
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def span_count(payload: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    req = ExportTraceServiceRequest.FromString(payload)
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def trace_id_offsets(payload: bytes) -> list[int]:
    """Where the payload's trace ids are, so that a replay can make its traces new (see fresh_traces)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    req = ExportTraceServiceRequest.FromString(payload)
    offsets = []
    for trace_id in {s.trace_id for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}:
        i = payload.find(trace_id)
        while i != -1:
            offsets.append(i)
            i = payload.find(trace_id, i + 1)
    return sorted(offsets)


def fresh_traces(payload: bytes, offsets: list[int], replay: int) -> bytes:
    """The payload with every trace id's first 4 bytes XORed with `replay` (its pass over the
    payloads): a replayed request carries new traces, as real traffic does, instead of spans an
    exporter has already seen (spanscope drops those as retried duplicates)."""
    if not replay:
        return payload
    body = bytearray(payload)
    stamp = replay.to_bytes(4, "big")
    for o in offsets:
        body[o] ^= stamp[0]
        body[o + 1] ^= stamp[1]
        body[o + 2] ^= stamp[2]
        body[o + 3] ^= stamp[3]
    return bytes(body)


# --- servers ---------------------------------------------------------------------------------

def start_exporter(workdir: Path, settings: dict | None = None, name: str = "exporter",
                   env: dict | None = None, python: str = PYTHON) -> Process:
    """The exporter on free loopback ports (scripts/processes.py), logging warnings only.

    `settings` are config paths -> values passed with --set (the rest is the embedded default
    config, i.e. every feature on); `env` is added to the environment; `python` is the interpreter,
    i.e. the venv whose spanscope runs (another's: an earlier build, bench/run.py --reference).
    """
    return processes.start_exporter(workdir, settings=settings, extra_args=["--log-level", "warning"],
                                    env=env, name=name, python=python)


@on_free_ports
def start_baseline(workdir: Path, buckets=None, name: str = "baseline") -> Process:
    """bench/baseline_server.py: aiohttp + prometheus_client, HTTP and gRPC on free ports."""
    http, grpc = free_port(), free_port()
    cmd = [PYTHON, str(BENCH / "baseline_server.py"), "--http", f"127.0.0.1:{http}", "--grpc", f"127.0.0.1:{grpc}"]
    if buckets:
        cmd += ["--buckets", ",".join(str(b) for b in buckets)]
    urls = {"traces": f"http://127.0.0.1:{http}/v1/traces", "grpc": f"127.0.0.1:{grpc}",
            "web": f"http://127.0.0.1:{http}", "metrics": f"http://127.0.0.1:{http}/metrics"}
    return start_server(cmd, workdir, name, urls["metrics"], urls)
