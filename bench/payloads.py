"""Realistic OTLP payloads: pipeline traces of 7-10 spans with GenAI attributes and flag events,
batched 512 spans per export request as the SDK's BatchSpanProcessor sends them."""
from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

MS = 1_000_000
MODELS = [("openai", "gpt-4o-mini-2024-07-18"), ("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku-20241022")]
FLAGS = ["redis_caching", "conversation_context", "rag_weather", "response_streaming"]


def _kv(key, value):
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(rng, trace_id, parent, name, component, start, end, attrs, events=()):
    s = Span(trace_id=trace_id, span_id=rng.getrandbits(64).to_bytes(8, "big"), parent_span_id=parent, name=name,
             kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=start, end_time_unix_nano=end)
    s.attributes.extend(_kv(k, v) for k, v in {"pipeline.component": component, **attrs}.items())
    for ev_name, ev_attrs in events:
        e = s.events.add(name=ev_name, time_unix_nano=start)
        e.attributes.extend(_kv(k, v) for k, v in ev_attrs.items())
    return s


def trace(rng: random.Random, base_ns: int, tenants: int = 20) -> list[Span]:
    """One request of 7-10 spans, children first and the root last, as the SDK exports them.

    Every request: the gateway root, an input guardrail, the query's embedding (GenAI, priced), a
    semantic cache lookup, response assembly (quality attributes) and saving the conversation
    turn. A cache hit (35 %) adds the check that the cached answer is still fresh: 7 spans. A miss
    adds intent classification, 1-2 parallel RAG lookups and the LLM call: 9-10 spans."""
    tid = rng.getrandbits(128).to_bytes(16, "big")
    t = base_ns
    root_id = rng.getrandbits(64).to_bytes(8, "big")
    spans = []
    add = spans.append
    cursor = t + 2 * MS

    def step(name, component, ms, attrs=None):
        nonlocal cursor
        add(_span(rng, tid, root_id, name, component, cursor, cursor + ms * MS, attrs or {}))
        cursor += ms * MS

    hit = rng.random() < 0.35
    step("guardrail.input", "guardrail", 5)
    step("embeddings text-embedding-3-small", "embedding", rng.randint(15, 40), {
        "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small", "gen_ai.usage.input_tokens": rng.randint(10, 60),
        "pipeline.rag.source": "query"})
    step("cache.get", "cache_lookup", 3, {"pipeline.cache.name": "l1",
                                          "pipeline.cache.result": "hit" if hit else "miss",
                                          "pipeline.cache.size": 900, "pipeline.cache.capacity": 1000})
    if hit:
        step("cache.validate", "cache_validation", 4, {"pipeline.feature": "redis_caching"})
    else:
        step("intent", "intent_classification", 40)
        longest = 0
        for src in rng.sample(["weather", "sports", "airport"], rng.randint(1, 2)):
            d = rng.randint(50, 300) * MS
            longest = max(longest, d)
            add(_span(rng, tid, root_id, f"rag.{src}", "rag_lookup", cursor, cursor + d,
                      {"pipeline.rag.source": src, "pipeline.feature": f"{src}_rag"}))
        cursor += longest
        provider, model = rng.choice(MODELS)
        step(f"chat {model}", "llm_inference", rng.randint(300, 1500), {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
            "gen_ai.response.model": model, "gen_ai.usage.input_tokens": rng.randint(500, 3000),
            "gen_ai.usage.output_tokens": rng.randint(50, 600), "gen_ai.usage.cache_read.input_tokens": 256})
    step("assemble", "response_assembly", 20, {"pipeline.quality.score": round(rng.random(), 3),
                                               "pipeline.quality.confidence": 0.8, "pipeline.quality.citations": 2})
    step("session.save", "session_store", 3, {"pipeline.feature": "conversation_context"})
    events = [("feature_flag.evaluation", {"feature_flag.key": f,
                                           "feature_flag.result.variant": rng.choice(["on", "off"]),
                                           "feature_flag.result.reason": "split"}) for f in FLAGS]
    root = _span(rng, tid, b"", "POST /ask", "gateway", t, cursor + 5 * MS,
                 {"pipeline.mode": rng.choice(["chat", "voice", "search"]), "tenant.id": f"t{rng.randrange(tenants)}",
                  "enduser.id": f"user-{rng.randrange(10000)}", "http.request.method": "POST", "http.route": "/ask"},
                 events)
    root.span_id = root_id
    add(root)  # the root ends last: the SDK exports it after its children
    return spans


def batches(n_batches: int, spans_per_batch: int = 512, service: str = "rag-service", seed: int = 1,
            base_ns: int = 1_700_000_000_000 * MS) -> list[bytes]:
    """Serialized ExportTraceServiceRequests; traces are never split across batches."""
    rng = random.Random(seed)
    out = []
    for b in range(n_batches):
        spans: list[Span] = []
        while len(spans) < spans_per_batch:
            spans += trace(rng, base_ns + b * 1000 * MS)
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", service))
        rs.scope_spans.add().spans.extend(spans)
        out.append(req.SerializeToString())
    return out
