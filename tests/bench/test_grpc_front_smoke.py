"""Smoke test of bench/grpc_front.py on a few messages: every round relays every message through
the OTLP/gRPC front's code (a broken relay leaves the client waiting for its answers) and is
reported. No timing is asserted (see docs/performance.md)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_round_is_reported():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "grpc_front.py"), "--messages", "40",
                           "--bytes", "100000"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout)
    assert out["messages"] == 40 and out["message_bytes"] == 100_000
    assert [len(out["cpu_us_per_message"][way]) for way in ("direct", "relayed")] == [3, 3]
    assert all(us >= 0 for way in out["cpu_us_per_message"].values() for us in way)
