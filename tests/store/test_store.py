"""The interaction store in process, against SQLite and PostgreSQL: migrations, the writer's queue,
retention, durable feedback with revisions, exact costs, hashed user ids."""
import contextlib
import gc
import logging
import sqlite3
import threading
import time
from decimal import Decimal
from types import SimpleNamespace

import psycopg
import pytest

from database_lock import database_locked
from store_backends import empty_database
from processes import wait_until
from spanscope.store import db as store_db
from spanscope.store import queries as store_queries
from spanscope.store.rows import COLUMNS, UserIds, row
from spanscope.store.migrations import MIGRATIONS, migrate
from spanscope.interpret.summary import RequestSummary
from spanscope.store.interactions import EveryMinute, InteractionStore
from spanscope.store.db import connect, parse_url
from spanscope.store.queries import ROWS_PER_STATEMENT, insert_interactions

HOUR = 3600.0
ALL_VERSIONS = [version for version, _, _ in MIGRATIONS]


def summary(n: int, *, start: float | None = None, user: str | None = "u1", cost="0", **kw) -> RequestSummary:
    fields = dict(trace_id=f"{n:032x}", service="svc", mode="chat", tenant="t", user=user, error=False,
                  start_ns=int((time.time() if start is None else start) * 1e9), duration=0.25,
                  cache_status="miss", cost=Decimal(cost), model="gpt-4o")
    return RequestSummary(**{**fields, **kw})


@contextlib.contextmanager
def opened(url: str, **kw):
    store = InteractionStore(parse_url(url), UserIds(kw.pop("hash_ids", False), kw.pop("salt", None)), **kw)
    store.open()
    try:
        yield store
    finally:
        store.close()


def stored_ids(store) -> list[str]:
    rows = store._call(lambda db: db.query("SELECT trace_id FROM interactions ORDER BY trace_id"))
    return [r[0] for r in rows]


def row_of(s: RequestSummary) -> tuple:
    return row(s, UserIds(False, None), decimal_cost=True)  # as the writer builds it for PostgreSQL


def written(store, n: int) -> None:
    wait_until(lambda: store.written + sum(store.dropped.values()) >= n and not store.queued,
               timeout=15, interval=0.02, what=f"{n} interactions handled by the writer")


# --- migrations ---------------------------------------------------------------------------------

def test_migrations_apply_once_and_are_idempotent(store_url):
    db = connect(parse_url(store_url), "writer")
    try:
        assert migrate(db) == ALL_VERSIONS
        assert migrate(db) == []
        assert db.query("SELECT version FROM schema_migrations ORDER BY version") == [(v,) for v in ALL_VERSIONS]
        assert db.query("SELECT COUNT(*) FROM interactions") == [(0,)]
    finally:
        db.close()
    with opened(store_url):  # a store opening an up-to-date database migrates nothing and works
        pass


def interaction_indexes(db) -> set[str]:
    if db.dialect.name == "sqlite":
        rows = db.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'interactions'")
    else:
        rows = db.query("SELECT indexname FROM pg_indexes WHERE tablename = 'interactions'")
    return {name for (name,) in rows}


def test_a_database_of_an_older_exporter_is_migrated_and_keeps_its_rows(store_url):
    db = connect(parse_url(store_url), "writer")
    try:
        assert migrate(db, MIGRATIONS[:1]) == [1]  # what the first release created
        assert "interactions_by_confidence" in interaction_indexes(db)
        db.execute("INSERT INTO interactions VALUES (" + ", ".join(["?"] * 22) + ")",
                   ("ab" * 16, "svc", "t", None, "chat", 1.0, 0.5, 0, "[]", 1, 2, 0, 0, 0, None, "0.5", 0.9,
                    None, None, "miss", "{}", 1.0))
        assert migrate(db) == ALL_VERSIONS[1:]
        assert "interactions_by_confidence" not in interaction_indexes(db)
        assert "interactions_by_time" in interaction_indexes(db)
    finally:
        db.close()
    with opened(store_url) as store:
        assert stored_ids(store) == ["ab" * 16]


