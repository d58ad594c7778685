"""SIGTERM: stop accepting, finish pending traces, answer the last scrape, exit 0."""
import asyncio
import signal
import urllib.error
import urllib.request

import pytest

from processes import free_port, start_exporter, wait_until
from sdk import emit, http_exporter, provider, scrape, value
from spanscope.app import Exporter
from spanscope.config import load


def test_sigterm_finishes_pending_traces_and_serves_the_last_scrape(tmp_path):
    # finish_delay 60 s: without the shutdown drain the request would never be counted
    proc = start_exporter(tmp_path, {"traces": {"finish_delay": 60, "timeout": 120}},
                          extra_args=["--set", "shutdown.grace=30"])
    try:
        tp = provider(http_exporter(proc.urls["http"]), "drain")
        emit(tp.get_tracer("t"), ("gateway", 0, 100, {"pipeline.component": "gateway"}))
        tp.shutdown()
        wait_until(lambda: value(scrape(proc.urls["web"]), "spanscope_traces_pending") == 1)
        assert value(scrape(proc.urls["web"]), "pipeline_requests_total", service="drain") == 0
        proc.popen.send_signal(signal.SIGTERM)

        def not_ready():
            try:
                urllib.request.urlopen(proc.urls["web"] + "/readyz", timeout=2)
            except urllib.error.HTTPError as exc:
                return exc.code == 503
            except OSError:
                return False
            return False

        wait_until(not_ready, what="/readyz answering 503 during shutdown")
        # the drained trace shows up in a scrape during the grace period, which that scrape ends
        wait_until(lambda: value(scrape(proc.urls["web"]), "pipeline_requests_total", service="drain") == 1,
                   what="the pending trace finished by the shutdown")
        assert proc.popen.wait(20) == 0
    finally:
        proc.stop()


def test_bad_config_file_exits_2_with_the_path(tmp_path):
    import subprocess
    import sys
    missing = tmp_path / "nope.yaml"
    out = subprocess.run([sys.executable, "-m", "spanscope.cli", "--config", str(missing), "--check-config"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and str(missing) in out.stderr


@pytest.mark.parametrize("flag", ["--web", "--otlp-http", "--otlp-grpc"])
def test_port_in_use_is_a_clear_error(tmp_path, flag):
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "spanscope.cli", flag, f"127.0.0.1:{port}", "--set",
                              "listen.web=127.0.0.1:0" if flag != "--web" else "listen.otlp_http=127.0.0.1:0",
                              "--set", "listen.otlp_grpc=127.0.0.1:0" if flag != "--otlp-grpc" else
                              "listen.otlp_http=127.0.0.1:0"],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and f"127.0.0.1:{port}" in out.stderr


def test_a_scrape_on_the_turn_right_after_the_drain_ends_the_wait():
    """The shutdown waits (up to shutdown.grace) for a scrape rendered after every pending trace was
    finished. The first such scrape can be handled on the event loop's very next turn after the
    drain; it must count. (The drain used to run as a task of its own, and stop() armed the wait a
    turn later: that scrape was missed, and the exporter waited the whole grace period.)"""
    exporter = Exporter(load(None, [f"listen.web=127.0.0.1:{free_port()}",
                                    f"listen.otlp_http=127.0.0.1:{free_port()}",
                                    f"listen.otlp_grpc=127.0.0.1:{free_port()}",
                                    "store.enabled=false", "shutdown.grace=30"]))
    probed = []

    async def scenario():
        await exporter.start()
        finish = exporter.ingest.finish_traces

        def finish_then_scrape(*args, **kwargs):
            finished = finish(*args, **kwargs)

            def scrape_on_next_turn():  # what the /metrics handler does once it has rendered
                hook = exporter.state.get("after_scrape")
                probed.append(hook is not None)
                if hook:
                    hook()
            asyncio.get_running_loop().call_soon(scrape_on_next_turn)
            return finished

        exporter.ingest.finish_traces = finish_then_scrape
        await asyncio.wait_for(exporter.stop(), timeout=10)  # far below shutdown.grace

    asyncio.run(scenario())
    assert probed == [True]
