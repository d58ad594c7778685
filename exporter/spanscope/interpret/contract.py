"""The span contract: what a span says, read into a SpanRecord (docs/span-contract.md).

Pure interpretation, no metrics. Which attributes are read, under which names and how, is the table
of interpret/attributes.py; this module lays its fields out into the record and reads them.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Callable, NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from ..decode.wire import RawSpan, Reader
from .attributes import (
    ATTRIBUTES,
    BREAKER_TRANSITION,
    FLAG_EVALUATION,
    SPAN,
    TEXT,
    Attribute,
    Event,
    part,
)

STATUS_ERROR = Status.STATUS_CODE_ERROR
IS_REMOTE_KNOWN = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = 0x200        # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK

LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "completion"}
RAG_OPERATIONS = {"embeddings", "retrieval"}


# --- reading the table's fields -----------------------------------------------------------------

class Field(NamedTuple):
    """A field with every row feeding it merged: its keys in the order of the rows."""
    name: str
    keys: tuple[str, ...]
    parse: Callable
    finish: Callable | None
    default: object


def _merge(rows) -> list[Field]:
    fields: dict[str, Field] = {}
    first: dict[str, Attribute] = {}
    for row in rows:
        head = first.setdefault(row.field, row)
        if (row.type, row.check, row.default) != (head.type, head.check, head.default):
            raise ValueError(f"the rows for {row.field} disagree on its type, check or default")
        seen = fields.get(row.field)
        fields[row.field] = (Field(row.field, row.keys, row.type.parse, _chain(row.type.finish, row.check), row.default)
                             if seen is None else seen._replace(keys=seen.keys + row.keys))
    return list(fields.values())


def _chain(first, then):
    if first is None or then is None:
        return first or then
    return lambda v: None if (v := first(v)) is None else then(v)


def _first(field: Field, a: dict):
    """The field's value in `a`: the first of its keys holding a value of the right type, finished."""
    parse = field.parse
    for key in field.keys:
        v = parse(a.get(key))
        if v is not None:
            return v if field.finish is None else field.finish(v)
    return None


def _index(fields: list[Field]) -> dict:
    """key -> (slot, parse, finish, the field for an older name). The reader walks the attributes a
    span carries, so a span costs what it carries, however many names the table knows."""
    return {key: (i, f.parse, f.finish, f if n else None) for i, f in enumerate(fields) for n, key in enumerate(f.keys)}


_TEXT = TEXT.parse


def _read(a: dict, by_key: dict, defaults: list) -> list:
    """The values of the attributes `a`, laid out as `by_key` says, over a copy of `defaults`."""
    values = defaults.copy()
    for key, v in a.items():
        known = by_key.get(key)
        if known is None:  # an attribute of another kind of event
            continue
        slot, parse, finish, field = known
        if field is None:  # a field's current name: its value, when of the right type, is the field's
            if parse is _TEXT:  # most are: the same test without the call
                if not isinstance(v, str) or not v:
                    continue
            else:
                v = parse(v)
            if v is not None and finish is not None:
                v = finish(v)
        else:  # an older name: the field's value is the first of its names holding one
            v = _first(field, a)
        if v is not None:
            values[slot] = v
    return values


# --- the span's fields: one list, part by part --------------------------------------------------

# The record's own fields (the table's fields without a part), in the order read_span sets them.
OWN = ("component", "error_type", "feature", "rag_source", "mode", "tenant", "user")


def _layout(rows) -> list[Field]:
    span_rows = [r for r in rows if r.on == SPAN]
    parts = {p: _merge(r for r in span_rows if part(r.field) == p)
             for p in dict.fromkeys(part(r.field) for r in span_rows)}
    own = {f.name: f for f in parts.pop("", [])}
    if set(own) != set(OWN):
        raise ValueError(f"the table's fields without a part must be SpanRecord's own {OWN}, not {tuple(own)}")
    return [own[name] for name in OWN] + [f for fields in parts.values() for f in fields]


# A span's values are read into a copy of DEFAULTS; each part of the record is built from its slice.
FIELDS = _layout(ATTRIBUTES)
_PARTS = [part(f.name) for f in FIELDS]
SLICES = {p: slice(_PARTS.index(p), len(_PARTS) - _PARTS[::-1].index(p)) for p in dict.fromkeys(_PARTS)}
SLOT = {f.name: i for i, f in enumerate(FIELDS)}
DEFAULTS = [f.default for f in FIELDS]
OWN_DEFAULTS = DEFAULTS[:len(OWN)]  # enough for a span without parts (most spans): its fields come first
_BY_KEY = _index(FIELDS)

# The parts a span's attributes feed, as bits: the wire reader ORs them per span, so read_span
# builds only the parts a span has. Unknown keys are skipped without converting their values, which
# keeps spans with many attributes cheap.
BASE, GENAI, CACHE, QUALITY, RESILIENCE = 1, 2, 4, 8, 16
_BITS = {"": BASE, "genai": GENAI, "cache": CACHE, "quality": QUALITY, "resilience": RESILIENCE}
KNOWN_KEYS = {key: _BITS[part(f.name).partition(".")[0]] for f in FIELDS for key in f.keys}

_new = tuple.__new__  # a part from its slice of values, without namedtuple's _make and its length check


def _names(p: str) -> tuple[str, ...]:
    return tuple(f.name.rpartition(".")[2] for f in FIELDS[SLICES[p]])


class Usage(namedtuple("Usage", _names("genai.usage"))):
    """GenAI token usage of one LLM span; input includes cached input, as the convention says."""
    __slots__ = ()