def test_reasons_come_to_a_database_of_schema_3_with_rows_in_it(store_url):
    """Its rows get no reasons ('{}'); an exporter of schema 3 still writing to it (its rows name the
    earlier columns only, through a staging table LIKE interactions on PostgreSQL) keeps working."""
    earlier = ", ".join(c for c in COLUMNS if c != "variant_reasons")
    insert = f"INSERT INTO {{}} ({earlier}) VALUES ({', '.join('?' * (len(COLUMNS) - 1))})"
    db = connect(parse_url(store_url), "writer")
    try:
        values = row(summary(1, variants={"flag": "on"}, variant_reasons={"flag": "split"}), UserIds(False, None),
                     decimal_cost=db.dialect.name == "postgres")
        values = tuple(v for c, v in zip(COLUMNS, values) if c != "variant_reasons")
        assert migrate(db, MIGRATIONS[:3]) == [1, 2, 3]
        db.execute(insert.format("interactions"), values)
        assert migrate(db) == [4]
        later = (f"{2:032x}", *values[1:])
        if db.dialect.name == "postgres":
            db.execute("CREATE TEMP TABLE incoming_of_schema_3 (LIKE interactions)")
            db.execute(insert.format("incoming_of_schema_3"), later)
            db.execute(f"INSERT INTO interactions ({earlier}) SELECT {earlier} FROM incoming_of_schema_3")
        else:
            db.execute(insert.format("interactions"), later)
        assert db.query("SELECT trace_id, variants, variant_reasons FROM interactions ORDER BY trace_id") == [
            (f"{1:032x}", '{"flag":"on"}', "{}"), (f"{2:032x}", '{"flag":"on"}', "{}")]
    finally:
        db.close()
    with opened(store_url) as store:
        store.observe(summary(3, variants={"flag": "on"}, variant_reasons={"flag": "targeting_match"}))
        store.start()
        written(store, 1)
        assert [store.interaction(f"{n:032x}")["variant_reasons"] for n in (1, 2, 3)] == [
            {}, {}, {"flag": "targeting_match"}]


def start_replicas_together(store_url: str, replicas: int = 4) -> list[list[int]]:
    """Connect and migrate from `replicas` threads at once; the migrations each one applied."""
    errors, done = [], []

    def open_one():
        try:
            db = connect(parse_url(store_url), "writer")
            done.append(migrate(db))
            db.close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    return sorted(done)


def test_replicas_starting_together_migrate_once(store_url):
    assert start_replicas_together(store_url) == [[], [], [], ALL_VERSIONS]


def test_replicas_creating_one_sqlite_file_together_all_open_it(tmp_path):
    # Switching a new file to WAL answers "database is locked" to the others at once, bypassing the
    # busy timeout; it happened in about one start in 16, so this test starts 40 times.
    for n in range(40):
        assert start_replicas_together(f"sqlite:///{tmp_path}/race-{n}.db") == [[], [], [], ALL_VERSIONS]


def test_sqlite_connections_have_the_page_cache_and_checkpoint_interval_of_their_role(tmp_path):
    # SQLite's defaults (2 MiB of cache, a checkpoint every 1 000 pages) cost the writer 10-20 % more
    # CPU per row once its indexes outgrow them (bench/store_writes.py --sections sqlite).
    with opened(f"sqlite:///{tmp_path}/s.db") as store:
        store.start()  # opens the writer's connection
        store.observe(summary(1))
        written(store, 1)
        settings = {role: (db.query("PRAGMA cache_size")[0][0], db.query("PRAGMA wal_autocheckpoint")[0][0])
                    for role, db in (("writer", store._writer_db), ("api", store._call(lambda db: db)))}
    default_cache = sqlite3.connect(":memory:").execute("PRAGMA cache_size").fetchone()[0]  # -2000: 2 MiB
    assert settings == {"writer": (-store_db.WRITER_CACHE_KIB, store_db.CHECKPOINT_PAGES),
                        "api": (default_cache, store_db.CHECKPOINT_PAGES)}
    assert store_db.WRITER_CACHE_KIB > -default_cache and store_db.CHECKPOINT_PAGES > 1000


# --- the writer: batched, bounded, never blocking the caller ------------------------------------

