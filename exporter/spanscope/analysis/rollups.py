"""Per-minute rollups of the key aggregates for the last 24 hours, in bounded memory.

Each finished request is folded into the bucket of the minute it ended (its root span's end time,
or the arrival time when that is more than 24 h old or in the future), keyed by (service, mode).
Window queries add up minute buckets, so the metrics API needs no external store. Memory: one
`Minute` per (minute, service, mode) that saw traffic — about 1.5 KB with the latency histogram,
a few components, tokens and one cache layer, so 24 h of one service × mode is about 2 MB; keys per
minute are capped (`max_keys`), and so are the components, models, cache layers, features and
variants within one (`PER_MINUTE`); further ones are folded into `__other__`.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict
from decimal import Decimal

from ..interpret.summary import RequestSummary

DAY_MINUTES = 1440
OTHER = "__other__"
PER_MINUTE = 50  # distinct components, models, caches, features, variants kept per Minute


def slot(d: dict, key, other=OTHER):
    """`key`, or `other` once `d` holds PER_MINUTE keys: 24 h × keys × components stays bounded."""
    return key if key in d or len(d) < PER_MINUTE else other


class Stat:
    """count, sum and sum of squares: enough for means and Welch's test."""

    __slots__ = ("n", "total", "squares")

    def __init__(self):
        self.n, self.total, self.squares = 0, 0.0, 0.0

    def add(self, x: float, n: int = 1) -> None:
        self.n += n
        self.total += x
        self.squares += x * x

    def merge(self, other: "Stat") -> None:
        self.n += other.n
        self.total += other.total
        self.squares += other.squares

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


class Minute:
    """The aggregates of one (minute, service, mode)."""

    __slots__ = ("requests", "errors", "latency", "buckets", "cost", "tokens", "models", "components",
                 "critical", "cache", "expired_misses", "cache_latency", "quality", "confidence", "citations", "degraded",
                 "features", "variants", "ratings")

    def __init__(self, n_buckets: int):
        self.requests = 0
        self.errors = 0
        self.latency = Stat()
        self.buckets = [0] * (n_buckets + 1)
        self.cost = Decimal(0)
        self.tokens: dict[str, int] = defaultdict(int)
        self.models: dict[str, list] = {}               # model -> [requests, cost, quality Stat]
        self.components: dict[str, list] = {}           # component -> [calls, errors, buckets, Stat]
        self.critical: dict[str, float] = defaultdict(float)
        self.cache: dict[tuple, int] = defaultdict(int)  # (layer, result) -> lookups
        self.expired_misses: dict[str, int] = defaultdict(int)
        self.cache_latency: dict[str, Stat] = {}         # request cache status -> latency
        self.quality, self.confidence, self.citations = Stat(), Stat(), Stat()
        self.degraded = 0
        self.features: dict[str, float] = defaultdict(float)  # feature -> critical-path seconds
        self.variants: dict[tuple, Stat] = {}                 # (flag, variant) -> latency
        self.ratings = Stat()


class Rollups:
    def __init__(self, duration_buckets, minutes: int = DAY_MINUTES, max_keys: int = 200, clock=time.time):
        self.bounds = tuple(duration_buckets)
        self.minutes = minutes
        self.max_keys = max_keys
        self.clock = clock
        self.data: dict[int, dict[tuple, Minute]] = {}

    def _minute_of(self, end_ns: int | None, now: float) -> int:
        t = end_ns / 1e9 if end_ns else now
        if t > now + 60 or t < now - self.minutes * 60:
            t = now
        return int(t // 60)

    def _bucket(self, minute: int, service: str, mode: str) -> Minute:
        keys = self.data.get(minute)
        if keys is None:
            keys = self.data[minute] = {}
            self._trim(minute)
        key = (service, mode)
        m = keys.get(key)
        if m is None:
            if len(keys) >= self.max_keys:
                key = (OTHER, OTHER)
                m = keys.get(key)
            if m is None:
                m = keys[key] = Minute(len(self.bounds))
        return m

    def _trim(self, newest: int) -> None:
        cutoff = newest - self.minutes
        for minute in [k for k in self.data if k <= cutoff]:
            del self.data[minute]

    def _index(self, seconds: float) -> int:
        return bisect_left(self.bounds, seconds)  # the first bound >= seconds, as Prometheus' le

    # --- sinks ---------------------------------------------------------------------------------

    def observe(self, r: RequestSummary, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        m = self._bucket(self._minute_of(r.start_ns + int(r.duration * 1e9), now), r.service, r.mode)
        m.requests += 1
        m.errors += r.error
        m.latency.add(r.duration)
        m.buckets[self._index(r.duration)] += 1
        m.cost += r.cost
        for token_type, n in r.tokens.items():
            m.tokens[token_type] += n
        model = slot(m.models, r.model or "none")
        entry = m.models.get(model)
        if entry is None:
            entry = m.models[model] = [0, Decimal(0), Stat()]
        entry[0] += 1
        entry[1] += r.cost
        if r.quality is not None:
            entry[2].add(r.quality)
            m.quality.add(r.quality)
        if r.confidence is not None:
            m.confidence.add(r.confidence)
        if r.citations is not None:
            m.citations.add(r.citations)
        m.degraded += r.degraded
        for comp, (calls, errors, durations) in r.components.items():
            comp = slot(m.components, comp)
            c = m.components.get(comp)
            if c is None:
                c = m.components[comp] = [0, 0, [0] * (len(self.bounds) + 1), Stat()]
            c[0] += calls
            c[1] += errors
            for d in durations:
                c[2][self._index(d)] += 1
                c[3].add(d)
        for comp, s in r.critical.items():
            m.critical[slot(m.critical, comp)] += s
        for layer, result, _, reason in r.cache_lookups:
            m.cache[slot(m.cache, (layer, result), (OTHER, result))] += 1
            if reason == "expired":
                m.expired_misses[slot(m.expired_misses, layer)] += 1
        stat = m.cache_latency.get(r.cache_status)
        if stat is None:
            stat = m.cache_latency[r.cache_status] = Stat()
        stat.add(r.duration)
        for feature, s in r.by_feature.items():
            m.features[slot(m.features, feature)] += s
        for flag_variant in r.variants.items():
            flag_variant = slot(m.variants, flag_variant, (OTHER, OTHER))
            v = m.variants.get(flag_variant)
            if v is None:
                v = m.variants[flag_variant] = Stat()
            v.add(r.duration)

    def observe_rating(self, service: str, mode: str, rating: int, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._bucket(int(now // 60), service, mode).ratings.add(rating)

    # --- reading -------------------------------------------------------------------------------

    def window(self, minutes: int, end_minute: int | None = None, service: str | None = None,
               mode: str | None = None):
        """(minute, Minute) pairs of the `minutes` minutes ending with `end_minute` (inclusive)."""
        end = int(self.clock() // 60) if end_minute is None else end_minute
        for minute in range(end - minutes + 1, end + 1):
            for (svc, md), m in self.data.get(minute, {}).items():
                if (service is None or svc == service) and (mode is None or md == mode):
                    yield minute, (svc, md), m

    def now_minute(self) -> int:
        return int(self.clock() // 60)
