"""The interaction store: finished requests and user feedback in SQLite or PostgreSQL.

Prometheus holds aggregates; this holds the individual interactions (latency breakdown, tokens,
cost, quality, user) and the ratings users gave them, for the API (low-rated interactions, per-user
statistics, cost by user).

Two connections, two paths:
- Interactions are written off the ingest path. `observe` (a recorder sink) turns the
  RequestSummary into its row (a tuple of plain values: a fraction of the summary's memory, and
  nothing the garbage collector has to traverse while it waits) and appends it to a bounded queue;
  when the queue is full the oldest unwritten interaction is dropped and counted, so ingest never
  waits for the database; once shutting down (`hold_when_full`) it waits for room instead, so a
  SIGTERM writes everything acknowledged before it. One writer thread
  drains the queue in batches (one transaction per batch, many rows per statement), retries a batch the
  database refused for a transient reason (lock, full disk, lost connection) and enforces
  retention every `cleanup_interval` seconds.
- Feedback is written synchronously on the API connection and committed before the API answers
  (SQLite synchronous=FULL), so an acknowledged rating survives a crash right after the answer.
  API calls are blocking: handlers run them with `await store.run(...)` on the store's own thread,
  one at a time, so a slow database neither blocks the event loop nor occupies the default
  executor's threads that ingest uses.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .. import config
from ..config import ConfigError, read_secret
from ..interpret.summary import RequestSummary
from . import queries as q
from .db import (
    Database,
    Location,
    Session,
    StoreDisabled,
    close_quietly,
    connect,
    connection_lost,
    is_transient,
    is_unique_violation,
    parse_url,
    temporary_location,
)
from .migrations import migrate
from .rows import UserIds, row

log = logging.getLogger("spanscope.store")

RETRY_DELAY_S = (0.1, 0.5, 1.0, 2.0, 5.0)  # after consecutive failed batches
ERROR_KINDS = ("unavailable", "refused", "row", "retention")  # spanscope_interaction_store_errors_total{kind}


class EveryMinute:
    """Logs an error at most once per `interval` seconds for as long as errors go on, each line saying
    how many were left out since the last one: an outage stays visible without flooding the log."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, clock=time.monotonic):
        self.logger, self.interval, self.clock = logger, interval, clock
        self._lock = threading.Lock()  # the writer thread and the ingest threads log
        self._last = -float("inf")
        self._left_out = 0

    def error(self, message: str, exc_info: bool = False) -> None:
        with self._lock:
            now = self.clock()
            if now - self._last < self.interval:
                self._left_out += 1
                return
            left_out, self._left_out, self._last = self._left_out, 0, now
        more = f" ({left_out} more errors since the last line)" if left_out else ""
        self.logger.error("%s%s; at most one line per %.0fs while errors go on", message, more, self.interval,
                          exc_info=exc_info)


def read_salt(store: config.Store) -> str | None:
    """The salt of store.user_id_hash (value, or the file's content), or None when hashing is off."""
    if not store.user_id_hash:
        return None
    salt = store.user_id_salt
    if store.user_id_salt_file:
        salt = read_secret(store.user_id_salt_file, "store.user_id_salt_file")
    if not salt:
        raise ConfigError("store.user_id_salt: a salt (or store.user_id_salt_file) is required when "
                          "store.user_id_hash is true")
    return salt