def test_a_full_queue_drops_the_oldest_unwritten_interactions(store_url):
    with opened(store_url, queue_size=3) as store:
        for n in range(1, 6):  # the writer is not running yet: the queue fills up
            store.observe(summary(n))
        assert store.dropped["queue_full"] == 2 and store.queued == 3
        store.start()
        written(store, 3)
        assert store.written == 3
        assert stored_ids(store) == [f"{n:032x}" for n in (3, 4, 5)]


def test_the_writer_writes_full_batches_and_flushes_the_rest_after_the_interval(store_url, monkeypatch):
    import spanscope.store.interactions as store_module
    transactions = []
    insert = store_module.q.insert_interactions

    def counted(db, rows):
        transactions.append(len(rows))
        return insert(db, rows)

    monkeypatch.setattr(store_module.q, "insert_interactions", counted)
    with opened(store_url, batch_size=100, flush_interval=0.5) as store:
        store.start()
        store.observe(summary(0))  # an idle writer takes the first row at once
        written(store, 1)
        started = time.monotonic()
        for n in range(1, 251):
            store.observe(summary(n))
        written(store, 251)
        waited = time.monotonic() - started
        # two full batches as soon as they filled, the last 50 once the interval had passed
        assert transactions == [1, 100, 100, 50], transactions
        assert 0.3 <= waited < 5, waited


def test_a_blocked_database_costs_queued_rows_not_callers_time(store_url):
    with opened(store_url, queue_size=50, batch_size=10) as store:
        store.start()
        with database_locked(store_url):
            slowest = 0.0
            for n in range(1, 301):
                t0 = time.perf_counter()
                store.observe(summary(n))
                slowest = max(slowest, time.perf_counter() - t0)
            assert store.written == 0
            # a blocked writer would make some call wait for the lock (SQLite: seconds of busy timeout)
            assert slowest < 0.05, slowest
            assert store.dropped["queue_full"] >= 300 - 50 - 10
        written(store, 300)  # the lock is gone: what is queued is written
        assert store.written + store.dropped["queue_full"] == 300
        assert 50 <= store.written <= 60
        assert stored_ids(store)[-1] == f"{300:032x}"  # the newest survived


def test_an_outage_is_counted_by_kind_and_logged_once_a_minute_while_it_lasts(store_url, caplog, monkeypatch):
    import spanscope.store.interactions as store_module
    insert, outage = store_module.q.insert_interactions, threading.Event()

    def failing(db, rows):
        if outage.is_set():
            raise sqlite3.OperationalError("disk I/O error")  # transient: the batch is retried
        return insert(db, rows)

    monkeypatch.setattr(store_module.q, "insert_interactions", failing)
    names = SimpleNamespace(interactions_written="written", interactions_dropped="dropped",
                            interaction_store_errors="errors", interactions_pending="pending")
    with opened(store_url, queue_size=50, batch_size=10) as store:
        collect = store.collector(names, assembling=lambda: 7)
        outage.set()
        store.start()
        with caplog.at_level("ERROR", logger="spanscope.store"):
            for n in range(1, 31):
                store.observe(summary(n))
            wait_until(lambda: store.errors["unavailable"] >= 3, timeout=15, what="three failed batches")
            families = dict(collect())
            assert families["errors"][("unavailable",)] >= 3 and families["errors"][("refused",)] == 0
            # the backlog: the traces being assembled, what is queued, the batch being retried
            pending = families["pending"]
            assert pending[("assembling",)] == 7 and pending[("queued",)] + pending[("writing",)] == 30
            lines = [r for r in caplog.records if r.name == "spanscope.store"]
            assert len(lines) == 1 and "unavailable, will retry: disk I/O error" in lines[0].getMessage()
        outage.clear()
        written(store, 30)
        assert store.written == 30
        assert dict(collect())["pending"] == {("assembling",): 7, ("queued",): 0, ("writing",): 0}


