"""The facts decided once per span, right after the contract has read it and before anything records
or assembles it: the feature its work belongs to and what its LLM call cost. From then on nothing
writes into a SpanRecord: the metrics, the summary and the sinks only read it.
"""
from __future__ import annotations

from datetime import UTC, datetime

from .pricing import Pricing


class SpanFacts:
    """`facts(record)` completes a record: `feature` (the span's own, else its component's in the
    feature catalogue) and `cost` (a pricing.Cost, None for a call not priced or no LLM call)."""

    def __init__(self, pricing: Pricing, component_features: dict[str, str] | None = None):
        self.pricing = pricing
        self.component_features = component_features or {}  # component -> feature

    def __call__(self, r) -> None:
        if r.feature is None:
            r.feature = self.component_features.get(r.component)
        g = r.genai
        if g is None or g.usage is None or g.operation == "execute_tool" or not g.is_llm_call():
            return
        # The price in force when the call started (a span without a start time: now).
        at = datetime.fromtimestamp(r.start / 1e9, UTC) if r.start else None
        price = self.pricing.price(g.model, g.provider, at)
        if price is not None:
            u = g.usage
            r.cost = Pricing.cost(price, u.input, u.output, u.cache_read, u.cache_creation)
