"""Holding the lock the interaction store's writer needs, as another database client would."""
import contextlib
import sqlite3

import psycopg
from spanscope.store.db import parse_url


@contextlib.contextmanager
def database_locked(url: str):
    """Another client holds the lock the store's writer needs, until the block exits."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(parse_url(url).path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        with psycopg.connect(url) as conn:
            conn.execute("LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.rollback()
