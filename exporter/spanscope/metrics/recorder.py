"""Recording: SpanRecords and finished traces into the metric families.

Per-span signals (component latency, errors, GenAI usage and cost, cache, breakers, flag
evaluations) are recorded as spans arrive; request-level signals (end-to-end latency, critical path,
self time, quality, per-variant latency and cost) when the trace is finished. Finished requests are
then handed to the registered sinks (features, feedback, interaction store) as RequestSummary.
"""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from ..interpret.attributes import BREAKER_STATES
from ..interpret.contract import RAG_OPERATIONS, SpanRecord
from ..interpret.pricing import Pricing
from ..interpret.summary import RequestSummary
from ..interpret.traces import Trace, breakdown
from .catalogue import Metrics

NS = 1e-9
ZERO = Decimal(0)
OTHER = "__other__"


class LabelValues:
    """Bounds every label's values: cut to `length` characters, and at most `limit` distinct values
    per label (`limits` overrides it per label, e.g. tenant); later newcomers become `__other__`.
    This bounds the series and everything keyed by label values downstream (rollups, impact)."""

    def __init__(self, limit: int, length: int, counter, limits: dict | None = None):
        self.limit, self.length, self.counter = limit, length, counter
        self.limits = limits or {}
        self.seen: dict[str, set] = {}

    def __call__(self, label: str, value: str) -> str:
        seen = self.seen.get(label)
        if seen is None:
            seen = self.seen[label] = set()
        if value in seen:
            return value
        if len(value) > self.length:
            value = value[:self.length]
            if value in seen:
                return value
        if len(seen) < self.limits.get(label, self.limit):
            seen.add(value)
            return value
        self.counter.inc((label,))
        return OTHER


