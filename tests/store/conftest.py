"""Fixtures of the interaction-store tests: every `store_url` test runs against SQLite and a real
PostgreSQL (a session-wide server, a fresh database per test)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import postgres_server
from store_backends import BACKENDS, empty_database

MISSING_POSTGRES = ("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin — the PostgreSQL half of "
                    "the store suite did NOT run. Install the Debian package `postgresql` "
                    "(`make test` does it through scripts/system-deps.sh).")


@pytest.fixture(scope="session")
def postgres():
    bin_dir = postgres_server.binaries()
    if bin_dir is None:
        pytest.skip(MISSING_POSTGRES)
    server = postgres_server.start(bin_dir)
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    with empty_database(request, request.param, tmp_path) as url:
        yield url
