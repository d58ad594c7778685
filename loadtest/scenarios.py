"""The load scenarios as data: who runs, how many, how long, and what passes.

Figures and thresholds are the seed's (phase 3.4); `make loadtest SCENARIO=... USERS=... DURATION=...`
overrides users and duration (the ramp shrinks with a shorter run, never longer than half of it).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scenario:
    name: str
    user_class: str            # a class in locustfile.py
    users: int
    ramp_s: float              # time to start all users
    duration_s: float          # the whole run, ramp included
    p95_max_s: float | None = None          # end-to-end p95 must stay under this
    cache_hit_min: float | None = None      # request cache hit ratio must reach this
    find_breaking_point: bool = False       # report where latency or errors first gave way
    questions_per_session: int = 10
    batch_items: int = 10

    @property
    def spawn_rate(self) -> float:
        return max(1.0, self.users / max(self.ramp_s, 1.0))

    def overridden(self, users: int | None = None, duration_s: float | None = None) -> Scenario:
        s = replace(self, users=users or self.users, duration_s=duration_s or self.duration_s)
        return replace(s, ramp_s=min(s.ramp_s, s.duration_s / 2))


SCENARIOS = {s.name: s for s in (
    Scenario("baseline", "ChatUser", users=100, ramp_s=30, duration_s=300, p95_max_s=2.0),
    Scenario("peak", "ChatUser", users=500, ramp_s=60, duration_s=600, p95_max_s=3.0),
    # 5 minutes of ramp, then 15 sustained.
    Scenario("stress", "ChatUser", users=1000, ramp_s=300, duration_s=1200, find_breaking_point=True),
    Scenario("batch", "BatchUser", users=200, ramp_s=20, duration_s=300, cache_hit_min=0.8),
)}

# The breaking point: the first interval in which the stack stopped keeping up.
BREAKING_P95_S = 3.0
BREAKING_ERROR_RATIO = 0.05
