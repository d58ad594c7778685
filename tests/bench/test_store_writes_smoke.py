"""Smoke test of bench/store_writes.py on a few thousand rows: every section runs through the
store's own code and prints its table (the PostgreSQL one against a throwaway server, as the store
tests start one). No timing is asserted (see docs/performance.md)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_section_reports_every_variant():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "store_writes.py"), "--rows", "2000",
                           "--batch", "500", "--report-every", "1000"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert out.count("| 0-1,000 |") == 2 and out.count("| 1,000-2,000 |") == 2  # schemas, sqlite: a line per slice
    assert "| SQLite's defaults | the writer's settings | ratio |" in out
    assert "| one JSON parameter |" in out and "| statements of 100 rows |" in out
    assert "2,000 rows each" in out and "ratios JSON / statements: writer wall" in out
    if "postgres: skipped" not in out:  # PostgreSQL is installed (make test installs it)
        assert "| COPY and one upsert |" in out and "ratios COPY / statements: writer CPU" in out
