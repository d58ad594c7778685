"""The span contract as data: every attribute the exporter reads, declared once (docs/span-contract.md).

A row says where a value goes in a SpanRecord (`field`: "genai.usage.input" is r.genai.usage.input),
the attribute keys that carry it (the current OpenTelemetry semantic-convention name first, then the
older names real instrumentations still emit), how its value is read (`type`, `check`, `unit`) and
what it is used for (`doc`). The reader (interpret/contract.py), the keys the wire reader keeps and
the attribute tables of docs/span-contract.md all come from these rows; regenerate the tables with

    python -m spanscope.interpret.attributes --markdown docs/span-contract.md

Several rows may feed one field: their keys are tried in the order of the rows, so another dialect
(or a user's own attribute) is one more row for the field, not more code.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Callable, NamedTuple

# --- value types: how an attribute's value is read; a value of the wrong type reads as absent -------


class Type(NamedTuple):
    name: str                          # as docs/span-contract.md states it
    parse: Callable                    # value -> typed value, or None when of the wrong type
    finish: Callable | None = None     # applied to the value chosen among the keys; None rejects it


def _text(v):
    return v if isinstance(v, str) and v else None


def _number(v):
    """A finite number (ints, floats, or numeric strings as some SDKs send them)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return v
    return None


def _count(v):
    return int(v) if v >= 0 else None


def _text_list(v):
    # A tuple, not a list: a record lives until its trace is finished, and the garbage collector
    # would traverse every list of every pending span.
    if isinstance(v, str):
        return (v,) if v else None
    if isinstance(v, list):
        return tuple(x for x in v if isinstance(x, str) and x)
    return None


def _any(v):
    return v


TEXT = Type("string", _text)
NUMBER = Type("double", _number)
COUNT = Type("int, ≥ 0", _number, _count)  # the first number found must not be negative
TEXT_LIST = Type("string[]", _text_list)
ANY = Type("any", _any)


class OneOf(NamedTuple):
    """The values accepted; any other reads as absent."""
    values: tuple

    def __call__(self, v):
        return v if v in self.values else None

    def __str__(self) -> str:
        return " \\| ".join(f"`{v}`" for v in self.values)


class Range(NamedTuple):
    low: float
    high: float = math.inf

    def __call__(self, v):
        return v if self.low <= v <= self.high else None

    def __str__(self) -> str:
        return f"≥ {self.low:g}" if self.high == math.inf else f"{self.low:g}–{self.high:g}"


# --- where an attribute is ----------------------------------------------------------------------

RESOURCE, SPAN = "resource", "span"


class Event(NamedTuple):
    """A span event the contract reads (its current name first, then older names)."""
    names: tuple[str, ...]


FLAG_EVALUATION = Event(("feature_flag.evaluation", "feature_flag"))
BREAKER_TRANSITION = Event(("circuit_breaker.state_change",))

BREAKER_STATES = ("closed", "open", "half_open")


class Attribute(NamedTuple):
    field: str                  # where the value goes in a SpanRecord (a flag evaluation, a transition for events)
    keys: tuple[str, ...]       # current name first, then old names still emitted
    type: Type
    doc: str                    # what it is used for, as docs/span-contract.md states it
    unit: str = ""              # UCUM, as the semantic conventions write it
    check: Callable | None = None  # OneOf / Range: other values read as absent
    default: object = None      # the field's value when absent
    on: str | Event = SPAN      # RESOURCE, SPAN, or the event that carries it
    table: str = ""             # the doc table listing it, when not the one of its part


