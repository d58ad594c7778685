"""Synthetic LLM/RAG traffic for a running spanscope exporter, made with the real OpenTelemetry SDK.

Every request is one trace of the seed pipeline, with explicit timestamps (nothing sleeps):

    gateway (local root: mode, tenant, user, feature-flag evaluation events, enabled features)
    ├── cache_lookup   response cache l1, then l2 on a miss: hit/miss, size, capacity, evictions
    ├── intent_classification                         + a routing decision
    ├── rag_lookup ×2 in parallel                      weather/sports/airport, each with an embedding-cache
    │                                                  lookup inside; some time out
    ├── llm_inference  GenAI semconv: provider, request/response model (dated names, one unpriced
    │                  model), input/output/cache-read/cache-creation/reasoning tokens, TTFC;
    │                  circuit breaker name/state/outcome, state-change events, fallbacks
    ├── tool           gen_ai.operation.name=execute_tool, some failures
    └── response_assembly  quality score, confidence, citations, degradation reason, warnings

A response-cache hit skips everything between the lookup and the assembly. Three services use the
three OTLP transports (HTTP protobuf, gRPC, HTTP JSON). The label values are spread with co-prime
strides, so over any 72 consecutive requests every service × mode, tenant, model, cache layer, flag
variant, breaker state, RAG source and tool occurs, errors and degradations included, and every
metric family of docs/metrics.md gets series.

    gen = Traffic(otlp_http="http://127.0.0.1:4318", otlp_grpc="127.0.0.1:4317")
    sent = gen.send(72)          # what was sent, with trace ids (hex)
    gen.flush()
    Traffic.rate(web="http://127.0.0.1:8889", trace_ids=[s.trace_id for s in sent[:8]])
    gen.shutdown()

Also: `encoded_request(n)` (an OTLP protobuf body of n requests, encoded by the SDK),
`burst()` (concurrent raw exports, to show throttling), `send_invalid_span()` and
`send_malformed()` (rejections).
"""
from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.json.http.trace_exporter import (
    OTLPSpanExporter as JsonSpanExporter,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

# service name -> OTLP transport
SERVICES = {"rag-api": "http_protobuf", "chat-api": "grpc", "voice-api": "http_json"}
MODES = ("fast", "accurate", "agentic")
TENANTS = ("acme", "globex", "initech", "umbrella")
# (provider, request model, response model as the API reports it); the last model has no price.
MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("gcp.gemini", "gemini-2.5-flash", "gemini-2.5-flash"),
    ("acme_ai", "house-llm-1", "house-llm-1"),
)
FALLBACK_MODEL = ("mistral_ai", "mistral-small", "mistral-small")
# mlx_backend: a catalogue feature, so the Experiments dashboard's rollout panels (by feature) have data too.
FLAGS = {"mlx_backend": ("on", "off"), "prompt_version": ("v1", "v2", "v3")}
RAG_SOURCES = (("weather", "rag_weather"), ("sports", "rag_sports"), ("airport", "rag_airports"))
TOOLS = ("calculator", "home_assistant")
WARNINGS = ("low_confidence", "stale_data", "truncated_context")
DEGRADATIONS = ("fallback_model", "rag_timeout")
ENABLED_FEATURES = ["intent_classification", "conversation_context", "rag_weather", "rag_sports", "rag_airports",
                    "redis_caching", "response_streaming"]
CACHE_CAPACITY = {"l1": 1000, "l2": 5000, "embedding": 2000}
# Every breaker (one per provider) walks this cycle, each at its own phase.
BREAKER_CYCLE = ("closed", "closed", "open", "half_open")

MS = 1_000_000  # ns


@dataclass
class Sent:
    trace_id: str
    service: str
    mode: str
    error: bool
    cache_hit: bool


def otlp_exporter(transport: str, otlp_http: str, otlp_grpc: str | None) -> SpanExporter:
    traces_url = otlp_http.rstrip("/") + "/v1/traces"
    if transport == "grpc":
        if not otlp_grpc:
            raise ValueError("the gRPC service needs otlp_grpc")
        return GrpcSpanExporter(endpoint=otlp_grpc, insecure=True, timeout=10)
    if transport == "http_json":
        return JsonSpanExporter(endpoint=traces_url, timeout=10)
    return HttpSpanExporter(endpoint=traces_url, timeout=10)


