"""Database connections of the interaction store: SQLite (embedded) or PostgreSQL (several replicas).

`parse_url` turns `store.url` into a `Location`; `connect` opens one connection as a `Database`, a
thin wrapper that hides the two differences the store's SQL cares about: the placeholder style
(the store writes `?`, psycopg wants `%s`) and how a write transaction is begun. Problems opening
the database become ConfigError naming the path or the (password-free) URL, so the CLI prints them
and exits 2.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from ..config import ConfigError

log = logging.getLogger("spanscope.store")

BUSY_TIMEOUT_S = 5.0          # SQLite: how long a statement waits for another connection's write lock
PG_CONNECT_TIMEOUT_S = 10
PG_STATEMENT_TIMEOUT_MS = 10_000  # API reads and feedback writes; the writer has none
# SQLite, against its defaults (2 MiB of page cache, a checkpoint every 1 000 WAL pages): the
# writer's rows land all over the indexes keyed by trace id and user, so a small cache reads their
# pages back from the file for every batch, and frequent checkpoints copy the same index pages into
# the database again and again. 10-20 % less writer CPU per row in tables of 100 000-300 000 rows
# (bench/store_writes.py --sections sqlite), for at most 16 MiB more memory and a WAL of ~16 MiB.
WRITER_CACHE_KIB = 16 * 1024
CHECKPOINT_PAGES = 4000  # on every connection: whichever commits past it checkpoints


class StoreDisabled(Exception):
    """store.enabled is false: the API of interactions, users and feedback has nothing to answer with."""

    status = 404  # as the API answers it


@dataclass(frozen=True)
class Dialect:
    """What differs in the SQL of the two databases."""

    name: str
    types: dict           # placeholders of the migrations' DDL: {id}, {bigint}, {float}, {decimal}
    cost_sum: str         # exact sum of the cost column
    cost_order: str       # a numeric expression to sort groups by cost


SQLITE = Dialect(
    "sqlite",
    {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "bigint": "INTEGER", "float": "REAL", "decimal": "TEXT"},
    # Cost is kept as decimal TEXT (NUMERIC affinity would turn it into an inexact REAL) and summed
    # exactly by a Python aggregate registered on every connection.
    cost_sum="decimal_sum(cost)", cost_order="SUM(CAST(cost AS REAL))",
)
POSTGRES = Dialect(
    "postgres",
    {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "bigint": "BIGINT", "float": "DOUBLE PRECISION",
     "decimal": "NUMERIC"},
    cost_sum="SUM(cost)", cost_order="SUM(cost)",
)


@dataclass(frozen=True)
class Location:
    """Where the store lives. `path` for SQLite, `url` for PostgreSQL; `temporary` when store.url is null."""

    dialect: Dialect
    path: str | None = None
    url: str | None = None
    temporary: bool = False

    def describe(self) -> str:
        return self.path if self.path is not None else redact(self.url or "")


def temporary_location() -> Location:
    """A fresh SQLite file in a new temporary directory (store.url null)."""
    directory = tempfile.mkdtemp(prefix="spanscope-store-")
    return Location(SQLITE, path=os.path.join(directory, "interactions.db"), temporary=True)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)


def parse_url(url: str | None) -> Location:
    """`sqlite:///relative.db`, `sqlite:////absolute.db`, `postgresql://...`; None: a temporary SQLite file."""
    if url is None:
        return Location(SQLITE, temporary=True)
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Location(SQLITE, path=os.path.abspath(url[len("sqlite:///"):]))
    if re.match(r"postgres(ql)?://", url):
        return Location(POSTGRES, url=url)
    raise ConfigError(f"store.url: expected sqlite:///RELATIVE/PATH.db, sqlite:////ABSOLUTE/PATH.db or "
                      f"postgresql://USER:PASSWORD@HOST:PORT/DB, got {redact(url)!r}")


def check_url(url: str | None) -> None:
    """Validate store.url without opening anything (for --check-config)."""
    if url is not None:
        parse_url(url)


class DecimalSum:
    """SQLite aggregate: exact sum of decimal TEXT values, returned as decimal TEXT."""

    def __init__(self):
        self.total = Decimal(0)

    def step(self, value) -> None:
        if value is not None:
            self.total += Decimal(str(value))

    def finalize(self) -> str:
        return format(self.total, "f")


class Database:
    """One connection. `execute`/`query`/`executemany` take SQL with `?` placeholders."""

    dialect: Dialect
    location: Location

    def execute(self, sql: str, params=()) -> int:
        raise NotImplementedError

    def executemany(self, sql: str, rows) -> None:
        raise NotImplementedError

    def query(self, sql: str, params=()) -> list[tuple]:
        raise NotImplementedError

    def copy_rows(self, table: str, columns, rows) -> None:
        """PostgreSQL's COPY … FROM STDIN (store_queries.insert_as_copy)."""
        raise NotImplementedError

    def transaction(self):
        """A context manager: one write transaction, committed on exit, rolled back on an exception."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SqliteDatabase(Database):
    dialect = SQLITE

    def __init__(self, location: Location, synchronous: str, cache_kib: int | None = None):
        self.location = location
        path = location.path
        directory = os.path.dirname(path)
        try:
            if os.path.exists(directory) and not os.path.isdir(directory):
                raise NotADirectoryError(f"{directory} is not a directory")
            os.makedirs(directory, exist_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                        timeout=BUSY_TIMEOUT_S)
        except (OSError, sqlite3.Error) as exc:
            reason = exc.args[0] if isinstance(exc, NotADirectoryError) else getattr(exc, "strerror", None) or exc
            raise ConfigError(f"store.url: cannot open the SQLite database {path}: {reason}") from None
        try:
            mode = self._switch_to_wal()
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch to WAL mode (journal_mode is {mode})")
            self.conn.execute(f"PRAGMA synchronous={synchronous}")
            self.conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            if cache_kib:
                self.conn.execute(f"PRAGMA cache_size=-{cache_kib}")  # negative: KiB, not pages
        except sqlite3.OperationalError as exc:  # read-only file or directory, locked, I/O error
            self.conn.close()
            raise ConfigError(f"store.url: cannot open the SQLite database {path}: {exc} "
                              f"(the file and its directory must be writable)") from None
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            self.conn.close()
            raise ConfigError(f"store.url: {path} is not a usable SQLite database ({exc}); "
                              f"move the file away or point store.url elsewhere") from None
        self.conn.create_aggregate("decimal_sum", 1, DecimalSum)

    def _switch_to_wal(self) -> str:
        # While another connection converts a new file to WAL, SQLite answers "database is locked"
        # at once, without its busy handler (replicas starting together): retry for the busy timeout.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def execute(self, sql, params=()):
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql, rows):
        self.conn.executemany(sql, rows)

    def query(self, sql, params=()):
        return self.conn.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def transaction(self):
        # IMMEDIATE takes the write lock up front: no deadlock when a reader later wants to write.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self):
        self.conn.close()


class PostgresDatabase(Database):
    dialect = POSTGRES

    def __init__(self, location: Location, statement_timeout_ms: int | None):
        try:
            import psycopg
        except ImportError:
            raise ConfigError("store.url: PostgreSQL needs the psycopg driver: "
                              "pip install 'spanscope[postgres]'") from None
        self.location = location
        self.psycopg = psycopg
        self.staging_ready = False  # store_queries.prepare_staging: this session's temporary table
        options = f"-c statement_timeout={statement_timeout_ms}" if statement_timeout_ms else None
        try:
            self.conn = psycopg.connect(location.url, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S,
                                        application_name="spanscope", options=options)
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"store.url: cannot connect to {location.describe()}: {reason}") from None

    @staticmethod
    def _sql(sql: str) -> str:
        assert "%" not in sql, "the store's SQL never contains a literal %"
        return sql.replace("?", "%s")

    def execute(self, sql, params=()):
        return self.conn.execute(self._sql(sql), params).rowcount

    def executemany(self, sql, rows):
        with self.conn.cursor() as cur:
            cur.executemany(self._sql(sql), rows)

    def query(self, sql, params=()):
        return self.conn.execute(self._sql(sql), params).fetchall()

    def copy_rows(self, table: str, columns, rows) -> None:
        """COPY `rows` into `table`: psycopg converts and sends them in C, with no statement to bind."""
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def transaction(self):
        return self.conn.transaction()

    def close(self):
        self.conn.close()


def connect(location: Location, role: str) -> Database:
    """`role` "writer" (batched interaction rows) or "api" (reads and durable feedback writes)."""
    if location.dialect is SQLITE:
        # FULL on the API connection: an acknowledged rating is on disk (also after a power loss).
        # NORMAL is enough for interactions, which a crash may lose anyway while they wait in the queue.
        if role == "api":
            return SqliteDatabase(location, "FULL")
        return SqliteDatabase(location, "NORMAL", WRITER_CACHE_KIB)
    return PostgresDatabase(location, PG_STATEMENT_TIMEOUT_MS if role == "api" else None)


def is_transient(exc: BaseException) -> bool:
    """An error worth retrying on the same rows: a lock, a full disk, a lost connection."""
    if isinstance(exc, sqlite3.OperationalError):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError)


def is_unique_violation(exc: BaseException) -> bool:
    """PostgreSQL refused a row that breaks a unique index (two replicas raced on one rating)."""
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.errors.UniqueViolation)


def connection_lost(db: Database) -> bool:
    """True when a PostgreSQL connection is closed or broken (it must be reopened)."""
    return isinstance(db, PostgresDatabase) and (db.conn.closed or db.conn.broken)


class Session:
    """One connection, used by one thread at a time. A session the server dropped (restart, failover)
    is found dead only when used: it is replaced and the call run once more instead of failing it."""

    def __init__(self, location: Location, role: str, db: Database | None = None):
        self.location, self.role, self.db = location, role, db
        self._lock = threading.Lock()

    def call(self, fn, *args):
        """`fn(db, *args)` on a live connection."""
        with self._lock:
            for attempt in (1, 2):
                if self.db is None or connection_lost(self.db):
                    self.db = connect(self.location, self.role)
                try:
                    return fn(self.db, *args)
                except Exception:
                    if attempt == 2 or not connection_lost(self.db):
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        close_quietly(self.db)
        self.db = None


def close_quietly(db: Database | None) -> None:
    """Close `db`, if there is one, whatever state its connection is in."""
    try:
        if db is not None:
            db.close()
    except Exception:  # pragma: no cover - closing a broken connection
        pass
