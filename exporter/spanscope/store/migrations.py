"""Schema migrations of the interaction store: plain SQL, versioned, applied at start, idempotent.

Each migration is applied once, in a transaction that also records it in `schema_migrations`.
Replicas starting together are serialized (SQLite: the write lock of BEGIN IMMEDIATE; PostgreSQL:
an advisory lock), so a migration never runs twice. DDL placeholders ({id}, {bigint}, {float},
{decimal}) are the dialect's column types; everything else is the same SQL on both databases.
Never edit a released migration: append a new one.
"""
from __future__ import annotations

import logging
import time

from .db import Database

log = logging.getLogger("spanscope.store")

ADVISORY_LOCK_KEY = 0x5370616E  # "Span": serializes migrations of replicas sharing one PostgreSQL database

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "interactions and feedback", [
        """CREATE TABLE interactions (
            trace_id TEXT PRIMARY KEY,
            service TEXT NOT NULL,
            tenant TEXT NOT NULL,
            user_id TEXT,
            mode TEXT NOT NULL,
            started_at {float} NOT NULL,
            duration_seconds {float} NOT NULL,
            error INTEGER NOT NULL,
            critical_path TEXT NOT NULL,
            tokens_input {bigint} NOT NULL,
            tokens_output {bigint} NOT NULL,
            tokens_cache_read {bigint} NOT NULL,
            tokens_cache_creation {bigint} NOT NULL,
            tokens_reasoning {bigint} NOT NULL,
            model TEXT,
            cost {decimal} NOT NULL,
            confidence {float},
            citations INTEGER,
            quality {float},
            cache_status TEXT NOT NULL,
            variants TEXT NOT NULL,
            recorded_at {float} NOT NULL
        )""",
        "CREATE INDEX interactions_by_user_time ON interactions (user_id, started_at)",
        "CREATE INDEX interactions_by_time ON interactions (started_at, trace_id)",  # also max_rows' order
        "CREATE INDEX interactions_by_confidence ON interactions (confidence)",
        """CREATE TABLE feedback (
            id {id},
            interaction_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
            comment TEXT,
            created_at {float} NOT NULL,
            superseded_at {float},
            UNIQUE (interaction_id, revision)
        )""",
        # One current rating per interaction, also with several replicas writing.
        "CREATE UNIQUE INDEX feedback_current ON feedback (interaction_id) WHERE superseded_at IS NULL",
        "CREATE INDEX feedback_by_rating_time ON feedback (rating, created_at) WHERE superseded_at IS NULL",
        "CREATE INDEX feedback_by_time ON feedback (created_at)",
    ]),
    # No query of the exporter reads it, and its random inserts cost the writer a fifth to a quarter
    # of its time per row (bench/store_writes.py, docs/performance.md).
    (2, "drop the confidence index", [
        "DROP INDEX IF EXISTS interactions_by_confidence",
    ]),
    # Feature state and rollout decisions, shared by the replicas of one database (store/feature_states.py).
    (3, "feature state and rollout decisions", [
        """CREATE TABLE feature_state (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            version {bigint} NOT NULL,
            updated_at {float} NOT NULL
        )""",
        """CREATE TABLE rollout_decisions (
            id {id},
            feature TEXT NOT NULL,
            decision TEXT NOT NULL,
            at {float} NOT NULL,
            record TEXT NOT NULL
        )""",
        "CREATE INDEX rollout_decisions_by_feature ON rollout_decisions (feature, id)",
    ]),
    # Why each flag took its variant (a guard judges randomly assigned requests only). Rows stored
    # before it get '{}': reasons unknown. Nullable, with the default, so an older exporter still
    # writing to a shared database keeps working: its rows name the earlier columns only, and its
    # PostgreSQL staging table (LIKE interactions) copies a NOT NULL but not a default.
    (4, "the reasons of flag evaluations", [
        "ALTER TABLE interactions ADD COLUMN variant_reasons TEXT DEFAULT '{{}}'",
    ]),
]


def applied_versions(db: Database) -> set[int]:
    return {v for (v,) in db.query("SELECT version FROM schema_migrations")}


def migrate(db: Database, migrations=MIGRATIONS) -> list[int]:
    """Apply the migrations `db` lacks; returns the versions applied now (empty when up to date)."""
    done: list[int] = []
    with db.transaction():
        if db.dialect.name == "postgres":
            db.query("SELECT pg_advisory_xact_lock(?)", (ADVISORY_LOCK_KEY,))
        db.execute(f"CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                   f"name TEXT NOT NULL, applied_at {db.dialect.types['float']} NOT NULL)")
        applied = applied_versions(db)
        for version, name, statements in migrations:
            if version in applied:
                continue
            for statement in statements:
                db.execute(statement.format(**db.dialect.types))
            db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                       (version, name, time.time()))
            done.append(version)
    newer = sorted(v for v in applied if v > migrations[-1][0])
    if newer:
        log.warning("the interaction store has schema versions %s that this exporter does not know; "
                    "a newer exporter migrated it", newer)
    if done:
        log.info("interaction store migrated to schema version %d (%s)", done[-1], db.location.describe())
    return done
