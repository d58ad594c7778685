"""One mergeable statistic of the requests that finished in one minute: what the rollups keep, and
what the metrics API, the insights, feature impact and experiments read.

Each finished request is folded in once (`observe`), into the minute it ended and its (service,
mode) (analysis.rollups); any window is its minutes merged (`merge`). Within one MinuteStats the
distinct components, models, cache layers, features and variants are capped at PER_MINUTE, further
ones folded into `__other__`, so 24 h × keys × components stays bounded. Merging does not cap: a
window holds at most what its minutes hold.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from decimal import Decimal

from ..interpret.attributes import NOT_RANDOM
from ..interpret.summary import RequestSummary
from .stats import Moments

OTHER = "__other__"
PER_MINUTE = 50  # distinct components, models, caches, features, variants kept per MinuteStats
ZERO = Decimal(0)


def slot(d: dict, key, other=OTHER):
    """`key`, or `other` once `d` holds PER_MINUTE keys."""
    return key if key in d or len(d) < PER_MINUTE else other


def _add_counts(into: dict, counts: dict) -> None:
    for k, v in counts.items():
        into[k] += v


def _add_lists(a: list, b: list) -> list:
    return [x + y for x, y in zip(a, b, strict=True)]


class Variant:
    """The requests of one flag variant: latency (moments and histogram), errors and cost (what an
    experiment compares; the histogram gives its p95 over any window)."""

    __slots__ = ("latency", "errors", "cost", "buckets")

    def __init__(self, n_buckets: int):
        self.latency, self.errors, self.cost = Moments(), 0, ZERO
        self.buckets = [0] * (n_buckets + 1)  # as MinuteStats.buckets

    def merge(self, other: Variant) -> None:
        self.latency.merge(other.latency)
        self.errors += other.errors
        self.cost += other.cost
        self.buckets = _add_lists(self.buckets, other.buckets)


class Model:
    """One model: the requests it answered (and their quality), and the cost of every call to it."""

    __slots__ = ("requests", "cost", "quality")

    def __init__(self):
        self.requests, self.cost, self.quality = 0, ZERO, Moments()

    def merge(self, other: Model) -> None:
        self.requests += other.requests
        self.cost += other.cost
        self.quality.merge(other.quality)


class Component:
    """The spans of one component: calls, errors, and their durations as histogram and moments."""

    __slots__ = ("calls", "errors", "buckets", "duration")

    def __init__(self, n_buckets: int):
        self.calls, self.errors, self.buckets, self.duration = 0, 0, [0] * (n_buckets + 1), Moments()

    def merge(self, other: Component) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.buckets = _add_lists(self.buckets, other.buckets)
        self.duration.merge(other.duration)


class MinuteStats:
    """The aggregates of the requests of one minute (or, merged, of a window)."""

    __slots__ = ("n_buckets", "requests", "errors", "degraded", "latency", "buckets", "cost", "tokens", "models",
                 "components", "critical", "features", "cache", "expired_misses", "feature_hits",
                 "feature_misses", "cache_latency", "quality", "confidence", "citations", "ratings", "variants")

    def __init__(self, n_buckets: int):
        self.n_buckets = n_buckets
        self.requests = self.errors = self.degraded = 0
        self.latency = Moments()
        self.buckets = [0] * (n_buckets + 1)  # request latency, non-cumulative, last is +Inf
        self.cost = ZERO
        self.tokens: dict[str, int] = defaultdict(int)
        self.models: dict[str, Model] = {}
        self.components: dict[str, Component] = {}
        self.critical: dict[str, float] = defaultdict(float)        # component -> critical-path seconds
        self.features: dict[str, float] = defaultdict(float)        # feature -> critical-path seconds
        self.cache: dict[tuple, int] = defaultdict(int)             # (layer, result) -> lookups
        self.expired_misses: dict[str, int] = defaultdict(int)      # layer -> misses on expired entries
        self.feature_hits: dict[str, int] = defaultdict(int)        # caching feature -> hits
        self.feature_misses: dict[str, int] = defaultdict(int)
        self.cache_latency: dict[str, Moments] = {}                 # request cache status -> latency
        self.quality, self.confidence, self.citations, self.ratings = Moments(), Moments(), Moments(), Moments()
        self.variants: dict[tuple, Variant] = {}                    # (flag, variant) -> its random requests

    def observe(self, r: RequestSummary, bounds, cache_owners: dict) -> None:
        """Fold one request in. `bounds`: the latency histogram's upper bounds; `cache_owners`: cache
        name -> the caching feature its lookups count for when the span names no feature."""
        duration = r.duration
        self.requests += 1
        self.errors += r.error
        self.degraded += r.degraded
        latency = self.latency  # Moments.add inlined
        latency.n += 1
        latency.total += duration
        latency.squares += duration * duration
        bucket = bisect_left(bounds, duration)  # the first bound >= duration, as Prometheus' le
        self.buckets[bucket] += 1
        cost = r.cost
        self.cost += cost
        tokens = self.tokens
        for token_type, n in r.tokens.items():
            tokens[token_type] += n
        model = self._model(r.model or "none")
        model.requests += 1
        for called, model_cost in r.cost_by_model.items():  # each call's cost on its own model, as Prometheus
            self._model(called).cost += model_cost
        if r.quality is not None:
            model.quality.add(r.quality)
            self.quality.add(r.quality)
        if r.confidence is not None:
            self.confidence.add(r.confidence)
        if r.citations is not None:
            self.citations.add(r.citations)
        components = self.components  # slot() inlined in these loops: they run once per component
        for name, (calls, errors, durations) in r.components.items():
            c = components.get(name)
            if c is None:
                if len(components) >= PER_MINUTE:
                    name = OTHER
                    c = components.get(name)
                if c is None:
                    c = components[name] = Component(self.n_buckets)
            c.calls += calls
            c.errors += errors
            buckets, total, squares = c.buckets, 0.0, 0.0
            for d in durations:
                buckets[bisect_left(bounds, d)] += 1
                total += d
                squares += d * d
            moments = c.duration  # Moments.add, once per component rather than per span
            moments.n += len(durations)
            moments.total += total
            moments.squares += squares
        critical = self.critical
        for name, s in r.critical.items():
            if name in critical or len(critical) < PER_MINUTE:
                critical[name] += s
            else:
                critical[OTHER] += s
        features = self.features
        for name, s in r.by_feature.items():
            if name in features or len(features) < PER_MINUTE:
                features[name] += s
            else:
                features[OTHER] += s
        if r.cache_lookups:
            self._observe_cache(r.cache_lookups, cache_owners)
        stat = self.cache_latency.get(r.cache_status)
        if stat is None:
            stat = self.cache_latency[r.cache_status] = Moments()
        stat.add(duration)
        if r.variants:
            variants, reasons = self.variants, r.variant_reasons
            for key in r.variants.items():
                if reasons.get(key[0]) in NOT_RANDOM:  # forced or failed: no evidence about the variant
                    continue
                key = slot(variants, key, (OTHER, OTHER))
                v = variants.get(key)
                if v is None:
                    v = variants[key] = Variant(self.n_buckets)
                v.latency.add(duration)
                v.buckets[bucket] += 1
                v.errors += r.error
                v.cost += cost

    def _model(self, name: str) -> Model:
        models = self.models
        name = slot(models, name)
        model = models.get(name)
        if model is None:
            model = models[name] = Model()
        return model

    def _observe_cache(self, lookups: list, cache_owners: dict) -> None:
        cache, expired = self.cache, self.expired_misses
        for layer, result, feature, reason in lookups:
            cache[slot(cache, (layer, result), (OTHER, result))] += 1
            if reason == "expired":
                expired[slot(expired, layer)] += 1
            owner = feature or cache_owners.get(layer)
            if owner:
                counts = self.feature_hits if result == "hit" else self.feature_misses
                counts[slot(counts, owner)] += 1

    def merge(self, m: MinuteStats) -> None:
        """Add another minute's aggregates (same histogram bounds)."""
        self.requests += m.requests
        self.errors += m.errors
        self.degraded += m.degraded
        self.latency.merge(m.latency)
        self.buckets = _add_lists(self.buckets, m.buckets)
        self.cost += m.cost
        for into, counts in ((self.tokens, m.tokens), (self.critical, m.critical), (self.features, m.features),
                             (self.cache, m.cache), (self.expired_misses, m.expired_misses),
                             (self.feature_hits, m.feature_hits), (self.feature_misses, m.feature_misses)):
            _add_counts(into, counts)
        for into, parts, new in ((self.models, m.models, Model), (self.cache_latency, m.cache_latency, Moments),
                                 (self.variants, m.variants, lambda: Variant(self.n_buckets)),
                                 (self.components, m.components, lambda: Component(self.n_buckets))):
            for k, part in parts.items():
                mine = into.get(k)
                if mine is None:
                    mine = into[k] = new()
                mine.merge(part)
        self.quality.merge(m.quality)
        self.confidence.merge(m.confidence)
        self.citations.merge(m.citations)
        self.ratings.merge(m.ratings)