def test_errors_are_logged_once_a_minute_with_the_number_left_out(caplog):
    clock = SimpleNamespace(t=1000.0)
    errors = EveryMinute(logging.getLogger("spanscope.test"), clock=lambda: clock.t)
    with caplog.at_level("ERROR", logger="spanscope.test"):
        for second in range(0, 130, 5):  # an error every 5 s for 130 s: a line at 0, 60 and 120 s
            clock.t = 1000.0 + second
            errors.error(f"failed at {second}")
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "failed at 0", "failed at 60 (11 more errors since the last line)",
        "failed at 120 (11 more errors since the last line)"]


def test_at_shutdown_a_full_queue_waits_for_the_writer_instead_of_dropping(store_url):
    with opened(store_url, queue_size=5, batch_size=5, flush_interval=30) as store:
        store.start()
        store.hold_when_full(30)
        for n in range(1, 101):  # far more than the queue holds, as fast as a shutdown's drain
            store.observe(summary(n))
        assert store.stop_writer(10.0)
        assert store.dropped == {"queue_full": 0, "write_error": 0}
        assert stored_ids(store) == [f"{n:032x}" for n in range(1, 101)]


def test_a_row_the_database_refuses_costs_only_that_row(store_url):
    with opened(store_url, batch_size=10) as store:
        for n in range(1, 4):  # one batch; the middle row's citations overflow an INTEGER column
            store.observe(summary(n, citations=2 ** 70 if n == 2 else 1))
        store.start()
        written(store, 3)
        assert (store.written, store.dropped["write_error"]) == (2, 1)
        assert stored_ids(store) == [f"{1:032x}", f"{3:032x}"]


def test_an_interaction_the_row_builder_cannot_handle_costs_only_that_interaction(store_url):
    # The row is built when the request is finished (the queue holds rows, not summaries): a summary
    # it cannot be built from is counted as a write error there, and the sink does not raise.
    with opened(store_url, batch_size=10) as store:
        store.observe(summary(1))
        store.observe(summary(2, tokens={"input": "not a count"}))
        store.observe(summary(3))
        assert (store.queued, store.dropped["write_error"]) == (2, 1)
        gc.collect()  # a queued row holds plain values only: the collector stops tracking it
        assert not any(gc.is_tracked(queued) for queued in store._queue)
        store.start()
        written(store, 2)
        assert stored_ids(store) == [f"{1:032x}", f"{3:032x}"]


def test_a_trace_written_twice_in_one_batch_keeps_the_later_row(store_url):
    # A trace flushed incomplete and then finished with its late spans: the later, fuller row wins.
    with opened(store_url, batch_size=10) as store:
        for n, duration in ((9, 0.1), (5, 0.75), (1, 0.1), (5, 0.25)):
            store.observe(summary(n, duration=duration))
        store.start()
        written(store, 4)
        assert stored_ids(store) == [f"{n:032x}" for n in (1, 5, 9)]
        assert store.interaction(f"{5:032x}")["duration_seconds"] == 0.25


@pytest.mark.parametrize("json_inserts", [True, False], ids=["json-batch-on-sqlite", "statements"])
def test_a_batch_larger_than_one_statement_is_written_whole(store_url, json_inserts, monkeypatch):
    # SQLite older than 3.38 (no ->>) gets statements, as PostgreSQL always does.
    monkeypatch.setattr(store_queries, "SQLITE_JSON_INSERTS", json_inserts)
    n = 2 * ROWS_PER_STATEMENT + 7  # several multi-row statements and a shorter last one
    with opened(store_url, batch_size=1000) as store:
        for i in range(1, n + 1):
            store.observe(summary(i))
        store.start()
        written(store, n)
        assert (store.written, store.dropped["write_error"]) == (n, 0)
        assert stored_ids(store) == [f"{i:032x}" for i in range(1, n + 1)]


