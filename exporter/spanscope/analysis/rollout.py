"""Percentage rollouts: which targeting keys (users) are in a feature's cohort.

A key's bucket is a stable number in [0, 100) derived from the flag name and the key, so:
- the same user always gets the same answer for a flag (no flapping between requests),
- raising the percentage only adds users (a key in at p% stays in at any q >= p),
- different flags cut the user population independently (the flag name salts the hash).

Standard library only: the exporter, the OpenFeature provider and any client can agree on it.
"""
from __future__ import annotations

import hashlib
import math

_SCALE = 1 << 64
# Keys within 2**-53 of the top would round up to exactly 100.0; keep the range half-open.
_TOP = math.nextafter(100.0, 0.0)


def bucket(flag: str, targeting_key: str) -> float:
    """The key's position in [0, 100) for `flag`: sha256(flag NUL key), first 8 bytes big-endian."""
    digest = hashlib.sha256(f"{flag}\x00{targeting_key}".encode()).digest()
    return min(int.from_bytes(digest[:8], "big") / _SCALE * 100.0, _TOP)


def in_rollout(flag: str, targeting_key: str, percentage: float) -> bool:
    """True when the key falls in the first `percentage` percent of the flag's buckets."""
    return bucket(flag, targeting_key) < percentage