def part(field: str) -> str:
    """The record part a field belongs to: "genai.usage.input" -> "genai.usage", "tenant" -> ""."""
    return field.rpartition(".")[0]


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("service", ("service.name",), TEXT, "label `service` (default `unknown_service`)",
              on=RESOURCE),
    # Every span
    Attribute("component", ("pipeline.component",), TEXT, "the span's component (first rule above)"),
    Attribute("error_type", ("error.type",), TEXT,
              "the span counts as an error; label `error_type` (status `ERROR` without it: `_OTHER`)"),
    Attribute("feature", ("pipeline.feature",), TEXT,
              "the feature this span's work belongs to (feature contribution, what-if)"),
    Attribute("rag_source", ("pipeline.rag.source",), TEXT,
              "the RAG source of a `rag_lookup` span (`weather`, `sports`, …)"),
    # The request (its local root span)
    Attribute("mode", ("pipeline.mode",), TEXT, "label `mode` (default `default`)", table="request"),
    Attribute("tenant", ("tenant.id",), TEXT, "label `tenant` (capped)", table="request"),
    Attribute("user", ("enduser.id",), TEXT, "interaction store only, never a label", table="request"),
    Attribute("cache.status", ("pipeline.cache.status",), TEXT,
              "the request's cache status; else derived: `hit` when any response-cache span of the trace hit, "
              "`miss` when one missed, `none` otherwise", check=OneOf(("hit", "miss", "none")), table="request"),
    # GenAI
    Attribute("genai.provider", ("gen_ai.provider.name", "gen_ai.system"), TEXT,
              "label `provider` / `gen_ai_provider_name`"),
    Attribute("genai.request_model", ("gen_ai.request.model", "llm.request.model"), TEXT,
              "pricing fallback, `gen_ai_request_model`"),
    Attribute("genai.response_model", ("gen_ai.response.model", "llm.response.model"), TEXT,
              "label `model` (else the request model), pricing"),
    Attribute("genai.operation", ("gen_ai.operation.name", "llm.request.type"), TEXT, "`gen_ai_operation_name`"),
    Attribute("genai.usage.input",
              ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens"), COUNT,
              "input tokens, cached ones included", unit="{token}", default=0),
    Attribute("genai.usage.output",
              ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens"), COUNT,
              "output tokens", unit="{token}", default=0),
    Attribute("genai.usage.cache_read",
              ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"), COUNT,
              "cached input read", unit="{token}", default=0),
    Attribute("genai.usage.cache_creation",
              ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens"), COUNT,
              "cached input written", unit="{token}", default=0),
    Attribute("genai.usage.reasoning",
              ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens", "llm.usage.reasoning_tokens"),
              COUNT, "reasoning tokens (part of output)", unit="{token}", default=0),
    Attribute("genai.ttfc", ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token"), NUMBER,
              "time to first chunk", unit="s", check=Range(0)),
    Attribute("genai.tool", ("gen_ai.tool.name",), TEXT, "tool name for `execute_tool` spans"),
    # Cache
    Attribute("cache.name", ("pipeline.cache.name",), TEXT,
              "label `cache` (the layer: `l1`, `l2`, `prompt`, `embedding`, …; default `default`)"),
    Attribute("cache.result", ("pipeline.cache.result",), TEXT, "a lookup's result", check=OneOf(("hit", "miss"))),
    Attribute("cache.kind", ("pipeline.cache.kind",), TEXT,
              "`response` (default) or another kind; only response caches set the request's cache status",
              default="response"),
    Attribute("cache.size", ("pipeline.cache.size",), NUMBER, "entries now held (gauge)", unit="{entry}",
              check=Range(0)),
    Attribute("cache.capacity", ("pipeline.cache.capacity",), NUMBER, "entries it can hold (gauge)",
              unit="{entry}", check=Range(0)),
    Attribute("cache.evictions", ("pipeline.cache.evictions",), COUNT,
              "evictions since the previous report (counter increment)", unit="{eviction}"),
    Attribute("cache.miss_reason", ("pipeline.cache.miss_reason",), TEXT,
              "why a lookup missed: `absent`, `expired`, `evicted` (feeds the TTL recommendation)"),
    # Quality
    Attribute("quality.score", ("pipeline.quality.score",), NUMBER, "the answer's quality score", unit="1",
              check=Range(0, 1)),
    Attribute("quality.confidence", ("pipeline.quality.confidence",), NUMBER, "the answer's confidence", unit="1",
              check=Range(0, 1)),
    Attribute("quality.citations", ("pipeline.quality.citations",), COUNT, "citations in the answer",
              unit="{citation}"),
    Attribute("quality.degradation", ("pipeline.degradation.reason",), TEXT,
              "a degraded answer and why (`fallback_model`, `rag_timeout`, …)"),
    Attribute("quality.warnings", ("pipeline.warnings",), TEXT_LIST, "warning types", default=()),
    # Circuit breakers, fallbacks, routing
    Attribute("resilience.breaker", ("pipeline.circuit_breaker.name",), TEXT, "label `breaker`"),
    Attribute("resilience.state", ("pipeline.circuit_breaker.state",), TEXT,
              "state at the time of the call (drives the one-hot gauge)", check=OneOf(BREAKER_STATES)),
    Attribute("resilience.outcome", ("pipeline.circuit_breaker.outcome",), TEXT, "the call's outcome",
              check=OneOf(("success", "failure", "not_permitted"))),
    Attribute("resilience.fallback_from", ("pipeline.fallback.from",), TEXT,
              "a fallback was taken: what it fell back from"),
    Attribute("resilience.fallback_to", ("pipeline.fallback.to",), TEXT, "a fallback was taken: what it fell back to"),
    Attribute("resilience.route", ("pipeline.route.name",), TEXT, "a routing decision: the route taken"),
    Attribute("resilience.route_reason", ("pipeline.route.reason",), TEXT, "why the route was taken"),
    # Span events
    Attribute("flag.key", ("feature_flag.key",), TEXT, "label `flag`", on=FLAG_EVALUATION),
    Attribute("flag.variant", ("feature_flag.result.variant", "feature_flag.variant"), TEXT,
              "label `variant`; else the value, else `unknown`", on=FLAG_EVALUATION),
    Attribute("flag.value", ("feature_flag.result.value",), ANY,
              "the variant when none is given (as a lower-case string)", on=FLAG_EVALUATION),
    Attribute("flag.reason", ("feature_flag.result.reason", "feature_flag.reason"), TEXT,
              "label `reason` (`unknown` when absent)", on=FLAG_EVALUATION),
    Attribute("flag.error", ("error.type",), ANY, "the evaluation failed: `reason=\"error\"`", on=FLAG_EVALUATION),
    Attribute("transition.breaker", ("pipeline.circuit_breaker.name",), TEXT, "label `breaker`",
              on=BREAKER_TRANSITION),
    Attribute("transition.from_state", ("pipeline.circuit_breaker.from",), TEXT, "the state left",
              check=OneOf(BREAKER_STATES), on=BREAKER_TRANSITION),
    Attribute("transition.to_state", ("pipeline.circuit_breaker.to",), TEXT, "the state entered (sets the state)",
              check=OneOf(BREAKER_STATES), on=BREAKER_TRANSITION),
)


