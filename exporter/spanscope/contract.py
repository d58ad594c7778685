"""The span contract: what a span says, read into a SpanRecord (docs/span-contract.md).

Pure interpretation, no metrics: current OpenTelemetry semantic-convention names first, then the
older names real instrumentations still emit. A value of the wrong type is treated as absent.
"""
from __future__ import annotations

import math

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

STATUS_ERROR = Status.STATUS_CODE_ERROR
IS_REMOTE_KNOWN = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = 0x200        # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK

LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "completion"}
RAG_OPERATIONS = {"embeddings", "retrieval"}
FLAG_EVENTS = {"feature_flag.evaluation", "feature_flag"}
BREAKER_STATES = ("closed", "open", "half_open")


def any_value(v):
    """An OTLP AnyValue as a Python value (arrays as lists; maps are not read)."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind is None or kind == "kvlist_value":
        return None
    return getattr(v, kind)


def attributes(kvs) -> dict:
    return {kv.key: any_value(kv.value) for kv in kvs}


def first_str(attrs: dict, *names: str) -> str | None:
    for n in names:
        v = attrs.get(n)
        if isinstance(v, str) and v:
            return v
    return None


def first_number(attrs: dict, *names: str) -> float | None:
    """A finite number (ints, floats, or numeric strings as some SDKs send them)."""
    for n in names:
        v = attrs.get(n)
        if isinstance(v, bool):
            continue
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                continue
        if isinstance(v, (int, float)) and math.isfinite(v):
            return v
    return None


def first_count(attrs: dict, *names: str) -> int | None:
    """A non-negative integer count."""
    v = first_number(attrs, *names)
    if v is None or v < 0:
        return None
    return int(v)


def str_list(attrs: dict, name: str) -> list[str]:
    v = attrs.get(name)
    if isinstance(v, str) and v:
        return [v]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, str) and x]
    return []


class Usage:
    """GenAI token usage of one LLM span; input includes cached input, as the convention says."""

    __slots__ = ("input", "output", "cache_read", "cache_creation", "reasoning")

    def __init__(self, attrs: dict):
        self.input = first_count(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                                 "llm.usage.prompt_tokens") or 0
        self.output = first_count(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                                  "llm.usage.completion_tokens") or 0
        self.cache_read = first_count(attrs, "gen_ai.usage.cache_read.input_tokens",
                                      "gen_ai.usage.cache_read_input_tokens") or 0
        self.cache_creation = first_count(attrs, "gen_ai.usage.cache_creation.input_tokens",
                                          "gen_ai.usage.cache_creation_input_tokens") or 0
        self.reasoning = first_count(attrs, "gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
                                     "llm.usage.reasoning_tokens") or 0
        # Some instrumentations report cached tokens apart from input (Anthropic's API does);
        # restore the convention's invariant so cached tokens are never priced twice or lost.
        if self.cache_read + self.cache_creation > self.input:
            self.input += self.cache_read + self.cache_creation

    def any(self) -> bool:
        return bool(self.input or self.output or self.cache_read or self.cache_creation or self.reasoning)


class SpanRecord:
    """What the exporter keeps of one span: enough for per-span metrics and for the trace."""

    __slots__ = (
        "trace_id", "span_id", "parent_id", "is_root", "service", "name", "component", "start", "end",
        "error", "error_type", "attrs", "feature", "mode", "tenant", "user",
        "provider", "operation", "request_model", "response_model", "usage", "ttfc",
        "cache_name", "cache_result", "cache_kind", "cache_status",
        "flags", "features_enabled", "breaker_events", "cost", "model",
    )

    @property
    def duration_ns(self) -> int:
        return self.end - self.start


def component_of(name: str, attrs: dict, span_names) -> str:
    explicit = attrs.get("pipeline.component")
    if isinstance(explicit, str) and explicit:
        return explicit
    for pattern, component in span_names:
        if pattern.search(name):
            return component
    op = first_str(attrs, "gen_ai.operation.name", "llm.request.type")
    if op in LLM_OPERATIONS:
        return "llm_inference"
    if op in RAG_OPERATIONS:
        return "rag_lookup"
    if op == "execute_tool":
        return "tool"
    if op is None and first_str(attrs, "gen_ai.provider.name", "gen_ai.system") and (
            "gen_ai.usage.input_tokens" in attrs or "gen_ai.usage.prompt_tokens" in attrs):
        return "llm_inference"
    return name or "unknown"


def _flag_evaluations(span: Span) -> list[tuple[str, str, str]]:
    out = []
    for ev in span.events:
        if ev.name not in FLAG_EVENTS:
            continue
        a = attributes(ev.attributes)
        key = first_str(a, "feature_flag.key")
        if not key:
            continue
        variant = first_str(a, "feature_flag.result.variant", "feature_flag.variant")
        if variant is None:
            value = a.get("feature_flag.result.value")
            variant = str(value).strip('"').lower() if value is not None else "unknown"
        reason = "error" if a.get("error.type") else (
            first_str(a, "feature_flag.result.reason", "feature_flag.reason") or "unknown").lower()
        out.append((key, variant, reason))
    return out


def _breaker_events(span: Span) -> list[tuple[str, str, str]]:
    out = []
    for ev in span.events:
        if ev.name != "circuit_breaker.state_change":
            continue
        a = attributes(ev.attributes)
        name = first_str(a, "pipeline.circuit_breaker.name")
        frm, to = first_str(a, "pipeline.circuit_breaker.from"), first_str(a, "pipeline.circuit_breaker.to")
        if name and frm in BREAKER_STATES and to in BREAKER_STATES:
            out.append((name, frm, to))
    return out


def read_span(span: Span, service: str, span_names) -> SpanRecord:
    """Interpret one OTLP span. Raises ValueError for a span no metric can use."""
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        raise ValueError("invalid trace or span id")
    if span.end_time_unix_nano < span.start_time_unix_nano:
        raise ValueError("end before start")
    attrs = attributes(span.attributes)
    r = SpanRecord()
    r.trace_id = span.trace_id.hex()
    r.span_id = span.span_id
    r.parent_id = span.parent_span_id if len(span.parent_span_id) == 8 else b""
    r.is_root = not r.parent_id or (span.flags & IS_REMOTE_KNOWN and span.flags & IS_REMOTE) != 0
    r.service = service
    r.name = span.name
    r.start = span.start_time_unix_nano
    r.end = span.end_time_unix_nano
    r.attrs = attrs
    r.component = component_of(span.name, attrs, span_names)
    error_type = first_str(attrs, "error.type")
    r.error = span.status.code == STATUS_ERROR or error_type is not None
    r.error_type = error_type or ("_OTHER" if r.error else None)
    r.feature = first_str(attrs, "pipeline.feature")
    r.mode = first_str(attrs, "pipeline.mode")
    r.tenant = first_str(attrs, "tenant.id")
    r.user = first_str(attrs, "enduser.id")
    # GenAI
    r.provider = first_str(attrs, "gen_ai.provider.name", "gen_ai.system")
    r.operation = first_str(attrs, "gen_ai.operation.name", "llm.request.type")
    r.request_model = first_str(attrs, "gen_ai.request.model", "llm.request.model")
    r.response_model = first_str(attrs, "gen_ai.response.model", "llm.response.model")
    r.model = r.response_model or r.request_model
    usage = Usage(attrs)
    r.usage = usage if usage.any() else None
    ttfc = first_number(attrs, "gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")
    r.ttfc = ttfc if ttfc is not None and ttfc >= 0 else None
    # Cache
    r.cache_name = first_str(attrs, "pipeline.cache.name")
    result = first_str(attrs, "pipeline.cache.result")
    r.cache_result = result if result in ("hit", "miss") else None
    r.cache_kind = first_str(attrs, "pipeline.cache.kind") or "response"
    status = first_str(attrs, "pipeline.cache.status")
    r.cache_status = status if status in ("hit", "miss", "none") else None
    # Flags, features, breakers
    r.flags = _flag_evaluations(span) if span.events else []
    r.features_enabled = str_list(attrs, "pipeline.features.enabled")
    r.breaker_events = _breaker_events(span) if span.events else []
    r.cost = None
    return r
