"""Pricing: the genai-prices database matched by provider and model as spans name them, tiers, prices
in force at the call's time, cached-token pricing, exact sums, overrides that win over the database.

Every expected price is a provider's published list price in USD per million tokens, written out here
(as genai-prices 0.2.3 carries it), never read from the code under test."""
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from spanscope.config import ConfigError
from spanscope.interpret.pricing import Pricing, load_table

M = Decimal(1_000_000)


def per_token(usd_per_million: str) -> Decimal:
    return Decimal(usd_per_million) / M


@pytest.fixture(scope="module")
def pricing():
    return Pricing(load_table())


@pytest.mark.parametrize("provider, model, input_usd, output_usd", [
    ("openai", "gpt-4o-mini", "0.15", "0.60"),
    ("openai", "gpt-4o-mini-2024-07-18", "0.15", "0.60"),   # dated
    (None, "openai/gpt-4o", "2.50", "10.00"),               # provider-qualified
    ("openai", "GPT-4o", "2.50", "10.00"),
    ("openai", "gpt-4o-2024-08-06", "2.50", "10.00"),
    ("anthropic", "claude-3-5-haiku-20241022", "0.80", "4.00"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", "3.00", "15.00"),  # Bedrock
    ("aws.bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "0.80", "4.00"),  # Bedrock cross-region
    ("gcp.vertex_ai", "claude-sonnet-4-5@20250929", "3.00", "15.00"),  # Vertex
    ("gcp.gemini", "models/gemini-2.5-flash", "0.30", "2.50"),
    (None, "gemini-2.0-flash-001", "0.10", "0.40"),
    ("mistral_ai", "mistral-large-latest", "2.00", "6.00"),
    (None, "gpt-4o-mini-audio-preview", "0.15", "0.60"),
    ("openai", "text-embedding-3-small", "0.02", "0"),
])
def test_models_are_priced_as_spans_name_them(pricing, provider, model, input_usd, output_usd):
    p = pricing.price(model, provider)
    assert (p.input, p.output) == (per_token(input_usd), per_token(output_usd))


@pytest.mark.parametrize("model", ["my-private-llm", "", None, "gpt-4oo", "o"])
def test_unknown_models_have_no_price(pricing, model):
    assert pricing.price(model) is None


def test_the_embedded_overrides_add_models_the_database_lacks(pricing):
    p = pricing.price("mistral-small-latest", "mistral_ai")
    assert (p.input, p.output) == (per_token("0.10"), per_token("0.30"))


def test_cached_input_is_priced_once_at_the_cache_rate(pricing):
    p = pricing.price("gpt-4o", "openai")
    cost = Pricing.cost(p, input_tokens=1000, output_tokens=100, cache_read=600, cache_creation=0)
    assert cost.input == 400 * Decimal("2.50") / M
    assert cost.cache_read == 600 * Decimal("1.25") / M
    assert cost.output == 100 * Decimal("10.00") / M
    assert cost.saved == 600 * (Decimal("2.50") - Decimal("1.25")) / M
    assert cost.total == Decimal("0.00275")


def test_cache_writes_and_one_hour_writes_have_their_own_rates(pricing):
    p = pricing.price("claude-sonnet-4-5-20250929", "anthropic")
    assert (p.cache_read, p.cache_write, p.cache_write_1h) == (per_token("0.30"), per_token("3.75"), per_token("6"))
    cost = Pricing.cost(p, input_tokens=3000, output_tokens=0, cache_read=1000, cache_creation=1500)
    assert cost.input == 500 * Decimal("3") / M and cost.cache_write == 1500 * Decimal("3.75") / M


def test_long_context_calls_are_priced_at_their_tier(pricing):
    """Claude Sonnet 4.5 above 200k input tokens: 6 in, 22.50 out per million (the database's tier)."""
    p = pricing.price("claude-sonnet-4-5", "anthropic")
    short = Pricing.cost(p, input_tokens=200_000, output_tokens=1000, cache_read=0, cache_creation=0)
    long = Pricing.cost(p, input_tokens=200_001, output_tokens=1000, cache_read=0, cache_creation=0)
    assert short.total == (200_000 * Decimal("3") + 1000 * Decimal("15")) / M
    assert long.total == (200_001 * Decimal("6") + 1000 * Decimal("22.5")) / M


def test_the_price_in_force_at_the_call_applies(pricing):
    """Claude Opus 4.6's long-context tier ended on 2026-03-13: from then on 5 per million at any length."""
    before = pricing.price("claude-opus-4-6", "anthropic", datetime(2026, 3, 12, 23, 59, tzinfo=UTC))
    after = pricing.price("claude-opus-4-6", "anthropic", datetime(2026, 3, 13, 0, 1, tzinfo=UTC))
    assert Pricing.cost(before, 300_000, 0, 0, 0).input == 300_000 * Decimal("10") / M
    assert Pricing.cost(after, 300_000, 0, 0, 0).input == 300_000 * Decimal("5") / M


def test_a_million_requests_sum_exactly(pricing):
    p = pricing.price("gpt-4o-mini", "openai")
    one = Pricing.cost(p, 980, 0, 0, 0).total
    assert one == Decimal("0.000147")
    total = Decimal(0)
    for _ in range(1_000_000):
        total += one
    assert total == Decimal("147")


def test_user_file_overrides_win_over_the_database_and_extend_it(tmp_path):
    f = tmp_path / "prices.yaml"
    f.write_text("models:\n  gpt-4o: {provider: openai, input: 1, output: 2}\n  house-llm: {input: 0.5, output: 0.5}\n")
    pricing = Pricing(load_table(str(f)))
    assert pricing.price("gpt-4o-2024-08-06", "openai").input == Decimal(1) / M
    assert pricing.price("gpt-4o-2024-08-06", "openai").cache_read == Decimal(1) / M  # defaults to input
    assert pricing.price("gpt-4o-mini", "openai").input == per_token("0.15")  # not gpt-4o's override
    assert pricing.price("house-llm").output == Decimal("0.5") / M


@pytest.mark.parametrize("text, message", [
    ("models:\n  x: {input: -1, output: 1}\n", "models.x.input: expected a non-negative price"),
    ("models:\n  x: {input: 1}\n", "models.x.output: missing"),
    ("models:\n  x: {input: 1, output: 1, cached: 1}\n", "models.x.cached: unknown key"),
    ("models: [1]\n", "expected a mapping with a `models:` mapping"),
    ("models:\n  x: {input: abc, output: 1}\n", "models.x.input: expected a number"),
])
def test_bad_pricing_files_name_the_key(tmp_path, text, message):
    f = tmp_path / "prices.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_table(str(f))


def test_a_model_named_without_its_provider_is_priced_when_its_providers_agree(pricing):
    """litellm's embedding spans carry an empty provider: text-embedding-3-small is listed by OpenAI
    and Azure at the same 0.02 per million, so the choice does not matter and the call is priced."""
    price = pricing.price("text-embedding-3-small", None)
    assert price is not None and (price.input, price.output) == (per_token("0.02"), Decimal(0))
