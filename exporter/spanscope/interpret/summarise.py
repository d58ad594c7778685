"""A finished trace summarised once: `summarise(trace)` is the RequestSummary everything after the
metrics reads (the recorder's request metrics, the rollups, the interaction store, feedback).

Pure: it reads the trace's SpanRecords (completed by interpret.facts) and writes nothing. Values are
as the spans carry them (mode, tenant, model, components, features, variants): whoever keys by one
bounds it (metric labels in metrics.recorder, rollups per minute). A flag's reason (`variant_reasons`)
is that of the evaluation its variant came from, as the span contract read it (lower case).
"""
from __future__ import annotations

from decimal import Decimal

from .summary import RequestSummary
from .traces import Trace, breakdown

NS = 1e-9
ZERO = Decimal(0)


def summarise(trace: Trace) -> RequestSummary | None:
    """The request of a finished trace; None without a local root (no request to speak of), or when
    the root reports a provider call another span already reported (two instrumentations of a
    call made outside any application span: one request, not two)."""
    root = trace.root
    if root is None or root.duplicate:
        return None
    spans = trace.spans
    critical_ns, self_ns, feature_ns = breakdown(spans, root)
    cost = ZERO
    model = llm = None
    variants: dict[str, str] = {}
    variant_reasons: dict[str, str] = {}
    t_input = t_output = t_cache_read = t_cache_creation = t_reasoning = 0
    usage_seen = False
    cache_lookups = []
    response_cache = None
    quality = confidence = citations = None
    degradations: list[str] = []
    warnings: list[str] = []
    components: dict = {}  # component -> [calls, errors, [durations s]]
    get_component = components.get
    cost_by_model: dict[str, Decimal] = {}
    for s in spans:
        if s.cost is not None:
            total = s.cost.total
            cost += total
            called = s.genai.model or "unknown"
            cost_by_model[called] = cost_by_model.get(called, ZERO) + total
            if llm is None:
                llm = (s.genai.provider, s.genai.model)
        calls = get_component(s.component)
        if calls is None:
            components[s.component] = [1, 1 if s.error else 0, [(s.end - s.start) * NS]]
        else:
            calls[0] += 1
            if s.error:
                calls[1] += 1
            calls[2].append((s.end - s.start) * NS)
        g = s.genai
        if g is not None and not s.duplicate:
            if g.model and model is None:
                model = g.model
            u = g.usage
            if u is not None:
                usage_seen = True
                t_input += u.input
                t_output += u.output
                t_cache_read += u.cache_read
                t_cache_creation += u.cache_creation
                t_reasoning += u.reasoning
        if s.flags:
            for flag, variant, reason in s.flags:
                variants[flag] = variant
                variant_reasons[flag] = reason
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
                degradations.append(q.degradation)
            warnings += q.warnings
    tokens = {"input": t_input, "output": t_output, "cache_read": t_cache_read, "cache_creation": t_cache_creation,
              "reasoning": t_reasoning} if usage_seen else {}
    root_cache = root.cache.status if root.cache is not None else None
    return RequestSummary(
        trace_id=trace.trace_id, service=root.service, mode=root.mode or "default",
        tenant=root.tenant or "default", user=root.user, error=root.error, start_ns=root.start,
        duration=root.duration_ns * NS, cache_status=root_cache or response_cache or "none", cost=cost,
        # The model that answered: a priced call has usage, so it has its response model; a failed
        # call before it (the primary, then the fallback) has only its request model.
        model=llm[1] if llm else model, llm=llm, cost_by_model=cost_by_model,
        critical={c: ns * NS for c, ns in critical_ns.items()},
        self_time={c: ns * NS for c, ns in self_ns.items()},
        by_feature={f: ns * NS for f, ns in feature_ns.items()},
        variants=variants, variant_reasons=variant_reasons, cache_lookups=cache_lookups,
        tokens=tokens,
        quality=quality, confidence=confidence, citations=citations,
        components=components, degraded=1 if degradations else 0, degradations=degradations, warnings=warnings,
    )
