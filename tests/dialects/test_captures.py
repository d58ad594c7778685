"""The committed dialect captures have the shape the contract work relies on (fast: reads JSON only).

Refresh them with `make dialect-captures`; this test does not run the libraries.
"""
import json
from pathlib import Path

import pytest
from capture import SETUPS
from fake_providers import ANTHROPIC_USAGE, OPENAI_USAGE

CAPTURES = Path(__file__).parent / "captures"
A = ANTHROPIC_USAGE
# What the fake server reported for the plain call: (input counts an instrumentation may show, output).
# Anthropic's input_tokens leave out the cache; semantic-convention instrumentations add it back in.
REPORTED = {"openai": ({OPENAI_USAGE["prompt_tokens"]}, OPENAI_USAGE["completion_tokens"]),
            "anthropic": ({A["input_tokens"], A["input_tokens"] + A["cache_read_input_tokens"]
                           + A["cache_creation_input_tokens"]}, A["output_tokens"])}
TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.prompt_tokens",
              "gen_ai.usage.completion_tokens", "llm.token_count.prompt", "llm.token_count.completion")


def load(setup: str) -> dict:
    return json.loads((CAPTURES / f"{setup}.json").read_text())


def test_every_setup_has_a_capture_or_a_reason():
    captured = {p.stem for p in CAPTURES.glob("*.json")}
    assert captured <= set(SETUPS), f"captures without a setup: {captured - set(SETUPS)}"
    missing = {name for name, s in SETUPS.items() if not s.reason} - captured
    assert not missing, f"setups without a capture: {missing}"


@pytest.mark.parametrize("setup", sorted(p.stem for p in CAPTURES.glob("*.json")))
def test_capture_shape(setup):
    capture = load(setup)
    assert capture["setup"] == setup and capture["packages"]
    provider = "anthropic" if "anthropic" in setup else "openai"
    calls = capture["calls"]
    assert {"chat", "stream", "error", "nested"} <= set(calls)
    for name, call in calls.items():
        assert (call["error"] is not None) == (name == "error"), f"{name}: {call['error']}"
        ids = {s["id"] for s in call["spans"]}
        for span in call["spans"]:
            assert span["parent"] is None or span["parent"] in ids, f"{name}: {span['name']} parent outside the call"
            assert span["scope"]["name"] and span["kind"] in ("INTERNAL", "CLIENT", "SERVER", "PRODUCER", "CONSUMER")
    # The plain call: some span carries the token counts the fake server reported (as int or text).
    tokens = {int(v) for s in calls["chat"]["spans"] for k, v in s["attributes"].items() if k in TOKEN_KEYS}
    inputs, output = REPORTED[provider]
    assert output in tokens and inputs & tokens, (
        f"chat call: token attributes {tokens}, server reported {inputs}, {output}")
    # The nested call sits under the application's span.
    nested = calls["nested"]["spans"]
    app = [s for s in nested if s["name"] == "app.handle_request"]
    assert len(app) == 1 and app[0]["parent"] is None
    assert all(s["parent"] is not None for s in nested if s is not app[0]), "a span escaped the app span"
