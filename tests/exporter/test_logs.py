"""Log output: `--log-format json` writes one JSON object per line; bad log settings from the
environment are refused like bad flags."""
import json
import logging
import os
import subprocess
import sys

from processes import start_exporter
from spanscope.logs import JsonFormatter


def test_json_logs_are_one_object_per_line_with_level_and_logger(tmp_path):
    proc = start_exporter(tmp_path, extra_args=["--log-format", "json"])  # store.url unset: a warning
    try:
        lines = [line for line in proc.log().splitlines() if line.startswith("{")]
    finally:
        proc.stop()
    entries = [json.loads(line) for line in lines]
    assert entries and all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    warning = next(e for e in entries if e["logger"] == "spanscope.store" and e["level"] == "warning")
    assert "store.url is not set" in warning["msg"]
    assert warning["ts"].endswith("+00:00")


def test_an_exception_stays_on_the_line_of_its_message():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("spanscope.ingest", logging.ERROR, __file__, 1, "recording %s", ("a span",),
                                   sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["msg"] == "recording a span" and entry["level"] == "error"
    assert "ValueError: boom" in entry["exc"]


def test_log_settings_from_the_environment_are_checked():
    for variable, value in (("SPANSCOPE_LOG_FORMAT", "xml"), ("SPANSCOPE_LOG_LEVEL", "verbose")):
        out = subprocess.run([sys.executable, "-m", "spanscope.cli", "--check-config"], capture_output=True,
                             text=True, env={**os.environ, variable: value}, timeout=30)
        assert out.returncode == 2 and repr(value) in out.stderr and "from the environment" in out.stderr
