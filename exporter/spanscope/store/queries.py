"""The SQL of the interaction store, as functions of one Database connection.

Writes: `insert_interactions` (the writer's batches), `save_feedback` (one rating, in its own
transaction), `enforce_retention`. Reads: `feedback_page`, `interactions_page`, `interaction`,
`user_stats`, `costs_by_user`. All SQL uses `?` placeholders (Database converts them for PostgreSQL).
"""
from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass, fields

from .db import SQLITE, Database
from .rows import COLUMNS, TOKEN_TYPES, as_json, iso, money, to_json

# A trace finished twice (flushed incomplete, then its late spans): the later, fuller row wins.
_UPSERT = " ON CONFLICT (trace_id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in COLUMNS if c != "trace_id")
_ROW = f"({', '.join('?' * len(COLUMNS))})"
ROWS_PER_STATEMENT = 100
SQLITE_JSON_INSERTS = sqlite3.sqlite_version_info >= (3, 38, 0)  # the ->> operator; older: statements
# SQLite: the whole batch as one JSON array of rows, one parameter (`WHERE true`: SQLite's parser
# needs it before an upsert clause).
_INSERT_JSON = (f"INSERT INTO interactions ({', '.join(COLUMNS)}) "
                f"SELECT {', '.join(f'value ->> {i}' for i in range(len(COLUMNS)))} FROM json_each(?) "
                f"WHERE true{_UPSERT}")


@functools.lru_cache(maxsize=None)
def _insert(n_rows: int) -> str:
    return f"INSERT INTO interactions ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * n_rows)}{_UPSERT}"


# PostgreSQL: COPY cannot upsert, so a batch is copied into a temporary table of the connection
# (emptied at every commit) and upserted from there by one statement.
_STAGING = "interactions_incoming"
_CREATE_STAGING = f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE interactions) ON COMMIT DELETE ROWS"
_UPSERT_STAGED = (f"INSERT INTO interactions ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
                  f"FROM {_STAGING}{_UPSERT}")


def insert_interactions(db: Database, rows: list[tuple]) -> None:
    # The writer's Python must stay out of the per-row work: it shares the GIL with the ingest
    # threads, and binding parameters holds it. SQLite gets the batch as one JSON parameter and
    # parses and inserts every row without the GIL; PostgreSQL gets it by COPY, which psycopg writes
    # in C (docs/performance.md). SQLite older than 3.38: statements of ROWS_PER_STATEMENT rows.
    # One statement must not upsert a row twice (PostgreSQL refuses): the later row of a trace wins.
    rows = list({row[0]: row for row in rows}.values())
    if db.dialect is SQLITE:
        insert = insert_as_json if SQLITE_JSON_INSERTS else insert_as_statements
    else:
        prepare_staging(db)
        insert = insert_as_copy
    with db.transaction():
        insert(db, rows)


def insert_as_json(db: Database, rows: list[tuple]) -> None:
    """SQLite only (json_each and ->>); `rows` without two rows of one trace."""
    db.execute(_INSERT_JSON, (to_json(rows),))


def insert_as_statements(db: Database, rows: list[tuple]) -> None:
    """Either database; `rows` without two rows of one trace."""
    for i in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[i:i + ROWS_PER_STATEMENT]
        db.execute(_insert(len(chunk)), [value for row in chunk for value in row])


def prepare_staging(db: Database) -> None:
    """PostgreSQL: the connection's staging table, once, outside any batch's transaction (a rolled
    back batch must not take the table with it)."""
    if not db.staging_ready:
        db.execute(_CREATE_STAGING)
        db.staging_ready = True


def insert_as_copy(db: Database, rows: list[tuple]) -> None:
    """PostgreSQL only, inside a transaction, after prepare_staging; `rows` without two rows of one trace."""
    db.copy_rows(_STAGING, COLUMNS, rows)
    db.execute(_UPSERT_STAGED)


# --- retention ----------------------------------------------------------------------------------

