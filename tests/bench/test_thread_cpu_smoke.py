"""Smoke test of bench/thread_cpu.py: one short round against this build.
Its per-thread CPU must account for the process's CPU per span (the load generator's figure, measured
over all threads together); no timing is judged."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROUND = re.compile(r"round 1 (\w+): (\d+) spans per core; CPU us per span: main thread ([\d.]+), others (\[.*\])")

pytestmark = pytest.mark.slow


def test_the_threads_account_for_the_process_cpu():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "thread_cpu.py"), "--rounds", "1", "--duration", "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rounds = {m[1]: m for m in ROUND.finditer(proc.stdout)}
    assert set(rounds) == {"exporter"}, proc.stdout
    for name, m in rounds.items():
        per_core, main, others = int(m[2]), float(m[3]), ast.literal_eval(m[4])
        assert main > 0 and others, proc.stdout  # the event loop and at least the ingest worker
        total = main + sum(others)  # the threads' CPU per span, over a window inside the loadgen's
        assert total == pytest.approx(1e6 / per_core, rel=0.25), (name, total, 1e6 / per_core)
