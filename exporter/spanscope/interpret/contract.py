"""The span contract: what a span says, read into a SpanRecord (docs/span-contract.md).

Pure interpretation, no metrics: current OpenTelemetry semantic-convention names first, then the
older names real instrumentations still emit. A value of the wrong type is treated as absent.
"""
from __future__ import annotations

import math

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from ..decode.wire import RawSpan, Reader

STATUS_ERROR = Status.STATUS_CODE_ERROR
IS_REMOTE_KNOWN = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = 0x200        # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK

LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "completion"}
RAG_OPERATIONS = {"embeddings", "retrieval"}
FLAG_EVENTS = {"feature_flag.evaluation", "feature_flag"}
BREAKER_STATES = ("closed", "open", "half_open")


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


def str_list(attrs: dict, name: str) -> tuple[str, ...]:
    # A tuple, not a list: a record lives until its trace is finished, and the garbage collector
    # would traverse every list of every pending span.
    v = attrs.get(name)
    if isinstance(v, str) and v:
        return (v,)
    if isinstance(v, list):
        return tuple(x for x in v if isinstance(x, str) and x)
    return ()


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


class GenAI:
    """The GenAI facts of a span (present on LLM, embedding and tool spans)."""

    __slots__ = ("provider", "operation", "request_model", "response_model", "model", "usage", "ttfc", "tool")

    def __init__(self, a: dict):
        self.provider = first_str(a, "gen_ai.provider.name", "gen_ai.system")
        self.operation = first_str(a, "gen_ai.operation.name", "llm.request.type")
        self.request_model = first_str(a, "gen_ai.request.model", "llm.request.model")
        self.response_model = first_str(a, "gen_ai.response.model", "llm.response.model")
        self.model = self.response_model or self.request_model
        usage = Usage(a)
        self.usage = usage if usage.any() else None
        ttfc = first_number(a, "gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")
        self.ttfc = ttfc if ttfc is not None and ttfc >= 0 else None
        self.tool = first_str(a, "gen_ai.tool.name")

    def is_llm_call(self) -> bool:
        return self.operation in LLM_OPERATIONS or self.usage is not None or (
            self.provider is not None and self.operation is None)


class Cache:
    __slots__ = ("name", "result", "kind", "status", "size", "capacity", "evictions", "miss_reason")

    def __init__(self, a: dict):
        self.name = first_str(a, "pipeline.cache.name")
        result = first_str(a, "pipeline.cache.result")
        self.result = result if result in ("hit", "miss") else None
        self.kind = first_str(a, "pipeline.cache.kind") or "response"
        status = first_str(a, "pipeline.cache.status")
        self.status = status if status in ("hit", "miss", "none") else None
        size, capacity = first_number(a, "pipeline.cache.size"), first_number(a, "pipeline.cache.capacity")
        self.size = size if size is not None and size >= 0 else None
        self.capacity = capacity if capacity is not None and capacity >= 0 else None
        self.evictions = first_count(a, "pipeline.cache.evictions")
        self.miss_reason = first_str(a, "pipeline.cache.miss_reason")  # absent, expired, evicted


class Quality:
    __slots__ = ("score", "confidence", "citations", "degradation", "warnings")

    def __init__(self, a: dict):
        score, confidence = first_number(a, "pipeline.quality.score"), first_number(a, "pipeline.quality.confidence")
        self.score = score if score is not None and 0 <= score <= 1 else None
        self.confidence = confidence if confidence is not None and 0 <= confidence <= 1 else None
        self.citations = first_count(a, "pipeline.quality.citations")
        self.degradation = first_str(a, "pipeline.degradation.reason")
        self.warnings = str_list(a, "pipeline.warnings")


class Resilience:
    """Circuit breaker, fallback and routing facts of a span."""

    __slots__ = ("breaker", "state", "outcome", "fallback_from", "fallback_to", "route", "route_reason")

    def __init__(self, a: dict):
        self.breaker = first_str(a, "pipeline.circuit_breaker.name")
        state = first_str(a, "pipeline.circuit_breaker.state")
        self.state = state if state in BREAKER_STATES else None
        outcome = first_str(a, "pipeline.circuit_breaker.outcome")
        self.outcome = outcome if outcome in ("success", "failure", "not_permitted") else None
        self.fallback_from = first_str(a, "pipeline.fallback.from")
        self.fallback_to = first_str(a, "pipeline.fallback.to")
        self.route = first_str(a, "pipeline.route.name")
        self.route_reason = first_str(a, "pipeline.route.reason")