def enforce_retention(db: Database, now: float, retention: float, feedback_retention: float,
                      max_rows: int | None) -> dict:
    """Delete interactions older than `retention` seconds (0: no limit) and beyond the newest
    `max_rows`, feedback older than `feedback_retention` and beyond the newest `max_rows` revisions.
    Returns the number of rows deleted per table."""
    deleted = {"interactions": 0, "feedback": 0}
    with db.transaction():
        if retention:
            deleted["interactions"] += db.execute("DELETE FROM interactions WHERE started_at < ?",
                                                  (now - retention,))
        if feedback_retention:
            deleted["feedback"] += db.execute("DELETE FROM feedback WHERE created_at < ?",
                                              (now - feedback_retention,))
        if max_rows:
            edge = db.query("SELECT started_at, trace_id FROM interactions "
                            "ORDER BY started_at DESC, trace_id DESC LIMIT 1 OFFSET ?", (max_rows,))
            if edge:
                started, trace_id = edge[0]
                deleted["interactions"] += db.execute(
                    "DELETE FROM interactions WHERE started_at < ? OR (started_at = ? AND trace_id <= ?)",
                    (started, started, trace_id))
            edge = db.query("SELECT id FROM feedback ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,))
            if edge:
                deleted["feedback"] += db.execute("DELETE FROM feedback WHERE id <= ?", (edge[0][0],))
    return deleted


# --- feedback -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SavedFeedback:
    outcome: str              # "created", "updated" (a new revision) or "duplicate" (same rating and comment)
    revision: int
    labels: tuple | None      # (service, mode, model) of the stored interaction, when there is one


def save_feedback(db: Database, interaction_id: str, rating: int, comment: str | None, now: float) -> SavedFeedback:
    """Store a rating, committed when this returns. A resubmission supersedes the current rating and
    is kept as the next revision; resending the current rating and comment changes nothing."""
    with db.transaction():
        current = db.query("SELECT revision, rating, comment FROM feedback "
                           "WHERE interaction_id = ? AND superseded_at IS NULL", (interaction_id,))
        if current and current[0][1] == rating and current[0][2] == comment:
            outcome, revision = "duplicate", current[0][0]
        else:
            last = db.query("SELECT MAX(revision) FROM feedback WHERE interaction_id = ?", (interaction_id,))
            revision = (last[0][0] or 0) + 1
            if current:
                db.execute("UPDATE feedback SET superseded_at = ? WHERE interaction_id = ? AND superseded_at IS NULL",
                           (now, interaction_id))
            db.execute("INSERT INTO feedback (interaction_id, revision, rating, comment, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (interaction_id, revision, rating, comment, now))
            outcome = "updated" if current else "created"
        found = db.query("SELECT service, mode, model FROM interactions WHERE trace_id = ?", (interaction_id,))
    labels = (found[0][0], found[0][1], found[0][2] or "unknown") if found else None
    return SavedFeedback(outcome, revision, labels)


def feedback_page(db: Database, max_rating: int, since: float | None, service: str | None,
                  limit: int, offset: int) -> list[dict]:
    """Current ratings (newest first) at or below `max_rating`, with their interaction's facts."""
    where = ["f.superseded_at IS NULL", "f.rating <= ?"]
    params: list = [max_rating]
    if since is not None:
        where.append("f.created_at >= ?")
        params.append(since)
    if service is not None:
        where.append("i.service = ?")
        params.append(service)
    rows = db.query(
        "SELECT f.interaction_id, f.rating, f.comment, f.revision, f.created_at, i.service, i.mode, i.model, "
        "i.duration_seconds, i.cost, i.confidence, i.started_at, i.user_id "
        "FROM feedback f LEFT JOIN interactions i ON i.trace_id = f.interaction_id "
        f"WHERE {' AND '.join(where)} ORDER BY f.created_at DESC, f.id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset))
    return [{"interaction_id": r[0], "trace_id": r[0], "rating": r[1], "comment": r[2], "revision": r[3],
             "rated_at": iso(r[4]), "service": r[5], "mode": r[6], "model": r[7], "duration_seconds": r[8],
             "cost_usd": money(r[9]) if r[9] is not None else None, "confidence": r[10],
             "started_at": iso(r[11]), "user_id": r[12]} for r in rows]


@dataclass(frozen=True)
class InteractionFilters:
    """What `interactions_page` may be narrowed to; None leaves a filter out. `user_id` in its stored form."""

    user_id: str | None = None
    service: str | None = None
    model: str | None = None
    since: float | None = None             # started at or after (seconds since the epoch)
    until: float | None = None             # started before
    error: bool | None = None
    rating: int | None = None              # the current rating equals
    rated: bool | None = None              # has a current rating, or has none
    confidence_below: float | None = None


# Each filter as SQL with one placeholder for its value (`rated` takes none: its value picks the SQL).
_FILTER_SQL = {
    "user_id": "i.user_id = ?", "service": "i.service = ?", "model": "i.model = ?",
    "since": "i.started_at >= ?", "until": "i.started_at < ?", "error": "i.error = ?",
    "rating": "f.rating = ?", "confidence_below": "i.confidence < ?",
}


def interactions_page(db: Database, filters: InteractionFilters, after: tuple[float, str] | None,
                      limit: int) -> list[dict]:
    """Interactions newest first (by start, then trace id), each with its current rating, after the
    position `after` (started_at, trace_id) of the previous page's last row: keyset pagination, so a
    page is found through the interactions_by_time index however deep it is."""
    where, params = [], []
    for f in fields(filters):
        value = getattr(filters, f.name)
        if value is None:
            continue
        if f.name == "rated":
            where.append("f.rating IS NOT NULL" if value else "f.rating IS NULL")
        else:
            where.append(_FILTER_SQL[f.name])
            params.append(int(value) if f.name == "error" else value)
    if after is not None:
        where.append("(i.started_at < ? OR (i.started_at = ? AND i.trace_id < ?))")
        params += [after[0], after[0], after[1]]
    rows = db.query(
        f"SELECT {', '.join(f'i.{c}' for c in COLUMNS)}, f.rating, f.comment, f.created_at "
        "FROM interactions i LEFT JOIN feedback f ON f.interaction_id = i.trace_id AND f.superseded_at IS NULL "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        "ORDER BY i.started_at DESC, i.trace_id DESC LIMIT ?", (*params, limit))
    n = len(COLUMNS)
    return [{**as_json(r[:n]), "rating": r[n], "comment": r[n + 1], "rated_at": iso(r[n + 2])} for r in rows]


def interaction(db: Database, trace_id: str) -> dict | None:
    """One interaction with every revision of its feedback, or None."""
    rows = db.query(f"SELECT {', '.join(COLUMNS)} FROM interactions WHERE trace_id = ?", (trace_id,))
    if not rows:
        return None
    doc = as_json(rows[0])
    doc["feedback"] = [
        {"revision": r[0], "rating": r[1], "comment": r[2], "rated_at": iso(r[3]), "superseded_at": iso(r[4])}
        for r in db.query("SELECT revision, rating, comment, created_at, superseded_at FROM feedback "
                          "WHERE interaction_id = ? ORDER BY revision", (trace_id,))]
    return doc


def user_stats(db: Database, user_id: str, since: float) -> dict:
    d = db.dialect
    r = db.query(
        f"SELECT COUNT(*), SUM(error), {d.cost_sum}, AVG(duration_seconds), AVG(confidence), "
        f"{', '.join(f'SUM(tokens_{t})' for t in TOKEN_TYPES)} "
        "FROM interactions WHERE user_id = ? AND started_at >= ?", (user_id, since))[0]
    return {"requests": r[0], "errors": int(r[1] or 0), "cost_usd": money(r[2]),
            "avg_latency_seconds": r[3], "avg_confidence": r[4],
            "tokens": {t: int(n or 0) for t, n in zip(TOKEN_TYPES, r[5:])}}


def costs_by_user(db: Database, since: float, limit: int, offset: int) -> list[dict]:
    d = db.dialect
    rows = db.query(
        f"SELECT user_id, COUNT(*), {d.cost_sum}, AVG(duration_seconds) FROM interactions "
        "WHERE started_at >= ? AND user_id IS NOT NULL "
        f"GROUP BY user_id ORDER BY {d.cost_order} DESC, user_id LIMIT ? OFFSET ?", (since, limit, offset))
    return [{"user_id": r[0], "requests": r[1], "cost_usd": money(r[2]), "avg_latency_seconds": r[3]}
            for r in rows]
