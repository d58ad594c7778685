"""Pricing table: model-name matching, cached-token pricing, exact sums, user overrides."""
from decimal import Decimal

import pytest

from spanscope.config import ConfigError
from spanscope.interpret.pricing import Pricing, load_table

M = Decimal(1_000_000)


@pytest.fixture(scope="module")
def pricing():
    return Pricing(load_table())


@pytest.mark.parametrize("model, expected", [
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("openai/gpt-4o", "gpt-4o"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("GPT-4o", "gpt-4o"),
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
    ("models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("mistral-large-latest", "mistral-large"),
    ("gpt-4o-mini-audio-preview", "gpt-4o-mini"),
])
def test_model_names_match(pricing, model, expected):
    assert pricing.price(model) == pricing.table[expected]


@pytest.mark.parametrize("model", ["my-private-llm", "", None, "gpt-4oo", "o"])
def test_unknown_models_have_no_price(pricing, model):
    assert pricing.price(model) is None


def test_cached_input_is_priced_once_at_the_cache_rate(pricing):
    p = pricing.price("gpt-4o")
    cost = Pricing.cost(p, input_tokens=1000, output_tokens=100, cache_read=600, cache_creation=0)
    assert cost.input == 400 * Decimal("2.50") / M
    assert cost.cache_read == 600 * Decimal("1.25") / M
    assert cost.output == 100 * Decimal("10.00") / M
    assert cost.saved == 600 * (Decimal("2.50") - Decimal("1.25")) / M
    assert cost.total == Decimal("0.00275")


def test_a_million_requests_sum_exactly(pricing):
    p = pricing.price("gpt-4o-mini")
    one = Pricing.cost(p, 980, 0, 0, 0).total
    assert one == Decimal("0.000147")
    total = Decimal(0)
    for _ in range(1_000_000):
        total += one
    assert total == Decimal("147")


def test_user_file_overrides_and_extends(tmp_path):
    f = tmp_path / "prices.yaml"
    f.write_text("models:\n  gpt-4o: {provider: openai, input: 1, output: 2}\n  house-llm: {input: 0.5, output: 0.5}\n")
    pricing = Pricing(load_table(str(f)))
    assert pricing.price("gpt-4o-2024-08-06").input == Decimal(1) / M
    assert pricing.price("gpt-4o-2024-08-06").cache_read == Decimal(1) / M  # defaults to input
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
