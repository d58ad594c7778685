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


def _flag(v):
    """A boolean; some SDKs send "True" / "false" strings (litellm)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


_CLASS_REPR = re.compile(r"^<class '([\w.]+)'>$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")


def _short_class(v: str) -> str:
    """An error class as its short name: `<class 'openai.RateLimitError'>` and `openai.RateLimitError`
    are `RateLimitError` (one label value per error, whatever the instrumentation)."""
    m = _CLASS_REPR.match(v)
    if m:
        v = m[1]
    return v.rpartition(".")[2] if _DOTTED.match(v) else v


TEXT = Type("string", _text)
NUMBER = Type("double", _number)
COUNT = Type("int, ≥ 0", _number, _count)  # the first number found must not be negative
TEXT_LIST = Type("string[]", _text_list)
ANY = Type("any", _any)
FLAG = Type("boolean", _flag)
ERROR_CLASS = Type("string", _text, _short_class)


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
LIBRARIES = "libraries"  # the doc table of names only some instrumentations emit (OpenInference's, …)


class Event(NamedTuple):
    """A span event the contract reads (its current name first, then older names)."""
    names: tuple[str, ...]


FLAG_EVALUATION = Event(("feature_flag.evaluation", "feature_flag"))
BREAKER_TRANSITION = Event(("circuit_breaker.state_change",))
# Its time minus the span's start is the time to first chunk (no attributes read).
FIRST_CHUNK = Event(("gen_ai.content.completion.chunk", "First Token Stream Event"))
# Flag reasons (as read, lower case) of requests not randomly assigned to their variant: a cohort or a
# targeting rule forced it, or the evaluation failed (the caller's default). Comparisons of variants
# (experiments, rollout guards) leave them out; the per-variant metrics count every request.
NOT_RANDOM = ("targeting_match", "error")

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
    Attribute("error_type", ("error.type",), ERROR_CLASS,
              "the span counts as an error; label `error_type` (status `ERROR` without it: `_OTHER`); "
              "a class name is shortened (`<class 'openai.RateLimitError'>` → `RateLimitError`)"),
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
    # GenAI. An empty string reads as absent (litellm sends `gen_ai.system: ""` for embeddings).
    Attribute("genai.provider", ("gen_ai.provider.name", "gen_ai.system"), TEXT,
              "label `provider` / `gen_ai_provider_name`"),
    Attribute("genai.provider", ("llm.provider", "llm.system"), TEXT, "OpenInference", table=LIBRARIES),
    Attribute("genai.request_model", ("gen_ai.request.model", "llm.request.model"), TEXT,
              "pricing fallback, `gen_ai_request_model`"),
    Attribute("genai.response_model", ("gen_ai.response.model", "llm.response.model"), TEXT,
              "label `model` (else the request model), pricing"),
    Attribute("genai.response_model", ("llm.model_name", "embedding.model_name"), TEXT, "OpenInference",
              table=LIBRARIES),
    Attribute("genai.operation", ("gen_ai.operation.name", "llm.request.type"), TEXT,
              "`gen_ai_operation_name`; with the span kind, the span's component (table below)"),
    Attribute("genai.kind", ("openinference.span.kind", "traceloop.span.kind"), TEXT,
              "the span's kind when no operation is given (`LLM`, `EMBEDDING`, `CHAIN`, `workflow`, …; "
              "table below)", table=LIBRARIES),
    Attribute("genai.response_id", ("gen_ai.response.id",), TEXT,
              "two spans of one provider call (same id, overlapping in time) count once"),
    Attribute("genai.usage.input",
              ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens"), COUNT,
              "input tokens, cached ones included (instrumentations that leave them out are marked in the "
              "support matrix)", unit="{token}", default=0),
    Attribute("genai.usage.input", ("llm.token_count.prompt",), COUNT, "OpenInference", unit="{token}", default=0,
              table=LIBRARIES),
    Attribute("genai.usage.output",
              ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens"), COUNT,
              "output tokens", unit="{token}", default=0),
    Attribute("genai.usage.output", ("llm.token_count.completion",), COUNT, "OpenInference", unit="{token}",
              default=0, table=LIBRARIES),
    # Cache counts read as None when absent: a call without them has no cache breakdown (see
    # llm_calls_without_cache_details_total); contract._genai makes them 0.
    Attribute("genai.usage.cache_read",
              ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"), COUNT,
              "cached input read", unit="{token}"),
    Attribute("genai.usage.cache_read", ("llm.token_count.prompt_details.cache_read",), COUNT, "OpenInference",
              unit="{token}", table=LIBRARIES),
    Attribute("genai.usage.cache_creation",
              ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens",
               "gen_ai.usage.cache_creation_input_tokens"), COUNT,
              "cached input written (all durations)", unit="{token}"),
    Attribute("genai.usage.cache_creation", ("llm.token_count.prompt_details.cache_write",), COUNT,
              "OpenInference", unit="{token}", table=LIBRARIES),
    Attribute("genai.usage.cache_creation_1h", ("anthropic.usage.cache_creation.ephemeral_1h_input_tokens",), COUNT,
              "of the cached input written, what is kept 1 hour (priced at `cache_write_1h`)", unit="{token}",
              default=0, table=LIBRARIES),
    Attribute("genai.usage.reasoning",
              ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens", "llm.usage.reasoning_tokens"),
              COUNT, "reasoning tokens (part of output)", unit="{token}", default=0),
    Attribute("genai.usage.reasoning", ("llm.token_count.completion_details.reasoning",), COUNT, "OpenInference",
              unit="{token}", default=0, table=LIBRARIES),
    Attribute("genai.stream", ("gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming"), FLAG,
              "a streamed call (time to first chunk is recorded for streamed calls only)"),
    Attribute("genai.ttfc", ("gen_ai.response.time_to_first_chunk",), NUMBER,
              "time to first chunk (else the first chunk event's time after the span's start)", unit="s",
              check=Range(0)),
    Attribute("genai.server_ttft", ("gen_ai.server.time_to_first_token",), NUMBER,
              "time to first chunk of a streamed call (OpenLIT sets it on every call)", unit="s", check=Range(0),
              table=LIBRARIES),
    Attribute("genai.reported_cost", ("gen_ai.usage.cost", "gen_ai.cost.total_cost"), NUMBER,
              "the cost the instrumentation computed: compared with the table's "
              "(`llm_cost_discrepancy_usd_total`), used for models the table does not price", unit="USD",
              check=Range(0), table=LIBRARIES),
    Attribute("genai.tool", ("gen_ai.tool.name", "tool.name"), TEXT, "tool name for `execute_tool` spans"),
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


# --- components: what a span is, from its operation or its kind ----------------------------------

LLM, RAG, TOOL, GLUE, HTTP = "llm_inference", "rag_lookup", "tool", "orchestration", "http_client"

# gen_ai.operation.name -> the span's component. Agent, chain, task and workflow spans are one
# bounded `orchestration`, never one label value per runnable.
OPERATIONS = {
    "chat": LLM, "text_completion": LLM, "generate_content": LLM, "completion": LLM,
    "embeddings": RAG, "embedding": RAG, "retrieval": RAG, "vector_db_retrieve": RAG,
    "execute_tool": TOOL,
    "invoke_agent": GLUE, "create_agent": GLUE, "invoke_workflow": GLUE, "execute_task": GLUE,
}

# The operations that are a call to a provider (gen_ai_client_operation_duration_seconds; two spans
# of one call count once), as opposed to retrievals, tools and glue.
PROVIDER_CALLS = frozenset(op for op, component in OPERATIONS.items() if component == LLM) | {"embeddings", "embedding"}

# A span kind (`openinference.span.kind`, `traceloop.span.kind`) -> the operation it stands for,
# when the span gives none.
KINDS = {
    "LLM": "chat", "EMBEDDING": "embeddings", "RETRIEVER": "retrieval", "RERANKER": "retrieval",
    "TOOL": "execute_tool", "AGENT": "invoke_agent", "CHAIN": "invoke_workflow", "PROMPT": "invoke_workflow",
    "GUARDRAIL": "invoke_workflow", "EVALUATOR": "invoke_workflow",
    "workflow": "invoke_workflow", "task": "execute_task", "agent": "invoke_agent", "tool": "execute_tool",
}


# --- dialects: what an instrumentation means, by its instrumentation scope ------------------------

class Dialect(NamedTuple):
    """An instrumentation, recognised by the name of the scope its spans come from. Its attribute
    names are rows above (all dialects' names are read on every span: they do not collide); a
    dialect row says what its values mean where they differ from the convention, and names the
    glue spans its library makes."""
    name: str                         # as the log and the support matrix name it
    scopes: tuple[str, ...]           # scope names; "x.*" is every scope starting with "x."
    packages: tuple[str, ...] = ()    # what a user installs (the support matrix's tested versions)
    reads: str = ""                   # the support matrix's "what is read"
    input_excludes_cache: bool = False  # its input count leaves cached input out: added back
    component: str = ""               # every span of these scopes is this component
    span_names: tuple[tuple[str, str], ...] = ()  # (regex, component) for its glue spans
    call_name: str = ""               # regex (groups `operation`, `model`): a span so named without GenAI
    provider: str = ""                # attributes is a call to this provider (a failed call's bare span)


CONVENTION = Dialect("OpenTelemetry GenAI semantic conventions", ())

# The convention's span name, `{gen_ai.operation.name} {gen_ai.request.model}`, for a provider call.
CALL_NAME = r"^(?P<operation>chat|text_completion|generate_content|embeddings) (?P<model>\S+)$"

DIALECTS: tuple[Dialect, ...] = (
    Dialect("OpenLLMetry", ("opentelemetry.instrumentation.openai.v1", "opentelemetry.instrumentation.anthropic",
                            "opentelemetry.instrumentation.langchain", "opentelemetry.instrumentation.llamaindex",
                            "opentelemetry.instrumentation.bedrock", "opentelemetry.instrumentation.vertexai",
                            "opentelemetry.instrumentation.cohere", "opentelemetry.instrumentation.mistralai"),
            ("opentelemetry-instrumentation-openai", "opentelemetry-instrumentation-anthropic",
             "opentelemetry-instrumentation-langchain"),
            "`gen_ai.usage.*` (reasoning as `gen_ai.usage.reasoning_tokens`), `traceloop.span.kind`, first chunk "
            "from `gen_ai.content.completion.chunk` events",
            span_names=((r"\.(?:workflow|task|agent)$", GLUE), (r"^execute_task\b", GLUE))),
    Dialect("Anthropic SDK", ("com.anthropic.sdk.python",), ("anthropic",),
            "`gen_ai.usage.*`, `gen_ai.usage.cache_write.input_tokens`, 1-hour cache writes "
            "(`anthropic.usage.cache_creation.ephemeral_1h_input_tokens`), `gen_ai.response.time_to_first_chunk`"),
    Dialect("OpenInference", ("openinference.instrumentation.*",),
            ("openinference-instrumentation-openai", "openinference-instrumentation-langchain",
             "openinference-instrumentation-llama-index"),
            "`llm.token_count.*`, `llm.model_name`, `llm.provider` / `llm.system`, `openinference.span.kind`, "
            "first chunk from the `First Token Stream Event`"),
    Dialect("OpenTelemetry contrib", ("opentelemetry.instrumentation.openai_v2", "opentelemetry.util.genai.*"),
            ("opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai"),
            "`gen_ai.usage.input_tokens` / `output_tokens` (it reports no cached tokens: "
            "`llm_calls_without_cache_details_total`), `error.type` as a class repr"),
    Dialect("OpenLIT (Anthropic)", ("openlit.instrumentation.anthropic",), ("openlit",),
            "as OpenLIT; its input count leaves the cache out: cache read and written are added back",
            input_excludes_cache=True, call_name=CALL_NAME, provider="anthropic"),
    Dialect("OpenLIT", ("openlit.instrumentation.*",), ("openlit",),
            "`gen_ai.usage.*`, `gen_ai.usage.cost`, `gen_ai.server.time_to_first_token` (streamed calls only); "
            "a failed call's span carries no attributes: a call from its name `chat <model>`",
            call_name=CALL_NAME),
    Dialect("litellm", ("litellm",), ("litellm",),
            "`gen_ai.usage.*`, `gen_ai.cost.total_cost`, `llm.is_streaming` (no cached-token counts in the default "
            "mode: `llm_calls_without_cache_details_total`)",
            span_names=((r"^raw_gen_ai_request$", HTTP),)),
    Dialect("HTTP client", ("opentelemetry.instrumentation.httpx", "opentelemetry.instrumentation.requests",
                            "opentelemetry.instrumentation.urllib3", "opentelemetry.instrumentation.urllib",
                            "opentelemetry.instrumentation.aiohttp_client"), (),
            "nothing: its spans (OpenLIT's `POST` under each call) are `http_client`", component=HTTP),
)

# Providers whose APIs report cached input: a call to one without a cache count is priced at the full
# input rate (llm_calls_without_cache_details_total).
CACHING_PROVIDERS = frozenset({"openai", "anthropic", "azure.ai.openai", "aws.bedrock", "gcp.gemini",
                               "gcp.vertex_ai", "gcp.gen_ai", "deepseek", "x_ai"})


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


def operations_table() -> str:
    kinds: dict[str, list[str]] = {}
    for kind, op in KINDS.items():
        kinds.setdefault(op, []).append(f"`{kind}`")
    lines = ["| `gen_ai.operation.name` | span kinds standing for it | component |", "|---|---|---|"]
    lines += [f"| `{op}` | {', '.join(kinds.get(op, []))} | `{component}` |" for op, component in OPERATIONS.items()]
    return "\n".join(lines)


# The tested versions: the pins of the dialect tests' virtualenvs (tests/dialects/setups/*.txt).
SETUPS = Path(__file__).resolve().parents[3] / "tests" / "dialects" / "setups"


def tested_versions(setups: Path = SETUPS) -> dict[str, str]:
    versions: dict[str, set] = {}
    for pins in sorted(setups.glob("*.txt")):
        for line in pins.read_text().splitlines():
            name, sep, version = line.partition("==")
            if sep:
                versions.setdefault(name.strip().lower().replace("_", "-"), set()).add(version.strip())
    return {name: ", ".join(sorted(v)) for name, v in versions.items()}


def support_matrix(versions: dict[str, str] | None = None) -> str:
    versions = tested_versions() if versions is None else versions
    lines = ["| library | tested version | scopes | what is read | input includes cached |", "|---|---|---|---|---|"]
    for d in DIALECTS:
        packages = "<br>".join(f"{p} {versions.get(p, 'untested')}" for p in d.packages) or "-"
        scopes = ", ".join(f"`{name}`" for name in d.scopes)
        cached = "no: cache added back" if d.input_excludes_cache else "yes"
        lines.append(f"| {d.name} | {packages} | {scopes} | {d.reads} | {cached} |")
    return "\n".join(lines)


GENERATED = {"operations": operations_table, "dialects": support_matrix}
MARKER = re.compile(r"(<!-- contract:(\w+) -->\n)(.*?)(<!-- /contract -->)", re.S)


def render(doc: str, rows=ATTRIBUTES) -> str:
    """`doc` with the table between each pair of markers (<!-- contract:NAME --> ... <!-- /contract -->)
    generated from `rows` (or, for the component and dialect tables, from OPERATIONS, KINDS, DIALECTS)."""
    def table(name: str) -> str:
        return GENERATED[name]() if name in GENERATED else markdown(rows, name)
    return MARKER.sub(lambda m: f"{m[1]}{table(m[2])}\n{m[4]}", doc)


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
