"""Helpers for the rule, alert-routing and runbook tests (prometheus/, alertmanager/, docs/).

A uniquely named module (not conftest) so that `from rules_support import ...` never picks up
another directory's conftest."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "prometheus"
RULES = PROM / "rules"
PROM_TESTS = PROM / "tests"
AM_DIR = REPO / "alertmanager"
AM_CONFIG = AM_DIR / "alertmanager.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"


def load_generator():
    """prometheus/generate_rules.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("generate_rules", PROM / "generate_rules.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["generate_rules"] = mod   # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (make system-deps installs prometheus and prometheus-alertmanager)")
    return path


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(map(str, proc.args))}\nrc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def rule_groups(name: str) -> list[dict]:
    return yaml.safe_load((RULES / name).read_text())["groups"]


def all_rules() -> list[dict]:
    return [r for f in ("recording.yml", "alerts.yml", "slo.yml") for g in rule_groups(f) for r in g["rules"]]


def alert_rules() -> list[dict]:
    return [r for r in all_rules() if "alert" in r]


def recording_rules() -> list[dict]:
    return [r for r in all_rules() if "record" in r]
