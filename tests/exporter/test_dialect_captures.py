"""Replays what each real instrumentation emitted (tests/dialects/captures, captured from the real
libraries against the fake providers) through a real exporter, and checks the metrics against the
numbers the fake server reported (tests/dialects/README.md) and the pricing table's arithmetic.

Each call's spans become one OTLP/protobuf export request: a root span starts its own trace (the
Anthropic SDK's span and OpenLLMetry's, both without a parent, are in two traces, as exported), the
n-th span starts n ms after the first and ends n ms before the 1000th (so children and inner
siblings end, and are sent, first, as an SDK's batch processor sends them), and a span's events are
10 ms after its start. Each call is its own service."""
from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from published_prices import per_token
from protospans import kvs
from sdk import parse, value
from spanscope.app import Exporter
from spanscope.config import load
from spanscope.decode.otlp import read_protobuf
from spanscope.metrics.exposition import render

CAPTURES = Path(__file__).resolve().parents[1] / "dialects" / "captures"
MS = 1_000_000
STATUS = {"UNSET": Status.STATUS_CODE_UNSET, "OK": Status.STATUS_CODE_OK, "ERROR": Status.STATUS_CODE_ERROR}

# The fake server's usage (tests/dialects/README.md, "Calls and the numbers").
OPENAI_CHAT = dict(input=1200, cache_read=1024, cache_creation=0, output=300)
ANTHROPIC_CHAT = dict(input=2600, cache_read=2000, cache_creation=500, output=50)


def table_cost(model: str, input, cache_read, cache_creation, output, cache_1h=0) -> Decimal:
    p = per_token(model)
    return ((input - cache_read - cache_creation) * p["input"] + cache_read * p["cache_read"]
            + (cache_creation - cache_1h) * p["cache_write"] + cache_1h * p["cache_write_1h"] + output * p["output"])


def export_request(spans: list[dict], service: str, base_ns: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs({"service.name": service}))
    trace_of: dict[int, bytes] = {}
    by_scope: dict[str, list] = {}
    for s in spans:
        i = s["id"]
        parent = s["parent"]
        trace_of[i] = trace_of[parent] if parent is not None else (base_ns + i).to_bytes(16, "big")
        start = base_ns + i * MS
        p = Span(trace_id=trace_of[i], span_id=(base_ns + 1000 + i).to_bytes(8, "big"), name=s["name"],
                 start_time_unix_nano=start, end_time_unix_nano=base_ns + (1000 - i) * MS,
                 status=Status(code=STATUS[s["status"]["code"]]))
        if parent is not None:
            p.parent_span_id = (base_ns + 1000 + parent).to_bytes(8, "big")
        p.attributes.extend(kvs(s["attributes"]))
        for e in s["events"]:
            p.events.add(name=e["name"], time_unix_nano=start + 10 * MS, attributes=kvs(e["attributes"]))
        by_scope.setdefault(s["scope"]["name"], []).append(p)
    # As the SDK's encoder groups a batch: by scope in the order the spans ended, then as they ended.
    first_end = {scope: min(p.end_time_unix_nano for p in ps) for scope, ps in by_scope.items()}
    for scope in sorted(by_scope, key=first_end.get):
        ss = rs.scope_spans.add()
        ss.scope.name = scope
        ss.spans.extend(sorted(by_scope[scope], key=lambda p: p.end_time_unix_nano))
    return req.SerializeToString()


def replay(setup: str) -> dict:
    """{call: samples} of the exporter's /metrics after each call of `setup`, one service per call."""
    capture = json.loads((CAPTURES / f"{setup}.json").read_text())
    exporter = Exporter(load(None, ["traces.finish_delay=0"]))
    ingest = exporter.ingest
    base = time.time_ns() - 60 * 10**9
    for n, (call, c) in enumerate(capture["calls"].items()):
        body = export_request(c["spans"], call, base + n * 10**10)
        ingest.process(read_protobuf(body, ingest.reader), "http_protobuf")
    ingest.finish_traces(everything=True)
    return parse(render(ingest.m.store).decode())


def tokens(samples, service) -> dict:
    return {t: value(samples, "llm_tokens_total", service=service, token_type=t)
            for t in ("input", "cache_read", "cache_creation", "output")}


# setup -> (model priced, usage of `chat`, 1-hour cache writes, cache details reported)
CHAT = {
    "openai-openllmetry": ("gpt-4o-mini", OPENAI_CHAT, 0, True),
    "openai-openinference": ("gpt-4o-mini", OPENAI_CHAT, 0, True),
    "openai-openlit": ("gpt-4o-mini", OPENAI_CHAT, 0, True),
    "openai-otel-v2": ("gpt-4o-mini", dict(OPENAI_CHAT, cache_read=0), 0, False),
    "openai-otel-v2-latest": ("gpt-4o-mini", dict(OPENAI_CHAT, cache_read=0), 0, False),
    "litellm-otel": ("gpt-4o-mini", dict(OPENAI_CHAT, cache_read=0), 0, False),
    "litellm-otel-latest": ("gpt-4o-mini", dict(OPENAI_CHAT, cache_read=0), 0, False),
    "anthropic-openllmetry": ("claude-haiku-4-5", ANTHROPIC_CHAT, 0, True),
    "anthropic-native": ("claude-haiku-4-5", ANTHROPIC_CHAT, 200, True),
    "anthropic-both": ("claude-haiku-4-5", ANTHROPIC_CHAT, 200, True),
    "anthropic-openlit": ("claude-haiku-4-5", ANTHROPIC_CHAT, 0, True),
    "langchain-openllmetry": ("gpt-4o-mini", OPENAI_CHAT, 0, True),
    "langchain-openinference": ("gpt-4o-mini", OPENAI_CHAT, 0, True),
    "llamaindex-openinference": ("gpt-4o-mini", OPENAI_CHAT, 0, True),
}
SETUPS = sorted(p.stem for p in CAPTURES.glob("*.json"))


