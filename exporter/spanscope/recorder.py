"""Recording: SpanRecords and finished traces into the metric families.

Per-span signals (component latency, errors, GenAI usage and cost, cache, breakers, flag
evaluations) are recorded as spans arrive; request-level signals (end-to-end latency, critical path,
self time, quality, per-variant latency and cost) when the trace is finished. Finished requests are
then handed to the registered sinks (features, feedback, interaction store) as RequestSummary.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from .catalogue import Metrics
from .contract import BREAKER_STATES, LLM_OPERATIONS, RAG_OPERATIONS, SpanRecord, first_count, first_number, \
    first_str, str_list
from .pricing import Pricing
from .traces import Trace, breakdown

NS = 1e-9
ZERO = Decimal(0)
OTHER = "__other__"


class LabelCap:
    """Keeps at most `limit` distinct values of one label; later newcomers become `__other__`."""

    def __init__(self, label: str, limit: int, counter):
        self.label, self.limit, self.counter = label, limit, counter
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        self.counter.inc((self.label,))
        return OTHER


@dataclass
class RequestSummary:
    """One finished request, as the sinks after the metrics see it."""

    trace_id: str
    service: str
    mode: str
    tenant: str
    user: str | None
    error: bool
    start_ns: int
    duration: float
    cache_status: str
    cost: Decimal
    model: str | None
    critical: dict = field(default_factory=dict)      # component -> seconds
    self_time: dict = field(default_factory=dict)     # component -> seconds
    by_feature: dict = field(default_factory=dict)    # feature -> critical-path seconds
    variants: dict = field(default_factory=dict)      # flag -> variant
    features_enabled: list = field(default_factory=list)
    cache_lookups: list = field(default_factory=list)  # (cache name, result, feature)
    tokens: dict = field(default_factory=dict)        # token type -> count
    quality: float | None = None
    confidence: float | None = None
    citations: int | None = None


class Recorder:
    def __init__(self, metrics: Metrics, pricing: Pricing, components, tenant_values: int, label_length: int):
        self.m = metrics
        self.pricing = pricing
        self.components = list(components)
        self.tenant = LabelCap("tenant", tenant_values, metrics.label_capped)
        self.label_length = label_length
        self.services: set[str] = set()
        self.breakers: dict[tuple, str] = {}
        self.miss_cost: dict[str, tuple[Decimal, int, str, str]] = {}  # service -> (total, n, provider, model)
        self.sinks: list = []
        self.component_features: dict[str, str] = {}  # component -> feature, for spans without pipeline.feature

    def clip(self, value: str) -> str:
        return value if len(value) <= self.label_length else value[:self.label_length]

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
        comp = self.clip(r.component)
        r.component = comp
        if r.feature is None:
            r.feature = self.component_features.get(comp)
        duration = r.duration_ns * NS
        status = "error" if r.error else "ok"
        m.component_duration.observe((svc, comp, status), duration, r.trace_id)
        if r.error:
            m.component_errors.inc((svc, comp, self.clip(r.error_type)))
        attrs = r.attrs
        outcome = "failure" if r.error else "success"
        if comp == "rag_lookup" or r.operation in RAG_OPERATIONS:
            m.rag_lookups.inc((svc, self.clip(first_str(attrs, "pipeline.rag.source") or "default"), outcome))
        if r.operation == "execute_tool":
            m.tool_calls.inc((svc, self.clip(first_str(attrs, "gen_ai.tool.name") or "unknown"), outcome))
        if r.provider or r.operation in LLM_OPERATIONS or r.usage is not None:
            self._record_genai(r, svc, duration)
        if r.cache_result or r.cache_name:
            self._record_cache(r, svc)
        for flag, variant, reason in r.flags:
            m.flag_evaluations.inc((svc, self.clip(flag), self.clip(variant), self.clip(reason)))
        if "pipeline.circuit_breaker.name" in attrs or r.breaker_events:
            self._record_breaker(r, svc)
        frm, to = first_str(attrs, "pipeline.fallback.from"), first_str(attrs, "pipeline.fallback.to")
        if frm or to:
            m.fallbacks.inc((svc, self.clip(frm or "unknown"), self.clip(to or "unknown")))
        route = first_str(attrs, "pipeline.route.name")
        if route:
            m.routing.inc((svc, self.clip(route), self.clip(first_str(attrs, "pipeline.route.reason") or "unknown")))

    def _record_genai(self, r: SpanRecord, svc: str, duration: float) -> None:
        m = self.m
        provider = self.clip(r.provider or "unknown")
        op = self.clip(r.operation or "chat")
        req_model = self.clip(r.request_model or "")
        resp_model = self.clip(r.response_model or "")
        base = (op, provider, req_model, resp_model)
        m.genai_duration.observe(base + (self.clip(r.error_type or ""),), duration, r.trace_id)
        if r.ttfc is not None:
            m.genai_ttfc.observe((op, provider, req_model), r.ttfc, r.trace_id)
        u = r.usage
        if u is None:
            return
        m.genai_tokens.observe(base + ("input",), u.input)
        m.genai_tokens.observe(base + ("output",), u.output)
        model = self.clip(r.model or "unknown")
        for token_type, n in (("input", u.input), ("output", u.output), ("cache_read", u.cache_read),
                              ("cache_creation", u.cache_creation), ("reasoning", u.reasoning)):
            if n:
                m.tokens.inc((svc, provider, model, token_type), n)
        price = self.pricing.price(r.model)
        if price is None:
            m.unpriced_tokens.inc((svc, model), u.input + u.output)
            if r.model:
                self.pricing.warn_unpriced(r.model)
            return
        cost = Pricing.cost(price, u.input, u.output, u.cache_read, u.cache_creation)
        for token_type, amount in (("input", cost.input), ("output", cost.output),
                                   ("cache_read", cost.cache_read), ("cache_creation", cost.cache_write)):
            if amount:
                m.cost.inc((svc, provider, model, token_type), amount)
        if cost.saved:
            m.cost_saved.inc((svc, provider, model, "prompt_cache"), cost.saved)
        r.cost = cost.total

    def _record_cache(self, r: SpanRecord, svc: str) -> None:
        m, attrs = self.m, r.attrs
        cache = self.clip(r.cache_name or "default")
        if r.cache_result:
            m.cache_requests.inc((svc, cache, r.cache_result))
        size = first_number(attrs, "pipeline.cache.size")
        if size is not None and size >= 0:
            m.cache_size.set((svc, cache), size)
        capacity = first_number(attrs, "pipeline.cache.capacity")
        if capacity is not None and capacity >= 0:
            m.cache_capacity.set((svc, cache), capacity)
        evictions = first_count(attrs, "pipeline.cache.evictions")
        if evictions:
            m.cache_evictions.inc((svc, cache), evictions)

    def _set_breaker(self, svc: str, name: str, state: str) -> None:
        key = (svc, name)
        if self.breakers.get(key) == state:
            return
        self.breakers[key] = state
        for s in BREAKER_STATES:
            self.m.breaker_state.set((svc, name, s), 1.0 if s == state else 0.0)

    def _record_breaker(self, r: SpanRecord, svc: str) -> None:
        m, attrs = self.m, r.attrs
        for name, frm, to in r.breaker_events:
            name = self.clip(name)
            m.breaker_transitions.inc((svc, name, frm, to))
            self._set_breaker(svc, name, to)
        name = first_str(attrs, "pipeline.circuit_breaker.name")
        if not name:
            return
        name = self.clip(name)
        state = first_str(attrs, "pipeline.circuit_breaker.state")
        if state in BREAKER_STATES and not r.breaker_events:
            self._set_breaker(svc, name, state)
        outcome = first_str(attrs, "pipeline.circuit_breaker.outcome")
        if outcome in ("success", "failure", "not_permitted"):
            m.breaker_calls.inc((svc, name, outcome))

    # --- per request ---------------------------------------------------------------------------

    def record_trace(self, trace: Trace, reason: str) -> RequestSummary | None:
        self.m.traces_completed.inc((reason,))
        root = trace.root
        if root is None:
            return None
        m = self.m
        svc = root.service
        mode = self.clip(root.mode or "default")
        tenant = self.clip(self.tenant(root.tenant or "default"))
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
        for s in spans:
            if s.cost is not None:
                cost += s.cost
            if s.model and model is None:
                model = self.clip(s.model)
            for flag, variant, _ in s.flags:
                variants[self.clip(flag)] = self.clip(variant)
            if s.usage is not None:
                u = s.usage
                tokens["input"] += u.input
                tokens["output"] += u.output
                tokens["cache_read"] += u.cache_read
                tokens["cache_creation"] += u.cache_creation
                tokens["reasoning"] += u.reasoning
            if s.cache_result:
                cache_lookups.append((s.cache_name or "default", s.cache_result, s.feature))
                if s.cache_kind == "response" and response_cache != "hit":
                    response_cache = s.cache_result
            a = s.attrs
            q = first_number(a, "pipeline.quality.score")
            if q is not None and 0 <= q <= 1:
                quality = q
            c = first_number(a, "pipeline.quality.confidence")
            if c is not None and 0 <= c <= 1:
                confidence = c
            n = first_count(a, "pipeline.quality.citations")
            if n is not None:
                citations = n
            reason = first_str(a, "pipeline.degradation.reason")
            if reason:
                m.degraded.inc((svc, self.clip(reason)))
            for w in str_list(a, "pipeline.warnings"):
                m.warnings.inc((svc, self.clip(w)))
        cache_status = root.cache_status or response_cache or "none"
        status = "error" if root.error else "ok"
        key = (svc, mode, status, cache_status)
        m.requests.inc(key)
        m.request_duration.observe(key, duration, trace.trace_id)
        m.tenant_requests.inc((svc, tenant, status))
        m.request_cost.inc((svc, mode, tenant), cost)
        for comp, ns in critical_ns.items():
            m.component_critical.inc((svc, comp), ns * NS)
        for comp, ns in self_ns.items():
            m.component_self.inc((svc, comp), ns * NS)
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
            critical={c: ns * NS for c, ns in critical_ns.items()},
            self_time={c: ns * NS for c, ns in self_ns.items()},
            by_feature={f: ns * NS for f, ns in feature_ns.items()},
            variants=variants, features_enabled=root.features_enabled, cache_lookups=cache_lookups,
            tokens=dict(tokens), quality=quality, confidence=confidence, citations=citations,
        )
        for sink in self.sinks:
            sink(summary)
        return summary

    def _record_response_cache(self, svc: str, cache_status: str, cost: Decimal, spans) -> None:
        """A response-cache hit skipped the LLM: value it at the mean cost of this service's misses."""
        if cache_status == "miss" and cost:
            llm = next((s for s in spans if s.cost is not None), None)
            total, n, provider, model = self.miss_cost.get(svc, (ZERO, 0, "unknown", "unknown"))
            if llm is not None:
                provider, model = self.clip(llm.provider or "unknown"), self.clip(llm.model or "unknown")
            self.miss_cost[svc] = (total + cost, n + 1, provider, model)
        elif cache_status == "hit" and svc in self.miss_cost:
            total, n, provider, model = self.miss_cost[svc]
            self.m.cost_saved.inc((svc, provider, model, "response_cache"), total / n)
