"""The response cache layers: a real LRU with TTL, on the simulated clock.

Hit ratio, size, capacity and evictions are not drawn from a distribution; they come out of the
cache actually holding the simulated questions, so they move the way a real cache's do (warm-up,
capacity pressure at high load, a flush emptying it).
"""
from __future__ import annotations

from collections import OrderedDict

NS = 1_000_000_000


class LruTtlCache:
    """Least-recently-used eviction at `capacity`, entries expire `ttl_s` after being written."""

    # Like Redis' active expiry: each write also reclaims a few expired entries from the old end.
    EXPIRY_SAMPLE = 20

    def __init__(self, name: str, capacity: int, ttl_s: float):
        self.name = name
        self.capacity = capacity
        self.ttl_ns = int(ttl_s * NS)
        self._entries: OrderedDict[str, int] = OrderedDict()  # key -> expiry (ns)
        # Why recently removed keys left (expired / evicted), so a miss can say why it missed
        # (`pipeline.cache.miss_reason`); bounded like the cache itself.
        self._gone: OrderedDict[str, str] = OrderedDict()
        self.evictions = 0          # capacity evictions since start
        self._reported = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, key: str, reason: str) -> None:
        self._gone[key] = reason
        self._gone.move_to_end(key)
        if len(self._gone) > self.capacity:
            self._gone.popitem(last=False)

    def get(self, key: str, now_ns: int) -> tuple[bool, str | None]:
        """(hit, miss reason): `absent`, `expired` or `evicted` on a miss."""
        expiry = self._entries.get(key)
        if expiry is None:
            return False, self._gone.get(key, "absent")
        if expiry <= now_ns:
            del self._entries[key]
            self._forget(key, "expired")
            return False, "expired"
        self._entries.move_to_end(key)
        return True, None

    def put(self, key: str, now_ns: int, written_ns: int | None = None) -> None:
        entries = self._entries
        for _ in range(min(self.EXPIRY_SAMPLE, len(entries))):
            oldest, expiry = next(iter(entries.items()))
            if expiry > now_ns:
                break
            del entries[oldest]
            self._forget(oldest, "expired")
        if key not in entries and len(entries) >= self.capacity:
            evicted, _ = entries.popitem(last=False)
            self._forget(evicted, "evicted")
            self.evictions += 1
        entries[key] = (written_ns if written_ns is not None else now_ns) + self.ttl_ns
        entries.move_to_end(key)

    def flush(self) -> None:
        # A flush is an invalidation, not an eviction: it empties the cache without counting,
        # and a flushed key misses as `absent` (the cache has no record of it any more).
        self._entries.clear()
        self._gone.clear()

    def evictions_since_last_report(self) -> int:
        """The `pipeline.cache.evictions` value: a delta, so the exporter can sum it."""
        delta, self._reported = self.evictions - self._reported, self.evictions
        return delta


class ResponseCache:
    """Two layers: l1 in-process (small, short TTL), l2 Redis (large, longer TTL)."""

    def __init__(self, l1_capacity: int = 5000, l1_ttl_s: float = 120.0,
                 l2_capacity: int = 100_000, l2_ttl_s: float = 3600.0):
        self.l1 = LruTtlCache("l1", l1_capacity, l1_ttl_s)
        self.l2 = LruTtlCache("l2", l2_capacity, l2_ttl_s)

    def warm(self, keys, now_ns: int, rng) -> None:
        """Pre-load l2 as a Redis that survived the restart would be: written over the last TTL."""
        for key in keys:
            self.l2.put(key, now_ns, written_ns=now_ns - int(rng.random() * self.l2.ttl_ns))
        self.l2.evictions_since_last_report()
        self.l2._gone.clear()

    def store(self, key: str, now_ns: int) -> None:
        self.l2.put(key, now_ns)
        self.l1.put(key, now_ns)

    def flush(self) -> None:
        self.l1.flush()
        self.l2.flush()
