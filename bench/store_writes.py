"""What the interaction store's schema costs the writer per row, schema by schema, side by side.

    python bench/store_writes.py [--rows 150000] [--batch 1000] [--report-every 50000]

Writes the same rows, batch by batch, into one SQLite database per schema version (the first
version and the latest), alternating between them so that the machine's noise falls on both
alike. Each batch goes through the store's own code: `interactions.row` builds the rows and
`store_queries.insert_interactions` writes them in one transaction. Trace ids are random (as
W3C trace ids are), confidences random in [0, 1], users drawn from 500. Reports CPU microseconds
per row over each slice of the growing table and the ratio latest / first: the cost of random
inserts grows with the table as its indexes outgrow SQLite's page cache.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from spanscope.interactions import UserIds, row
from spanscope.migrations import MIGRATIONS, migrate
from spanscope.recorder import RequestSummary
from spanscope.store_db import connect, parse_url
from spanscope.store_queries import insert_interactions

USERS = 500


def summaries(n: int, rng: random.Random) -> list[RequestSummary]:
    now_ns = time.time_ns()
    return [RequestSummary(
        trace_id=os.urandom(16).hex(), service="rag-api", mode="chat", tenant="acme",
        user=f"user-{rng.randrange(USERS)}", error=False, start_ns=now_ns + i, duration=0.25,
        cache_status="miss", cost=Decimal("0.0012"), model="gpt-4o", confidence=rng.random(),
        tokens={"input": 900, "output": 120}) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=150_000, help="rows written into each database")
    ap.add_argument("--batch", type=int, default=1000, help="rows per transaction (store.batch_size: 5000)")
    ap.add_argument("--report-every", type=int, default=50_000, help="rows per reported slice")
    args = ap.parse_args()
    rng = random.Random(1)
    users = UserIds(False, None)
    workdir = Path(tempfile.mkdtemp(prefix="spanscope-store-bench-"))
    schemas = {f"version {MIGRATIONS[0][0]}": MIGRATIONS[:1], f"version {MIGRATIONS[-1][0]}": MIGRATIONS}
    dbs = {}
    for name, migrations in schemas.items():
        dbs[name] = connect(parse_url(f"sqlite:///{workdir}/{name.replace(' ', '-')}.db"), "writer")
        migrate(dbs[name], migrations)
    spent = {name: 0.0 for name in dbs}
    print(f"rows in table | {' | '.join(f'{n} us/row' for n in dbs)} | ratio")
    written = 0
    while written < args.rows:
        rows = [row(s, users, decimal_cost=False) for s in summaries(args.batch, rng)]
        for name, db in dbs.items():
            started = time.process_time()
            insert_interactions(db, rows)
            spent[name] += time.process_time() - started
        written += args.batch
        if written % args.report_every == 0 or written >= args.rows:
            per_row = {n: s / args.report_every * 1e6 for n, s in spent.items()}
            first, latest = per_row.values()
            print(f"{written - args.report_every:,}-{written:,} | "
                  f"{' | '.join(f'{v:.1f}' for v in per_row.values())} | {latest / first:.2f}")
            spent = {name: 0.0 for name in dbs}
    for db in dbs.values():
        db.close()


if __name__ == "__main__":
    main()
