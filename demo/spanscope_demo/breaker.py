"""A circuit breaker in the resilience4j / pybreaker manner, on the simulated clock.

closed --(failure rate >= threshold over the last `window` calls)--> open
open --(after `open_s`)--> half_open
half_open --(`trial_calls` successes)--> closed, --(any failure)--> open

Every transition is returned to the caller, which records it as a `circuit_breaker.state_change`
span event; the state at call time and the outcome go on the call's span.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
SUCCESS, FAILURE, NOT_PERMITTED = "success", "failure", "not_permitted"
NS = 1_000_000_000


@dataclass(frozen=True)
class Transition:
    breaker: str
    from_state: str
    to_state: str
    at_ns: int


class CircuitBreaker:
    def __init__(self, name: str, failure_rate_threshold: float = 0.5, window: int = 20,
                 min_calls: int = 10, open_s: float = 30.0, trial_calls: int = 3):
        self.name = name
        self.threshold = failure_rate_threshold
        self.min_calls = min_calls
        self.open_ns = int(open_s * NS)
        self.trial_calls = trial_calls
        self.state = CLOSED
        self._results: deque[bool] = deque(maxlen=window)  # True = failure
        self._opened_at = 0
        self._trial_successes = 0

    def _move(self, to: str, now_ns: int) -> Transition:
        t = Transition(self.name, self.state, to, now_ns)
        self.state = to
        if to == OPEN:
            self._opened_at = now_ns
        if to == HALF_OPEN:
            self._trial_successes = 0
        if to == CLOSED:
            self._results.clear()
        return t

    def acquire(self, now_ns: int) -> tuple[bool, list[Transition]]:
        """May a call go through now? Moves open -> half_open once the wait is over."""
        transitions = []
        if self.state == OPEN and now_ns - self._opened_at >= self.open_ns:
            transitions.append(self._move(HALF_OPEN, now_ns))
        return self.state != OPEN, transitions

    def record(self, success: bool, now_ns: int) -> list[Transition]:
        """The outcome of a permitted call; returns the transitions it caused."""
        if self.state == HALF_OPEN:
            if not success:
                return [self._move(OPEN, now_ns)]
            self._trial_successes += 1
            return [self._move(CLOSED, now_ns)] if self._trial_successes >= self.trial_calls else []
        self._results.append(not success)
        calls = len(self._results)
        if self.state == CLOSED and calls >= self.min_calls and sum(self._results) / calls >= self.threshold:
            return [self._move(OPEN, now_ns)]
        return []
