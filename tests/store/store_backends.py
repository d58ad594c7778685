"""The two databases every store test runs against, as fresh empty databases."""
import contextlib
from pathlib import Path

BACKENDS = ["sqlite", "postgres"]


@contextlib.contextmanager
def empty_database(request, kind: str, directory: Path):
    """The store.url of an empty database of `kind`, dropped afterwards (PostgreSQL).

    `request` is the pytest request, to reach the session's PostgreSQL server (the `postgres` fixture)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory}/interactions.db"  # the directory is absolute: sqlite:////tmp/...
        return
    server = request.getfixturevalue("postgres")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)
