"""A database the exporter cannot use stops the start with a message naming it (exit code 2)."""
import subprocess

import pytest
from processes import PYTHON, free_port
from spanscope import config
from spanscope.app import Exporter
from spanscope.config import ConfigError
from spanscope.store.rows import UserIds
from spanscope.store.interactions import InteractionStore
from spanscope.store.db import check_url, parse_url


def open_store(url: str) -> None:
    store = InteractionStore(parse_url(url), UserIds(False, None))
    try:
        store.open()
    finally:
        store.close()


def run_exporter(*args: str) -> subprocess.CompletedProcess:
    """The CLI with free ports; it is expected to exit on its own."""
    return subprocess.run([PYTHON, "-m", "spanscope.cli", "--otlp-http", f"127.0.0.1:{free_port()}",
                           "--otlp-grpc", f"127.0.0.1:{free_port()}", "--web", f"127.0.0.1:{free_port()}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def corrupt_db(tmp_path):
    path = tmp_path / "interactions.db"
    path.write_bytes(b"this is not an SQLite database, just text that happens to be here\n" * 200)
    return path


def test_a_corrupt_database_file_is_named(corrupt_db):
    with pytest.raises(ConfigError) as err:
        open_store(f"sqlite:///{corrupt_db}")
    assert str(corrupt_db) in str(err.value) and "not a usable SQLite database" in str(err.value)


def test_the_exporter_refuses_to_start_on_a_corrupt_database(corrupt_db):
    done = run_exporter("--set", f"store.url=sqlite:///{corrupt_db}")
    assert done.returncode == 2, done.stderr
    assert "configuration error" in done.stderr and str(corrupt_db) in done.stderr


def test_an_unwritable_path_is_named(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database directory should be")
    path = blocker / "interactions.db"
    with pytest.raises(ConfigError) as err:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(err.value) and "cannot open" in str(err.value)
    done = run_exporter("--set", f"store.url=sqlite:///{path}")
    assert done.returncode == 2 and str(path) in done.stderr


def test_a_missing_directory_is_created(tmp_path):
    path = tmp_path / "var" / "lib" / "spanscope" / "interactions.db"
    open_store(f"sqlite:///{path}")
    assert path.is_file()


def test_an_unreachable_postgresql_is_named_without_its_password():
    port = free_port()  # nothing listens there
    with pytest.raises(ConfigError) as err:
        open_store(f"postgresql://spanscope:s3cret@127.0.0.1:{port}/interactions")
    message = str(err.value)
    assert f"postgresql://spanscope:***@127.0.0.1:{port}/interactions" in message and "s3cret" not in message


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://relative.db", "sqlite:///", "interactions.db"])
def test_an_unsupported_url_is_refused(url):
    with pytest.raises(ConfigError, match="^store.url: expected sqlite:///"):
        check_url(url)


def test_the_config_check_validates_the_store():
    done = subprocess.run([PYTHON, "-m", "spanscope.cli", "--check-config", "--set", "store.url=mysql://x/y"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "store.url:" in done.stderr, done.stderr
    with pytest.raises(ConfigError, match="store.user_id_salt"):  # hashing user ids needs a salt
        Exporter.check(config.load(overrides=["store.user_id_hash=true"]))