class InteractionStore:
    def __init__(self, location: Location, users: UserIds, queue_size: int = 10_000, batch_size: int = 5000,
                 flush_interval: float = 1.0, retention: float = 30 * 86400, feedback_retention: float = 30 * 86400,
                 max_rows: int | None = None, cleanup_interval: float = 60.0, clock=time.time, enabled: bool = True):
        self.enabled = enabled  # false: nothing is opened, written or answered (the API says so: 404)
        self.location = location
        self.users = users
        self.queue_size = queue_size
        self.batch_size = batch_size
        self._full_batch = min(batch_size, queue_size)  # the writer takes a batch at once from this many rows
        self.flush_interval = flush_interval
        self._last_take = 0.0
        self.retention = retention
        self.feedback_retention = feedback_retention
        self.max_rows = max_rows
        self.cleanup_interval = max(cleanup_interval, 0.01)
        self.clock = clock
        self.postgres = location.dialect.name == "postgres"
        self._writer_db: Database | None = None
        self._api: Session | None = None
        self._api_thread = ThreadPoolExecutor(1, thread_name_prefix="interaction-api")
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple] = collections.deque()  # rows (interactions.row)
        self._stopping = False
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self.written = 0
        self.writing = 0  # rows of the batch in flight
        self.dropped = {"queue_full": 0, "write_error": 0}
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.deleted = {"interactions": 0, "feedback": 0}
        self._failures = 0
        self._errors_log = EveryMinute(log)
        self._hold_until: float | None = None  # shutting down: a full queue waits for room until then

    @classmethod
    def from_config(cls, store: config.Store, feedback: config.Feedback) -> InteractionStore:
        return cls(parse_url(store.url), UserIds(store.user_id_hash, read_salt(store)),
                   queue_size=store.queue_size, batch_size=store.batch_size, flush_interval=store.flush_interval,
                   retention=store.retention, feedback_retention=feedback.retention, max_rows=store.max_rows,
                   cleanup_interval=store.cleanup_interval, enabled=store.enabled)

    def open(self) -> None:
        """Connect both connections and migrate the schema; ConfigError naming the path when unusable."""
        if not self.enabled:
            return
        if self.location.temporary and self.location.path is None:
            self.location = temporary_location()
            log.warning("store.url is not set: interactions and feedback go to a temporary database (%s) that "
                        "is deleted at exit; set store.url (e.g. sqlite:////var/lib/spanscope/interactions.db) "
                        "to keep them", self.location.path)
        self._writer_db = self._open("writer", migrate_schema=True)
        try:
            self._api = Session(self.location, "api", self._open("api"))
        except ConfigError:
            self._writer_db.close()
            raise

    def _open(self, role: str, migrate_schema: bool = False) -> Database:
        db = connect(self.location, role)
        if migrate_schema:
            try:
                migrate(db)
            except Exception as exc:  # sqlite3.Error / psycopg.Error: the file or server refused the schema
                db.close()
                raise ConfigError(f"store.url: cannot prepare the interaction store in "
                                  f"{self.location.describe()}: {' '.join(str(exc).split())}") from None
        return db

    # --- the ingest side: a recorder sink, never blocking ---------------------------------------

    def observe(self, summary: RequestSummary) -> None:
        try:
            one = row(summary, self.users, decimal_cost=self.postgres)
        except Exception:  # a bug in the row builder must cost this interaction, not the trace's sinks
            self.dropped["write_error"] += 1
            self._error("row", "cannot build an interaction row", exc_info=True)
            return
        # The writer is woken by the first row (to start its flush timer) and by a full batch, not by
        # every row: one transaction per batch or per flush_interval, whichever comes first.
        with self._cond:
            if len(self._queue) >= self.queue_size and not self._room():
                self._queue.popleft()
                self.dropped["queue_full"] += 1
            self._queue.append(one)
            if len(self._queue) == 1 or len(self._queue) == self._full_batch:
                self._cond.notify()

    def hold_when_full(self, timeout: float) -> None:
        """From now on (a shutdown) a full queue makes `observe` wait for the writer to make room, for
        `timeout` seconds in all, instead of dropping the oldest row: ingest has stopped accepting,
        and what it acknowledged is written."""
        self._hold_until = time.monotonic() + timeout

    def _room(self) -> bool:
        """Wait (holding _cond) for the writer to take a batch out of the full queue, when shutting down."""
        while self._hold_until is not None and len(self._queue) >= self.queue_size:
            remaining = self._hold_until - time.monotonic()
            if remaining <= 0 or self._abandoned or self._thread is None or not self._thread.is_alive():
                return False
            self._cond.notify()  # the writer may be waiting for its flush timer: a batch is ready
            self._cond.wait(min(remaining, 0.5))
        return len(self._queue) < self.queue_size

    @property
    def queued(self) -> int:
        return len(self._queue)

    def collector(self, metrics, assembling=lambda: 0):
        """The collector of the writer's totals and backlog (registered on the metrics store);
        `assembling()`: the traces still being assembled, interactions to be."""

        def collect():
            yield metrics.interactions_written, {(): float(self.written)}
            yield metrics.interactions_dropped, {(reason,): float(n) for reason, n in self.dropped.items()}
            yield metrics.interaction_store_errors, {(kind,): float(n) for kind, n in self.errors.items()}
            pending = {"assembling": assembling() if self.enabled else 0, "queued": len(self._queue),
                       "writing": self.writing}
            yield metrics.interactions_pending, {(stage,): float(n) for stage, n in pending.items()}

        return collect

    # --- the writer thread ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the database (when not yet open) and start the writer thread."""
        if not self.enabled:
            return
        if self._writer_db is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="interaction-writer", daemon=True)
        self._thread.start()

    def stop_writer(self, timeout: float = 10.0) -> bool:
        """Write what is queued and stop the writer; False when it could not finish in `timeout`."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandoned = True
            with self._cond:
                self._cond.notify()
            log.warning("interaction writer did not finish within %.0fs: %d interactions not written",
                        timeout, len(self._queue))
            return False
        return True

    def _take_batch(self, deadline: float) -> list[tuple]:
        """A full batch, or what is queued once flush_interval has passed since the last take (or
        `deadline`, the next retention pass, has come)."""
        with self._cond:
            while not self._stopping and not self._abandoned and len(self._queue) < self._full_batch:
                wake = min(deadline, self._last_take + self.flush_interval) if self._queue else deadline
                remaining = wake - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._last_take = time.monotonic()
            batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            self.writing = len(batch)
            self._cond.notify_all()  # an observe waiting for room (shutting down)
            return batch

    def _run(self) -> None:
        next_cleanup = time.monotonic()
        while not self._abandoned:
            if time.monotonic() >= next_cleanup:
                self.enforce_retention()
                next_cleanup = time.monotonic() + self.cleanup_interval
            batch = self._take_batch(next_cleanup)
            if batch:
                written = self._write(batch)
                self.writing = 0
                if not written:
                    self._backoff()
            elif self._stopping:
                return

    def _write(self, rows: list[tuple]) -> bool:
        """Write one batch; on a transient error put it back (oldest first out when full) and return False."""
        try:
            if connection_lost(self._writer_db):
                self._writer_db = connect(self.location, "writer")
            q.insert_interactions(self._writer_db, rows)
        except Exception as exc:
            if isinstance(exc, ConfigError) or is_transient(exc):
                self._error("unavailable", f"interaction store unavailable, will retry: {exc}")
                self._requeue(rows)
                return False
            self._write_one_by_one(rows)
            return True
        self.written += len(rows)
        self._failures = 0
        return True

    def _write_one_by_one(self, rows: list[tuple]) -> None:
        """The database refused a batch: keep every row it accepts, count the others as write errors."""
        for one in rows:
            try:
                q.insert_interactions(self._writer_db, [one])
                self.written += 1
            except Exception as exc:
                self.dropped["write_error"] += 1
                self._error("refused", f"dropped interaction {one[0]}: the database refused it: {exc}")

    def _requeue(self, rows: list[tuple]) -> None:
        """Put a batch back in front of newer rows; what no longer fits is the oldest, and dropped."""
        with self._cond:
            for one in reversed(rows):
                if len(self._queue) < self.queue_size:
                    self._queue.appendleft(one)
                else:
                    self.dropped["queue_full"] += 1

    def _backoff(self) -> None:
        delay = RETRY_DELAY_S[min(self._failures, len(RETRY_DELAY_S) - 1)]
        self._failures += 1
        with self._cond:
            if not self._abandoned:
                self._cond.wait(delay)

    def _error(self, kind: str, message: str, exc_info: bool = False) -> None:
        self.errors[kind] += 1
        self._errors_log.error(message, exc_info=exc_info)

    def enforce_retention(self) -> None:
        """Delete what is older than the retention or beyond max_rows (on the writer's connection)."""
        try:
            if connection_lost(self._writer_db):
                self._writer_db = connect(self.location, "writer")
            deleted = q.enforce_retention(self._writer_db, self.clock(), self.retention,
                                          self.feedback_retention, self.max_rows)
        except Exception as exc:
            self._error("retention", f"retention not enforced this time: {exc}", exc_info=not is_transient(exc))
            return
        for table, n in deleted.items():
            self.deleted[table] += n
        if any(deleted.values()):
            log.info("retention removed %d interactions and %d feedback revisions",
                     deleted["interactions"], deleted["feedback"])

    # --- the API side: blocking calls, run them with `await store.run(store.method, ...)` ---------

    async def run(self, method, *args):
        """Run a blocking API method on the store's API thread (not the event loop, not the default executor)."""
        if not self.enabled:
            raise StoreDisabled("the interaction store is disabled (store.enabled: false): no interactions, "
                                "user statistics or feedback are kept")
        return await asyncio.get_running_loop().run_in_executor(self._api_thread, functools.partial(method, *args))

    def _call(self, fn, *args):
        return self._api.call(fn, *args)

    def save_feedback(self, interaction_id: str, rating: int, comment: str | None) -> q.SavedFeedback:
        try:
            return self._call(q.save_feedback, interaction_id, rating, comment, self.clock())
        except Exception as exc:
            if not is_unique_violation(exc):
                raise
            # Two replicas rated the same interaction at once: the second one becomes the next revision.
            return self._call(q.save_feedback, interaction_id, rating, comment, self.clock())

    def feedback_page(self, max_rating: int, since: float | None, service: str | None, limit: int, offset: int):
        return self._call(q.feedback_page, max_rating, since, service, limit, offset)

    def interactions_page(self, filters: q.InteractionFilters, after, limit: int) -> list[dict]:
        """Recent interactions; `filters.user_id` as sent (hashed here when the store hashes ids)."""
        if filters.user_id is not None:
            filters = dataclasses.replace(filters, user_id=self.users.stored(filters.user_id))
        return self._call(q.interactions_page, filters, after, limit)

    def interaction(self, trace_id: str) -> dict | None:
        return self._call(q.interaction, trace_id)

    def user_stats(self, user_id: str, since: float) -> dict:
        """Statistics of one user (the id as sent: it is hashed here when the store hashes ids)."""
        return self._call(q.user_stats, self.users.stored(user_id), since)

    def costs_by_user(self, since: float, limit: int, offset: int) -> list[dict]:
        return self._call(q.costs_by_user, since, limit, offset)

    # --- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the writer (if still running) and close both connections; a temporary store is deleted."""
        if self._thread is not None and self._thread.is_alive():
            self.stop_writer()
        # The API thread first: a connection closed under a call still running on it can crash SQLite.
        self._api_thread.shutdown(wait=True, cancel_futures=True)
        close_quietly(self._writer_db)
        self._writer_db = None
        if self._api is not None:
            self._api.close()
        if self.location.temporary and self.location.path is not None:
            shutil.rmtree(os.path.dirname(self.location.path), ignore_errors=True)
