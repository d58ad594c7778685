"""The openai SDK's calls under one instrumentation: `python run_openai.py SETUP OUT.json`."""
import sys
from pathlib import Path

import openai
from harness import API_KEY, URL, app_span, run

SETUP = sys.argv[1]
MESSAGES = [{"role": "user", "content": "What is the weather?"}]


def instrument() -> list[str]:
    """Instrument the way each project documents it; returns the distributions to record."""
    if SETUP == "openai-openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        OpenAIInstrumentor().instrument()
        return ["opentelemetry-instrumentation-openai"]
    if SETUP == "openai-openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor
        OpenAIInstrumentor().instrument()
        return ["openinference-instrumentation-openai"]
    if SETUP.startswith("openai-otel-v2"):
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        OpenAIInstrumentor().instrument()
        return ["opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai"]
    if SETUP == "openai-openlit":
        import openlit
        openlit.init(disable_metrics=True, pricing_json=str(Path(__file__).with_name("openlit_pricing.json")))
        return ["openlit"]
    raise SystemExit(f"unknown setup {SETUP}")


packages = ["openai", "opentelemetry-sdk"] + instrument()
client = openai.OpenAI(base_url=URL + "/v1", api_key=API_KEY, max_retries=0)


def chat():
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def stream():
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True}):
        pass


def embeddings():
    client.embeddings.create(model="text-embedding-3-small", input="What is the weather?")


def reasoning():
    client.chat.completions.create(model="o4-mini", messages=MESSAGES, reasoning_effort="low")


def responses():
    client.responses.create(model="gpt-4o-mini", input="What is the weather?")


def error():
    client.chat.completions.create(model="gpt-4o-mini-ratelimited", messages=MESSAGES)


def nested():
    with app_span():
        chat()


run(SETUP, {"chat": chat, "stream": stream, "embeddings": embeddings, "reasoning": reasoning,
            "responses": responses, "error": error, "nested": nested}, packages)
