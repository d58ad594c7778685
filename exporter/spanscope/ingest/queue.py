"""Ingest: decoded export requests through a bounded queue into interpretation and aggregation.

Receivers `submit` a request's reader (a function decoding its body) from the event loop; one
consumer hands each to a worker thread that decodes it, then interprets and records it under `lock`,
so the loop only moves bytes and keeps accepting (and refusing) requests while a batch is processed.
Readers of the aggregated state (scrapes, the API) take the same lock.
Two limits bound what waits: the number of queued requests (limits.ingest_queue) and the bytes of
request bodies held at once, from the first byte received until the request is processed
(limits.ingest_bytes, through `holding`). Past either, Overloaded: the receiver answers 503 /
UNAVAILABLE with a retry delay, and the SDK's retry delivers the spans later instead of the
exporter queueing without bound.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter as Tally
from collections import deque
from dataclasses import dataclass

from ..config import Limits, SpanName
from ..interpret.contract import DEFAULT_READING, Reading, read_span
from ..interpret.facts import SpanFacts
from ..interpret.summarise import summarise
from ..interpret.traces import Assembler
from ..metrics.catalogue import REJECT_MESSAGES, Metrics
from ..metrics.recorder import Recorder

log = logging.getLogger("spanscope.ingest")

# Traces recorded per hold of the lock (and of the event loop) by housekeeping: about 5 ms at
# 75 us per 8-span trace.
FINISH_CHUNK = 64


class Overloaded(Exception):
    """The ingest queue or its byte budget is full; retry after `retry_after` seconds."""

    def __init__(self, what: str, retry_after: float):
        super().__init__(f"{what}, retry after {retry_after:g}s")
        self.retry_after = retry_after


class Held:
    """The bytes of one export request's body counted against limits.ingest_bytes: released when the
    request has been processed, or when its receiver is done with it without queueing it."""

    __slots__ = ("ingest", "protocol", "n", "queued")

    def __init__(self, ingest: Ingest, protocol: str):
        self.ingest, self.protocol, self.n = ingest, protocol, 0
        self.queued = False  # then the consumer releases it, even if the receiver gave up waiting

    def resize(self, n: int) -> None:
        """Hold `n` bytes in all (more: Overloaded when the budget has no room)."""
        self.ingest._hold(n - self.n, self.n, self.protocol)
        self.n = n

    def release(self) -> None:
        self.ingest._hold(-self.n, self.n, self.protocol)
        self.n = 0

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc) -> None:
        if not self.queued:
            self.release()


@dataclass
class Result:
    accepted: int
    rejected: int
    message: str


class Ingest:
    def __init__(self, metrics: Metrics, recorder: Recorder, facts: SpanFacts, assembler: Assembler, limits: Limits,
                 span_names: list[SpanName] = (), reading: Reading = DEFAULT_READING):
        self.m = metrics
        self.recorder = recorder
        self.facts = facts
        self.assembler = assembler
        # Each finished request is summarised once and handed to these (none writes into the summary).
        self.sinks: list = [recorder.record_request]
        self.span_names = [(s.pattern, s.component) for s in span_names]
        self.reading = reading
        self.reader = reading.reader  # decode hands raw spans of the contract's keys to interpret
        self.retry_after = limits.retry_after
        self.series_ttl = limits.series_ttl
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=limits.ingest_queue)
        self.max_bytes = limits.ingest_bytes
        self.held_bytes = 0  # of every Held; changed on the event loop only
        self.lock = threading.Lock()
        self._logged_errors = 0
        self._taken: deque = deque()  # traces a housekeeping pass took and has not recorded yet

    # --- the synchronous core (also used directly by tests and the benchmark) ------------------

    def process(self, request, protocol: str) -> Result:
        """Interpret and record one export request: [(service, [RawSpan])] as spanscope.wire reads
        it, or a decoded ExportTraceServiceRequest."""
        started = time.perf_counter()
        if not isinstance(request, list):
            request = self.reader.from_message(request)
        now = self.m.store.clock.tick()
        accepted = 0
        rejected: Tally = Tally()
        duplicates = 0
        read, facts, record, span_names = read_span, self.facts, self.recorder.record_span, self.span_names
        dialects, by_key = self.reading.dialects, self.reading.by_key
        seen, add = self.assembler.seen, self.assembler.add
        # Stage by stage over a request's spans (read them all, then assemble, then record) rather
        # than span by span: each stage's code and tables stay in the CPU's caches, and the loop
        # costs a quarter less per span (bench/profile_ingest.py, docs/performance.md).
        for service, spans in request:
            label = self.recorder.label("service", service)  # the record keeps the service as sent
            records = []
            for span in spans:
                try:
                    records.append(read(span, service, span_names, dialects, by_key))
                except ValueError as exc:
                    rejected["invalid_timestamps" if "end before" in str(exc) else "invalid_span"] += 1
            kept = []
            for rec in records:
                if seen(rec):  # a retried export (or a span sent twice): it was counted the first time
                    duplicates += 1
                    continue
                try:
                    facts(rec)
                except Exception:  # a bug must cost one span, never the process or earlier counts
                    rejected["processing_error"] += 1
                    self._log_error()
                    continue
                add(rec, now)
                kept.append(rec)
            for rec in kept:
                try:
                    record(rec, label)
                except Exception:  # the span still counts in its request; its own metrics are lost
                    rejected["processing_error"] += 1
                    self._log_error()
                    continue
                accepted += 1
        self._record_traces(self.assembler.take_finished_early())
        if accepted:
            self.m.spans_received.inc((protocol,), accepted)
        if duplicates:
            self.m.spans_duplicate.inc((protocol,), duplicates)
        for reason, n in rejected.items():
            self.m.spans_rejected.inc((protocol, reason), n)
        self.m.processing.observe((), time.perf_counter() - started)
        n_rejected = sum(rejected.values())
        message = "; ".join(f"{n} spans rejected: {REJECT_MESSAGES[r]}" for r, n in sorted(rejected.items()))
        return Result(accepted + duplicates, n_rejected, message)

    def _log_error(self, what: str = "recording a span") -> None:
        if self._logged_errors < 10:
            self._logged_errors += 1
            log.exception("error while %s (logged at most 10 times)", what)

    def finish_traces(self, now: float | None = None, everything: bool = False) -> int:
        """Finish the traces whose time has come (the caller holds `lock`)."""
        finished = self.assembler.take_finished(time.time() if now is None else now, everything)
        self._record_traces(finished)
        self._publish_assembly()
        return len(finished)

    def _record_traces(self, finished: list) -> None:
        completed, summaries = self.m.traces_completed, []
        for trace, reason in finished:
            completed.inc((reason,))
            try:
                summary = summarise(trace)
            except Exception:
                self._log_error("summarising a trace")
                continue
            if summary is not None:
                summaries.append(summary)
        for sink in self.sinks:  # sink by sink, as process() goes stage by stage
            for summary in summaries:
                try:
                    sink(summary)
                except Exception:  # one sink's bug loses that sink's record of the request alone
                    self._log_error("recording a trace")

    def _publish_assembly(self) -> None:
        self.m.traces_pending.set((), len(self.assembler.pending))
        self.m.trace_spans_pending.set((), self.assembler.pending_spans)

    def assembling(self) -> int:
        """Traces not yet finished, or finished by a housekeeping pass and not yet recorded (the caller
        holds `lock`): requests acknowledged that no sink has seen yet."""
        return len(self.assembler.pending) + len(self._taken)

    def collect_assembly(self):
        """The collector of the spans the assembler left out (registered on the metrics store)."""
        yield self.m.trace_spans_dropped, {(): float(self.assembler.dropped_spans)}

    def expire_series(self, now: float | None = None) -> int:
        """Drop the series idle for limits.series_ttl, and give back the label values idle as long."""
        now = time.time() if now is None else now
        self.recorder.expire(self.series_ttl, now)
        return self.m.store.expire(self.series_ttl, now)

    # --- the asynchronous edge -----------------------------------------------------------------

    def holding(self, protocol: str) -> Held:
        """`with ingest.holding(protocol) as held:` count a body's bytes as they arrive (held.resize)."""
        return Held(self, protocol)

    def _hold(self, delta: int, own: int, protocol: str) -> None:
        # A request alone may pass the budget: any body within the size limits can get through.
        if delta > 0 and self.held_bytes > own and self.held_bytes + delta > self.max_bytes:
            self.m.throttled.inc((protocol, "ingest_bytes"))
            raise Overloaded(f"{self.held_bytes} bytes of export requests held "
                             f"(limits.ingest_bytes {self.max_bytes})", self.retry_after)
        self.held_bytes += delta
        self.m.held_bytes.set((), self.held_bytes)

    async def submit(self, request, protocol: str, held: Held | None = None) -> Result:
        """Queue `request` (a decoded request, or a function returning one) for processing; raises
        Overloaded when the queue is full, and what the decoding raises (otlp.InvalidPayload).
        `held` (its body's bytes) is released once the request has been processed."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((request, protocol, future, held))
        except asyncio.QueueFull:
            self.m.throttled.inc((protocol, "ingest_queue"))
            raise Overloaded(f"ingest queue full ({self.queue.maxsize} requests, limits.ingest_queue)",
                             self.retry_after) from None
        if held is not None:
            held.queued = True
        self.m.queue_depth.set((), self.queue.qsize())
        return await future

    def _process_locked(self, request, protocol: str) -> Result:
        if callable(request):
            request = request()  # decode in the worker, outside the lock
        with self.lock:
            return self.process(request, protocol)

    async def consume(self) -> None:
        while True:
            request, protocol, future, held = await self.queue.get()
            try:
                result = await asyncio.to_thread(self._process_locked, request, protocol)
                if not future.done():
                    future.set_result(result)
            except Exception as exc:  # an invalid body (process() itself guards each span)
                if not future.done():
                    future.set_exception(exc)
            finally:
                if held is not None:
                    held.release()
                self.queue.task_done()
                self.m.queue_depth.set((), self.queue.qsize())

    async def housekeeping(self, interval: float) -> None:
        """Finish due traces often; expire idle series now and then.

        A pass can hold thousands of traces (a second of traffic at a finish_delay of 1 s): they are
        recorded FINISH_CHUNK at a time, letting go of the lock and the event loop in between, so
        batches, scrapes and API calls wait for one chunk, not for the whole pass. Taken traces are
        finished: late spans start a new part, as after any finish."""
        last_expiry = time.time()
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            with self.lock:
                finished = self.assembler.take_finished(now)
                if now - last_expiry >= min(60.0, self.series_ttl / 4 or 1.0):
                    self.expire_series(now)
                    last_expiry = now
            taken = self._taken = deque(finished)  # drain() may record the rest meanwhile
            while taken:
                with self.lock:
                    self._record_traces([taken.popleft() for _ in range(min(FINISH_CHUNK, len(taken)))])
                await asyncio.sleep(0)
            with self.lock:
                self._publish_assembly()

    async def drain(self, timeout: float | None = None) -> None:
        """Process what is queued (for at most `timeout` seconds), then finish every pending trace
        (graceful shutdown). The finishing is one step on the event loop, ending as drain() returns:
        whatever the caller does next, no scrape can come between."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.queue.join(), timeout)
        with self.lock:
            self._record_traces(self._taken)  # what a housekeeping pass took and has not recorded yet
            self._taken.clear()
            self.finish_traces(everything=True)
