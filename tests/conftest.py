import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The test helpers, and scripts/processes.py: how the tests, the bench and `make run` start processes.
sys.path[:0] = [str(REPO / "tests" / "support"), str(REPO / "scripts")]
