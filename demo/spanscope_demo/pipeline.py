"""The simulated RAG service: one `handle()` is one request, emitted as a tree of real SDK spans.

gateway (root)
 ├─ cache_lookup l1 [→ l2]          redis_caching; a hit short-circuits to response_assembly
 ├─ conversation_context            conversation_context
 ├─ intent_classification           (mlx_backend makes it faster)
 │   └─ multi_intent_detection      multi_intent_detection
 ├─ clarification_check             clarification_questions; an ambiguous query ends here
 ├─ rag_lookup weather ║ sports     in parallel (threads), airport after weather
 ├─ chat <model>                    behind the "openai" circuit breaker, routed, maybe rejected
 │   [chat claude… fallback]        when the primary failed or its breaker is open
 │   [execute_tool …, chat <model>] agent mode and Home Assistant
 └─ response_assembly               quality, confidence, citations, degradation, warnings

Latency is simulated: spans get explicit start and end times on a clock that starts at the
request's real arrival time, so hundreds of requests per second cost no waiting at all.
"""
from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import world as w
from .breaker import NOT_PERMITTED, CircuitBreaker, Transition
from .cache import ResponseCache
from .clock import EndNow
from .features import FeatureFlags
from .scenarios import Scenario

MS = 1_000_000
S = 1_000_000_000
RAG_TIMEOUT_NS = 1500 * MS
LLM_TIMEOUT_NS = 3 * S       # a failed call that timed out waiting for the first byte
LLM_MAX_NS = 30 * S          # the client's overall read timeout on a streaming answer
RAG_MEDIAN_MS = {"weather": 60.0, "sports": 90.0, "airport": 120.0}
TOOL_MEDIAN_MS = {"get_weather_forecast": 120.0, "get_team_schedule": 110.0, "search_flights": 400.0,
                  "home_assistant.call_service": 150.0}
OUTPUT_TOKENS_BY_MODE = {"voice": 45, "chat": 150, "search": 100, "agent": 180}
SYSTEM_PROMPT_TOKENS = 600
TOKENS_PER_DOCUMENT = 180
FEEDBACK_COMMENTS = {
    1: ["Wrong answer.", "It ignored my question.", "Took forever and was wrong."],
    2: ["Outdated information.", "Not what I asked."],
    3: ["OK, but missing details."],
    4: ["Helpful.", "Good enough."],
    5: ["Perfect, thanks!", "Exactly what I needed."],
}


@dataclass
class Outcome:
    """What one request did, for the CLI's progress line and for tests."""

    trace_id: str
    status: str                 # "ok" | "error"
    duration_s: float
    cache_status: str           # "hit" | "miss" | "none"
    mode: str
    features: dict[str, bool]
    model: str | None = None
    quality: float | None = None
    sources: tuple[str, ...] = ()       # the retrieval sources that answered
    end_ns: int = 0                     # the simulated end of the root span (wall clock)


@dataclass
class _Request:
    """The state of one request while its spans are built."""

    query: w.Query
    on: dict[str, bool]
    root: trace.Span
    t: int                                      # the simulated clock, ns
    intents: tuple[str, ...] = ()
    context_tokens: int = 0
    rag_tokens: int = 0
    citations: int = 0
    penalty: float = 0.0                        # quality lost to degradations
    warnings: list[str] = field(default_factory=list)
    degradations: list[str] = field(default_factory=list)
    cache_status: str = "none"
    clarify: bool = False
    model: w.Model | None = None
    quality: float | None = None
    error: str | None = None
    sources: tuple[str, ...] = ()

    def degrade(self, reason: str, penalty: float, warning: str | None = None) -> None:
        self.degradations.append(reason)
        self.penalty += penalty
        if warning:
            self.warnings.append(warning)


@dataclass(frozen=True)
class _Lookup:
    source: str
    start: int
    end: int
    failed: bool
    documents: int


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return min(hi, max(lo, x))


