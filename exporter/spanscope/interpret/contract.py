"""The span contract: what a span says, read into a SpanRecord (docs/span-contract.md).

Pure interpretation, no metrics. Which attributes are read, under which names and how, is the table
of interpret/attributes.py; this module lays its fields out into the record and reads them.
"""
from __future__ import annotations

import logging
import re
from collections import namedtuple
from decimal import Decimal
from typing import Callable, NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from ..decode.wire import RawSpan, Reader
from .attributes import (
    ATTRIBUTES,
    BREAKER_TRANSITION,
    CONVENTION,
    DIALECTS,
    FIRST_CHUNK,
    FLAG_EVALUATION,
    KINDS,
    LLM,
    NUMBER,
    OPERATIONS,
    PROVIDER_CALLS,
    RAG,
    SPAN,
    TEXT,
    Attribute,
    Dialect,
    Event,
    part,
)

log = logging.getLogger("spanscope.contract")

STATUS_ERROR = Status.STATUS_CODE_ERROR
IS_REMOTE_KNOWN = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = 0x200        # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK

LLM_OPERATIONS = frozenset(op for op, component in OPERATIONS.items() if component == LLM)
RAG_OPERATIONS = frozenset(op for op, component in OPERATIONS.items() if component == RAG)
NS = 1e-9


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


_TEXT = TEXT.parse
_NUMBER = NUMBER.parse


def _index(fields: list[Field]) -> dict:
    """key -> (slot, parse, finish, the field for an older name); a field's current name read as
    plain text (most keys) -> its slot alone, which the reader takes without unpacking or calls.
    The reader walks the attributes a span carries, so a span costs what it carries, however many
    names the table knows."""
    return {key: i if n == 0 and f.parse is _TEXT and f.finish is None else (i, f.parse, f.finish, f if n else None)
            for i, f in enumerate(fields) for n, key in enumerate(f.keys)}


def _read(a: dict, by_key: dict, defaults: list) -> list:
    """The values of the attributes `a`, laid out as `by_key` says, over a copy of `defaults`."""
    values = defaults.copy()
    for key, v in a.items():
        known = by_key.get(key)
        if known is None:  # an attribute of another kind of event
            continue
        if known.__class__ is int:  # a field's current name, plain text: a non-empty string is the field's
            if isinstance(v, str) and v:
                values[known] = v
            continue
        slot, parse, finish, field = known
        if field is None:  # a field's current name: its value, when of the right type, is the field's
            if parse is _TEXT:
                if not isinstance(v, str) or not v:
                    continue
            elif parse is not _NUMBER or v.__class__ is not int:  # an int is a number as it is
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