# --- docs/span-contract.md ----------------------------------------------------------------------

def table_of(row: Attribute) -> str:
    """The doc table a row is listed in: its own, its part's, or "span" for the record's own fields."""
    return row.table or part(row.field).partition(".")[0] or ("resource" if row.on == RESOURCE else "span")


def markdown(rows, table: str) -> str:
    lines = ["| attribute | old names accepted | type | unit | use |", "|---|---|---|---|---|"]
    for row in rows:
        if table_of(row) != table:
            continue
        current, *old = (f"`{k}`" for k in row.keys)
        kind = row.type.name + (f", {row.check}" if row.check is not None else "")
        unit = f"`{row.unit}`" if row.unit else ""
        lines.append(f"| {current} | {', '.join(old)} | {kind} | {unit} | {row.doc} |")
    return "\n".join(lines)


MARKER = re.compile(r"(<!-- contract:(\w+) -->\n)(.*?)(<!-- /contract -->)", re.S)


def render(doc: str, rows=ATTRIBUTES) -> str:
    """`doc` with the table between each pair of markers (<!-- contract:NAME --> ... <!-- /contract -->)
    generated from `rows`."""
    return MARKER.sub(lambda m: f"{m[1]}{markdown(rows, m[2])}\n{m[4]}", doc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Regenerate the attribute tables of docs/span-contract.md.")
    p.add_argument("--markdown", type=Path, required=True, metavar="DOC", help="the doc to rewrite in place")
    p.add_argument("--check", action="store_true", help="only report whether the doc is up to date")
    args = p.parse_args(argv)
    doc = args.markdown.read_text()
    new = render(doc)
    if args.check:
        if new != doc:
            print(f"{args.markdown} is out of date: run without --check", file=sys.stderr)
            return 1
        return 0
    args.markdown.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
