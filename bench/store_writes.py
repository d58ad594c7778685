"""What the interaction store's writes cost, side by side: by schema version, by how a batch is
handed to SQLite while another thread wants the GIL, and by how it is sent to PostgreSQL.

    python bench/store_writes.py [--sections schemas,sqlite,contention,postgres] [--rows 150000] [--batch 1000]

All sections write the same rows, batch by batch, alternating between the two variants so that
the machine's noise falls on both alike, through the store's own code (`interactions.row` builds
the rows, `store_queries` writes them, one transaction per batch). Trace ids are random (as W3C
trace ids are), confidences random in [0, 1], users drawn from 500.

- schemas: one SQLite database per schema version (the first, with the columns later versions
  added to interactions so that it takes the same rows, and the latest). CPU microseconds
  per row over each slice of the growing table, and the ratio latest / first: the cost of random
  inserts grows with the table as its indexes outgrow SQLite's page cache.
- sqlite: the latest schema twice, one database with SQLite's default page cache (2 MiB) and
  checkpoint interval (1 000 WAL pages), the other with the writer connection's (store_db), in
  slices as for schemas.
- contention: a Python thread spins beside the writer, as the ingest threads run beside it in the
  exporter. Each batch goes either as one JSON parameter (`insert_as_json`, what the store does on
  SQLite) or as statements of ROWS_PER_STATEMENT rows (`insert_as_statements`, what it does on
  SQLite older than 3.38). Reports the writer's wall and CPU microseconds per row and how fast the spinning
  thread ran meanwhile (millions of loop iterations per second): the sqlite3 module holds the GIL
  to bind parameters and takes it back after every statement, so the fewer statements, the less
  the writer and the other threads wait for each other.
- postgres: each batch by COPY into the staging table and one upsert (`insert_as_copy`, what the
  store does on PostgreSQL) or as statements of ROWS_PER_STATEMENT rows. Reports the writer's CPU
  and wall microseconds per row (the server's CPU is not the exporter's). `--postgres-url`, or a
  throwaway server (tests/store/postgres_server.py) when PostgreSQL is installed.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from spanscope.store.rows import UserIds, row
from spanscope.store.migrations import MIGRATIONS, migrate
from spanscope.interpret.summary import RequestSummary
from spanscope.store.db import connect, parse_url
from spanscope.store.queries import (
    insert_as_copy,
    insert_as_json,
    insert_as_statements,
    insert_interactions,
    prepare_staging,
)

REPO = Path(__file__).resolve().parents[1]
USERS = 500


def summaries(n: int, rng: random.Random) -> list[RequestSummary]:
    now_ns = time.time_ns()
    return [RequestSummary(
        trace_id=os.urandom(16).hex(), service="rag-api", mode="chat", tenant="acme",
        user=f"user-{rng.randrange(USERS)}", error=False, start_ns=now_ns + i, duration=0.25,
        cache_status="miss", cost=Decimal("0.0012"), model="gpt-4o", confidence=rng.random(),
        tokens={"input": 900, "output": 120}) for i in range(n)]


def batches(args, rng: random.Random):
    users = UserIds(False, None)
    for _ in range(args.rows // args.batch):
        yield [row(s, users, decimal_cost=False) for s in summaries(args.batch, rng)]


def database(workdir: Path, name: str, migrations=MIGRATIONS):
    db = connect(parse_url(f"sqlite:///{workdir}/{name}.db"), "writer")
    migrate(db, migrations)
    return db


def growing(title: str, dbs: dict, args, rng: random.Random) -> None:
    """Write the same batches into each database (in turns, the order alternating) and print CPU us
    per row over each slice of the growing tables, and the ratio second / first."""
    spent = dict.fromkeys(dbs, 0.0)
    print(f"\n{title}: CPU us per row\n| rows in table | {' | '.join(dbs)} | ratio |\n|---|---:|---:|---:|")
    for n, rows in enumerate(batches(args, rng), 1):
        for name, db in (dbs.items() if n % 2 else reversed(dbs.items())):
            started = time.process_time()
            insert_interactions(db, rows)
            spent[name] += time.process_time() - started
        written = n * args.batch
        if written % args.report_every == 0 or written == args.rows // args.batch * args.batch:
            per_row = [s / args.report_every * 1e6 for s in spent.values()]
            print(f"| {written - args.report_every:,}-{written:,} | "
                  f"{' | '.join(f'{v:.1f}' for v in per_row)} | {per_row[1] / per_row[0]:.2f} |")
            spent = dict.fromkeys(dbs, 0.0)
    for db in dbs.values():
        db.close()


def schemas(args, rng: random.Random, workdir: Path) -> None:
    first, latest = MIGRATIONS[0][0], MIGRATIONS[-1][0]
    # The first version's indexes, with the columns the writer's rows have (added by later versions).
    columns_added = [m for m in MIGRATIONS[1:] if any("ADD COLUMN" in sql for sql in m[2])]
    growing("schemas", {f"version {first}": database(workdir, "first", MIGRATIONS[:1] + columns_added),
                        f"version {latest}": database(workdir, "latest")}, args, rng)


def sqlite(args, rng: random.Random, workdir: Path) -> None:
    """The writer connection's page cache and checkpoint interval (store_db) against SQLite's defaults."""
    defaults = database(workdir, "sqlite-defaults")
    defaults.execute("PRAGMA cache_size=-2000")
    defaults.execute("PRAGMA wal_autocheckpoint=1000")
    growing("sqlite", {"SQLite's defaults": defaults, "the writer's settings": database(workdir, "sqlite-store")},
            args, rng)


class Spinner(threading.Thread):
    """Pure Python work beside the writer: its loop count shows how much of the GIL it got."""

    def __init__(self):
        super().__init__(daemon=True)
        self.count, self.stopped = 0, False

    def run(self) -> None:
        while not self.stopped:
            self.count += 1


def contention(args, rng: random.Random, workdir: Path) -> None:
    methods = {"one JSON parameter": insert_as_json, "statements of 100 rows": insert_as_statements}
    dbs = {name: database(workdir, f"contention-{i}") for i, name in enumerate(methods)}
    wall, cpu, spun = (dict.fromkeys(methods, 0.0) for _ in range(3))
    spinner = Spinner()
    spinner.start()
    n_rows = 0
    for rows in batches(args, rng):
        n_rows += len(rows)
        for name, insert in methods.items():
            count, started, started_cpu = spinner.count, time.perf_counter(), time.thread_time()
            with dbs[name].transaction():
                insert(dbs[name], rows)
            wall[name] += time.perf_counter() - started
            cpu[name] += time.thread_time() - started_cpu
            spun[name] += spinner.count - count
    spinner.stopped = True
    spinner.join()
    print(f"\ncontention: {n_rows:,} rows each, a spinning Python thread beside the writer\n"
          "| batch handed to SQLite as | writer wall us per row | writer CPU us per row | "
          "spinner M iterations/s |\n|---|---:|---:|---:|")
    for name in methods:
        print(f"| {name} | {wall[name] / n_rows * 1e6:.1f} | {cpu[name] / n_rows * 1e6:.1f} | "
              f"{spun[name] / wall[name] / 1e6:.1f} |")
    json_name, statements_name = methods
    print(f"ratios JSON / statements: writer wall {wall[json_name] / wall[statements_name]:.2f}, spinner "
          f"speed {spun[json_name] / wall[json_name] / (spun[statements_name] / wall[statements_name]):.2f}")
    for db in dbs.values():
        db.close()


def postgres(args, rng: random.Random, workdir: Path) -> None:
    """PostgreSQL: a batch as COPY into the staging table and one upsert from it (`insert_as_copy`,
    what the store does) or as statements of ROWS_PER_STATEMENT rows (what it did before). The
    server's own CPU is another process's: the writer's CPU per row is what the exporter pays."""
    url, server = args.postgres_url, None
    if url is None:  # a throwaway server, as the store tests start one
        sys.path[:0] = [str(REPO / "scripts"), str(REPO / "tests" / "store")]
        import postgres_server
        if postgres_server.binaries() is None:
            print("\npostgres: skipped (no --postgres-url, and no PostgreSQL under /usr/lib/postgresql)")
            return
        server = postgres_server.start(postgres_server.binaries())
    try:
        urls = [server.create_database() for _ in range(2)] if server else [url, url]
        methods = {"COPY and one upsert": insert_as_copy, "statements of 100 rows": insert_as_statements}
        dbs = {}
        for name, db_url in zip(methods, urls):
            dbs[name] = connect(parse_url(db_url), "writer")
            migrate(dbs[name])
            dbs[name].execute("DELETE FROM interactions")
        cpu, wall = dict.fromkeys(methods, 0.0), dict.fromkeys(methods, 0.0)
        users, n_rows = UserIds(False, None), 0
        for _ in range(args.rows // args.batch):
            rows = [row(s, users, decimal_cost=True) for s in summaries(args.batch, rng)]
            n_rows += len(rows)
            for name, insert in methods.items():
                db = dbs[name]
                if insert is insert_as_copy:
                    prepare_staging(db)
                started, started_cpu = time.perf_counter(), time.thread_time()
                with db.transaction():
                    insert(db, rows)
                wall[name] += time.perf_counter() - started
                cpu[name] += time.thread_time() - started_cpu
        print(f"\npostgres: {n_rows:,} rows each\n| batch sent as | writer CPU us per row | wall us per row |"
              "\n|---|---:|---:|")
        for name in methods:
            print(f"| {name} | {cpu[name] / n_rows * 1e6:.1f} | {wall[name] / n_rows * 1e6:.1f} |")
        copy_name, statements_name = methods
        print(f"ratios COPY / statements: writer CPU {cpu[copy_name] / cpu[statements_name]:.2f}, "
              f"wall {wall[copy_name] / wall[statements_name]:.2f}")
        for db in dbs.values():
            db.close()
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default="schemas,sqlite,contention,postgres",
                    help="comma-separated: schemas, sqlite, contention, postgres")
    ap.add_argument("--postgres-url", help="postgres section: this database (its interactions are deleted); "
                                           "default: a throwaway server when PostgreSQL is installed")
    ap.add_argument("--rows", type=int, default=150_000, help="rows written by each variant")
    ap.add_argument("--batch", type=int, default=1000, help="rows per transaction (store.batch_size: 5000)")
    ap.add_argument("--report-every", type=int, default=50_000, help="rows per reported slice (schemas, sqlite)")
    args = ap.parse_args()
    rng = random.Random(1)
    workdir = Path(tempfile.mkdtemp(prefix="spanscope-store-bench-"))
    sections = {"schemas": schemas, "sqlite": sqlite, "contention": contention, "postgres": postgres}
    for name in args.sections.split(","):
        sections[name](args, rng, workdir)


if __name__ == "__main__":
    main()