# Attribute keys the contract reads, by the part of the record they feed. Unknown keys are skipped
# without converting their values, which keeps spans with many attributes cheap.
BASE, GENAI, CACHE, QUALITY, RESILIENCE = 1, 2, 4, 8, 16
_GROUPS = {
    BASE: ("pipeline.component", "pipeline.feature", "pipeline.mode", "tenant.id", "enduser.id", "error.type",
           "pipeline.rag.source"),
    GENAI: ("gen_ai.provider.name", "gen_ai.system", "gen_ai.operation.name", "llm.request.type",
            "gen_ai.request.model", "llm.request.model", "gen_ai.response.model", "llm.response.model",
            "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens",
            "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens",
            "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
            "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens",
            "gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens", "llm.usage.reasoning_tokens",
            "gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token", "gen_ai.tool.name"),
    CACHE: ("pipeline.cache.name", "pipeline.cache.result", "pipeline.cache.kind", "pipeline.cache.status",
            "pipeline.cache.size", "pipeline.cache.capacity", "pipeline.cache.evictions",
            "pipeline.cache.miss_reason"),
    QUALITY: ("pipeline.quality.score", "pipeline.quality.confidence", "pipeline.quality.citations",
              "pipeline.degradation.reason", "pipeline.warnings"),
    RESILIENCE: ("pipeline.circuit_breaker.name", "pipeline.circuit_breaker.state", "pipeline.circuit_breaker.outcome",
                 "pipeline.fallback.from", "pipeline.fallback.to", "pipeline.route.name", "pipeline.route.reason"),
}
KNOWN_KEYS = {key: group for group, keys in _GROUPS.items() for key in keys}


class SpanRecord:
    """What the exporter keeps of one span: enough for per-span metrics and for the trace."""

    __slots__ = (
        "trace_id", "span_id", "parent_id", "is_root", "service", "name", "component", "start", "end",
        "error", "error_type", "feature", "mode", "tenant", "user", "rag_source",
        "genai", "cache", "quality", "resilience", "flags", "breaker_events", "cost",
    )

    @property
    def duration_ns(self) -> int:
        return self.end - self.start


def component_of(name: str, attrs: dict, genai: GenAI | None, span_names) -> str:
    explicit = attrs.get("pipeline.component")
    if isinstance(explicit, str) and explicit:
        return explicit
    for pattern, component in span_names:
        if pattern.search(name):
            return component
    if genai is not None:
        op = genai.operation
        if op in RAG_OPERATIONS:
            return "rag_lookup"
        if op == "execute_tool":
            return "tool"
        if op in LLM_OPERATIONS or (op is None and genai.provider and genai.usage is not None):
            return "llm_inference"
    return name or "unknown"


EVENT_KEYS = frozenset({
    "feature_flag.key", "feature_flag.result.variant", "feature_flag.variant", "feature_flag.result.value",
    "feature_flag.result.reason", "feature_flag.reason", "error.type",
    "pipeline.circuit_breaker.name", "pipeline.circuit_breaker.from", "pipeline.circuit_breaker.to",
})
BREAKER_EVENT = "circuit_breaker.state_change"
EVENT_NAMES = FLAG_EVENTS | {BREAKER_EVENT}


def _flag_evaluation(a: dict):
    key = first_str(a, "feature_flag.key")
    if not key:
        return None
    variant = first_str(a, "feature_flag.result.variant", "feature_flag.variant")
    if variant is None:
        value = a.get("feature_flag.result.value")
        variant = str(value).strip('"').lower() if value is not None else "unknown"
    reason = "error" if a.get("error.type") else (
        first_str(a, "feature_flag.result.reason", "feature_flag.reason") or "unknown").lower()
    return key, variant, reason


def _breaker_event(a: dict):
    name = first_str(a, "pipeline.circuit_breaker.name")
    frm, to = first_str(a, "pipeline.circuit_breaker.from"), first_str(a, "pipeline.circuit_breaker.to")
    if name and frm in BREAKER_STATES and to in BREAKER_STATES:
        return name, frm, to
    return None


def _events(events: list, r: SpanRecord) -> None:
    flags, breaker_events = [], []
    for name, attrs in events:
        if name in FLAG_EVENTS:
            found = _flag_evaluation(attrs)
            if found:
                flags.append(found)
        else:
            found = _breaker_event(attrs)
            if found:
                breaker_events.append(found)
    r.flags, r.breaker_events = flags, breaker_events


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def read_span(raw: RawSpan, service: str, span_names) -> SpanRecord:
    """Interpret one raw span (spanscope.wire). Raises ValueError for a span no metric can use."""
    trace_id, span_id, parent, flags, name, start, end, status_code, a, groups, events = raw
    if len(trace_id) != 16 or len(span_id) != 8:
        raise ValueError("invalid trace or span id")
    if end < start:
        raise ValueError("end before start")
    r = SpanRecord()
    r.trace_id = trace_id.hex()
    r.span_id = span_id
    r.parent_id = parent if len(parent) == 8 else b""
    r.is_root = not r.parent_id or (flags & IS_REMOTE_KNOWN != 0 and flags & IS_REMOTE != 0)
    r.service = service
    r.name = name
    r.start = start
    r.end = end
    get = a.get
    r.genai = GenAI(a) if groups & GENAI else None
    r.component = component_of(name, a, r.genai, span_names)
    error_type = _text(get("error.type"))
    r.error = status_code == STATUS_ERROR or error_type is not None
    r.error_type = error_type or ("_OTHER" if r.error else None)
    r.feature = _text(get("pipeline.feature"))
    r.mode = _text(get("pipeline.mode"))
    r.tenant = _text(get("tenant.id"))
    r.user = _text(get("enduser.id"))
    r.rag_source = _text(get("pipeline.rag.source"))
    r.cache = Cache(a) if groups & CACHE else None
    r.quality = Quality(a) if groups & QUALITY else None
    r.resilience = Resilience(a) if groups & RESILIENCE else None
    r.flags = r.breaker_events = ()  # most spans have no events: no lists for them (see str_list)
    if events:
        _events(events, r)
    r.cost = None
    return r


READER = Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS)
