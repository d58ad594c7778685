import pytest

from processes import start_exporter


@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    """One running exporter per test module; tests isolate themselves by service name."""
    proc = start_exporter(tmp_path_factory.mktemp("exporter"),
                          {"traces": {"finish_delay": 0.05, "timeout": 5}})
    yield proc
    proc.stop()