@pytest.fixture(scope="module")
def replayed():
    return {setup: replay(setup) for setup in SETUPS}


def test_every_capture_is_checked():
    assert set(CHAT) == set(SETUPS)


@pytest.mark.parametrize("setup", SETUPS)
def test_a_plain_call_is_one_llm_call_with_the_reported_tokens_and_the_tables_cost(replayed, setup):
    s = replayed[setup]
    model, usage, cache_1h, details = CHAT[setup]
    assert value(s, "pipeline_component_duration_seconds_count", service="chat", component="llm_inference") == 1
    assert value(s, "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat") >= 1
    assert tokens(s, "chat") == {k: usage[k] for k in ("input", "cache_read", "cache_creation", "output")}
    assert value(s, "llm_tokens_total", service="chat", token_type="cache_creation_1h") == cache_1h
    cost = value(s, "llm_cost_usd_total", service="chat")
    want = table_cost(model, usage["input"], usage["cache_read"], usage["cache_creation"], usage["output"], cache_1h)
    assert Decimal(repr(cost)).quantize(Decimal("1e-12")) == want.quantize(Decimal("1e-12"))
    assert value(s, "llm_calls_without_cache_details_total", service="chat") == (0 if details else 1)


@pytest.mark.parametrize("setup", SETUPS)
def test_one_request_per_call(replayed, setup):
    s = replayed[setup]
    assert value(s, "pipeline_requests_total", service="chat") == 1
    assert value(s, "pipeline_requests_total", service="nested") == 1


@pytest.mark.parametrize("setup", SETUPS)
def test_time_to_first_chunk_only_for_streamed_calls(replayed, setup):
    s = replayed[setup]
    ttfc = "gen_ai_client_operation_time_to_first_chunk_seconds_count"
    streamed = {  # setups that say when the first chunk came (an attribute or a chunk event)
        "openai-openllmetry", "openai-openinference", "openai-openlit", "anthropic-native", "anthropic-both",
        "anthropic-openlit", "llamaindex-openinference"}
    got = value(s, ttfc)
    calls = sum(1 for c in ("stream", "stream_helper") if value(s, "pipeline_requests_total", service=c))
    assert got == (calls if setup in streamed else 0), "a time to first chunk for a call that was not streamed"


def test_first_chunk_event_gives_the_time_after_the_span_start(replayed):
    s = replayed["openai-openllmetry"]
    assert value(s, "gen_ai_client_operation_time_to_first_chunk_seconds_sum") == pytest.approx(0.010)


@pytest.mark.parametrize("setup", ["anthropic-both", "llamaindex-openinference", "litellm-otel"])
def test_two_spans_of_one_call_count_once(replayed, setup):
    s = replayed[setup]
    dedup = value(s, "spanscope_llm_spans_deduplicated_total", service="chat")
    # llama-index: `OpenAI.predict` over `OpenAI.chat`, `get_query_embedding` over `_get_query_embedding`
    assert dedup == {"anthropic-both": 1, "llamaindex-openinference": 2, "litellm-otel": 0}[setup]
    assert value(s, "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="chat") == value(
        s, "pipeline_component_duration_seconds_count", component="llm_inference")


def test_anthropic_both_error_counts_once(replayed):
    s = replayed["anthropic-both"]
    assert value(s, "pipeline_component_errors_total", service="error") == 1
    assert value(s, "pipeline_requests_total", service="error") == 1


def test_openlit_bare_failed_call_is_an_llm_call(replayed):
    # OpenLIT's span of a 429 is `chat claude-ratelimited` with no attributes at all
    s = replayed["anthropic-openlit"]
    assert value(s, "pipeline_component_duration_seconds_count", service="error", component="llm_inference") == 1
    assert value(s, "gen_ai_client_operation_duration_seconds_count", gen_ai_provider_name="anthropic",
                 gen_ai_request_model="claude-ratelimited", error_type="_OTHER") == 1
    assert value(s, "pipeline_requests_total", service="error", status="error") == 1


