"""Ingest: decoded export requests through a bounded queue into interpretation and aggregation.

Receivers decode and `submit` on the event loop; one consumer hands each request to a worker thread
that interprets and records it under `lock`, so the loop keeps accepting (and refusing) requests
while a batch is processed. Readers of the aggregated state (scrapes, the API) take the same lock.
When the queue is full, `submit` raises Overloaded and the receiver answers 503 / UNAVAILABLE with a
retry delay: the SDK's retry then delivers the spans later instead of the exporter queueing without
bound.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass

from .catalogue import REJECT_MESSAGES, Metrics
from .contract import read_span
from .recorder import Recorder
from .traces import Assembler

log = logging.getLogger("spanscope.ingest")


class Overloaded(Exception):
    """The ingest queue is full; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float):
        super().__init__(f"ingest queue full, retry after {retry_after:g}s")
        self.retry_after = retry_after


@dataclass
class Result:
    accepted: int
    rejected: int
    message: str


def service_name(resource) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name" and kv.value.string_value:
            return kv.value.string_value
    return "unknown_service"



class Ingest:
    def __init__(self, metrics: Metrics, recorder: Recorder, assembler: Assembler, span_names,
                 queue_size: int, retry_after: float, series_ttl: float):
        self.m = metrics
        self.recorder = recorder
        self.assembler = assembler
        self.span_names = span_names
        self.retry_after = retry_after
        self.series_ttl = series_ttl
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self.lock = threading.Lock()
        self._logged_errors = 0

    # --- the synchronous core (also used directly by tests and the benchmark) ------------------

    def process(self, request, protocol: str) -> Result:
        started = time.perf_counter()
        now = self.m.store.clock.tick()
        accepted = 0
        rejected: Tally = Tally()
        read, record, add, span_names = read_span, self.recorder.record_span, self.assembler.add, self.span_names
        for rs in request.resource_spans:
            service = self.recorder.label("service", service_name(rs.resource))
            for ss in rs.scope_spans:
                for span in ss.spans:
                    try:
                        rec = read(span, service, span_names)
                    except ValueError as exc:
                        rejected["invalid_timestamps" if "end before" in str(exc) else "invalid_span"] += 1
                        continue
                    try:
                        record(rec)
                    except Exception:  # a bug must cost one span, never the process or earlier counts
                        rejected["processing_error"] += 1
                        self._log_error()
                        continue
                    add(rec, now)
                    accepted += 1
        if accepted:
            self.m.spans_received.inc((protocol,), accepted)
        for reason, n in rejected.items():
            self.m.spans_rejected.inc((protocol, reason), n)
        self.m.processing.observe((), time.perf_counter() - started)
        n_rejected = sum(rejected.values())
        message = "; ".join(f"{n} spans rejected: {REJECT_MESSAGES[r]}" for r, n in sorted(rejected.items()))
        return Result(accepted, n_rejected, message)

    def _log_error(self) -> None:
        if self._logged_errors < 10:
            self._logged_errors += 1
            log.exception("error while recording a span (logged at most 10 times)")

    def finish_traces(self, now: float | None = None, everything: bool = False) -> int:
        now = time.time() if now is None else now
        finished = self.assembler.take_finished(now, everything)
        for trace, reason in finished:
            try:
                self.recorder.record_trace(trace, reason)
            except Exception:
                self._log_error()
        self.m.traces_pending.set((), len(self.assembler.pending))
        self.m.traces_evicted.mirror((), float(self.assembler.evicted))
        return len(finished)

    def expire_series(self, now: float | None = None) -> int:
        return self.m.store.expire(self.series_ttl, now, keep=self.m.never_expire)

    # --- the asynchronous edge -----------------------------------------------------------------

    async def submit(self, request, protocol: str) -> Result:
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((request, protocol, future))
        except asyncio.QueueFull:
            self.m.throttled.inc((protocol,))
            raise Overloaded(self.retry_after) from None
        self.m.queue_depth.set((), self.queue.qsize())
        return await future

    def _process_locked(self, request, protocol: str) -> Result:
        with self.lock:
            return self.process(request, protocol)

    async def consume(self) -> None:
        while True:
            request, protocol, future = await self.queue.get()
            try:
                result = await asyncio.to_thread(self._process_locked, request, protocol)
                if not future.done():
                    future.set_result(result)
            except Exception as exc:  # pragma: no cover - process() already guards each span
                if not future.done():
                    future.set_exception(exc)
            finally:
                self.queue.task_done()
                self.m.queue_depth.set((), self.queue.qsize())

    async def housekeeping(self, interval: float) -> None:
        """Finish due traces often; expire idle series now and then."""
        last_expiry = time.time()
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            with self.lock:
                self.finish_traces(now)
                if now - last_expiry >= min(60.0, self.series_ttl / 4 or 1.0):
                    self.expire_series(now)
                    last_expiry = now

    async def drain(self) -> None:
        """Process what is queued and finish every pending trace (graceful shutdown)."""
        await self.queue.join()
        with self.lock:
            self.finish_traces(everything=True)
