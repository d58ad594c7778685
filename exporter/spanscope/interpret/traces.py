"""Trace assembly and the per-request latency breakdown (self time, critical path).

Spans are buffered by trace id. A trace is finished `finish_delay` seconds after its local root
arrives (children usually arrive first: they end first), or flushed `timeout` seconds after its
first span when no root comes. The buffer is bounded twice, and at either bound the oldest traces
are finished early rather than dropped: beyond `max_pending` traces (reason `traces_limit`), and
while more than `max_pending_spans` spans are buffered (reason `spans_limit`), which bounds memory
whatever the traces' sizes (a flood of rootless spans would otherwise be held for `timeout`). The
span ids of pending traces and of the last REMEMBERED finished ones (at most REMEMBERED_BYTES of
ids) are kept, so a span received twice (an export retried after its answer was lost) is recognised
and counted once. Times are integer nanoseconds, so the critical-path pieces of a request add up to
its duration exactly.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from operator import attrgetter
from typing import Protocol

from ..config import Traces


class SpanRecord(Protocol):
    """What assembly and the breakdown read of a span (interpret.contract.SpanRecord has it)."""

    trace_id: str
    span_id: bytes
    parent_id: bytes
    is_root: bool
    start: int
    end: int
    component: str
    feature: str | None

# Finished traces whose span ids are kept for duplicate detection (one 8-bytes-per-id blob each):
# the newest REMEMBERED traces, fewer when their ids pass REMEMBERED_BYTES (huge traces).
REMEMBERED = 10_000
REMEMBERED_BYTES = 4 * 1024 * 1024


def _has_id(blob: bytes, span_id: bytes) -> bool:
    i = blob.find(span_id)
    while i != -1:
        if i % 8 == 0:
            return True
        i = blob.find(span_id, i + 1)
    return False


class Trace:
    __slots__ = ("trace_id", "spans", "span_ids", "root", "first_seen", "dropped")

    def __init__(self, trace_id: str, now: float):
        self.trace_id = trace_id
        self.spans: list[SpanRecord] = []
        self.span_ids: set[bytes] = set()
        self.root: SpanRecord | None = None
        self.first_seen = now
        self.dropped = 0


class Assembler:
    """Buffers spans per trace and hands out finished traces."""

    def __init__(self, config: Traces):
        self.finish_delay = config.finish_delay
        self.timeout = config.timeout
        self.max_pending = config.max_pending
        self.max_spans = config.max_spans
        self.max_pending_spans = config.max_pending_spans
        self.pending: OrderedDict[str, Trace] = OrderedDict()  # insertion order = first seen
        self.pending_spans = 0
        self.early: list[tuple[Trace, str]] = []  # finished at a bound, for take_finished_early
        self.due: dict[str, float] = {}                        # trace id -> finish time (root seen)
        self.finished: OrderedDict[str, bytes] = OrderedDict()  # trace id -> span ids, newest last
        self.finished_bytes = 0
        self.dropped_spans = 0

    def seen(self, rec: SpanRecord) -> bool:
        """Whether a span with this trace and span id was added before (pending or finished)."""
        trace = self.pending.get(rec.trace_id)
        if trace is not None and rec.span_id in trace.span_ids:
            return True
        ids = self.finished.get(rec.trace_id)
        return ids is not None and _has_id(ids, rec.span_id)

    def add(self, rec: SpanRecord, now: float) -> None:
        trace = self.pending.get(rec.trace_id)
        if trace is None:
            if len(self.pending) >= self.max_pending:
                self._finish_early(self._pop_oldest(), "traces_limit")
            trace = self.pending[rec.trace_id] = Trace(rec.trace_id, now)
        # Past max_spans a span is left out, and its id not kept: memory stays bounded. The local root
        # still gets in (one more span at most), so the request is finished and counted.
        if len(trace.spans) >= self.max_spans and not (rec.is_root and trace.root is None):
            trace.dropped += 1
            self.dropped_spans += 1
            return
        rec.trace_id = trace.trace_id  # one string per trace, not one per pending span
        trace.span_ids.add(rec.span_id)
        trace.spans.append(rec)
        self.pending_spans += 1
        if rec.is_root and trace.root is None:
            trace.root = rec
            self.due[rec.trace_id] = now + self.finish_delay

    def take_finished(self, now: float, everything: bool = False) -> list[tuple[Trace, str]]:
        """Traces whose time has come, with the reason (`root` or `timeout`)."""
        out = []
        for trace_id in [t for t, at in self.due.items() if everything or at <= now]:
            out.append((self._pop(trace_id), "root"))
        cutoff = now - self.timeout
        while self.pending:
            trace = next(iter(self.pending.values()))
            if not everything and trace.first_seen > cutoff:
                break
            out.append((self._pop_oldest(), "root" if trace.root else "timeout"))
        for trace, _ in out:
            self._remember(trace)
        return out

    def take_finished_early(self) -> list[tuple[Trace, str]]:
        """The traces finished at a bound since the last call: those pushed out by new traces beyond
        max_pending, then the oldest until at most max_pending_spans spans are buffered."""
        while self.pending_spans > self.max_pending_spans:
            self._finish_early(self._pop_oldest(), "spans_limit")
        out, self.early = self.early, []
        return out

    def _finish_early(self, trace: Trace, reason: str) -> None:
        self._remember(trace)
        self.early.append((trace, reason))

    def _pop_oldest(self) -> Trace:
        return self._pop(next(iter(self.pending)))

    def _pop(self, trace_id: str) -> Trace:
        """Take a trace out of the buffer (its span ids are remembered by the caller)."""
        trace = self.pending.pop(trace_id)
        self.due.pop(trace_id, None)
        self.pending_spans -= len(trace.spans)
        return trace

    def _remember(self, trace: Trace) -> None:
        ids = b"".join(trace.span_ids)
        earlier = self.finished.pop(trace.trace_id, None)  # late spans made a second part: keep both
        if earlier:
            self.finished_bytes -= len(earlier)
            ids = earlier + ids
        self.finished[trace.trace_id] = ids
        self.finished_bytes += len(ids)
        while len(self.finished) > REMEMBERED or self.finished_bytes > REMEMBERED_BYTES:
            self.finished_bytes -= len(self.finished.popitem(last=False)[1])


# --- breakdown ---------------------------------------------------------------------------------

_END = attrgetter("end")

def _children_index(spans: list[SpanRecord], root: SpanRecord) -> dict[bytes, list[SpanRecord]]:
    """Parent span id -> children. The root owns its id, then the first of duplicate span ids wins;
    orphans (their parent never arrived) hang from the root so their time is not lost. Every span
    but the root has one parent and none has the root as a child, so what hangs from the root is a
    tree: no cycle of parent ids can be reached from it."""
    by_id = {s.span_id: s for s in spans}  # without duplicate ids (nearly always): the same, one step
    if len(by_id) != len(spans) or by_id.get(root.span_id) is not root:
        by_id = {root.span_id: root}
        for s in spans:
            by_id.setdefault(s.span_id, s)
    root_id = root.span_id
    children: dict[bytes, list[SpanRecord]] = {}
    get = children.get
    for s in by_id.values():
        if s is root:
            continue
        parent = s.parent_id
        if parent not in by_id or parent == s.span_id:
            parent = root_id
        kids = get(parent)
        if kids is None:
            children[parent] = [s]
        else:
            kids.append(s)
    return children


def _covered(span: SpanRecord, kids: list[SpanRecord]) -> int:
    """Length of the union of the children's intervals clipped to the span's."""
    lo, hi = span.start, span.end
    intervals = []
    for k in kids:
        a = k.start if k.start > lo else lo
        b = k.end if k.end < hi else hi
        if b > a:
            intervals.append((a, b))
    intervals.sort()
    total, cur_start, cur_end = 0, 0, -1
    for a, b in intervals:
        if a > cur_end:
            if cur_end >= 0:
                total += cur_end - cur_start
            cur_start, cur_end = a, b
        elif b > cur_end:
            cur_end = b
    if cur_end >= 0:
        total += cur_end - cur_start
    return total


def breakdown(spans: list[SpanRecord], root: SpanRecord):
    """Per component: (critical-path ns, self ns), and per feature critical-path ns.

    Critical path as Jaeger draws it: from the root's end walk backwards; among the current span's
    children (clipped to its window) that end at or before t, take the one ending last; the gap
    after it belongs to the current span; descend into the child; continue before its start.
    Self time: duration minus the union of the children's intervals clipped to the span.
    """
    children = _children_index(spans, root)
    critical: dict[str, int] = defaultdict(int)
    self_time: dict[str, int] = defaultdict(int)
    by_feature: dict[str, int] = defaultdict(int)
    # One walk over the tree (one parent each: every span is reached once). A span on the critical
    # path comes with its window (lo, hi), and its children are taken latest end first: t only
    # moves back, so one pass over them finds each next child the backward walk takes. The pieces
    # are sums per component, so the order spans are walked in does not matter. (Inlined credits:
    # this runs once per span.)
    get = children.get
    stack: list = [(root, root.start, root.end)]
    pop, push = stack.pop, stack.append
    while stack:
        span, lo, hi = pop()
        kids = get(span.span_id)
        if kids is None:  # a leaf: its time is its own, and on the path its whole window
            own = span.end - span.start
            self_time[span.component] += own if own > 0 else 0  # the key even at 0: its series exists
            if lo is not None and hi > lo:
                critical[span.component] += hi - lo
                if span.feature:
                    by_feature[span.feature] += hi - lo
            continue
        own = span.end - span.start - _covered(span, kids)
        self_time[span.component] += own if own > 0 else 0
        if lo is None:  # not on the critical path
            for k in kids:
                push((k, None, None))
            continue
        component, feature = span.component, span.feature
        t = hi
        on_path = set()
        # latest (clipped) end first; ties keep their order (a stable sort, reversed or not)
        ordered = (sorted(kids, key=_END, reverse=True) if max(map(_END, kids)) <= hi
                   else sorted(kids, key=lambda k: k.end if k.end < hi else hi, reverse=True))
        for k in ordered:
            k_end = k.end if k.end < hi else hi
            k_start = k.start if k.start > lo else lo
            if k_start < k_end <= t:
                if t > k_end:
                    critical[component] += t - k_end
                    if feature:
                        by_feature[feature] += t - k_end
                push((k, k_start, k_end))
                on_path.add(k.span_id)
                t = k_start
        for k in kids:
            if k.span_id not in on_path:
                push((k, None, None))
        if t > lo:
            critical[component] += t - lo
            if feature:
                by_feature[feature] += t - lo
    return critical, self_time, by_feature

