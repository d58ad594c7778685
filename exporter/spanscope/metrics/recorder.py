"""Recording: SpanRecords and request summaries into the metric families.

Per-span signals (component latency, errors, GenAI usage and cost, cache, breakers, flag
evaluations) are recorded as spans arrive (`record_span`); request-level signals (end-to-end
latency, critical path, self time, quality, per-variant latency and cost) from the request's summary
(`record_request`, a sink like the others). Both only read what they are given: label values are
capped here (LabelValues), into the recorder's own keys, never written back: the summary and
what follows it (rollups, the interaction store) keep the values as sent.
"""
from __future__ import annotations

from decimal import Decimal

from ..interpret.attributes import BREAKER_STATES, CACHING_PROVIDERS
from ..interpret.contract import LLM_OPERATIONS, RAG_OPERATIONS, SpanRecord
from ..interpret.pricing import Pricing
from ..interpret.summary import RequestSummary
from .catalogue import Metrics

NS = 1e-9
ZERO = Decimal(0)
OTHER = "__other__"
MEMO = 10_000  # entries of a LabelValues.memo


class LabelValues:
    """Bounds every label's values: cut to `length` characters, and at most `limit` distinct values
    per label (`limits` overrides it per label, e.g. tenant); newcomers beyond it become `__other__`
    (counted per label). A value unused for the series TTL gives its slot back (`expire`), so a flood
    of junk values fades like its series instead of locking later values out until a restart.
    This bounds the series and everything keyed by label values downstream (rollups, impact)."""

    def __init__(self, limit: int, length: int, counter, limits: dict | None = None):
        self.limit, self.length, self.counter = limit, length, counter
        self.limits = limits or {}
        self.seen: dict[str, dict[str, float]] = {}  # label -> admitted value -> last known in use
        # label -> values used since the last expiry pass: a hit is one set lookup, with no clock read;
        # `expire` stamps them with its own time (a value's last use is known to within one pass).
        self.fresh: dict[str, set] = {}
        self.pinned: dict[str, frozenset] = {}  # label -> values that never expire (configured components)
        self.memos: list[dict] = []

    def memo(self) -> dict:
        """A dict for the caller to memoise the admitted values of several labels at once (a span's
        GenAI labels: one lookup instead of six calls). Emptied by every expiry pass, so a value in use
        goes through __call__ (and is marked in use) again in each pass. Filled through `keep`."""
        memo: dict = {}
        self.memos.append(memo)
        return memo

    def keep(self, memo: dict, sent: tuple, labels: tuple) -> tuple:
        """Put `sent` -> `labels` into `memo` when it has room (MEMO entries), no value was capped (each
        capped use is counted) and no value as sent is longer than a label value (a flood of long
        values cut to one admitted value would fill it with long keys); returns `labels`."""
        if len(memo) < MEMO and OTHER not in labels and all(v is None or len(v) <= self.length for v in sent):
            memo[sent] = labels
        return labels

    def __call__(self, label: str, value: str) -> str:
        fresh = self.fresh.get(label)
        if fresh is not None and value in fresh:
            return value
        return self._admit(label, value)

    def _admit(self, label: str, value: str) -> str:
        seen = self.seen.get(label)
        if seen is None:
            seen = self.seen[label] = {}
            self.fresh[label] = set()
        if len(value) > self.length:
            value = value[:self.length]
        if value in seen or len(seen) < self.limits.get(label, self.limit):
            seen.setdefault(value, 0.0)
            self.fresh[label].add(value)
            return value
        self.counter.inc((label,))
        return OTHER

    def fresh_values(self, label: str) -> set:
        """The values of `label` used since the last expiry pass, as a live set: a value in it is
        admitted as it is (what __call__ checks first)."""
        if label not in self.fresh:
            self.seen.setdefault(label, {})
            self.fresh[label] = set()
        return self.fresh[label]

    def pin(self, label: str, values) -> None:
        """Admit `values` for good (they count against the cap and never expire)."""
        self.pinned[label] = self.pinned.get(label, frozenset()) | frozenset(values)
        self.seen.setdefault(label, {}).update(dict.fromkeys(values, 0.0))
        self.fresh.setdefault(label, set()).update(values)

    def taken(self, label: str, value: str) -> str:
        """What `value` became when it was first capped (a request's components and flags were,
        span by span): the same key again, neither counted nor admitted a second time."""
        seen = self.seen.get(label, ())
        if value in seen:
            return value
        value = value[:self.length]
        return value if value in seen else OTHER

    def expire(self, ttl: float, now: float) -> int:
        """Give back the slots of the values not used for `ttl` seconds (as Store.expire does for
        series, in the same housekeeping pass); how many were given back."""
        cutoff = now - ttl
        released = 0
        for memo in self.memos:
            memo.clear()
        for label, seen in self.seen.items():
            fresh = self.fresh[label]
            seen.update(dict.fromkeys(fresh, now))
            fresh.clear()
            pinned = self.pinned.get(label, ())
            stale = [v for v, last in seen.items() if last < cutoff and v not in pinned]
            for value in stale:
                del seen[value]
            released += len(stale)
        return released


