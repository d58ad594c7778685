"""Shared helpers of the benchmark: processes, /proc accounting, payload files, percentiles.

Standard library only (psutil is not a dependency), and the free-port helpers of the integration
tests (tests/support/processes.py). CPU time comes from /proc/<pid>/stat (utime + stime of all
threads), memory from /proc/<pid>/status (VmRSS, VmHWM).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Free ports, and starting again on new ones when one was taken meanwhile: the integration tests' helpers.
sys.path.insert(0, str(REPO / "tests" / "support"))
from processes import free_port, on_free_ports

PYTHON = sys.executable
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


# --- processes -------------------------------------------------------------------------------

class Server:
    """A server process in its own process group, with its log file and URLs."""

    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path, urls: dict):
        self.name, self.popen, self.log_path, self.urls = name, popen, log_path, urls

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_http_ok(url: str, popen: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"process exited with {popen.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def spawn(name: str, cmd: list[str], workdir: Path, ready_path: str, urls: dict, env: dict | None = None) -> Server:
    log_path = Path(workdir) / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                 start_new_session=True, env={**os.environ, **(env or {})})
    server = Server(name, popen, log_path, urls)
    try:
        wait_http_ok(urls["web"] + ready_path, popen)
    except Exception:
        server.stop()
        raise RuntimeError(f"{name} did not become ready:\n{server.log()}") from None
    return server


def _exporter_accepts(path: str) -> bool:
    try:
        from spanscope.config import SCHEMA
    except ImportError:  # pragma: no cover - the exporter is installed in the venv
        return False
    return path in SCHEMA


@on_free_ports
def start_exporter(workdir: Path, settings: dict | None = None, name: str = "exporter",
                   env: dict | None = None, python: str = PYTHON) -> Server:
    """`python -m spanscope.cli` on free loopback ports, as tests/support/processes.py starts it.

    `settings` are config paths -> values passed with --set (the rest is the embedded default
    config, i.e. every feature on); `env` is added to the environment; `python` is the interpreter,
    i.e. the venv whose spanscope runs (another's: an earlier build, bench/run.py --reference).
    """
    http, grpc, web = free_port(), free_port(), free_port()
    cmd = [python, "-m", "spanscope.cli", "--log-level", "warning",
           "--otlp-http", f"127.0.0.1:{http}", "--otlp-grpc", f"127.0.0.1:{grpc}", "--web", f"127.0.0.1:{web}"]
    settings = dict(settings or {})
    if _exporter_accepts("shutdown.grace"):  # do not wait for a last scrape when the bench stops it
        settings.setdefault("shutdown.grace", 0)
    for path, value in settings.items():
        cmd += ["--set", f"{path}={value}"]
    urls = {"http": f"http://127.0.0.1:{http}/v1/traces", "grpc": f"127.0.0.1:{grpc}",
            "web": f"http://127.0.0.1:{web}", "metrics": f"http://127.0.0.1:{web}/metrics"}
    return spawn(name, cmd, workdir, "/readyz", urls, env)


@on_free_ports
def start_baseline(workdir: Path, buckets=None, name: str = "baseline") -> Server:
    """bench/baseline_server.py: aiohttp + prometheus_client, HTTP and gRPC on free ports."""
    http, grpc = free_port(), free_port()
    cmd = [PYTHON, str(BENCH / "baseline_server.py"), "--http", f"127.0.0.1:{http}", "--grpc", f"127.0.0.1:{grpc}"]
    if buckets:
        cmd += ["--buckets", ",".join(str(b) for b in buckets)]
    urls = {"http": f"http://127.0.0.1:{http}/v1/traces", "grpc": f"127.0.0.1:{grpc}",
            "web": f"http://127.0.0.1:{http}", "metrics": f"http://127.0.0.1:{http}/metrics"}
    return spawn(name, cmd, workdir, "/metrics", urls)