class Recorder:
    def __init__(self, metrics: Metrics, pricing: Pricing, components, label_values: int, tenant_values: int,
                 label_length: int):
        self.m = metrics
        self.pricing = pricing
        self.components = list(components)
        self.label = LabelValues(label_values, label_length, metrics.label_capped, {"tenant": tenant_values})
        self.label.seen["component"] = set(self.components)  # configured components are never __other__
        self.services: set[str] = set()
        self.breakers: dict[tuple, str] = {}
        self.miss_cost: dict[str, tuple[Decimal, int, str, str]] = {}  # service -> (total, n, provider, model)
        self.sinks: list = []
        self.component_features: dict[str, str] = {}  # component -> feature, for spans without pipeline.feature

    def _new_service(self, service: str) -> None:
        """Series of the configured components start at zero, so rate() sees their first events."""
        self.services.add(service)
        m = self.m
        for comp in self.components:
            m.component_self.touch((service, comp))
            m.component_critical.touch((service, comp))
            m.component_errors.touch((service, comp, "_OTHER"))

    # --- per span ------------------------------------------------------------------------------

    def record_span(self, r: SpanRecord) -> None:
        m = self.m
        svc = r.service
        if svc not in self.services:
            self._new_service(svc)
        comp = r.component = self.label("component", r.component)
        if r.feature is None:
            r.feature = self.component_features.get(comp)
        else:
            r.feature = self.label("feature", r.feature)
        duration = (r.end - r.start) * NS
        error = r.error
        m.component_duration.observe((svc, comp, "error" if error else "ok"), duration, r.trace_id)
        if error:
            m.component_errors.inc((svc, comp, self.label("error_type", r.error_type)))
        genai = r.genai
        if comp == "rag_lookup" or (genai is not None and genai.operation in RAG_OPERATIONS):
            m.rag_lookups.inc((svc, self.label("source", r.rag_source or "default"), "failure" if error else "success"))
        if genai is not None:
            if genai.operation == "execute_tool":
                m.tool_calls.inc((svc, self.label("tool", genai.tool or "unknown"), "failure" if error else "success"))
            elif genai.is_llm_call():
                self._record_genai(r, genai, svc, duration)
        if r.cache is not None:
            self._record_cache(r.cache, svc)
        if r.flags:  # labelled once here; the request's variants (record_trace) reuse them
            label = self.label
            r.flags = tuple([(label("flag", f), label("variant", v), label("reason", why)) for f, v, why in r.flags])
            for key in r.flags:
                m.flag_evaluations.inc((svc, *key))
        if r.resilience is not None or r.breaker_events:
            self._record_resilience(r, svc)

    def _record_genai(self, r: SpanRecord, g, svc: str, duration: float) -> None:
        m, label = self.m, self.label
        provider = label("provider", g.provider or "unknown")
        op = label("operation", g.operation or "chat")
        req_model, resp_model = label("model", g.request_model or ""), label("model", g.response_model or "")
        base = (op, provider, req_model, resp_model)
        m.genai_duration.observe(base + (label("error_type", r.error_type or ""),), duration, r.trace_id)
        if g.ttfc is not None:
            m.genai_ttfc.observe((op, provider, req_model), g.ttfc, r.trace_id)
        u = g.usage
        if u is None:
            return
        m.genai_tokens.observe(base + ("input",), u.input)
        m.genai_tokens.observe(base + ("output",), u.output)
        model = label("model", g.model or "unknown")
        for token_type, n in (("input", u.input), ("output", u.output), ("cache_read", u.cache_read),
                              ("cache_creation", u.cache_creation), ("reasoning", u.reasoning)):
            if n:
                m.tokens.inc((svc, provider, model, token_type), n)
        price = self.pricing.price(g.model)
        if price is None:
            m.unpriced_tokens.inc((svc, model), u.input + u.output)
            if g.model:
                self.pricing.warn_unpriced(g.model)
            return
        cost = Pricing.cost(price, u.input, u.output, u.cache_read, u.cache_creation)
        for token_type, amount in (("input", cost.input), ("output", cost.output),
                                   ("cache_read", cost.cache_read), ("cache_creation", cost.cache_write)):
            if amount:
                m.cost.inc((svc, provider, model, token_type), amount)
        if cost.saved:
            m.cost_saved.inc((svc, provider, model, "prompt_cache"), cost.saved)
        r.cost = cost.total

    def _record_cache(self, c, svc: str) -> None:
        m = self.m
        cache = self.label("cache", c.name or "default")
        if c.result:
            m.cache_requests.inc((svc, cache, c.result))
        if c.size is not None:
            m.cache_size.set((svc, cache), c.size)
        if c.capacity is not None:
            m.cache_capacity.set((svc, cache), c.capacity)
        if c.evictions:
            m.cache_evictions.inc((svc, cache), c.evictions)

    def _set_breaker(self, svc: str, name: str, state: str) -> None:
        key = (svc, name)
        if self.breakers.get(key) == state:
            return
        self.breakers[key] = state
        for s in BREAKER_STATES:
            self.m.breaker_state.set((svc, name, s), 1.0 if s == state else 0.0)

    def _record_resilience(self, r: SpanRecord, svc: str) -> None:
        m, label = self.m, self.label
        for name, frm, to in r.breaker_events:
            name = label("breaker", name)
            m.breaker_transitions.inc((svc, name, frm, to))
            self._set_breaker(svc, name, to)
        x = r.resilience
        if x is None:
            return
        if x.breaker:
            name = label("breaker", x.breaker)
            if x.state and not r.breaker_events:
                self._set_breaker(svc, name, x.state)
            if x.outcome:
                m.breaker_calls.inc((svc, name, x.outcome))
        if x.fallback_from or x.fallback_to:
            m.fallbacks.inc((svc, label("fallback", x.fallback_from or "unknown"), label("fallback", x.fallback_to or "unknown")))
        if x.route:
            m.routing.inc((svc, label("route", x.route), label("reason", x.route_reason or "unknown")))

    # --- per request ---------------------------------------------------------------------------

    def record_trace(self, trace: Trace, reason: str) -> RequestSummary | None:
        self.m.traces_completed.inc((reason,))
        root = trace.root
        if root is None:
            return None
        m = self.m
        svc = root.service
        mode = self.label("mode", root.mode or "default")
        tenant = self.label("tenant", root.tenant or "default")
        spans = trace.spans
        critical_ns, self_ns, feature_ns = breakdown(spans, root)
        duration = root.duration_ns * NS
        cost = ZERO
        model = None
        variants: dict[str, str] = {}
        tokens: dict[str, int] = defaultdict(int)
        cache_lookups = []
        response_cache = None
        quality = confidence = citations = None
        degraded = 0
        components: dict = {}
        for s in spans:
            if s.cost is not None:
                cost += s.cost
            calls = components.get(s.component)
            if calls is None:
                calls = components[s.component] = [0, 0, []]
            calls[0] += 1
            calls[1] += s.error
            calls[2].append((s.end - s.start) * NS)
            g = s.genai
            if g is not None:
                if g.model and model is None:
                    model = self.label("model", g.model)
                u = g.usage
                if u is not None:
                    tokens["input"] += u.input
                    tokens["output"] += u.output
                    tokens["cache_read"] += u.cache_read
                    tokens["cache_creation"] += u.cache_creation
                    tokens["reasoning"] += u.reasoning
            for flag, variant, _ in s.flags:
                variants[flag] = variant
            c = s.cache
            if c is not None and c.result:
                cache_lookups.append((c.name or "default", c.result, s.feature, c.miss_reason))
                if c.kind == "response" and response_cache != "hit":
                    response_cache = c.result
            q = s.quality
            if q is not None:
                if q.score is not None:
                    quality = q.score
                if q.confidence is not None:
                    confidence = q.confidence
                if q.citations is not None:
                    citations = q.citations
                if q.degradation:
                    degraded = 1
                    m.degraded.inc((svc, self.label("reason", q.degradation)))
                for w in q.warnings:
                    m.warnings.inc((svc, self.label("warning", w)))
        root_cache = root.cache.status if root.cache is not None else None
        cache_status = root_cache or response_cache or "none"
        status = "error" if root.error else "ok"
        key = (svc, mode, status, cache_status)
        m.requests.inc(key)
        m.request_duration.observe(key, duration, trace.trace_id)
        m.tenant_requests.inc((svc, tenant, status))
        m.request_cost.inc((svc, mode, tenant), cost)
        critical = {c: ns * NS for c, ns in critical_ns.items()}
        self_time = {c: ns * NS for c, ns in self_ns.items()}
        for comp, seconds in critical.items():
            m.component_critical.inc((svc, comp), seconds)
        for comp, seconds in self_time.items():
            m.component_self.inc((svc, comp), seconds)
        for flag, variant in variants.items():
            vkey = (svc, flag, variant)
            m.variant_duration.observe(vkey, duration, trace.trace_id)
            m.variant_cost.inc(vkey, cost)
            if root.error:
                m.variant_errors.inc(vkey)
            else:
                m.variant_errors.touch(vkey)
        if quality is not None:
            m.quality.observe((svc, mode), quality, trace.trace_id)
        if confidence is not None:
            m.confidence.observe((svc, mode), confidence, trace.trace_id)
        if citations is not None:
            m.citations.observe((svc, mode), citations)
        self._record_response_cache(svc, cache_status, cost, spans)
        summary = RequestSummary(
            trace_id=trace.trace_id, service=svc, mode=mode, tenant=tenant, user=root.user, error=root.error,
            start_ns=root.start, duration=duration, cache_status=cache_status, cost=cost, model=model,
            critical=critical, self_time=self_time,
            by_feature={f: ns * NS for f, ns in feature_ns.items()},
            variants=variants, cache_lookups=cache_lookups,
            tokens=dict(tokens), quality=quality, confidence=confidence, citations=citations,
            components=components, degraded=degraded,
        )
        for sink in self.sinks:
            sink(summary)
        return summary

    def _record_response_cache(self, svc: str, cache_status: str, cost: Decimal, spans) -> None:
        """A response-cache hit skipped the LLM: value it at the mean cost of this service's misses."""
        if cache_status == "miss" and cost:
            llm = next((s.genai for s in spans if s.cost is not None), None)
            total, n, provider, model = self.miss_cost.get(svc, (ZERO, 0, "unknown", "unknown"))
            if llm is not None:
                provider, model = self.label("provider", llm.provider or "unknown"), self.label("model", llm.model or "unknown")
            self.miss_cost[svc] = (total + cost, n + 1, provider, model)
        elif cache_status == "hit" and svc in self.miss_cost:
            total, n, provider, model = self.miss_cost[svc]
            self.m.cost_saved.inc((svc, provider, model, "response_cache"), total / n)