@pytest.mark.parametrize("json_inserts", [True, False], ids=["json-batch-on-sqlite", "statements"])
def test_every_column_is_stored_exactly(store_url, json_inserts, monkeypatch):
    # SQLite gets a batch as one JSON parameter: floats at full precision, big integers, NULLs,
    # non-ASCII text and decimal costs must come back as they went in.
    monkeypatch.setattr(store_queries, "SQLITE_JSON_INSERTS", json_inserts)
    row = ("ab" * 16, "sérvice ✓", "t", None, "chat", 1795260467.7731082, 1e-09, 1, '{"llm":0.30000000000000004}',
           2**62, 0, 7, 0, 3, None, "0.000000123456789012345678", 0.1 + 0.2, None, 5e-324, "miss",
           '{"flag":"on"}', '{"beta":"targeting_match","flag":"split"}', 1795260468.1234567)
    db = connect(parse_url(store_url), "writer")
    try:
        migrate(db)
        stored = list(row)
        if db.dialect.name == "postgres":
            stored[15] = Decimal(stored[15])
        insert_interactions(db, [tuple(stored)])
        back = db.query(f"SELECT {', '.join(COLUMNS)} FROM interactions")
    finally:
        db.close()
    assert len(back) == 1
    assert [Decimal(str(v)) if i == 15 else v for i, v in enumerate(back[0])] == \
        [Decimal(v) if i == 15 else v for i, v in enumerate(row)]


@pytest.fixture
def postgres_url(request, tmp_path):
    with empty_database(request, "postgres", tmp_path) as url:
        yield url


def test_postgresql_batches_leave_nothing_in_the_staging_table(postgres_url):
    # A batch is copied into a temporary table and upserted from it. Were it left there, the next
    # batch would upsert it again, over a newer row another replica wrote meanwhile.
    db = connect(parse_url(postgres_url), "writer")
    try:
        migrate(db)
        insert_interactions(db, [row_of(summary(1))])
        db.execute("UPDATE interactions SET duration_seconds = 5 WHERE trace_id = ?", (f"{1:032x}",))
        insert_interactions(db, [row_of(summary(2))])
        assert db.query("SELECT trace_id, duration_seconds FROM interactions ORDER BY trace_id") == [
            (f"{1:032x}", 5.0), (f"{2:032x}", 0.25)]
    finally:
        db.close()


def test_a_postgresql_batch_that_fails_keeps_the_staging_table_for_the_next(postgres_url):
    db = connect(parse_url(postgres_url), "writer")
    try:
        migrate(db)
        refused = row_of(summary(1))[:1] + ("svc\x00",) + row_of(summary(1))[2:]  # TEXT refuses NUL
        with pytest.raises(psycopg.Error, match="0x00"):
            insert_interactions(db, [row_of(summary(2)), refused])  # rolled back whole
        insert_interactions(db, [row_of(summary(3))])
        assert db.query("SELECT trace_id FROM interactions") == [(f"{3:032x}",)]
    finally:
        db.close()


def test_the_store_reconnects_when_postgresql_drops_its_sessions(postgres_url, postgres):
    with opened(postgres_url, flush_interval=0.01) as store:
        store.start()
        store.observe(summary(1))
        written(store, 1)
        assert store.interaction(f"{1:032x}") is not None
        with psycopg.connect(postgres.url(), autocommit=True) as admin:  # a restart or failover, as the store sees it
            dropped = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE application_name = 'spanscope'").fetchone()[0]
        assert dropped == 2  # the writer's session and the API's
        # The API's next call finds its session dead and runs again on a new one: no failed request.
        assert store.interaction(f"{1:032x}")["trace_id"] == f"{1:032x}"
        # The writer's next batch fails on its dead session, is requeued, and is written on a new
        # one, which gets its own staging table.
        store.observe(summary(2))
        wait_until(lambda: store.written == 2, timeout=15, interval=0.05, what="the second interaction written")
        assert store.dropped["write_error"] == 0 and store._writer_db.staging_ready
        assert stored_ids(store) == [f"{1:032x}", f"{2:032x}"]


def test_nul_characters_from_spans_are_stripped(store_url):
    with opened(store_url) as store:  # PostgreSQL TEXT refuses NUL
        store.start()
        store.observe(summary(1, service="rag\x00svc", user="bob\x00"))
        written(store, 1)
        doc = store.interaction(f"{1:032x}")
        assert (doc["service"], doc["user_id"]) == ("ragsvc", "bob")


# --- retention ----------------------------------------------------------------------------------

