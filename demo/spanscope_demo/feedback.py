"""User feedback: ratings POSTed to the exporter's `/api/v1/feedback` a few seconds after the answer.

People rate after reading, and the exporter can only attach a rating to an interaction whose trace
it has assembled, so each rating waits until a few seconds after the answer was sent (on a
background thread, never in the request path).
"""
from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request

log = logging.getLogger("spanscope_demo.feedback")


class FeedbackClient:
    def __init__(self, api_url: str, token: str | None = None, delay_s: tuple[float, float] = (2.0, 8.0),
                 max_pending: int = 10_000, timeout: float = 2.0, rng=None):
        self.url = api_url.rstrip("/") + "/api/v1/feedback"
        self.token = token
        self.delay_s = delay_s
        self.max_pending = max_pending
        self.timeout = timeout
        self._rng = rng
        self._heap: list = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._failing = False
        self.sent = self.failed = self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="feedback", daemon=True)
        self._thread.start()

    def __call__(self, interaction_id: str, rating: int, comment: str | None = None,
                 answered_ns: int | None = None) -> None:
        """Queue a rating, sent a few seconds after `answered_ns` (wall clock; default: now)."""
        lo, hi = self.delay_s
        delay = lo + (hi - lo) * (self._rng.random() if self._rng else 0.5)
        if answered_ns is not None:
            delay += max(0.0, (answered_ns - time.time_ns()) / 1e9)
        body = {"interaction_id": interaction_id, "rating": rating}
        if comment:
            body["comment"] = comment
        with self._cond:
            if len(self._heap) >= self.max_pending:
                self.dropped += 1
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), body))
            self._cond.notify()

    def _post(self, body: dict) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout):
                pass
        except urllib.error.HTTPError as exc:
            # A 4xx is the exporter judging this rating (e.g. unknown or already-rated interaction).
            self.failed += 1
            log.debug("feedback rejected: HTTP %s", exc.code)
            return
        except (urllib.error.URLError, OSError) as exc:
            self.failed += 1
            if not self._failing:
                self._failing = True
                log.warning("cannot post feedback to %s (%s); will keep trying", self.url, exc)
            return
        self.sent += 1
        if self._failing:
            self._failing = False
            log.info("posting feedback to %s again", self.url)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._closed:
                    return
                _, _, body = heapq.heappop(self._heap)
            self._post(body)

    def close(self) -> None:
        """Stop; ratings still waiting are dropped (the demo is shutting down)."""
        with self._cond:
            self._closed = True
            self.dropped += len(self._heap)
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=self.timeout + 1)
