"""User feedback: validation of ratings, the trace context they are labelled with, durable storage, metrics."""
from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from dataclasses import dataclass

from ..interpret.summary import RequestSummary
from .db import StoreDisabled

TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
MAX_COMMENT = 2000
UNKNOWN = ("unknown", "unknown", "unknown")


class FeedbackError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Rating:
    interaction_id: str
    rating: int
    comment: str | None


def validate(doc) -> Rating:
    """A Rating from a JSON body, or FeedbackError(400) naming the bad field."""
    if not isinstance(doc, dict):
        raise FeedbackError(400, "body: expected a JSON object with interaction_id and rating")
    unknown = sorted(set(doc) - {"interaction_id", "rating", "comment"})
    if unknown:
        raise FeedbackError(400, f"{unknown[0]}: unknown field (expected interaction_id, rating, comment)")
    iid = doc.get("interaction_id")
    if not isinstance(iid, str) or not TRACE_ID.fullmatch(iid) or set(iid) == {"0"}:
        raise FeedbackError(400, "interaction_id: expected the trace id as 32 hex characters")
    rating = doc.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise FeedbackError(400, f"rating: expected an integer from 1 to 5, got {rating!r}")
    comment = doc.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise FeedbackError(400, "comment: expected a string")
        if len(comment) > MAX_COMMENT:
            raise FeedbackError(400, f"comment: at most {MAX_COMMENT} characters, got {len(comment)}")
        if "\x00" in comment:
            raise FeedbackError(400, "comment: must not contain NUL characters")
    return Rating(iid.lower(), rating, comment)


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
                key = (labels[0], self.label("mode", labels[1]), self.label("model", labels[2]))
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