class GenAI(namedtuple("GenAI", _names("genai") + ("model", "usage", "cache_details"))):
    """The GenAI facts of a span (present on LLM, embedding and tool spans); `operation` is the span's,
    else the one its kind stands for; `ttfc` is set for streamed calls only; `model` is the response
    model, else the request model; `usage` is None without tokens; `cache_details`: the usage gave a
    cache count (possibly 0)."""
    __slots__ = ()

    def reported(self) -> Decimal | None:
        """The cost the instrumentation computed (OpenLIT, litellm), exact as sent."""
        return None if self.reported_cost is None else Decimal(repr(self.reported_cost))

    def is_provider_call(self) -> bool:
        """A call to a provider (chat, completion, embeddings), with or without token counts."""
        return self.operation in PROVIDER_CALLS or self.usage is not None or (
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
_G = {name: i for i, name in enumerate(_names("genai"))}  # offsets in the genai slice
_OPERATION, _KIND, _STREAM, _TTFC, _SERVER_TTFT = (_G[n] for n in ("operation", "kind", "stream", "ttfc",
                                                                      "server_ttft"))
_INPUT, _CACHE_READ, _CACHE_CREATION = (Usage._fields.index(n) for n in ("input", "cache_read", "cache_creation"))


def _genai(values: list, dialect: Dialect, first_chunk_s: float | None) -> GenAI:
    """The GenAI part: its usage as the convention means it (input includes cached input, whatever
    the dialect), its operation (else its kind's), its time to first chunk (streamed calls only)."""
    usage = values[_USAGE]
    cache_read, cache_creation = usage[_CACHE_READ], usage[_CACHE_CREATION]
    cache_details = cache_read is not None or cache_creation is not None
    if any(usage):
        if cache_read is None or cache_creation is None:
            usage[_CACHE_READ], usage[_CACHE_CREATION] = cache_read or 0, cache_creation or 0
        if dialect.input_excludes_cache:
            usage[_INPUT] += usage[_CACHE_READ] + usage[_CACHE_CREATION]
        usage = _new(Usage, usage)
    else:
        usage = None
    genai = values[_GENAI]
    if genai[_OPERATION] is None and genai[_KIND] is not None:
        genai[_OPERATION] = KINDS.get(genai[_KIND])
    if genai[_TTFC] is None:
        # OpenLIT sets its time to first token on every call; only a streamed call has a first chunk.
        genai[_TTFC] = genai[_SERVER_TTFT] if genai[_STREAM] else None
        if genai[_TTFC] is None:
            genai[_TTFC] = first_chunk_s
    genai += (values[_RESPONSE_MODEL] or values[_REQUEST_MODEL], usage, cache_details)
    return _new(GenAI, genai)


_BARE = dict.fromkeys(GenAI._fields)


def _named_call(name: str, dialect: Dialect) -> GenAI | None:
    """The call a span without GenAI attributes is, by its name, for a dialect whose failed calls
    carry none (OpenLIT's `chat <model>` span of a 429)."""
    m = dialect.call_name.match(name)
    if m is None:
        return None
    model = m["model"]
    return GenAI(**dict(_BARE, operation=m["operation"], request_model=model, model=model,
                        provider=dialect.provider or None, cache_details=False))


# --- dialects, resolved once per instrumentation scope -------------------------------------------

class Dialects:
    """The dialect of each instrumentation scope (the configured ones first, then
    attributes.DIALECTS), resolved once per scope name; a newly seen scope is logged once, at info."""

    MAX_SCOPES = 10_000  # scope names remembered; past it, resolved each time, not logged

    def __init__(self, dialects=DIALECTS):
        self.dialects = tuple(d._replace(span_names=tuple((re.compile(p), c) for p, c in d.span_names),
                                         call_name=re.compile(d.call_name) if d.call_name else None)
                              for d in dialects)
        self.of_scope: dict[str, Dialect] = {}

    def __call__(self, scope: str) -> Dialect:
        dialect = self.of_scope.get(scope)
        if dialect is None:
            dialect = self._resolve(scope)
            if len(self.of_scope) < self.MAX_SCOPES:
                self.of_scope[scope] = dialect
                log.info("instrumentation scope %r: read as %s", scope, dialect.name)
        return dialect

    def _resolve(self, scope: str) -> Dialect:
        for d in self.dialects:
            for name in d.scopes:
                if scope == name or (name.endswith("*") and scope.startswith(name[:-1])):
                    return d
        return CONVENTION


DEFAULT_DIALECTS = Dialects()


class SpanRecord:
    """What the exporter keeps of one span: enough for per-span metrics and for the trace."""

    __slots__ = (
        "trace_id", "span_id", "parent_id", "is_root", "service", "scope", "name", "start", "end", "error",
        "genai", "cache", "quality", "resilience", "flags", "breaker_events", "cost", "duplicate",
    ) + OWN

    @property
    def duration_ns(self) -> int:
        return self.end - self.start


def component_of(name: str, explicit: str | None, genai: GenAI | None, span_names,
                 dialect: Dialect = CONVENTION) -> str:
    """The span's own `pipeline.component`, else the configured span names, else its dialect's
    component, else its operation's (or kind's), else its dialect's glue span names, else its name."""
    if explicit:
        return explicit
    for pattern, component in span_names:
        if pattern.search(name):
            return component
    if dialect.component:
        return dialect.component
    if genai is not None:
        op = genai.operation
        component = OPERATIONS.get(op)
        if component is not None:
            return component
        if op is None and genai.provider and genai.usage is not None:
            return LLM
    for pattern, component in dialect.span_names:
        if pattern.search(name):
            return component
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


EVENTS = {name: read for event, read in ((FLAG_EVALUATION, _flag_evaluation), (BREAKER_TRANSITION, _breaker_transition),
                                          (FIRST_CHUNK, None))
          for name in event.names}
EVENT_NAMES = frozenset(EVENTS)
EVENT_KEYS = frozenset(k for r in ATTRIBUTES if isinstance(r.on, Event) for k in r.keys)


def _events(events: list, r: SpanRecord) -> float | None:
    """Sets the record's flag evaluations and breaker transitions; returns the seconds from the
    span's start to its first chunk event, if it has one."""
    flags, breaker_events = [], []
    first_chunk = None
    for name, when, attrs in events:
        read = EVENTS[name]
        if read is None:  # a chunk of a streamed response
            if first_chunk is None or when < first_chunk:
                first_chunk = when
            continue
        found = read(attrs)
        if found:
            (flags if read is _flag_evaluation else breaker_events).append(found)
    r.flags, r.breaker_events = flags, breaker_events
    return (first_chunk - r.start) * NS if first_chunk is not None and first_chunk >= r.start else None


def read_span(raw: RawSpan, service: str, span_names, dialects: Dialects = DEFAULT_DIALECTS,
              by_key: dict = _BY_KEY) -> SpanRecord:
    """Interpret one raw span (decode.wire). Raises ValueError for a span no metric can use.
    `dialects` resolves its scope's dialect; `by_key` is the table's index (with configured rows)."""
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
    r.scope = scope
    r.name = name
    r.start = start
    r.end = end
    values = _read(a, by_key, DEFAULTS if groups > BASE else OWN_DEFAULTS) if a else OWN_DEFAULTS
    # OWN's order; a tuple assignment rather than setattr per field: this is the hot path
    r.component, r.error_type, r.feature, r.rag_source, r.mode, r.tenant, r.user = values[:len(OWN)]
    r.flags = r.breaker_events = ()  # most spans have no events: no lists for them (see attributes._text_list)
    first_chunk = _events(events, r) if events else None
    dialect = dialects.of_scope.get(scope) or dialects(scope)
    if groups & GENAI:
        r.genai = _genai(values, dialect, first_chunk)
    else:  # a bare span is a call only where its dialect names calls so (no work for the others)
        r.genai = _named_call(name, dialect) if dialect.call_name else None
    if not r.component:
        r.component = component_of(name, None, r.genai, span_names, dialect)
    r.error = status_code == STATUS_ERROR or r.error_type is not None
    if r.error and r.error_type is None:
        r.error_type = "_OTHER"
    r.cache = _new(Cache, values[_CACHE]) if groups & CACHE else None
    r.quality = _new(Quality, values[_QUALITY]) if groups & QUALITY else None
    r.resilience = _new(Resilience, values[_RESILIENCE]) if groups & RESILIENCE else None
    r.cost = None
    r.duplicate = False
    return r


READER = Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS)


