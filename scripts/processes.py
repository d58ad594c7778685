"""Starting and stopping the stack's processes on loopback: one way for `make run`, the tests and the bench.

scripts/run_stack.py (`make run`), the integration tests (tests/) and the benchmark (bench/) all
start exporters, Prometheus, Alertmanager, the demo or a baseline server as child processes. They
do it with these helpers:

- every child runs in its own process group (a new session), stdin from /dev/null, stdout and
  stderr into `<log_dir>/<name>.log`;
- readiness is polled (an HTTP endpoint answering 2xx, or any condition), never slept for, and
  the wait fails early when the child exits;
- stopping signals the group (SIGTERM, or what the caller asks for), sends SIGKILL after a timeout
  and then to whatever the child left behind in its group;
- ports are free loopback ports, and a start that lost its port to another process meanwhile is
  tried again on new ones (`on_free_ports`).

It lives in scripts/ beside run_stack.py, the one user that is not test or benchmark code, so that
`make run` does not reach into tests/. Nothing installs it: run_stack.py imports it as its
neighbour, tests/conftest.py and bench/common.py put scripts/ on sys.path.
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
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# -- ports and binaries -----------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port free now (the OS picks it); see on_free_ports for when it is taken meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether `port` can be bound on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def on_free_ports(start):
    """Call `start` again (it picks new ports) when its process found a port taken: free_port()
    releases the port before the child binds it, and an outgoing connection of another process can
    get it as its ephemeral port meanwhile."""

    def retrying(*args, **kwargs):
        for attempt in range(3):
            try:
                return start(*args, **kwargs)
            except RuntimeError as exc:
                if attempt == 2 or "address already in use" not in str(exc).lower():
                    raise
        raise AssertionError("unreachable")

    return retrying


def binary(*names: str) -> str | None:
    """The path of the first of `names` found on PATH, or None."""
    return next(filter(None, map(shutil.which, names)), None)


ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's name


# -- waiting ----------------------------------------------------------------------------------------


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition",
               process: Process | None = None, stop: threading.Event | None = None):
    """Poll `predicate` until it returns a truthy value, which is returned.

    TimeoutError after `timeout` seconds; RuntimeError as soon as `process` has exited; and when
    `stop` is set (Ctrl-C or SIGTERM of a caller that handles signals), KeyboardInterrupt.
    """
    deadline = time.monotonic() + timeout
    while True:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode} while waiting for {what}")
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        if stop is not None:
            stop.wait(interval)
        else:
            time.sleep(interval)


def http_ok(url: str) -> bool:
    """Whether `url` answers 2xx now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 300
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def wait_http_ok(url: str, timeout: float = 60.0, process: Process | None = None,
                 stop: threading.Event | None = None) -> None:
    """Poll `url` until it answers 2xx, as wait_until does."""
    wait_until(lambda: http_ok(url), timeout, 0.05, f"{url} to answer 2xx", process, stop)


# -- processes --------------------------------------------------------------------------------------


@dataclass
class Process:
    """A child process in its own process group, with its log file and the URLs it serves."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    urls: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the process group, SIGKILL it after `timeout` seconds and then whatever the child
        left behind in its group; the exit status."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def spawn(cmd: list[str], log_dir: Path, name: str, env: dict | None = None, cwd: Path | None = None) -> Process:
    """Start `cmd` in a new process group, its output to `<log_dir>/<name>.log`; `env` is added to
    the environment."""
    log_path = Path(log_dir) / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    return Process(name, popen, log_path)


def start_server(cmd: list[str], log_dir: Path, name: str, ready_url: str, urls: dict | None = None,
                 env: dict | None = None, cwd: Path | None = None, timeout: float = 60.0) -> Process:
    """spawn(), then wait until `ready_url` answers 2xx. If it does not, the process is stopped and
    RuntimeError carries its log."""
    proc = spawn(cmd, log_dir, name, env, cwd)
    proc.urls = dict(urls or {})
    try:
        wait_http_ok(ready_url, timeout, proc)
    except (RuntimeError, TimeoutError) as exc:
        proc.stop()
        raise RuntimeError(f"{name} did not become ready: {exc}\n{proc.log()}") from None
    except BaseException:
        proc.stop()
        raise
    return proc


# -- the stack's servers on free ports --------------------------------------------------------------


@on_free_ports
def start_exporter(log_dir: Path, config: dict | None = None, settings: dict | None = None,
                   extra_args=(), env: dict | None = None, name: str | None = None,
                   python: str = PYTHON) -> Process:
    """`python -m spanscope.cli` on free loopback ports, once /readyz answers.

    `config` is written to a YAML config file (else the embedded defaults apply); `settings` are
    config paths -> values passed with --set. Without a setting of its own it stops at once
    (shutdown.grace=0): its callers stop exporters often. urls: http (OTLP/HTTP base), traces
    (http + /v1/traces), grpc (host:port), web, metrics. `python` is the interpreter, i.e. the venv
    whose spanscope runs (another's: an earlier build, bench/run.py --reference).
    """
    http, grpc, web = free_port(), free_port(), free_port()
    cmd = [python, "-m", "spanscope.cli",
           "--otlp-http", f"127.0.0.1:{http}", "--otlp-grpc", f"127.0.0.1:{grpc}", "--web", f"127.0.0.1:{web}"]
    for path, value in {"shutdown.grace": 0, **(settings or {})}.items():
        cmd += ["--set", f"{path}={value}"]
    if config is not None:
        config_path = Path(log_dir) / f"spanscope-{web}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        cmd += ["--config", str(config_path)]
    cmd += list(extra_args)
    urls = {"http": f"http://127.0.0.1:{http}", "traces": f"http://127.0.0.1:{http}/v1/traces",
            "grpc": f"127.0.0.1:{grpc}", "web": f"http://127.0.0.1:{web}", "metrics": f"http://127.0.0.1:{web}/metrics"}
    return start_server(cmd, log_dir, name or f"exporter-{web}", urls["web"] + "/readyz", urls, env, cwd=REPO)


@on_free_ports
def start_prometheus(log_dir: Path, config: dict, rule_files: list[Path] = (), extra_args=()) -> Process:
    """A real Prometheus with `config` (rule_files are copied next to it), in a new directory under
    `log_dir`, once /-/ready answers. urls: web."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="prom-", dir=log_dir))
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
    url = f"http://127.0.0.1:{port}"
    return start_server(cmd, workdir, "prometheus", url + "/-/ready", {"web": url})


@on_free_ports
def start_alertmanager(log_dir: Path, config_path: Path, extra_args=()) -> Process:
    """A real Alertmanager with the config file `config_path`, in a new directory under `log_dir`,
    once /-/ready answers. urls: web."""
    port, cluster_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="am-", dir=log_dir))
    cmd = [binary(*ALERTMANAGER_BINARIES) or "alertmanager",
           f"--config.file={config_path}",
           f"--storage.path={workdir / 'data'}",
           f"--web.listen-address=127.0.0.1:{port}",
           f"--cluster.listen-address=127.0.0.1:{cluster_port}",
           *extra_args]
    url = f"http://127.0.0.1:{port}"
    return start_server(cmd, workdir, "alertmanager", url + "/-/ready", {"web": url})