class Recorder:
    def __init__(self, metrics: Metrics, pricing: Pricing, components, label_values: int, tenant_values: int,
                 label_length: int):
        self.m = metrics
        self.pricing = pricing
        self.components = list(components)
        self.label = LabelValues(label_values, label_length, metrics.label_capped, {"tenant": tenant_values})
        self.label.pin("component", self.components)  # configured components are never __other__
        self.fresh_components = self.label.fresh_values("component")
        self.services: set[str] = set()
        self.breakers: dict[tuple, str] = {}
        self.miss_cost: dict[str, tuple[Decimal, int, str, str]] = {}  # service -> (total, n, provider, model)
        self.genai_labels = self.label.memo()  # a call's values as sent -> their label values
        self.flag_labels = self.label.memo()   # a flag evaluation as read -> its label values

    def _new_service(self, service: str) -> None:
        """Series of the configured components start at zero, so rate() sees their first events."""
        self.services.add(service)
        m = self.m
        for comp in self.components:
            m.component_self.touch((service, comp))
            m.component_critical.touch((service, comp))
            m.component_errors.touch((service, comp, "_OTHER"))

    def expire(self, ttl: float, now: float) -> None:
        """Give back the label values idle for `ttl` (their series expire alike, Store.expire) and
        forget what the recorder kept per service for the services among them."""
        self.label.expire(ttl, now)
        live = self.label.seen.get("service", {})
        self.services.intersection_update(live)
        self.miss_cost = {svc: v for svc, v in self.miss_cost.items() if svc in live}
        self.breakers = {key: state for key, state in self.breakers.items() if key[0] in live}

    # --- per span ------------------------------------------------------------------------------

    def record_span(self, r: SpanRecord, svc: str) -> None:
        """`svc`: the span's service as a label value (capped once per resource by the ingest)."""
        m = self.m
        if svc not in self.services:
            self._new_service(svc)
        if r.duplicate:  # its call or retrieval was counted from another span (interpret.facts.Calls)
            if r.genai.is_provider_call():
                m.llm_spans_deduplicated.inc((svc, self.label("scope", r.scope or "unknown")))
            return
        comp = r.component
        if comp not in self.fresh_components:  # LabelValues.__call__ without the call for most spans
            comp = self.label("component", comp)
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
            elif genai.is_provider_call():
                self._record_genai(r, genai, svc, duration)
        if r.cache is not None:
            self._record_cache(r.cache, svc)
        if r.flags:
            memo = self.flag_labels
            for evaluation in r.flags:
                labels = memo.get(evaluation)
                if labels is None:
                    labels = self._flag_labels(evaluation)
                m.flag_evaluations.inc((svc, *labels))
        if r.resilience is not None or r.breaker_events:
            self._record_resilience(r, svc)

    def _flag_labels(self, evaluation: tuple) -> tuple:
        label = self.label
        flag, variant, reason = evaluation
        return label.keep(self.flag_labels, evaluation,
                          (label("flag", flag), label("variant", variant), label("reason", reason)))

    def _genai_labels(self, g, error_type: str | None) -> tuple:
        """(operation, provider, request model, response model, error type, model) as label values."""
        sent = (g.operation, g.provider, g.request_model, g.response_model, error_type, g.model)
        labels = self.genai_labels.get(sent)
        if labels is None:
            label = self.label
            labels = label.keep(self.genai_labels, sent, (
                label("operation", g.operation or "chat"), label("provider", g.provider or "unknown"),
                label("model", g.request_model or ""), label("model", g.response_model or ""),
                label("error_type", error_type or ""), label("model", g.model or "unknown")))
        return labels

    def _record_genai(self, r: SpanRecord, g, svc: str, duration: float) -> None:
        m = self.m
        op, provider, req_model, resp_model, error_type, model = self._genai_labels(g, r.error_type)
        base = (op, provider, req_model, resp_model)
        m.genai_duration.observe(base + (error_type,), duration, r.trace_id)
        if g.ttfc is not None:
            m.genai_ttfc.observe((op, provider, req_model), g.ttfc, r.trace_id)
        u = g.usage
        if u is None:
            return
        m.genai_tokens.observe(base + ("input",), u.input)
        m.genai_tokens.observe(base + ("output",), u.output)
        for token_type, n in (("input", u.input), ("output", u.output), ("cache_read", u.cache_read),
                              ("cache_creation", u.cache_creation), ("cache_creation_1h", u.cache_creation_1h),
                              ("reasoning", u.reasoning)):
            if n:
                m.tokens.inc((svc, provider, model, token_type), n)
        if not g.cache_details and g.operation in LLM_OPERATIONS and g.provider in CACHING_PROVIDERS:
            # priced at the full input rate: any cached input the provider reported is lost
            m.calls_without_cache_details.inc((svc, provider, self.label("scope", r.scope or "unknown")))
        cost = r.cost  # priced by interpret.facts
        if cost is None:
            m.unpriced_tokens.inc((svc, model), u.input + u.output)
            if g.model:
                self.pricing.warn_unpriced(g.model)
            return
        for token_type, amount in (("input", cost.input), ("output", cost.output),
                                   ("cache_read", cost.cache_read), ("cache_creation", cost.cache_write),
                                   ("reported", cost.reported)):
            if amount:
                m.cost.inc((svc, provider, model, token_type), amount)
        if cost.saved:
            m.cost_saved.inc((svc, provider, model, "prompt_cache"), cost.saved)
        reported = g.reported() if not cost.reported else None
        if reported is not None and reported != cost.total:  # the instrumentation's own figure disagrees
            direction = "reported_higher" if reported > cost.total else "reported_lower"
            m.cost_discrepancy.inc((svc, provider, model, direction), abs(reported - cost.total))

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
            m.fallbacks.inc((svc, label("fallback", x.fallback_from or "unknown"),
                             label("fallback", x.fallback_to or "unknown")))
        if x.route:
            m.routing.inc((svc, label("route", x.route), label("reason", x.route_reason or "unknown")))

    # --- per request ---------------------------------------------------------------------------

    def record_request(self, r: RequestSummary) -> None:
        m, label = self.m, self.label
        svc = label.taken("service", r.service)  # capped as its spans were (record_span)
        mode = label("mode", r.mode)
        tenant = label("tenant", r.tenant)
        cost, duration = r.cost, r.duration
        status = "error" if r.error else "ok"
        key = (svc, mode, status, r.cache_status)
        m.requests.inc(key)
        m.request_duration.observe(key, duration, r.trace_id)
        m.tenant_requests.inc((svc, tenant, status))
        m.request_cost.inc((svc, mode, tenant), cost)
        taken = label.taken  # components and flags were capped span by span (record_span)
        known = label.seen["component"]  # most components are: no call for them
        for comp, seconds in r.critical.items():
            m.component_critical.inc((svc, comp if comp in known else taken("component", comp)), seconds)
        for comp, seconds in r.self_time.items():
            m.component_self.inc((svc, comp if comp in known else taken("component", comp)), seconds)
        if r.variants:
            flags, variants = label.seen.get("flag", ()), label.seen.get("variant", ())  # as for components
            variant_errors = m.variant_errors
            for flag, variant in r.variants.items():
                vkey = (svc, flag if flag in flags else taken("flag", flag),
                        variant if variant in variants else taken("variant", variant))
                m.variant_duration.observe(vkey, duration, r.trace_id)
                m.variant_cost.inc(vkey, cost)
                if r.error:
                    variant_errors.inc(vkey)
                elif vkey not in variant_errors.series:  # Counter.touch without the call when it exists
                    variant_errors.touch(vkey)
        for reason in r.degradations:
            m.degraded.inc((svc, label("reason", reason)))
        for warning in r.warnings:
            m.warnings.inc((svc, label("warning", warning)))
        if r.quality is not None:
            m.quality.observe((svc, mode), r.quality, r.trace_id)
        if r.confidence is not None:
            m.confidence.observe((svc, mode), r.confidence, r.trace_id)
        if r.citations is not None:
            m.citations.observe((svc, mode), r.citations)
        self._record_response_cache(r, svc)

    def _record_response_cache(self, r: RequestSummary, svc: str) -> None:
        """A response-cache hit skipped the LLM: value it at the mean cost of this service's misses."""
        cost = r.cost
        if r.cache_status == "miss" and cost:
            total, n, provider, model = self.miss_cost.get(svc, (ZERO, 0, "unknown", "unknown"))
            if r.llm is not None:
                provider = self.label("provider", r.llm[0] or "unknown")
                model = self.label("model", r.llm[1] or "unknown")
            self.miss_cost[svc] = (total + cost, n + 1, provider, model)
        elif r.cache_status == "hit" and svc in self.miss_cost:
            total, n, provider, model = self.miss_cost[svc]
            self.m.cost_saved.inc((svc, provider, model, "response_cache"), total / n)
