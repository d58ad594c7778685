"""Real processes on free loopback ports for integration tests.

Every helper waits on a readiness endpoint (never a sleep) and the returned handle stops the
process group on exit, so a failing test leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ok(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 2xx; fail early when `proc` has exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met after {timeout}s")
        time.sleep(interval)


@dataclass
class Process:
    """A child process in its own process group, with its log file."""

    popen: subprocess.Popen
    log_path: Path
    urls: dict = field(default_factory=dict)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode


def spawn(cmd: list[str], log_dir: Path, name: str, env: dict | None = None, cwd: Path | None = None) -> Process:
    log_path = Path(log_dir) / f"{name}.log"
    log_file = open(log_path, "wb")
    popen = subprocess.Popen(
        cmd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    log_file.close()
    return Process(popen, log_path)


def on_free_ports(start):
    """Call `start` again (it picks new ports) when its process found a port taken: free_port()
    releases the port before the child binds it, and an outgoing connection of another process can
    get it as its ephemeral port meanwhile."""

    def retrying(*args, **kwargs) -> Process:
        for attempt in range(3):
            try:
                return start(*args, **kwargs)
            except RuntimeError as exc:
                if attempt == 2 or "address already in use" not in str(exc).lower():
                    raise
        raise AssertionError("unreachable")

    return retrying


@on_free_ports
def start_exporter(tmp_path: Path, config: dict | None = None, extra_args: list[str] | None = None,
                   env: dict | None = None) -> Process:
    """Start `spanscope-exporter` on free loopback ports and wait for /readyz.

    `config` is merged into a YAML config file; urls: http (OTLP/HTTP base), grpc (host:port), web.
    """
    http_port, grpc_port, web_port = free_port(), free_port(), free_port()
    # Tests stop exporters often: no shutdown grace unless a test asks for one.
    args = [PYTHON, "-m", "spanscope.cli", "--set", "shutdown.grace=0",
            "--otlp-http", f"127.0.0.1:{http_port}",
            "--otlp-grpc", f"127.0.0.1:{grpc_port}",
            "--web", f"127.0.0.1:{web_port}"]
    if config is not None:
        cfg_path = Path(tmp_path) / f"spanscope-{web_port}.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        args += ["--config", str(cfg_path)]
    args += extra_args or []
    proc = spawn(args, tmp_path, f"exporter-{web_port}", env=env)
    proc.urls = {
        "http": f"http://127.0.0.1:{http_port}",
        "grpc": f"127.0.0.1:{grpc_port}",
        "web": f"http://127.0.0.1:{web_port}",
    }
    try:
        wait_http_ok(proc.urls["web"] + "/readyz", proc=proc.popen)
    except Exception:
        proc.stop()
        raise RuntimeError("exporter did not become ready:\n" + proc.log())
    return proc


def binary(name: str) -> str | None:
    return shutil.which(name)


@on_free_ports
def start_prometheus(tmp_path: Path, config: dict, rule_files: list[Path] = (), extra_args=()) -> Process:
    """Run a real Prometheus with `config` (rule_files are copied next to it)."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="prom-", dir=tmp_path))
    cfg = dict(config)
    if rule_files:
        rules_dir = workdir / "rules"
        rules_dir.mkdir()
        for f in rule_files:
            shutil.copy(f, rules_dir / Path(f).name)
        cfg["rule_files"] = [str(rules_dir / "*.yml")]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    cmd = [binary("prometheus") or "prometheus",
           f"--config.file={workdir / 'prometheus.yml'}",
           f"--storage.tsdb.path={workdir / 'data'}",
           f"--web.listen-address=127.0.0.1:{port}",
           "--web.enable-lifecycle",
           "--enable-feature=exemplar-storage",
           *extra_args]
    proc = spawn(cmd, workdir, "prometheus")
    proc.urls = {"web": f"http://127.0.0.1:{port}"}
    try:
        wait_http_ok(proc.urls["web"] + "/-/ready", proc=proc.popen)
    except Exception:
        proc.stop()
        raise RuntimeError("prometheus did not become ready:\n" + proc.log())
    return proc


@on_free_ports
def start_alertmanager(tmp_path: Path, config_path: Path, extra_args=()) -> Process:
    port, cluster_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="am-", dir=tmp_path))
    cmd = [binary("prometheus-alertmanager") or binary("alertmanager") or "alertmanager",
           f"--config.file={config_path}",
           f"--storage.path={workdir / 'data'}",
           f"--web.listen-address=127.0.0.1:{port}",
           f"--cluster.listen-address=127.0.0.1:{cluster_port}",
           *extra_args]
    proc = spawn(cmd, workdir, "alertmanager")
    proc.urls = {"web": f"http://127.0.0.1:{port}"}
    try:
        wait_http_ok(proc.urls["web"] + "/-/ready", proc=proc.popen)
    except Exception:
        proc.stop()
        raise RuntimeError("alertmanager did not become ready:\n" + proc.log())
    return proc
