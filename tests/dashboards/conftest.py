"""Fixtures for the dashboard tests: the generator module and the generated dashboards."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"


def load_generator():
    """grafana/generate.py as a module (it puts grafana/ on sys.path for its `boards` package)."""
    if "spanscope_grafana_generate" in sys.modules:
        return sys.modules["spanscope_grafana_generate"]
    spec = importlib.util.spec_from_file_location("spanscope_grafana_generate", GRAFANA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generator():
    return load_generator()


@pytest.fixture(scope="session")
def generated(generator) -> dict[str, dict]:
    """File name -> dashboard, as the generator writes them now."""
    return {name: json.loads(text) for name, text in generator.generate().items()}


@pytest.fixture(scope="session")
def committed() -> dict[str, dict]:
    """File name -> dashboard, as committed in grafana/dashboards/."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_DIR.glob("*.json"))}