def test_retention_removes_interactions_and_feedback_older_than_the_window(store_url):
    now = time.time()
    with opened(store_url, retention=HOUR, feedback_retention=HOUR, cleanup_interval=3600) as store:
        for n, age in ((1, 3 * HOUR), (2, 2 * HOUR), (3, 0.5 * HOUR), (4, 0)):
            store.observe(summary(n, start=now - age))
        store.clock = lambda: now - 2 * HOUR  # the ratings were given two hours ago ...
        store.save_feedback(f"{1:032x}", 1, "old")
        store.clock = time.time
        store.save_feedback(f"{4:032x}", 5, "new")
        store.cleanup_interval = 0.05  # ... and the writer's periodic pass removes what is too old
        store.start()
        wait_until(lambda: stored_ids(store) == [f"{n:032x}" for n in (3, 4)], timeout=10, interval=0.05,
                   what="old interactions removed")
        wait_until(lambda: [f["interaction_id"] for f in store.feedback_page(5, None, None, 10, 0)]
                   == [f"{4:032x}"], timeout=10, interval=0.05, what="old feedback removed")
        assert store.deleted == {"interactions": 2, "feedback": 1}


def test_retention_keeps_the_newest_max_rows(store_url):
    now = time.time()
    with opened(store_url, max_rows=3, cleanup_interval=0.05) as store:
        store.start()
        for n in range(1, 7):
            store.observe(summary(n, start=now - 60 + n))  # 6 is the newest
        wait_until(lambda: stored_ids(store) == [f"{n:032x}" for n in (4, 5, 6)], timeout=10, interval=0.05,
                   what="only the newest 3 interactions kept")


# --- feedback -----------------------------------------------------------------------------------

def test_feedback_revisions_keep_history_and_one_current_rating(store_url):
    iid = f"{7:032x}"
    with opened(store_url) as store:
        assert store.save_feedback(iid, 4, "fine").outcome == "created"
        again = store.save_feedback(iid, 4, "fine")
        assert (again.outcome, again.revision) == ("duplicate", 1)
        changed = store.save_feedback(iid, 1, "wrong answer")
        assert (changed.outcome, changed.revision) == ("updated", 2)
        low = store.feedback_page(2, None, None, 10, 0)
        assert [(f["rating"], f["revision"], f["comment"]) for f in low] == [(1, 2, "wrong answer")]
        assert store.feedback_page(5, None, None, 10, 0)[0]["service"] is None  # trace not (yet) stored
        history = store._call(lambda db: db.query(
            "SELECT revision, rating, superseded_at IS NULL FROM feedback WHERE interaction_id = ? "
            "ORDER BY revision", (iid,)))
        assert [tuple(r) for r in history] == [(1, 4, False), (2, 1, True)]


def test_costs_are_exact_decimals(store_url):
    with opened(store_url) as store:
        store.start()
        for n in range(1, 4):  # 0.1 three times: a float sum would give 0.30000000000000004
            store.observe(summary(n, user="payer", cost="0.1"))
        store.observe(summary(4, user="payer", cost="0.000000125"))
        store.observe(summary(5, user="cheap", cost="0.02"))
        written(store, 5)
        assert store.interaction(f"{4:032x}")["cost_usd"] == "0.000000125"
        stats = store.user_stats("payer", 0)
        assert stats["cost_usd"] == "0.300000125" and stats["requests"] == 4
        top = store.costs_by_user(0, 10, 0)
        assert [(u["user_id"], u["cost_usd"]) for u in top] == [("payer", "0.300000125"), ("cheap", "0.02")]


def test_hashed_user_ids_never_store_the_id_but_answer_for_it(store_url):
    with opened(store_url, hash_ids=True, salt="pepper") as store:
        store.start()
        store.observe(summary(1, user="alice@example.com", cost="0.5"))
        written(store, 1)
        stored = store.interaction(f"{1:032x}")["user_id"]
        assert stored != "alice@example.com" and len(stored) == 64
        assert stored == UserIds(True, "pepper").stored("alice@example.com")
        assert stored != UserIds(True, "other salt").stored("alice@example.com")
        assert store.user_stats("alice@example.com", 0)["requests"] == 1
        assert store.user_stats(stored, 0)["requests"] == 0  # the hash itself is not an id
