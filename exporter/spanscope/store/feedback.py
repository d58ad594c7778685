"""User feedback: the rating model, the trace context they are labelled with, durable storage, metrics."""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Annotated

from pydantic import AfterValidator, Field

from ..config import Strict, expect
from ..interpret.summary import RequestSummary
from .db import StoreDisabled

MAX_COMMENT = 2000
UNKNOWN = ("unknown", "unknown", "unknown")


class FeedbackError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _meaningful(trace_id: str) -> str:
    if set(trace_id) == {"0"}:
        raise ValueError("the all-zero trace id is invalid")
    return trace_id.lower()


def _no_nul(text: str | None) -> str | None:
    if text is not None and "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


class Rating(Strict):
    """A user's rating of one interaction (the body of POST /api/v1/feedback)."""

    interaction_id: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$"), AfterValidator(_meaningful),
                              expect("the trace id as 32 hex characters")]
    rating: Annotated[int, Field(ge=1, le=5), expect("an integer from 1 to 5")]
    comment: Annotated[str | None, Field(max_length=MAX_COMMENT),
                       expect(f"a string of at most {MAX_COMMENT} characters"), AfterValidator(_no_nul)] = None


class RecentRequests:
    """Trace id -> (service, mode, model) of recently finished requests, bounded (a sink). It covers
    the moments before an interaction reaches the store, which answers for older ones."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self.by_trace: OrderedDict[str, tuple] = OrderedDict()

    def observe(self, r: RequestSummary) -> None:
        self.by_trace[r.trace_id] = (r.service, r.mode, r.model or "unknown")
        if len(self.by_trace) > self.capacity:
            self.by_trace.popitem(last=False)

    def labels(self, trace_id: str) -> tuple:
        return self.by_trace.get(trace_id, UNKNOWN)


class Feedback:
    """Accepts ratings: stores them in the interaction store (committed before the answer) and counts
    them as metrics. A resubmission revises the stored rating and keeps the earlier one as history;
    resending the current rating and comment is answered like a revision but changes nothing."""

    def __init__(self, metrics, recent: RecentRequests, store, lock=None, on_rating=None, label=None):
        self.metrics = metrics
        self.label = label or (lambda name, value: value)  # (label, value) -> the value a metric may carry
        self.recent = recent
        self.store = store  # InteractionStore
        self.lock = lock if lock is not None else contextlib.nullcontext()  # guards metrics and `recent`
        self.on_rating = on_rating  # (service, mode, rating): the rollups behind /api/metrics/quality

    async def submit(self, rating: Rating) -> tuple[int, dict]:
        """(HTTP status, answer): 201 for a first rating, 200 for a revision or an identical resend."""
        try:
            saved = await self.store.run(self.store.save_feedback, rating.interaction_id, rating.rating,
                                         rating.comment)
        except StoreDisabled as exc:
            raise FeedbackError(404, str(exc)) from None
        except Exception as exc:  # the database refused or is unreachable: nothing was stored
            raise FeedbackError(503, f"could not store the rating, retry later: {' '.join(str(exc).split())}") \
                from None
        with self.lock:
            labels = self.recent.labels(rating.interaction_id)
            if labels == UNKNOWN and saved.labels is not None:
                labels = saved.labels
            if saved.outcome != "duplicate":
                if self.on_rating is not None:
                    self.on_rating(labels[0], labels[1], rating.rating)
                label = self.label
                key = (label("service", labels[0]), label("mode", labels[1]), label("model", labels[2]))
                self.metrics.feedback_rating.observe(key, rating.rating, rating.interaction_id)
                if rating.rating <= 2:
                    self.metrics.feedback_low.inc(key)
                else:
                    self.metrics.feedback_low.touch(key)
        doc = {"interaction_id": rating.interaction_id, "rating": rating.rating,
               "service": labels[0], "mode": labels[1], "model": labels[2]}
        if saved.outcome == "created":
            return 201, doc
        return 200, {**doc, "updated": saved.outcome == "updated", "revision": saved.revision}