class GenAI(namedtuple("GenAI", _names("genai") + ("model", "usage"))):
    """The GenAI facts of a span (present on LLM, embedding and tool spans); `model` is the response
    model, else the request model; `usage` is None without tokens."""
    __slots__ = ()

    def is_llm_call(self) -> bool:
        return self.operation in LLM_OPERATIONS or self.usage is not None or (
            self.provider is not None and self.operation is None)


class Cache(namedtuple("Cache", _names("cache"))):
    __slots__ = ()


class Quality(namedtuple("Quality", _names("quality"))):
    __slots__ = ()


class Resilience(namedtuple("Resilience", _names("resilience"))):
    """Circuit breaker, fallback and routing facts of a span."""
    __slots__ = ()


_GENAI, _USAGE, _CACHE, _QUALITY, _RESILIENCE = (SLICES[p] for p in ("genai", "genai.usage", "cache", "quality",
                                                                     "resilience"))
_RESPONSE_MODEL, _REQUEST_MODEL = SLOT["genai.response_model"], SLOT["genai.request_model"]


def _genai(values: list) -> GenAI:
    usage = values[_USAGE]
    if any(usage):
        usage = _new(Usage, usage)
        # Some instrumentations report cached tokens apart from input (Anthropic's API does);
        # restore the convention's invariant so cached tokens are never priced twice or lost.
        if usage.cache_read + usage.cache_creation > usage.input:
            usage = usage._replace(input=usage.input + usage.cache_read + usage.cache_creation)
    else:
        usage = None
    genai = values[_GENAI]
    genai += (values[_RESPONSE_MODEL] or values[_REQUEST_MODEL], usage)
    return _new(GenAI, genai)


class SpanRecord:
    """What the exporter keeps of one span: enough for per-span metrics and for the trace."""

    __slots__ = (
        "trace_id", "span_id", "parent_id", "is_root", "service", "name", "start", "end", "error",
        "genai", "cache", "quality", "resilience", "flags", "breaker_events", "cost",
    ) + OWN

    @property
    def duration_ns(self) -> int:
        return self.end - self.start


def component_of(name: str, explicit: str | None, genai: GenAI | None, span_names) -> str:
    if explicit:
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


# --- span events: the record keeps (flag, variant, reason) per flag evaluation and
# (breaker, from, to) per breaker transition -----------------------------------------------------

def _event_layout(event: Event):
    fields = _merge(r for r in ATTRIBUTES if r.on == event)
    return _index(fields), [f.default for f in fields], {f.name: i for i, f in enumerate(fields)}


_FLAG_KEYS, _FLAG_DEFAULTS, _flag = _event_layout(FLAG_EVALUATION)
_KEY, _VARIANT, _VALUE, _REASON, _ERROR = (_flag[f"flag.{n}"] for n in ("key", "variant", "value", "reason", "error"))


def _flag_evaluation(a: dict):
    f = _read(a, _FLAG_KEYS, _FLAG_DEFAULTS)
    key = f[_KEY]
    if not key:
        return None
    variant = f[_VARIANT]
    if variant is None:
        value = f[_VALUE]
        variant = str(value).strip('"').lower() if value is not None else "unknown"
    reason = "error" if f[_ERROR] else (f[_REASON] or "unknown").lower()
    return key, variant, reason


_TRANSITION_KEYS, _TRANSITION_DEFAULTS, _transition = _event_layout(BREAKER_TRANSITION)
_BREAKER, _FROM, _TO = (_transition[f"transition.{n}"] for n in ("breaker", "from_state", "to_state"))


def _breaker_transition(a: dict):
    t = _read(a, _TRANSITION_KEYS, _TRANSITION_DEFAULTS)
    if t[_BREAKER] and t[_FROM] and t[_TO]:
        return t[_BREAKER], t[_FROM], t[_TO]
    return None


EVENTS = {name: read for event, read in ((FLAG_EVALUATION, _flag_evaluation), (BREAKER_TRANSITION, _breaker_transition))
          for name in event.names}
EVENT_NAMES = frozenset(EVENTS)
EVENT_KEYS = frozenset(k for r in ATTRIBUTES if isinstance(r.on, Event) for k in r.keys)


def _events(events: list, r: SpanRecord) -> None:
    flags, breaker_events = [], []
    for name, _, attrs in events:
        read = EVENTS[name]
        found = read(attrs)
        if found:
            (flags if read is _flag_evaluation else breaker_events).append(found)
    r.flags, r.breaker_events = flags, breaker_events


def read_span(raw: RawSpan, service: str, span_names) -> SpanRecord:
    """Interpret one raw span (decode.wire). Raises ValueError for a span no metric can use."""
    trace_id, span_id, parent, flags, name, start, end, status_code, a, groups, events, scope = raw
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
    values = _read(a, _BY_KEY, DEFAULTS if groups > BASE else OWN_DEFAULTS) if a else OWN_DEFAULTS
    # OWN's order; a tuple assignment rather than setattr per field: this is the hot path
    r.component, r.error_type, r.feature, r.rag_source, r.mode, r.tenant, r.user = values[:len(OWN)]
    r.genai = _genai(values) if groups & GENAI else None
    r.component = component_of(name, r.component, r.genai, span_names)
    r.error = status_code == STATUS_ERROR or r.error_type is not None
    if r.error and r.error_type is None:
        r.error_type = "_OTHER"
    r.cache = _new(Cache, values[_CACHE]) if groups & CACHE else None
    r.quality = _new(Quality, values[_QUALITY]) if groups & QUALITY else None
    r.resilience = _new(Resilience, values[_RESILIENCE]) if groups & RESILIENCE else None
    r.flags = r.breaker_events = ()  # most spans have no events: no lists for them (see attributes._text_list)
    if events:
        _events(events, r)
    r.cost = None
    return r


READER = Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS)
