"""Helpers for the demo tests: run the simulated service into the SDK's in-memory exporter."""
from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass

from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from spanscope_demo import scenarios
from spanscope_demo.features import SEED_FEATURES, FeatureFlags, traced_client
from spanscope_demo.pipeline import Outcome, RagService
from spanscope_demo.telemetry import resource


@dataclass
class DemoRun:
    outcomes: list[Outcome]
    spans: tuple[ReadableSpan, ...]

    @functools.cached_property
    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.spans if s.parent is None]

    @functools.cached_property
    def traces(self) -> dict[int, list[ReadableSpan]]:
        by_trace: dict[int, list[ReadableSpan]] = {}
        for s in self.spans:
            by_trace.setdefault(s.context.trace_id, []).append(s)
        return by_trace

    def component(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.attributes.get("pipeline.component") == name]

    def with_attr(self, key: str, value=None) -> list[ReadableSpan]:
        return [s for s in self.spans if key in s.attributes and (value is None or s.attributes[key] == value)]

    def durations(self) -> list[float]:
        return sorted(o.duration_s for o in self.outcomes)

    def quantile(self, q: float) -> float:
        d = self.durations()
        return d[min(len(d) - 1, int(q * len(d)))]

    def error_ratio(self) -> float:
        return sum(o.status == "error" for o in self.outcomes) / len(self.outcomes)

    def hit_ratio(self, layer: str | None = None) -> float:
        if layer is None:
            return sum(o.cache_status == "hit" for o in self.outcomes) / len(self.outcomes)
        lookups = self.with_attr("pipeline.cache.name", layer)
        return sum(s.attributes["pipeline.cache.result"] == "hit" for s in lookups) / len(lookups)


def flag_provider(features: dict[str, bool]) -> InMemoryProvider:
    """The OpenFeature SDK's own in-memory provider with every seed feature on or off."""
    return InMemoryProvider({name: InMemoryFlag("on" if enabled else "off", {"on": True, "off": False})
                             for name, enabled in features.items()})


def run_demo(scenario: str = "normal", n: int = 1500, rate: float = 10.0, features: dict | None = None,
             seed: int = 7, feedback=None, feedback_rate: float = 0.0) -> DemoRun:
    """`n` requests at `rate` per second of simulated time, all spans kept in memory."""
    exporter = InMemorySpanExporter()
    tracing = TracerProvider(resource=resource())
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    client = traced_client(flag_provider({**SEED_FEATURES, **(features or {})}), wait=True)
    t0 = time.time_ns()
    service = RagService(tracing.get_tracer("test"), FeatureFlags(client), scenarios.get(scenario),
                         rng=random.Random(seed), feedback=feedback, feedback_rate=feedback_rate, start_ns=t0)
    outcomes = [service.handle(now_ns=t0 + int(i * 1e9 / rate)) for i in range(n)]
    service.pool.shutdown()
    return DemoRun(outcomes, exporter.get_finished_spans())


@functools.lru_cache(maxsize=None)
def cached_run(scenario: str = "normal", features: tuple = ()) -> DemoRun:
    """Runs shared between tests (they only read them); `features` as sorted (name, bool) pairs."""
    return run_demo(scenario, features=dict(features))
