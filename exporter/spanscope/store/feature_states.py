"""Feature state, rollout decisions and stage evidence in the interaction store's database.

With PostgreSQL every replica reads and writes the same rows, so all serve the same feature state
and a restarted replica resumes a rollout where it was. One replica decides guarded rollouts: the
one holding a session-level advisory lock (released by PostgreSQL when that replica's connection
ends, so another takes over within a sync interval). With SQLite the state persists in the store's
file across restarts.

A change is one transaction that reads the feature's row with a lock (SELECT … FOR UPDATE on
PostgreSQL, BEGIN IMMEDIATE on SQLite), applies the change and writes it back with its decision,
so concurrent changes from two replicas are applied one after the other, never lost.
Calls block: they run on this backend's own thread (`run`), never on the event loop.
"""
from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from ..interpret.attributes import NOT_RANDOM
from .db import Database, Location, Session, close_quietly, connect, connection_lost, is_transient, is_unique_violation

log = logging.getLogger("spanscope.features")

LEADER_LOCK_KEY = 0x5370616F  # one more than the migrations' key: "Spao"
# A flag's entry in one of the interactions' JSON columns: `variants` (the variant it evaluated to)
# or `variant_reasons` (why: "split", "targeting_match", ...).
FLAG_IN = {
    "sqlite": "json_extract({column}, '$.\"' || ? || '\"')",
    "postgres": "({column}::jsonb ->> ?)",
}


class StateUnavailable(Exception):
    """The database is away (down, locked, full): the API answers 503 and the change may be retried."""

    status = 503
    headers = {"Retry-After": "5"}


