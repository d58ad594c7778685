"""The load scenarios as data: who runs, how many, how long, and what passes.

Figures and thresholds are the seed's (phase 3.4); `make loadtest SCENARIO=... USERS=... DURATION=...`
overrides users and duration (the ramp shrinks with a shorter run, never longer than half of it;
RAMP= sets it). A scenario with `beyond_users` goes on after its run: users keep being added, up
to `beyond_users` over `beyond_s` (BEYOND_USERS=, BEYOND=; 0 leaves it out), so that a breaking
point above the scenario's own load is found within a bounded time.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scenario:
    name: str
    user_class: str            # a class in locustfile.py
    users: int
    ramp_s: float              # time to start all users
    duration_s: float          # the scenario's run, ramp included
    p95_max_s: float | None = None          # end-to-end p95 must stay under this
    cache_hit_min: float | None = None      # request cache hit ratio must reach this
    find_breaking_point: bool = False       # report where the stack gave way, and what ran out first
    beyond_users: int | None = None         # after duration_s, add users up to this over beyond_s
    beyond_s: float = 0.0
    questions_per_session: int = 10
    batch_items: int = 10

    @property
    def spawn_rate(self) -> float:
        return max(1.0, self.users / max(self.ramp_s, 1.0))

    @property
    def total_s(self) -> float:
        """The whole run: the scenario's and its step beyond."""
        return self.duration_s + (self.beyond_s if self.beyond_users else 0.0)

    def stages(self) -> list[tuple[float, int]]:
        """The load curve's corners, (seconds since start, users), straight lines between them."""
        corners = [(0.0, 0), (self.ramp_s, self.users), (self.duration_s, self.users)]
        if self.beyond_users and self.beyond_s > 0:
            corners.append((self.total_s, self.beyond_users))
        return corners

    def overridden(self, users: int | None = None, duration_s: float | None = None, ramp_s: float | None = None,
                   beyond_users: int | None = None, beyond_s: float | None = None) -> Scenario:
        s = replace(self, users=users or self.users, duration_s=duration_s or self.duration_s,
                    beyond_users=self.beyond_users if beyond_users is None else beyond_users or None,
                    beyond_s=self.beyond_s if beyond_s is None else beyond_s)
        return replace(s, ramp_s=min(ramp_s or s.ramp_s, s.duration_s / 2))


def users_at(stages: list[tuple[float, int]], t: float) -> float:
    """Users the load curve asks for at `t` seconds (None past its end is the caller's business)."""
    for (t0, u0), (t1, u1) in zip(stages, stages[1:]):
        if t <= t1:
            return u0 + (u1 - u0) * (t - t0) / (t1 - t0) if t1 > t0 else u1
    return stages[-1][1]


SCENARIOS = {s.name: s for s in (
    Scenario("baseline", "ChatUser", users=100, ramp_s=30, duration_s=300, p95_max_s=2.0),
    Scenario("peak", "ChatUser", users=500, ramp_s=60, duration_s=600, p95_max_s=3.0),
    # 5 minutes of ramp, 15 sustained, then 6 more minutes adding users up to 4 000: the breaking
    # point is found even when 1 000 users do not reach it.
    Scenario("stress", "ChatUser", users=1000, ramp_s=300, duration_s=1200, find_breaking_point=True,
             beyond_users=4000, beyond_s=360),
    Scenario("batch", "BatchUser", users=200, ramp_s=20, duration_s=300, cache_hit_min=0.8),
)}

# The breaking point: the first time, held for BREAKING_HELD_S, the users stopped being served as
# the seed asks (client p95 over BREAKING_P95_S, or more than BREAKING_ERROR_RATIO of calls failing).
BREAKING_P95_S = 3.0
BREAKING_ERROR_RATIO = 0.05
BREAKING_HELD_S = 30.0
# The stack keeps up (issue 26): no span lost, scrapes of the exporter under this.
SCRAPE_MAX_S = 1.0
