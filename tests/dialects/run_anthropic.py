"""The anthropic SDK's calls under one instrumentation: `python run_anthropic.py SETUP OUT.json`.

The 2.x SDK traces its own calls (scope com.anthropic.sdk.python) to the global tracer provider by
default; capture.py turns that off with ANTHROPIC_OPEN_TELEMETRY=false for anthropic-openllmetry.
"""
import sys
from pathlib import Path

import anthropic
from harness import API_KEY, URL, app_span, run

SETUP = sys.argv[1]
MODEL = "claude-haiku-4-5-20251001"
MESSAGES = [{"role": "user", "content": "What is the weather?"}]


def instrument() -> list[str]:
    if SETUP in ("anthropic-openllmetry", "anthropic-both"):
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
        AnthropicInstrumentor().instrument()
        return ["opentelemetry-instrumentation-anthropic"]
    if SETUP == "anthropic-native":
        return []
    if SETUP == "anthropic-openlit":
        import openlit
        openlit.init(disable_metrics=True, pricing_json=str(Path(__file__).with_name("openlit_pricing.json")))
        return ["openlit"]
    raise SystemExit(f"unknown setup {SETUP}")


packages = ["anthropic", "opentelemetry-sdk"] + instrument()
client = anthropic.Anthropic(base_url=URL, api_key=API_KEY, max_retries=0)


def chat():
    client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)


def stream():
    for _ in client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES, stream=True):
        pass


def stream_helper():
    with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as s:
        s.get_final_message()


def reasoning():
    client.messages.create(model=MODEL, max_tokens=2048, messages=MESSAGES,
                           thinking={"type": "enabled", "budget_tokens": 1024})


def error():
    client.messages.create(model="claude-ratelimited", max_tokens=256, messages=MESSAGES)


def nested():
    with app_span():
        chat()


run(SETUP, {"chat": chat, "stream": stream, "stream_helper": stream_helper, "reasoning": reasoning,
            "error": error, "nested": nested}, packages)