class Traffic:
    def __init__(self, otlp_http: str | None = None, otlp_grpc: str | None = None, seed: int = 7,
                 exporters: dict[str, SpanExporter] | None = None, batch: bool = True):
        """Spans go to the exporter at `otlp_http`/`otlp_grpc`, or to the given `exporters`
        (service -> SpanExporter)."""
        self.rng = random.Random(seed)
        self.count = 0
        self.providers: dict[str, TracerProvider] = {}
        self.tracers = {}
        self.breaker_state: dict[str, str] = {}
        self.cache_entries = {name: capacity * 3 // 4 for name, capacity in CACHE_CAPACITY.items()}
        for service, transport in SERVICES.items():
            exporter = (exporters or {}).get(service) or otlp_exporter(transport, otlp_http, otlp_grpc)
            processor = (BatchSpanProcessor(exporter, max_queue_size=50_000, max_export_batch_size=1024,
                                            schedule_delay_millis=100)
                         if batch else SimpleSpanProcessor(exporter))
            provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "1.0.0"}))
            provider.add_span_processor(processor)
            self.providers[service] = provider
            self.tracers[service] = provider.get_tracer("spanscope.tests.traffic")

    # ---------------------------------------------------------------------------------------------

    def send(self, n: int) -> list[Sent]:
        """Emit `n` requests (whole traces) and return what was sent."""
        sent = [self._request(self.count + k) for k in range(n)]
        self.count += n
        return sent

    def flush(self, timeout_ms: int = 15_000) -> None:
        for service, provider in self.providers.items():
            if not provider.force_flush(timeout_ms):
                raise TimeoutError(f"spans of {service} were not exported within {timeout_ms} ms")

    def shutdown(self) -> None:
        for provider in self.providers.values():
            provider.shutdown()

    @classmethod
    def encoded_request(cls, n: int, seed: int = 11) -> bytes:
        """An OTLP ExportTraceServiceRequest (protobuf bytes) with `n` requests of every service,
        encoded by the SDK's own OTLP encoder."""
        memory = InMemorySpanExporter()
        gen = cls(exporters={s: memory for s in SERVICES}, seed=seed, batch=False)
        gen.send(n)
        gen.shutdown()
        return encode_spans(memory.get_finished_spans()).SerializeToString()

    def send_route_storm(self, n: int) -> None:
        """`n` requests, each routed by a route name never seen before (a cardinality attack on the
        `route` label): the family overflows and, once idle, the series expire."""
        tracer = self.tracers["rag-api"]
        end = time.time_ns() - 1000 * MS
        for k in range(n):
            root = tracer.start_span("POST /v1/chat", context=Context(), kind=SpanKind.SERVER,
                                     start_time=end - 20 * MS, attributes={
                                         "pipeline.component": "gateway", "pipeline.mode": "fast",
                                         "tenant.id": "acme", "pipeline.route.name": f"storm-{k}",
                                         "pipeline.route.reason": "experiment"})
            root.end(end_time=end)

    def send_invalid_span(self) -> None:
        """One span that ends before it starts: the exporter rejects it (invalid_timestamps)."""
        tracer = self.tracers["rag-api"]
        start = time.time_ns() - 1000 * MS
        span = tracer.start_span("clock skew", context=Context(), start_time=start)
        span.end(end_time=start - 5 * MS)

    # ---------------------------------------------------------------------------------------------

    def _request(self, i: int) -> Sent:
        rng = self.rng
        service = list(SERVICES)[i % 3]
        mode = MODES[(i // 3) % 3]
        tenant = TENANTS[i % 4]
        provider_index = (i // 9) % 4
        provider, request_model, response_model = MODELS[provider_index]
        error = i % 11 == 5
        cache_hit = i % 7 in (0, 3)
        tracer = self.tracers[service]

        t0 = time.time_ns() - 5_000 * MS  # the request finished a moment ago
        root = tracer.start_span(
            "POST /v1/chat", context=Context(), kind=SpanKind.SERVER, start_time=t0,
            attributes={"pipeline.component": "gateway", "pipeline.mode": mode, "tenant.id": tenant,
                        "enduser.id": f"user-{i % 13}", "pipeline.features.enabled": ENABLED_FEATURES,
                        "http.request.method": "POST", "http.route": "/v1/chat"})
        ctx = trace.set_span_in_context(root)
        for j, (flag, variants) in enumerate(FLAGS.items()):
            root.add_event("feature_flag.evaluation", timestamp=t0 + MS // 10, attributes={
                "feature_flag.key": flag, "feature_flag.result.variant": variants[(i // 2 + j) % len(variants)],
                "feature_flag.result.reason": ("targeting_match", "split")[j % 2],
                "feature_flag.provider.name": "spanscope-tests"})

        def child(name: str, start: int, dur_ms: float, attrs: dict, parent=ctx, kind=SpanKind.INTERNAL,
                  failed: str | None = None, events=()) -> int:
            span = tracer.start_span(name, context=parent, kind=kind, start_time=start, attributes=attrs)
            for event_name, event_attrs in events:
                span.add_event(event_name, attributes=event_attrs, timestamp=start + MS)
            if failed:
                span.set_attribute("error.type", failed)
                span.set_status(Status(StatusCode.ERROR, failed))
            end = start + int(dur_ms * MS)
            span.end(end_time=end)
            return end

        t = t0 + 2 * MS
        # Response cache: l1, then l2 on an l1 miss.
        t = child("cache get", t, rng.uniform(0.5, 2.0), self._cache_attrs("l1", cache_hit, i))
        if not cache_hit:
            cache_hit = i % 5 == 2
            t = child("cache get", t, rng.uniform(1.0, 4.0), self._cache_attrs("l2", cache_hit, i))
        if not cache_hit:
            route = "large_model" if mode == "accurate" else "small_model"
            t = child("classify intent", t, rng.uniform(10, 40), {
                "pipeline.component": "intent_classification", "pipeline.route.name": route,
                "pipeline.route.reason": "complexity" if mode == "accurate" else "cost"})
            # Two RAG lookups in parallel, each with an embedding-cache lookup inside.
            ends = []
            for k in range(2):
                source, feature = RAG_SOURCES[(i + k) % len(RAG_SOURCES)]
                rag = tracer.start_span(f"retrieve {source}", context=ctx, start_time=t, attributes={
                    "pipeline.component": "rag_lookup", "pipeline.feature": feature,
                    "pipeline.rag.source": source, "gen_ai.operation.name": "retrieval"})
                child("embedding cache get", t + MS, 1.0,
                      self._cache_attrs("embedding", (i // 3 + k) % 3 != 0, i, kind="embedding"),
                      parent=trace.set_span_in_context(rag))
                if i % 10 == 7 and k == 1:
                    rag.set_attribute("error.type", "timeout")
                    rag.set_status(Status(StatusCode.ERROR, "timeout"))
                end = t + int(rng.uniform(40, 200) * (1.5 if k else 1.0) * MS)
                rag.end(end_time=end)
                ends.append(end)
            t = max(ends)
            # The LLM call behind a circuit breaker; a call an open breaker refuses falls back.
            llm_attrs, llm_events, llm_failed = self._breaker(provider, provider_index, i, error)
            if llm_attrs["pipeline.circuit_breaker.outcome"] == "not_permitted":
                llm_attrs.update({"pipeline.fallback.from": request_model, "pipeline.fallback.to": FALLBACK_MODEL[1],
                                  "pipeline.degradation.reason": "fallback_model"})
                provider, request_model, response_model = FALLBACK_MODEL
            input_tokens = rng.randint(800, 3000)
            llm_attrs.update({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                "gen_ai.request.model": request_model, "gen_ai.response.model": response_model,
                "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": rng.randint(100, 600),
                "gen_ai.usage.cache_read.input_tokens": input_tokens // 2 if i % 3 == 0 else 0,
                "gen_ai.usage.cache_creation.input_tokens": 256 if i % 5 == 1 else 0,
                "gen_ai.usage.reasoning.output_tokens": 64 if mode == "accurate" else 0,
                "gen_ai.response.time_to_first_chunk": round(rng.uniform(0.1, 0.4), 3),
                "pipeline.feature": "response_streaming"})
            t = child(f"chat {request_model}", t, rng.uniform(300, 1500) * (2 if mode == "accurate" else 1),
                      llm_attrs, kind=SpanKind.CLIENT, failed=llm_failed, events=llm_events)
            tool = TOOLS[i % len(TOOLS)]
            t = child(f"execute_tool {tool}", t, rng.uniform(5, 50),
                      {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool},
                      failed="tool_error" if i % 9 == 4 else None)
        quality = {"pipeline.component": "response_assembly",
                   "pipeline.quality.score": round(rng.uniform(0.45, 0.98), 3),
                   "pipeline.quality.confidence": round(rng.uniform(0.4, 0.99), 3),
                   "pipeline.quality.citations": i % 5,
                   "pipeline.warnings": [WARNINGS[i % len(WARNINGS)]] if i % 2 else []}
        if i % 8 == 6:
            quality["pipeline.degradation.reason"] = DEGRADATIONS[(i // 8) % len(DEGRADATIONS)]
        t = child("assemble response", t, rng.uniform(5, 30), quality)
        if error:
            root.set_attribute("error.type", "upstream_error")
            root.set_status(Status(StatusCode.ERROR, "upstream_error"))
        root.end(end_time=t + MS)
        return Sent(format(root.get_span_context().trace_id, "032x"), service, mode, error, cache_hit)

    def _cache_attrs(self, name: str, hit: bool, i: int, kind: str = "response") -> dict:
        capacity = CACHE_CAPACITY[name]
        evicted = 0 if hit else (i // 3) % 3
        self.cache_entries[name] = max(0, min(capacity, self.cache_entries[name] + (0 if hit else 1) - evicted))
        return {"pipeline.component": "cache_lookup", "pipeline.cache.name": name, "pipeline.cache.kind": kind,
                "pipeline.cache.result": "hit" if hit else "miss", "pipeline.cache.size": self.cache_entries[name],
                "pipeline.cache.capacity": capacity, "pipeline.cache.evictions": evicted}

    def _breaker(self, breaker: str, phase: int, i: int, error: bool) -> tuple[dict, list, str | None]:
        """Breaker attributes, state-change events and failure of one LLM call."""
        state = BREAKER_CYCLE[(i // 36 + phase) % len(BREAKER_CYCLE)]
        events = []
        previous = self.breaker_state.get(breaker)
        if previous is not None and previous != state:
            events.append(("circuit_breaker.state_change", {
                "pipeline.circuit_breaker.name": breaker, "pipeline.circuit_breaker.from": previous,
                "pipeline.circuit_breaker.to": state}))
        self.breaker_state[breaker] = state
        if state == "open":
            outcome, failed = "not_permitted", None
        elif error or i % 13 == 8:
            outcome, failed = "failure", "rate_limited"
        else:
            outcome, failed = "success", None
        return ({"pipeline.circuit_breaker.name": breaker, "pipeline.circuit_breaker.state": state,
                 "pipeline.circuit_breaker.outcome": outcome}, events, failed)

    # ---------------------------------------------------------------------------------------------

    @staticmethod
    def _post(url: str, body: bytes, content_type: str) -> int:
        req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    @classmethod
    def rate(cls, web: str, trace_ids: list[str], ratings=(5, 4, 1, 3, 2)) -> list[int]:
        """POST one rating per interaction to /api/v1/feedback; the HTTP status of each."""
        url = web.rstrip("/") + "/api/v1/feedback"
        return [cls._post(url, json.dumps({"interaction_id": tid, "rating": ratings[k % len(ratings)]}).encode(),
                          "application/json")
                for k, tid in enumerate(trace_ids)]

    @classmethod
    def send_malformed(cls, otlp_http: str) -> int:
        """An undecodable OTLP/HTTP protobuf body (the exporter answers 400)."""
        return cls._post(otlp_http.rstrip("/") + "/v1/traces", b"\x0a\xff\xff\xff not protobuf",
                         "application/x-protobuf")

    @classmethod
    def burst(cls, otlp_http: str, body: bytes, concurrency: int = 16) -> list[int]:
        """`concurrency` simultaneous OTLP/HTTP exports of `body`; the HTTP status of each."""
        url = otlp_http.rstrip("/") + "/v1/traces"
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda _: cls._post(url, body, "application/x-protobuf"), range(concurrency)))