class Reading(NamedTuple):
    """How spans are read: the scopes' dialects, the table's index (read_span's `by_key`) and the
    wire reader keeping its keys."""
    dialects: Dialects
    by_key: dict
    reader: Reader


DEFAULT_READING = Reading(DEFAULT_DIALECTS, _BY_KEY, READER)


def configured(attributes=(), scopes=()) -> Reading:
    """The reading with a user's own rows (config `dialects`): attributes (key, field) read after the
    table's names of the field, and dialects (config.DialectScope) checked before the built-in ones.
    Raises ValueError naming an unknown field."""
    if not attributes and not scopes:
        return DEFAULT_READING
    first = {}
    for row in ATTRIBUTES:
        if row.on == SPAN:
            first.setdefault(row.field, row)
    rows = list(ATTRIBUTES)
    for a in attributes:
        if a.field not in first:
            raise ValueError(f"unknown field {a.field!r} (known: {', '.join(sorted(first))})")
        rows.append(first[a.field]._replace(keys=(a.key,), doc="configured"))
    fields = _layout(rows)
    by_key = _index(fields)
    known = {key: _BITS[part(f.name).partition(".")[0]] for f in fields for key in f.keys}
    dialects = Dialects(tuple(Dialect(s.name, tuple(s.scopes), input_excludes_cache=s.input_excludes_cache,
                                      component=s.component) for s in scopes) + DIALECTS)
    return Reading(dialects, by_key, Reader(known, EVENT_NAMES, EVENT_KEYS))
