"""Per-minute rollups of finished requests for the last 24 hours, in bounded memory.

Each finished request is folded once into the MinuteStats of the minute it ended (its root span's
end time, or the arrival time when that is more than 24 h old or in the future), keyed by (service,
mode). Every windowed reader merges minutes: the metrics API and the insights (analysis.windows),
feature impact (its window's last minutes) and experiments (a window's minutes, or every minute since
the start: minutes leaving the 24 hours keep their variants in `earlier_variants`). Memory: one MinuteStats per
(minute, service, mode) that saw traffic, about 1.5 KB with the latency histogram, a few
components, tokens and one cache layer, so 24 h of one service × mode is about 2 MB; keys per
minute are capped (`max_keys`), and so is what one MinuteStats holds (analysis.window.PER_MINUTE).
"""
from __future__ import annotations

import time

from ..interpret.summary import RequestSummary
from .window import OTHER, MinuteStats, Variant

DAY_MINUTES = 1440


class Rollups:
    def __init__(self, duration_buckets, minutes: int = DAY_MINUTES, max_keys: int = 200, clock=time.time,
                 cache_owners: dict | None = None):
        self.bounds = tuple(float(b) for b in duration_buckets)
        self.minutes = minutes
        self.max_keys = max_keys
        self.clock = clock
        self.cache_owners = cache_owners or {}  # cache name -> its caching feature (analysis.features)
        self.data: dict[int, dict[tuple, MinuteStats]] = {}
        self.earlier_variants: dict[tuple, Variant] = {}  # of the minutes trimmed away

    def _minute_of(self, end_ns: int | None, now: float) -> int:
        t = end_ns / 1e9 if end_ns else now
        if t > now + 60 or t < now - self.minutes * 60:
            t = now
        return int(t // 60)

    def _stats(self, minute: int, service: str, mode: str) -> MinuteStats:
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
                m = keys[key] = MinuteStats(len(self.bounds))
        return m

    def _trim(self, newest: int) -> None:
        cutoff = newest - self.minutes
        for minute in [k for k in self.data if k <= cutoff]:
            for m in self.data.pop(minute).values():
                _merge_variants(self.earlier_variants, m.variants)

    # --- the sink ------------------------------------------------------------------------------

    def observe(self, r: RequestSummary, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        end_ns = r.start_ns + int(r.duration * 1e9)
        self._stats(self._minute_of(end_ns, now), r.service, r.mode).observe(r, self.bounds, self.cache_owners)

    def observe_rating(self, service: str, mode: str, rating: int, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._stats(int(now // 60), service, mode).ratings.add(rating)

    # --- reading -------------------------------------------------------------------------------

    def window(self, minutes: int, end_minute: int | None = None, service: str | None = None,
               mode: str | None = None):
        """(minute, (service, mode), MinuteStats) of the `minutes` minutes ending with `end_minute`
        (inclusive)."""
        end = self.now_minute() if end_minute is None else end_minute
        for minute in range(end - minutes + 1, end + 1):
            for (svc, md), m in self.data.get(minute, {}).items():
                if (service is None or svc == service) and (mode is None or md == mode):
                    yield minute, (svc, md), m

    def merged(self, minutes: int) -> MinuteStats:
        """The last `minutes` minutes (the current one included), every service and mode."""
        total = MinuteStats(len(self.bounds))
        for _, _, m in self.window(minutes):
            total.merge(m)
        return total

    def variants(self) -> dict[tuple, Variant]:
        """(flag, variant) -> its requests since the start."""
        out: dict[tuple, Variant] = {}
        _merge_variants(out, self.earlier_variants)
        for keys in self.data.values():
            for m in keys.values():
                _merge_variants(out, m.variants)
        return out

    def now_minute(self) -> int:
        return int(self.clock() // 60)


def _merge_variants(into: dict, variants: dict) -> None:
    for key, v in variants.items():
        mine = into.get(key)
        if mine is None:
            mine = into[key] = Variant(len(v.buckets) - 1)
        mine.merge(v)
