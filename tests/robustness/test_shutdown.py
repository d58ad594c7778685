"""SIGTERM: stop accepting, finish pending traces, answer the last scrape, exit 0."""
import signal
import urllib.error
import urllib.request

import pytest

from processes import start_exporter, wait_until
from sdk import emit, http_exporter, provider, scrape, value


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
