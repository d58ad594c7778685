"""Fixtures for tests/rules; the helpers live in rules_support.py."""
from __future__ import annotations

import pytest

from rules_support import load_generator, need


@pytest.fixture(scope="session")
def generator():
    return load_generator()


@pytest.fixture(scope="session")
def promtool() -> str:
    return need("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return need("amtool")