def test_llamaindex_query_steps_count_once(replayed):
    # retrieve > _retrieve > get_query_embedding > _get_query_embedding, predict > chat: one
    # retrieval, one embedding call (no token counts, still a provider call), one LLM call
    s = replayed["llamaindex-openinference"]
    assert value(s, "pipeline_rag_lookups_total", service="chat") == 2
    assert value(s, "pipeline_component_duration_seconds_count", service="chat", component="rag_lookup") == 2
    assert value(s, "pipeline_component_duration_seconds_count", service="chat", component="llm_inference") == 1
    assert value(s, "gen_ai_client_operation_duration_seconds_count", gen_ai_operation_name="embeddings") == 3


@pytest.mark.parametrize("setup, error_type", [
    ("openai-otel-v2", "RateLimitError"), ("openai-openllmetry", "RateLimitError"),
    ("litellm-otel", "RateLimitError"), ("anthropic-native", "rate_limit_error")])
def test_error_type_is_a_short_class_name(replayed, setup, error_type):
    s = replayed[setup]
    assert value(s, "pipeline_component_errors_total", service="error", error_type=error_type) == 1


@pytest.mark.parametrize("setup", ["openai-openllmetry", "openai-openinference", "openai-openlit",
                                   "openai-otel-v2", "litellm-otel"])
def test_embeddings_are_rag_lookups(replayed, setup):
    s = replayed[setup]
    assert value(s, "pipeline_rag_lookups_total", service="embeddings") == 1
    assert value(s, "pipeline_component_duration_seconds_count", service="embeddings", component="rag_lookup") == 1


@pytest.mark.parametrize("setup", ["langchain-openllmetry", "langchain-openinference", "llamaindex-openinference"])
def test_retrieval_is_a_rag_lookup_and_glue_is_orchestration(replayed, setup):
    s = replayed[setup]
    assert value(s, "pipeline_rag_lookups_total", service="chat") >= 1
    components = {dict(k)["component"] for k in s["pipeline_component_duration_seconds_count"]
                  if dict(k)["service"] == "chat" and s["pipeline_component_duration_seconds_count"][k]}
    assert components <= {"llm_inference", "rag_lookup", "orchestration"}, components


@pytest.mark.parametrize("setup", ["openai-openlit", "anthropic-openlit", "litellm-otel"])
def test_http_client_spans_are_one_component(replayed, setup):
    s = replayed[setup]
    components = {dict(k)["component"] for k in s["pipeline_component_duration_seconds_count"]
                  if dict(k)["service"] == "chat" and s["pipeline_component_duration_seconds_count"][k]}
    assert components == {"llm_inference", "http_client"}


def test_library_cost_is_cross_checked(replayed):
    # litellm priced OpenAI's cached input at the cached rate; without the cached count the table
    # priced it all at the full input rate: litellm's figure is lower by the difference.
    s = replayed["litellm-otel"]
    p = per_token("gpt-4o-mini")
    want = 1024 * (p["input"] - p["cache_read"])
    got = value(s, "llm_cost_discrepancy_usd_total", service="chat", direction="reported_lower")
    assert Decimal(repr(got)).quantize(Decimal("1e-12")) == want.quantize(Decimal("1e-12"))


def test_each_new_scope_is_logged_once(caplog):
    from spanscope.interpret.contract import Dialects
    dialects = Dialects()
    with caplog.at_level(logging.INFO, logger="spanscope.contract"):
        for scope in ("openlit.instrumentation.anthropic", "openlit.instrumentation.anthropic", "my.app"):
            dialects(scope)
    assert [r.getMessage() for r in caplog.records] == [
        "instrumentation scope 'openlit.instrumentation.anthropic': read as OpenLIT (Anthropic)",
        "instrumentation scope 'my.app': read as OpenTelemetry GenAI semantic conventions"]


def test_own_instrumentation_rows_from_the_config():
    """A user's attribute -> field rows and scope dialects (config `dialects`) are read like the table's."""
    from spanscope.config import ConfigError
    exporter = Exporter(load(None, [
        'dialects.attributes=[{key: myco.prompt_tokens, field: genai.usage.input}, '
        '{key: myco.model, field: genai.response_model}, {key: myco.vendor, field: genai.provider}]',
        'dialects.scopes=[{name: MyCo, scopes: ["myco.*"], input_excludes_cache: true}]',
        "traces.finish_delay=0"]))
    ingest = exporter.ingest
    spans = [{"id": 0, "parent": None, "name": "myco call", "scope": {"name": "myco.llm"}, "status": {"code": "OK"},
              "attributes": {"myco.prompt_tokens": 100, "myco.model": "gpt-4o-mini", "myco.vendor": "openai",
                             "gen_ai.usage.cache_read.input_tokens": 1000, "gen_ai.usage.output_tokens": 10},
              "events": []}]
    ingest.process(read_protobuf(export_request(spans, "own", time.time_ns()), ingest.reader), "http_protobuf")
    ingest.finish_traces(everything=True)
    samples = parse(render(ingest.m.store).decode())
    assert value(samples, "llm_tokens_total", service="own", token_type="input", provider="openai") == 1100
    assert value(samples, "pipeline_component_duration_seconds_count", service="own", component="llm_inference") == 1
    with pytest.raises(ConfigError, match="dialects.attributes: unknown field 'genai.usage.nope'"):
        Exporter.check(load(None, ["dialects.attributes=[{key: k, field: genai.usage.nope}]"]))
