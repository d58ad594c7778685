"""When simulated spans are handed to the SDK.

Spans carry simulated start and end times. `EndNow` ends each span at once (tests, replay);
`EndOnTime` holds it until the wall clock reaches its simulated end, so spans leave the service in
the order a real one would send them: children before parents, requests in the order they finish.
Nothing sleeps per request either way; the runner wakes up for the next due span or arrival.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time

from opentelemetry.trace import Span


class EndNow:
    def end(self, span: Span, end_ns: int) -> None:
        span.end(end_time=end_ns)

    def next_due_ns(self) -> int | None:
        return None

    def end_due(self, now_ns: int | None = None) -> int:
        return 0

    def end_all(self) -> int:
        return 0


class EndOnTime:
    def __init__(self):
        self._heap: list[tuple[int, int, Span]] = []
        self._seq = itertools.count()  # equal end times keep call order: a child before its parent
        self._lock = threading.Lock()  # retrieval spans are ended from worker threads

    def __len__(self) -> int:
        return len(self._heap)

    def end(self, span: Span, end_ns: int) -> None:
        if end_ns <= time.time_ns():
            span.end(end_time=end_ns)
            return
        with self._lock:
            heapq.heappush(self._heap, (end_ns, next(self._seq), span))

    def next_due_ns(self) -> int | None:
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def end_due(self, now_ns: int | None = None) -> int:
        now_ns = time.time_ns() if now_ns is None else now_ns
        due = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now_ns:
                due.append(heapq.heappop(self._heap))
        for end_ns, _, span in due:
            span.end(end_time=end_ns)
        return len(due)

    def end_all(self) -> int:
        """At shutdown: end what is still open, with its simulated end time."""
        return self.end_due(now_ns=float("inf"))
