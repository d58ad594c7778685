"""Traffic scenarios: each one makes one of the project's alert conditions true.

`normal` stays inside every alert threshold; the others push one signal far past its threshold
so a person (or a test) can watch the alert fire and follow its runbook.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    latency_factor: float = 1.0         # multiplies retrieval and LLM latency
    llm_failure_rate: float = 0.015     # primary LLM provider (behind the circuit breaker)
    fallback_failure_rate: float = 0.02
    rag_failure_rate: float = 0.01
    tool_failure_rate: float = 0.03
    internal_error_rate: float = 0.002  # gateway bugs, independent of the backends
    token_factor: float = 1.0           # multiplies prompt size (context stuffing)
    forced_route: str | None = None     # every request to this route (pipeline.route.name)
    flush_cache: bool = False           # the response cache is flushed before every lookup
    # A feature whose new code path is broken: requests that evaluate it on fail at intent
    # classification at this rate and classify this many times slower (a rollout to roll back).
    degraded_feature: str | None = None
    degraded_failure_rate: float = 0.0
    degraded_latency_factor: float = 1.0


SCENARIOS = {s.name: s for s in (
    Scenario("normal", "steady traffic inside every alert threshold"),
    Scenario("latency_spike", "retrieval and LLM backends 6x slower: p95 latency far above target",
             latency_factor=6.0),
    Scenario("error_burst", "the primary LLM and its fallback fail often: error ratio far above 5 %",
             llm_failure_rate=0.25, fallback_failure_rate=0.7, rag_failure_rate=0.2, tool_failure_rate=0.2,
             internal_error_rate=0.08),
    Scenario("cost_spike", "a bad routing rule sends every request to gpt-4o with 5x the context",
             token_factor=5.0, forced_route="quality"),
    Scenario("cache_flush", "the response cache is flushed continuously: hit ratio drops to zero",
             flush_cache=True),
    Scenario("bad_rollout", "the MLX backend (feature mlx_backend) is broken: requests it serves fail often and "
                            "classify slowly — a guarded rollout of it rolls back by itself",
             degraded_feature="mlx_backend", degraded_failure_rate=0.4, degraded_latency_factor=8.0),
    Scenario("breaker_trip", "the primary LLM provider is down: its circuit breaker opens, fallbacks take over",
             llm_failure_rate=0.97),
)}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None
