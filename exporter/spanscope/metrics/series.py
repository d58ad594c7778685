"""The series store: counters, gauges and histograms keyed by label-value tuples.

Built for the ingest hot path: one dict lookup and a few list writes per sample, no locks (all
writes happen on the event loop thread), no per-call label validation. Cardinality is bounded here:
each family holds at most `limit` series and sends further label sets to one overflow series; series
idle longer than the TTL are dropped by `expire`, except in the families declared `never_expire`.

Values known only at scrape time (feature gauges, the store's own bookkeeping, the interaction
writer's totals) come from collectors, as in prometheus_client: callables registered on the Store
and called by the exposition (`Store.collect`), each returning the exact series of its families.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from decimal import Decimal

# The overflow series of a family carries only this label (the OpenTelemetry SDK's convention).
OVERFLOW = ("__overflow__",)
OVERFLOW_LABELS = 'otel_metric_overflow="true"'


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(names: tuple, values: tuple) -> str:
    """`a="x",b="y"` for the exposition (without braces), computed once per series."""
    if values is OVERFLOW or values == OVERFLOW:
        return OVERFLOW_LABELS
    return ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values))


class Clock:
    """The time samples are stamped with; set once per export request, not per sample."""

    __slots__ = ("now",)

    def __init__(self):
        self.now = time.time()

    def tick(self) -> float:
        self.now = time.time()
        return self.now


class Family:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: tuple, clock: Clock, limit: int,
                 never_expire: bool = False):
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.clock = clock
        self.limit = limit
        self.never_expire = never_expire  # its series stay however long they are idle
        self.series: dict[tuple, list] = {}
        self.labels: dict[tuple, str] = {}
        self.overflowed = 0
        self.expired = 0

    def _slot(self, key: tuple) -> tuple:
        """The key to store under: `key` itself, or OVERFLOW when the family is full."""
        if len(self.series) - (OVERFLOW in self.series) >= self.limit:
            self.overflowed += 1
            key = OVERFLOW
            if key in self.series:
                return key
        self.labels[key] = label_text(self.labelnames, key)
        return key

    def load(self, values: dict) -> None:
        """Make the series exactly `values` (label values -> value): what a collector returns."""
        for key in [k for k in self.series if k not in values]:
            del self.series[key]
            self.labels.pop(key, None)
        now = self.clock.now
        for key, value in values.items():
            s = self.series.get(key)
            if s is None:
                key = self._slot(key)
                s = self.series.get(key)
                if s is None:
                    s = self.series[key] = [value, now]
            s[0] = value
            s[1] = now

    def expire(self, cutoff: float) -> int:
        stale = [k for k, s in self.series.items() if s[-1] < cutoff]
        for k in stale:
            del self.series[k]
            self.labels.pop(k, None)
        self.expired += len(stale)
        return len(stale)


class Counter(Family):
    """Series value: [total, last_update]. `exact` counters accumulate Decimals."""

    kind = "counter"

    def __init__(self, *args, exact: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.zero = Decimal(0) if exact else 0.0

    def inc(self, key: tuple, amount=1.0) -> None:
        s = self.series.get(key)
        if s is None:
            key = self._slot(key)
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = [self.zero, 0.0]
        s[0] += amount
        s[1] = self.clock.now

    def touch(self, key: tuple) -> None:
        """Create the series at zero (so rate() sees the first increment)."""
        if key not in self.series:
            self.inc(key, self.zero)

    def value(self, key: tuple):
        s = self.series.get(key)
        return s[0] if s else self.zero


class Gauge(Family):
    """Series value: [value, last_update]."""

    kind = "gauge"

    def set(self, key: tuple, value: float) -> None:
        s = self.series.get(key)
        if s is None:
            key = self._slot(key)
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = [0.0, 0.0]
        s[0] = value
        s[1] = self.clock.now


class Histogram(Family):
    """Series value: [bucket counts (non-cumulative, last is +Inf), sum, count, exemplars, last_update].

    Exemplars: per bucket the latest (trace_id, value, timestamp), or None.
    """

    kind = "histogram"

    def __init__(self, *args, buckets, **kwargs):
        super().__init__(*args, **kwargs)
        self.buckets = tuple(float(b) for b in buckets)

    def observe(self, key: tuple, value: float, trace_id: str | None = None) -> None:
        s = self.series.get(key)
        if s is None:
            key = self._slot(key)
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = [[0] * (len(self.buckets) + 1), 0.0, 0, None, 0.0]
        i = bisect_left(self.buckets, value)
        s[0][i] += 1
        s[1] += value
        s[2] += 1
        now = self.clock.now
        if trace_id:
            ex = s[3]
            if ex is None:
                ex = s[3] = [None] * (len(self.buckets) + 1)
            ex[i] = (trace_id, value, now)
        s[4] = now

    def touch(self, key: tuple) -> None:
        if key not in self.series:
            key = self._slot(key)
            if key not in self.series:
                self.series[key] = [[0] * (len(self.buckets) + 1), 0.0, 0, None, self.clock.now]


# A collector returns (family, {label values: value}) pairs: the exact series of those families now.
Collector = Callable[[], Iterable[tuple[Family, dict]]]


class Store:
    """All families, in registration order, sharing one clock and one series limit, and the
    collectors that fill families at scrape time."""

    def __init__(self, series_limit: int, clock: Clock | None = None):
        self.clock = clock or Clock()
        self.series_limit = series_limit
        self.families: dict[str, Family] = {}
        self.collectors: list[Collector] = []
        self.late_collectors: list[Collector] = []

    def register(self, collector: Collector, last: bool = False) -> None:
        """Call `collector` at each collection; `last`: after the others (one that describes the
        store itself, so it sees their series)."""
        (self.late_collectors if last else self.collectors).append(collector)

    def collect(self) -> None:
        """Bring every collected family up to date (the exposition calls this before rendering)."""
        for collector in self.collectors + self.late_collectors:
            for family, values in collector():
                family.load(values)

    def _add(self, family: Family) -> Family:
        if family.name in self.families:
            raise ValueError(f"metric family {family.name} registered twice")
        self.families[family.name] = family
        return family

    def counter(self, name, help, labelnames=(), exact=False, limit=None, never_expire=False) -> Counter:
        return self._add(Counter(name, help, labelnames, self.clock, limit or self.series_limit, never_expire,
                                 exact=exact))

    def gauge(self, name, help, labelnames=(), limit=None, never_expire=False) -> Gauge:
        return self._add(Gauge(name, help, labelnames, self.clock, limit or self.series_limit, never_expire))

    def histogram(self, name, help, labelnames=(), buckets=(), limit=None, never_expire=False) -> Histogram:
        return self._add(Histogram(name, help, labelnames, self.clock, limit or self.series_limit, never_expire,
                                   buckets=buckets))

    def expire(self, ttl: float, now: float | None = None) -> int:
        cutoff = (now if now is not None else time.time()) - ttl
        return sum(f.expire(cutoff) for f in self.families.values() if not f.never_expire)