class DatabaseStates:
    shared = True

    def __init__(self, location: Location):
        self.location = location
        self._session = Session(location, "api")
        self._leader_db: Database | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="feature-state")
        self.postgres = location.dialect.name == "postgres"

    def describe(self) -> str:
        return f"feature state in {self.location.describe()}"

    async def run(self, fn):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn)
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise StateUnavailable(f"the feature state in {self.location.describe()} cannot be reached now "
                                   f"({' '.join(str(exc).split())}); retry") from exc

    def _call(self, fn, *args):
        return self._session.call(fn, *args)

    # --- state and decisions -----------------------------------------------------------------

    def load(self) -> dict[str, dict]:
        return self._call(lambda db: {name: json.loads(state)
                                      for name, state in db.query("SELECT name, state FROM feature_state")})

    def apply(self, name: str, change, decision_of=None) -> dict:
        try:
            return self._call(self._apply, name, change, decision_of)
        except Exception as exc:
            if not is_unique_violation(exc):
                raise
            # Another replica stored the feature's first row at the same moment: now there is a row to lock.
            return self._call(self._apply, name, change, decision_of)

    def _apply(self, db: Database, name: str, change, decision_of) -> dict:
        lock = " FOR UPDATE" if self.postgres else ""
        with db.transaction():
            rows = db.query(f"SELECT state, version FROM feature_state WHERE name = ?{lock}", (name,))
            doc = change(json.loads(rows[0][0]) if rows else None)
            text, now = json.dumps(doc, sort_keys=True), doc.get("updated_at", 0.0)
            if rows:
                db.execute("UPDATE feature_state SET state = ?, version = ?, updated_at = ? WHERE name = ?",
                           (text, rows[0][1] + 1, now, name))
            else:
                db.execute("INSERT INTO feature_state (name, state, version, updated_at) VALUES (?, ?, 1, ?)",
                           (name, text, now))
            decision = decision_of(doc) if decision_of else None
            if decision:
                db.execute("INSERT INTO rollout_decisions (feature, decision, at, record) VALUES (?, ?, ?, ?)",
                           (name, decision["decision"], decision["at"], json.dumps(decision, sort_keys=True)))
        return doc

    def decisions(self, name: str, limit: int) -> list[dict]:
        rows = self._call(lambda db: db.query(
            "SELECT record FROM rollout_decisions WHERE feature = ? ORDER BY id DESC LIMIT ?", (name, limit)))
        return [json.loads(r) for (r,) in rows]

    def latest_decisions(self) -> dict[str, dict]:
        rows = self._call(lambda db: db.query(
            "SELECT feature, record FROM rollout_decisions WHERE id IN "
            "(SELECT MAX(id) FROM rollout_decisions GROUP BY feature)"))
        return {feature: json.loads(r) for feature, r in rows}

    # --- who decides -------------------------------------------------------------------------

    async def leader(self) -> bool:
        return await self.run(self._hold_leader_lock) if self.postgres else True

    def _hold_leader_lock(self) -> bool:
        """Take (or keep) the session-level advisory lock on a connection of its own."""
        try:
            if self._leader_db is not None and not connection_lost(self._leader_db):
                return True  # a session-level lock lasts as long as its connection
            self._leader_db = connect(self.location, "api")
            (held,), = self._leader_db.query("SELECT pg_try_advisory_lock(?)", (LEADER_LOCK_KEY,))
            if held:
                log.info("this replica now decides guarded rollouts (advisory lock %#x)", LEADER_LOCK_KEY)
                return True
            self._leader_db.close()
            self._leader_db = None
            return False
        except Exception as exc:  # the database is away: nobody decides until it is back
            log.warning("cannot take the rollout leader lock: %s", " ".join(str(exc).split()))
            self._leader_db = None
            return False

    # --- stage evidence ----------------------------------------------------------------------

    def stage_sample(self, flag: str, since: float, control: str, treatment: str, p95_factor: float | None):
        """Per variant (count, errors, Σ latency, Σ latency², quality count, Σ quality, Σ quality²) of the
        requests started since `since` and randomly assigned (NOT_RANDOM left out), the control's p95
        and the treatment's requests slower than p95 × `p95_factor` (analysis.guards builds its
        StageSample from these)."""
        return self._call(self._stage_sample, flag, since, control, treatment, p95_factor)

    def _stage_sample(self, db: Database, flag, since, control, treatment, p95_factor):
        variant, reason = (FLAG_IN[db.dialect.name].format(column=c) for c in ("variants", "variant_reasons"))
        # A reason in NOT_RANDOM leaves the request out of the stage's evidence; no reason (rows stored
        # before reasons were, instrumentations that send none) counts, as it did before.
        stage = (f"(SELECT {variant} AS variant, error, duration_seconds, quality FROM interactions "
                 f"WHERE started_at >= ? AND COALESCE({reason}, '') NOT IN ({', '.join('?' * len(NOT_RANDOM))})) stage")
        base = (flag, since, flag, *NOT_RANDOM)
        arms = {row[0]: row[1:] for row in db.query(
            f"SELECT variant, COUNT(*), SUM(error), SUM(duration_seconds), SUM(duration_seconds * duration_seconds), "
            f"COUNT(quality), SUM(quality), SUM(quality * quality) FROM {stage} "
            f"WHERE variant IN (?, ?) GROUP BY variant", (*base, control, treatment))}
        p95 = slower = None
        n_control = arms.get(control, (0,))[0]
        if p95_factor is not None and n_control:
            offset = max(-(-95 * n_control // 100) - 1, 0)  # nearest rank: ceil(0.95 n) - 1
            (p95,), = db.query(f"SELECT duration_seconds FROM {stage} WHERE variant = ? "
                               f"ORDER BY duration_seconds LIMIT 1 OFFSET ?", (*base, control, offset))
            (slower,), = db.query(f"SELECT COUNT(*) FROM {stage} WHERE variant = ? AND duration_seconds > ?",
                                  (*base, treatment, p95 * p95_factor))
        return arms, p95, slower

    def close(self) -> None:
        # The thread first: a connection closed under a call still running on it can crash SQLite.
        self._thread.shutdown(wait=True, cancel_futures=True)
        self._session.close()
        close_quietly(self._leader_db)
        self._leader_db = None
