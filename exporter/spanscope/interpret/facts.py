"""The facts decided once per span, right after the contract has read it and before anything records
or assembles it: the feature its work belongs to, whether it repeats an LLM call another span already
reported, and what its LLM call cost. From then on nothing writes into a SpanRecord: the metrics, the
summary and the sinks only read it.
"""
from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from .contract import RAG_OPERATIONS
from .pricing import Cost, Pricing

ZERO = Decimal(0)
ANY_CALL = None  # a child with token counts: its parent, if a provider call, is a wrapper of it


class Calls:
    """Recognises a provider call reported by two spans, so it counts once.

    Two instrumentations of one call (the Anthropic SDK's own tracing beside OpenLLMetry's, a
    framework's LLM span over the SDK's) make two spans: siblings or nested, often in different
    traces when no application span is around them. Per-span metrics are recorded as spans arrive,
    so the second span is recognised against the first, from bounded maps of recent calls:
    - the same provider and `gen_ai.response.id`, overlapping in time (a fake or caching server may
      answer every call with one id: calls one after the other never overlap);
    - a failed call (no response, so no id): the same provider, request model and parent,
      overlapping in time, from another instrumentation scope;
    - an LLM span whose child was an LLM call with token counts (a framework's LLM span over the
      SDK's), or a span whose child was the same operation from the same scope (llama-index's public
      method over its private one: `predict` over `chat`, `retrieve` over `_retrieve`,
      `get_query_embedding` over `_get_query_embedding`): children end, and so arrive, first.
    The first span reported wins. Retrievals are checked for the last rule only."""

    SIZE = 10_000  # calls remembered per map

    def __init__(self, size: int = SIZE):
        self.size = size
        # Oldest first. OrderedDict, not dict: popping a dict's first entry again and again makes
        # finding the next one scan the deleted slots.
        self.by_id: OrderedDict = OrderedDict()     # (provider, response id) -> (start, end)
        self.unnamed: OrderedDict = OrderedDict()   # (provider, request model, parent id) -> (start, end, scope)
        # (trace id, span id) of a counted span's parent -> {(scope, operation) of its children, ANY_CALL}
        self.wrappers: OrderedDict = OrderedDict()

    def _remember(self, table: OrderedDict, key, value) -> None:
        table[key] = value  # a key is added once while remembered: a second span with it is a repeat
        if len(table) > self.size:
            table.popitem(last=False)

    def wraps(self, r) -> bool:
        """Whether `r` wraps a counted span of its own operation (see above); else remembers it as
        its parent's child."""
        g = r.genai
        children = self.wrappers.pop((r.trace_id, r.span_id), None)
        if children is not None and ((r.scope, g.operation) in children or (
                ANY_CALL in children and g.is_provider_call())):
            return True
        if r.parent_id:
            key = (r.trace_id, r.parent_id)
            siblings = self.wrappers.get(key)
            if siblings is None:
                self._remember(self.wrappers, key, siblings := set())
            siblings.add((r.scope, g.operation))
            if g.usage is not None:
                siblings.add(ANY_CALL)
        return False

    def repeated(self, r) -> bool:
        """Whether `r` (a provider call span) reports a call already counted; else remembers it."""
        if self.wraps(r):
            return True
        g = r.genai
        if g.response_id:
            key = (g.provider, g.response_id)
            seen = self.by_id.get(key)
            if seen is not None and seen[0] <= r.end and r.start <= seen[1]:
                return True
            self._remember(self.by_id, key, (r.start, r.end))
        elif r.error:  # a call without a response (a successful one has an id wherever ids are reported)
            key = (g.provider, g.request_model, r.parent_id)
            seen = self.unnamed.get(key)
            if seen is not None and seen[2] != r.scope and seen[0] <= r.end and r.start <= seen[1]:
                return True
            self._remember(self.unnamed, key, (r.start, r.end, r.scope))
        return False


class SpanFacts:
    """`facts(record)` completes a record: `feature` (the span's own, else its component's in the
    feature catalogue), `duplicate` (its provider call or retrieval was counted from another span) and `cost` (a
    pricing.Cost, None for a call neither the table nor its instrumentation priced, or no LLM call).
    A model the table does not price is costed at the instrumentation's own figure (`Cost.reported`)."""

    def __init__(self, pricing: Pricing, component_features: dict[str, str] | None = None):
        self.pricing = pricing
        self.component_features = component_features or {}  # component -> feature
        self.calls = Calls()

    def __call__(self, r) -> None:
        if r.feature is None:
            r.feature = self.component_features.get(r.component)
        g = r.genai
        if g is None:
            return
        call = g.is_provider_call()
        if g.operation in RAG_OPERATIONS and not call:  # a retrieval
            r.duplicate = self.calls.wraps(r)
            return
        if g.operation == "execute_tool" or not call:
            return
        if self.calls.repeated(r):
            r.duplicate = True
            return
        if g.usage is None:
            return
        # The price in force when the call started (a span without a start time: now).
        price = self.pricing.price_at_ns(g.model, g.provider, r.start)
        u = g.usage
        if price is not None:
            r.cost = Pricing.cost(price, u.input, u.output, u.cache_read, u.cache_creation, u.cache_creation_1h)
        else:
            reported = g.reported()
            if reported is not None:
                r.cost = Cost(input=ZERO, output=ZERO, cache_read=ZERO, cache_write=ZERO, saved=ZERO, reported=reported)