class RagService:
    """Handles simulated requests; every external effect goes through the tracer and `feedback`."""

    def __init__(self, tracer: trace.Tracer, flags: FeatureFlags, scenario: Scenario,
                 rng: random.Random | None = None, feedback=None, feedback_rate: float = 0.05,
                 pool: ThreadPoolExecutor | None = None, start_ns: int | None = None, closer=None):
        self.tracer = tracer
        self.flags = flags
        self.scenario = scenario
        self.rng = rng or random.Random()
        self.world = w.World(self.rng)
        self.feedback = feedback                # callable(trace_id_hex, rating, comment, answered_ns) or None
        self.feedback_rate = feedback_rate
        self.pool = pool or ThreadPoolExecutor(max_workers=3, thread_name_prefix="rag-lookup")
        self.cache = ResponseCache()
        self.cache.warm(self.world.popular_keys(), start_ns or time.time_ns(), self.rng)
        self.closer = closer or EndNow()        # when spans are handed to the SDK (clock.py)
        self.breaker = CircuitBreaker("openai", failure_rate_threshold=0.5, window=50, min_calls=20)
        # The self-driven loop and the HTTP server (cli.py --mode both) share one service.
        self._lock = threading.Lock()

    # -- random building blocks ------------------------------------------------------------------

    def _latency(self, median_ms: float, sigma: float = 0.35, scaled: bool = True) -> int:
        """Log-normal latency in ns: long right tail, as service latencies have."""
        factor = self.scenario.latency_factor if scaled else 1.0
        return max(1000, int(median_ms * MS * math.exp(self.rng.gauss(0.0, sigma)) * factor))

    def _span(self, name: str, parent: trace.Span, start: int, attributes: dict,
              kind: SpanKind = SpanKind.INTERNAL) -> trace.Span:
        return self.tracer.start_span(name, context=trace.set_span_in_context(parent), kind=kind,
                                      attributes=attributes, start_time=start)

    def _leaf(self, name: str, parent: trace.Span, start: int, end: int, attributes: dict) -> None:
        """A span without children, started and ended in one go."""
        self.closer.end(self._span(name, parent, start, attributes), end)

    @staticmethod
    def _fail(span: trace.Span, error_type: str, message: str = "") -> None:
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, message or error_type))

    @staticmethod
    def _record_transitions(span: trace.Span, transitions: list[Transition]) -> None:
        for tr in transitions:
            span.add_event("circuit_breaker.state_change", {
                "pipeline.circuit_breaker.name": tr.breaker,
                "pipeline.circuit_breaker.from": tr.from_state,
                "pipeline.circuit_breaker.to": tr.to_state,
            }, timestamp=tr.at_ns)

    # -- the request ----------------------------------------------------------------------------

    def handle(self, now_ns: int | None = None, query: w.Query | None = None,
               attributes: dict | None = None) -> Outcome:
        """One request: drawn from the simulated world, or `query` from a caller (server.py), whose
        requests its callers rate themselves (no simulated feedback). `attributes` go on the root."""
        with self._lock:
            return self._handle(now_ns, query, attributes)

    def _handle(self, now_ns: int | None, query: w.Query | None, attributes: dict | None) -> Outcome:
        q = query or self.world.next_query()
        t0 = now_ns if now_ns is not None else time.time_ns()
        root = self.tracer.start_span("gateway", kind=SpanKind.SERVER, start_time=t0, attributes={
            "pipeline.component": "gateway",
            "pipeline.mode": q.mode,
            "tenant.id": q.tenant,
            "enduser.id": q.user,
            "http.request.method": "POST",
            "http.route": "/v1/ask",
            **(attributes or {}),
        })
        # The TracingHook puts one feature_flag.evaluation event per feature on the current span.
        with trace.use_span(root, end_on_exit=False):
            on = self.flags.evaluate(q.user, q.tenant, q.mode)
        root.set_attribute("pipeline.features.enabled", [name for name, enabled in on.items() if enabled])
        r = _Request(query=q, on=on, root=root, t=t0 + self._latency(1.5, scaled=False))

        hit = self._cache_lookup(r)
        if not hit:
            self._understand(r)
            if not r.clarify and r.error is None:
                self._retrieve(r)
                self._generate(r)
        if r.error is None:
            self._assemble(r, cached=hit)
            if r.cache_status == "miss" and not r.clarify and r.error is None:
                self.cache.store(q.cache_key, r.t)

        if r.cache_status != "none":
            root.set_attribute("pipeline.cache.status", r.cache_status)
        root.set_attribute("http.response.status_code", 200 if r.error is None else 503)
        if r.error is not None:
            self._fail(root, r.error)
        end = r.t = r.t + self._latency(0.8, scaled=False)
        self.closer.end(root, end)

        trace_id = format(root.get_span_context().trace_id, "032x")
        if query is None:
            self._maybe_feedback(trace_id, r)
        return Outcome(trace_id=trace_id, status="ok" if r.error is None else "error",
                       duration_s=(end - t0) / S, cache_status=r.cache_status, mode=q.mode, features=on,
                       model=r.model.response if r.model else None, quality=r.quality,
                       sources=r.sources, end_ns=end)

    # -- stages ---------------------------------------------------------------------------------

    def _cache_lookup(self, r: _Request) -> bool:
        if not r.on.get("redis_caching"):
            return False
        if self.scenario.flush_cache:
            self.cache.flush()
        key = r.query.cache_key
        for layer, median_ms, extra in ((self.cache.l1, 0.08, {}),
                                        (self.cache.l2, 1.2, {"db.system.name": "redis"})):
            start = r.t
            hit, miss_reason = layer.get(key, start)
            r.t = start + self._latency(median_ms, scaled=False)
            attrs = {
                "pipeline.component": "cache_lookup",
                "pipeline.feature": "redis_caching",
                "pipeline.cache.name": layer.name,
                "pipeline.cache.kind": "response",
                "pipeline.cache.result": "hit" if hit else "miss",
                "pipeline.cache.size": len(layer),
                "pipeline.cache.capacity": layer.capacity,
                "pipeline.cache.evictions": layer.evictions_since_last_report(),
                **extra,
            }
            if miss_reason:
                attrs["pipeline.cache.miss_reason"] = miss_reason
            span = self._span(f"cache_lookup {layer.name}", r.root, start, attrs)
            self.closer.end(span, r.t)
            if hit:
                if layer is self.cache.l2:
                    self.cache.l1.put(key, r.t)  # promote
                r.cache_status = "hit"
                return True
        r.cache_status = "miss"
        return False

    def _understand(self, r: _Request) -> None:
        q = r.query
        if r.on.get("conversation_context"):
            start = r.t
            r.t += self._latency(4.0, scaled=False)
            r.context_tokens = self.rng.randint(100, 800)
            self._leaf("conversation_context", r.root, start, r.t, {
                "pipeline.component": "intent_classification",
                "pipeline.feature": "conversation_context",
                "pipeline.context.tokens": r.context_tokens,
            })

        r.intents = q.intents if r.on.get("multi_intent_detection") else q.intents[:1]
        if len(q.intents) > len(r.intents):
            r.degrade("missed_intent", 0.1, "missed_intent")
        if r.on.get("intent_classification", True):
            start = r.t
            mlx = bool(r.on.get("mlx_backend"))
            degraded = bool(self.scenario.degraded_feature and r.on.get(self.scenario.degraded_feature))
            r.t += int(self._latency(12.0 if mlx else 35.0, scaled=False)
                       * (self.scenario.degraded_latency_factor if degraded else 1.0))
            span = self._span("intent_classification", r.root, start, {
                "pipeline.component": "intent_classification",
                "pipeline.feature": "intent_classification",
                "pipeline.intent.backend": "mlx" if mlx else "remote",
                "pipeline.intent.name": r.intents[0],
                "pipeline.intent.count": len(r.intents),
            })
            if degraded and self.rng.random() < self.scenario.degraded_failure_rate:
                self._fail(span, "classifier_error", f"{self.scenario.degraded_feature}: classification failed")
                r.error = "classifier_error"
            if r.on.get("multi_intent_detection"):
                child_start = r.t
                r.t += self._latency(15.0, scaled=False)
                self._leaf("multi_intent_detection", span, child_start, r.t, {
                    "pipeline.component": "intent_classification",
                    "pipeline.feature": "multi_intent_detection",
                    "pipeline.intent.count": len(r.intents),
                })
            self.closer.end(span, r.t)
        else:
            r.intents = ("general",)

        if r.on.get("clarification_questions"):
            start = r.t
            r.t += self._latency(2.0, scaled=False)
            self._leaf("clarification_check", r.root, start, r.t, {
                "pipeline.component": "intent_classification",
                "pipeline.feature": "clarification_questions",
                "pipeline.clarification.needed": q.ambiguous,
            })
            r.clarify = q.ambiguous
        elif q.ambiguous:
            r.degrade("ambiguous_query", 0.2, "ambiguous_query")

    def _plan_lookups(self, r: _Request, sources: list[str]) -> list[_Lookup]:
        """Weather and sports run in parallel; airport waits for weather (delays depend on it)."""
        plans: dict[str, _Lookup] = {}
        for source in ("weather", "sports", "airport"):
            if source not in sources:
                continue
            start = plans["weather"].end if source == "airport" and "weather" in plans else r.t
            duration = self._latency(RAG_MEDIAN_MS[source], sigma=0.4)
            failed = self.rng.random() < self.scenario.rag_failure_rate or duration > RAG_TIMEOUT_NS
            if failed:
                duration = min(duration, RAG_TIMEOUT_NS)
            plans[source] = _Lookup(source, start, start + duration, failed,
                                    0 if failed else self.rng.randint(1, 5))
        return list(plans.values())

    def _emit_lookup(self, parent: trace.Span, plan: _Lookup) -> None:
        span = self._span(f"rag_lookup {plan.source}", parent, plan.start, {
            "pipeline.component": "rag_lookup",
            "pipeline.feature": w.RAG_FEATURES[plan.source],
            "pipeline.rag.source": plan.source,
            "pipeline.rag.documents": plan.documents,
        }, kind=SpanKind.CLIENT)
        if plan.failed:
            self._fail(span, "timeout" if plan.end - plan.start >= RAG_TIMEOUT_NS else "backend_error")
        self.closer.end(span, plan.end)

    def _retrieve(self, r: _Request) -> None:
        needed = [i for i in r.intents if i in w.RAG_INTENTS]
        sources = [s for s in needed if r.on.get(w.RAG_FEATURES[s])]
        if len(sources) < len(needed):
            r.penalty += 0.12  # switched off on purpose: a warning, not a degradation
            r.warnings.append("rag_source_disabled")
        if not sources:
            return
        plans = self._plan_lookups(r, sources)
        # Each lookup's span is built on a worker thread with the root as explicit parent, the way
        # a service fanning out to retrieval backends propagates context across threads.
        list(self.pool.map(lambda plan: self._emit_lookup(r.root, plan), plans))
        r.t = max(p.end for p in plans)
        failed = [p for p in plans if p.failed]
        if failed:
            timeout = any(p.end - p.start >= RAG_TIMEOUT_NS for p in failed)
            r.degrade("rag_timeout" if timeout else "rag_error", 0.12 * len(failed), "rag_partial")
        ok = [p for p in plans if not p.failed]
        r.sources = tuple(p.source for p in ok)
        r.rag_tokens = sum(p.documents for p in ok) * TOKENS_PER_DOCUMENT
        r.citations = sum(self.rng.randint(0, p.documents) for p in ok)

    def _route(self, r: _Request) -> tuple[str, str]:
        q = r.query
        if self.scenario.forced_route:
            return self.scenario.forced_route, "config_override"
        if q.mode == "agent" and len(r.intents) > 1:
            return "reasoning", "multi_step_plan"
        if q.tenant in w.PREMIUM_TENANTS and q.complexity > 0.9:
            return "quality", "premium_tenant"
        if q.complexity > 0.98:
            return "quality", "complex_query"
        return "fast", "default"

    def _usage(self, model: w.Model, input_tokens: int, output_tokens: int) -> dict:
        """GenAI usage attributes; input includes cached input, as the convention defines it."""
        rng = self.rng
        attrs = {"gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens}
        if model.provider == "openai" and input_tokens >= 1024 and rng.random() < 0.55:
            # OpenAI caches prompt prefixes automatically, in 128-token steps past the first 1024.
            cached = 1024 + 128 * int((min(input_tokens, SYSTEM_PROMPT_TOKENS * 3) - 1024) / 128 * rng.random())
            attrs["gen_ai.usage.cache_read.input_tokens"] = min(cached, input_tokens)
        elif model.provider == "anthropic" and input_tokens >= 1024:
            # Anthropic caches up to an explicit breakpoint (system prompt and tools): written once, then read.
            key = ("gen_ai.usage.cache_read.input_tokens" if rng.random() < 0.8
                   else "gen_ai.usage.cache_creation.input_tokens")
            attrs[key] = 1024
        if model.reasoning:
            reasoning = int(output_tokens * rng.uniform(1.0, 4.0))
            attrs["gen_ai.usage.output_tokens"] = output_tokens + reasoning
            attrs["gen_ai.usage.reasoning.output_tokens"] = reasoning
        return attrs

    def _chat(self, r: _Request, model: w.Model, input_tokens: int, output_tokens: int, fail: bool,
              extra: dict, transitions_at_start: list[Transition] = (), finish: str = "stop"):
        """One LLM call as a GenAI client span; returns (span, end_ns) with the span still open."""
        start = r.t
        attrs = {
            "pipeline.component": "llm_inference",
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": model.provider,
            "gen_ai.request.model": model.request,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 1024,
            "server.address": "api.openai.com" if model.provider == "openai" else "api.anthropic.com",
            **extra,
        }
        span = self._span(f"chat {model.request}", r.root, start, attrs, kind=SpanKind.CLIENT)
        self._record_transitions(span, list(transitions_at_start))
        if fail:
            error = self.rng.choices(["server_error", "timeout", "rate_limited"], [0.6, 0.25, 0.15])[0]
            duration = LLM_TIMEOUT_NS if error == "timeout" else self._latency(300.0)
            self._fail(span, error, f"{model.provider} request failed: {error}")
            return span, start + duration
        usage = self._usage(model, input_tokens, output_tokens)
        ttft = int(self._latency(model.ttft_s * 1000) + input_tokens * 2000)  # prefill ~2 µs/token
        generated = usage["gen_ai.usage.output_tokens"]
        duration = ttft + int(generated / model.tokens_per_s * S * math.exp(self.rng.gauss(0, 0.15))
                              * self.scenario.latency_factor)
        duration = min(duration, LLM_MAX_NS)
        span.set_attributes(usage)
        streamed = bool(r.on.get("response_streaming"))
        span.set_attributes({"gen_ai.response.model": model.response,
                             "gen_ai.response.finish_reasons": [finish],
                             "gen_ai.response.id": f"chatcmpl-{span.get_span_context().span_id:016x}",
                             "gen_ai.request.stream": streamed})
        if streamed:
            span.set_attribute("gen_ai.response.time_to_first_chunk", ttft / S)
        return span, start + duration

    def _call_llm(self, r: _Request, model: w.Model, input_tokens: int, output_tokens: int,
                  extra: dict, finish: str = "stop") -> w.Model | None:
        """The primary model behind the breaker, then the fallback; the model that answered."""
        if model.provider != "openai":
            # Already on the fallback (a tool round trip after a fallback): no breaker in front.
            failed = self.rng.random() < self.scenario.fallback_failure_rate
            span, r.t = self._chat(r, model, input_tokens, output_tokens, failed, extra, finish=finish)
            self.closer.end(span, r.t)
            return None if failed else model
        breaker = self.breaker
        permitted, opened = breaker.acquire(r.t)
        state = breaker.state
        breaker_attrs = {"pipeline.circuit_breaker.name": breaker.name, "pipeline.circuit_breaker.state": state}
        if permitted:
            failed = self.rng.random() < self.scenario.llm_failure_rate
            span, end = self._chat(r, model, input_tokens, output_tokens, failed,
                                   {**extra, **breaker_attrs,
                                    "pipeline.circuit_breaker.outcome": "failure" if failed else "success"},
                                   transitions_at_start=opened, finish=finish)
            self._record_transitions(span, breaker.record(not failed, end))
            self.closer.end(span, end)
            r.t = end
            if not failed:
                return model
            reason = "upstream_error"
        else:
            # The breaker answers at once: a near-zero span records the rejected call.
            span = self._span(f"circuit_breaker {breaker.name}", r.root, r.t, {
                "pipeline.component": "llm_inference", **extra, **breaker_attrs,
                "pipeline.circuit_breaker.outcome": NOT_PERMITTED})
            r.t += 50_000
            self.closer.end(span, r.t)
            reason = "circuit_open"

        fallback = w.FALLBACK
        failed = self.rng.random() < self.scenario.fallback_failure_rate
        span, end = self._chat(r, fallback, input_tokens, output_tokens, failed, {
            "pipeline.fallback.from": model.request,
            "pipeline.fallback.to": fallback.request,
            "pipeline.fallback.reason": reason,
        }, finish=finish)
        self.closer.end(span, end)
        r.t = end
        if failed:
            return None
        r.degrade("fallback_model", 0.06)
        return fallback

    def _generate(self, r: _Request) -> None:
        q = r.query
        route, reason = self._route(r)
        model = w.ROUTES[route]
        input_tokens = int((SYSTEM_PROMPT_TOKENS + r.context_tokens + r.rag_tokens + self.rng.randint(15, 120))
                           * self.scenario.token_factor)
        output_tokens = max(8, int(OUTPUT_TOKENS_BY_MODE[q.mode] * (0.6 + q.complexity)
                                   * math.exp(self.rng.gauss(0, 0.3))))
        tool = self._tool_for(r)
        route_attrs = {"pipeline.route.name": route, "pipeline.route.reason": reason}
        if tool is None:
            r.model = self._call_llm(r, model, input_tokens, output_tokens, route_attrs)
        else:
            # The model asks for a tool, the tool runs, the model answers with its result.
            r.model = self._call_llm(r, model, input_tokens, self.rng.randint(20, 60), route_attrs,
                                     finish="tool_calls")
            if r.model is not None:
                tool_tokens = self._execute_tool(r, tool)
                r.model = self._call_llm(r, r.model, input_tokens + tool_tokens, output_tokens, {})
        if r.model is None:
            r.error = "llm_unavailable"

    def _tool_for(self, r: _Request) -> str | None:
        primary = r.intents[0]
        if primary == "smart_home":
            if not r.on.get("home_assistant"):
                # An operator's choice, not a fault: a worse answer and a warning, no degradation.
                r.penalty += 0.2
                r.warnings.append("integration_disabled")
                return None
            return w.TOOLS["smart_home"]
        if r.query.mode == "agent" and primary in w.TOOLS and self.rng.random() < 0.7:
            return w.TOOLS[primary]
        return None

    def _execute_tool(self, r: _Request, tool: str) -> int:
        start = r.t
        r.t += self._latency(TOOL_MEDIAN_MS[tool])
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": f"call_{self.rng.getrandbits(48):012x}",
        }
        if tool.startswith("home_assistant"):
            attrs["pipeline.feature"] = "home_assistant"
        span = self._span(f"execute_tool {tool}", r.root, start, attrs)
        failed = self.rng.random() < self.scenario.tool_failure_rate
        if failed:
            self._fail(span, "tool_error", f"{tool} failed")
            r.degrade("tool_failed", 0.15, "tool_failed")
        self.closer.end(span, r.t)
        return 40 if failed else self.rng.randint(150, 600)

    def _assemble(self, r: _Request, cached: bool) -> None:
        rng = self.rng
        start = r.t
        r.t += self._latency(0.6 if cached else 8.0, scaled=False)
        if r.clarify:
            kind, quality, confidence = "clarification", rng.uniform(0.7, 0.9), rng.uniform(0.55, 0.75)
        else:
            kind = "cached" if cached else "answer"
            quality = _clamp(rng.gauss(0.87, 0.05) - r.penalty - (0.02 if cached else 0.0))
            confidence = _clamp(quality + rng.gauss(0.0, 0.06))
            if cached:
                r.citations = rng.randint(0, 4)
        warnings = list(dict.fromkeys(r.warnings))
        if confidence < 0.55:
            warnings.append("low_confidence")
        if kind == "answer" and any(i in w.RAG_INTENTS for i in r.intents) and r.citations == 0:
            warnings.append("no_citations")
        attrs = {
            "pipeline.component": "response_assembly",
            "pipeline.response.type": kind,
            "pipeline.quality.score": round(quality, 4),
            "pipeline.quality.confidence": round(confidence, 4),
            "pipeline.quality.citations": r.citations,
        }
        if r.degradations:
            attrs["pipeline.degradation.reason"] = r.degradations[0]
        if warnings:
            attrs["pipeline.warnings"] = warnings
        span = self._span("response_assembly", r.root, start, attrs)
        if rng.random() < self.scenario.internal_error_rate:
            self._fail(span, "internal_error", "response post-processing raised")
            r.error = "internal_error"
        self.closer.end(span, r.t)
        r.quality = quality

    def _maybe_feedback(self, trace_id: str, r: _Request) -> None:
        if self.feedback is None or self.rng.random() >= self.feedback_rate:
            return
        if r.error is not None or r.quality is None:
            rating = 1
        else:
            rating = int(min(5, max(1, round(1 + 4 * r.quality + self.rng.gauss(0, 0.7)))))
        comment = self.rng.choice(FEEDBACK_COMMENTS[rating]) if self.rng.random() < 0.3 else None
        self.feedback(trace_id, rating, comment, r.t)
