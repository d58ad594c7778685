"""Real openai/anthropic clients, instrumented by OpenLLMetry, exporting to a running exporter."""
import uuid
from contextlib import contextmanager
from decimal import Decimal

import anthropic
import openai
import pytest
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor

from fake_providers import ANTHROPIC_USAGE, OPENAI_USAGE, FakeProviders
from processes import start_exporter, wait_until
from published_prices import per_token
from http_helpers import call
from sdk import http_exporter, provider, scrape, value

@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    proc = start_exporter(tmp_path_factory.mktemp("econ"), {"traces": {"finish_delay": 0.05}})
    yield proc
    proc.stop()


@contextmanager
def instrumented(exporter, service: str):
    """The real SDK, OpenLLMetry's openai and anthropic instrumentations exporting to `exporter` as
    `service`, and the fake providers' URL; everything exported and uninstrumented on leaving."""
    tp = provider(http_exporter(exporter.urls["http"]), service)
    OpenAIInstrumentor().instrument(tracer_provider=tp)
    AnthropicInstrumentor().instrument(tracer_provider=tp)
    try:
        with FakeProviders() as llm:
            yield llm.url
    finally:
        OpenAIInstrumentor().uninstrument()
        AnthropicInstrumentor().uninstrument()
        tp.shutdown()


def ask_openai(url: str, times: int) -> None:
    oa = openai.OpenAI(base_url=url + "/v1", api_key="test-key", max_retries=0)
    for _ in range(times):
        oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}])


def test_openai_and_anthropic_tokens_and_cost_match_the_published_prices(exporter):
    service = f"llm-{uuid.uuid4().hex[:6]}"
    with instrumented(exporter, service) as url:
        ask_openai(url, 3)
        an = anthropic.Anthropic(base_url=url, api_key="test-key", max_retries=0)
        an.messages.create(model="claude-haiku-4-5-20251001", max_tokens=100,
                           messages=[{"role": "user", "content": "hi"}])

    def ready():
        s = scrape(exporter.urls["web"])
        counted = value(s, "gen_ai_client_operation_duration_seconds_count", gen_ai_provider_name="anthropic")
        return s if counted else None

    s = wait_until(ready, what="LLM spans recorded")
    # Recognised as llm_inference with no pipeline.* attribute at all
    assert value(s, "pipeline_component_duration_seconds_count", service=service, component="llm_inference") == 4

    oa_model = dict(service=service, provider="openai", model="gpt-4o-mini-2024-07-18")
    u = OPENAI_USAGE
    cached = u["prompt_tokens_details"]["cached_tokens"]
    assert value(s, "llm_tokens_total", token_type="input", **oa_model) == 3 * u["prompt_tokens"]
    assert value(s, "llm_tokens_total", token_type="cache_read", **oa_model) == 3 * cached
    assert value(s, "llm_tokens_total", token_type="output", **oa_model) == 3 * u["completion_tokens"]
    p = per_token("gpt-4o-mini")
    expected = {
        "input": 3 * (u["prompt_tokens"] - cached) * p["input"],
        "cache_read": 3 * cached * p["cache_read"],
        "output": 3 * u["completion_tokens"] * p["output"],
    }
    for token_type, usd in expected.items():
        assert Decimal(str(value(s, "llm_cost_usd_total", token_type=token_type, **oa_model))) == usd
    saved = value(s, "llm_cost_saved_usd_total", source="prompt_cache", **oa_model)
    assert Decimal(str(saved)) == 3 * cached * (p["input"] - p["cache_read"])

    an_model = dict(service=service, provider="anthropic", model="claude-haiku-4-5-20251001")
    a = ANTHROPIC_USAGE
    p = per_token("claude-haiku-4-5")
    assert value(s, "llm_tokens_total", token_type="cache_creation", **an_model) == a["cache_creation_input_tokens"]
    expected = {
        "input": a["input_tokens"] * p["input"],  # the uncached part only
        "cache_read": a["cache_read_input_tokens"] * p["cache_read"],
        "cache_creation": a["cache_creation_input_tokens"] * p["cache_write"],
        "output": a["output_tokens"] * p["output"],
    }
    for token_type, usd in expected.items():
        assert Decimal(str(value(s, "llm_cost_usd_total", token_type=token_type, **an_model))) == usd
    # the semconv histograms, labelled as OpenTelemetry GenAI metrics are
    assert value(s, "gen_ai_client_token_usage_sum", gen_ai_provider_name="openai", gen_ai_token_type="input",
                 gen_ai_request_model="gpt-4o-mini", gen_ai_response_model="gpt-4o-mini-2024-07-18") == 3 * 1200
    assert value(s, "gen_ai_client_token_usage_bucket", gen_ai_provider_name="openai", gen_ai_token_type="output",
                 le="256.0") == 0
    assert value(s, "gen_ai_client_token_usage_bucket", gen_ai_provider_name="openai", gen_ai_token_type="output",
                 le="1024.0") == 3


def test_the_interaction_store_the_metrics_and_the_api_agree_on_cost(exporter):
    """Cost per interaction comes from the same prices: on the same requests, the stored interactions'
    costs, llm_cost_usd_total and the metrics API's costs view add up to the same amount, to the
    cent and beyond (exact decimals where each side keeps them), and that amount is the published
    prices' arithmetic."""
    service = f"agree-{uuid.uuid4().hex[:6]}"
    with instrumented(exporter, service) as url:
        ask_openai(url, 5)
    web = exporter.urls["web"]

    def stored():
        status, doc = call("GET", f"{web}/api/v1/interactions?service={service}&limit=500")
        assert status == 200, doc
        return doc["interactions"] if len(doc["interactions"]) == 5 else None

    rows = wait_until(stored, what="five interactions stored")
    u, p = OPENAI_USAGE, per_token("gpt-4o-mini")
    cached = u["prompt_tokens_details"]["cached_tokens"]
    one_call = ((u["prompt_tokens"] - cached) * p["input"] + cached * p["cache_read"]
                + u["completion_tokens"] * p["output"])
    assert [Decimal(r["cost_usd"]) for r in rows] == [one_call] * 5
    s = scrape(web)
    metric = sum(Decimal(str(v)) for k, v in s.get("llm_cost_usd_total", {}).items() if dict(k)["service"] == service)
    assert metric == 5 * one_call
    status, doc = call("GET", f"{web}/api/metrics/costs?service={service}&time_window_minutes=60")
    assert status == 200, doc
    assert Decimal(str(doc["data"]["total_usd"])) == 5 * one_call  # a float of the exact sum: same digits
