"""litellm's own OpenTelemetry callback (`litellm.callbacks = ["otel"]`): `python run_litellm.py SETUP OUT.json`.

The callback reuses the global SDK tracer provider that the harness registers. litellm's price map
is read from the copy inside the package (LITELLM_LOCAL_MODEL_COST_MAP, set here before the import).
"""
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
from harness import API_KEY, URL, app_span, run  # noqa: E402
from opentelemetry import trace  # noqa: E402

SETUP = sys.argv[1]
litellm.callbacks = ["otel"]
MESSAGES = [{"role": "user", "content": "What is the weather?"}]
OPENAI = dict(api_base=URL + "/v1", api_key=API_KEY, num_retries=0, max_retries=0)


def chat():
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **OPENAI)


def stream():
    for _ in litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True,
                                stream_options={"include_usage": True}, **OPENAI):
        pass


def embeddings():
    litellm.embedding(model="openai/text-embedding-3-small", input=["What is the weather?"], **OPENAI)


def reasoning():
    litellm.completion(model="openai/o4-mini", messages=MESSAGES, reasoning_effort="low", **OPENAI)


def anthropic():
    litellm.completion(model="anthropic/claude-haiku-4-5-20251001", messages=MESSAGES, max_tokens=256,
                       api_base=URL, api_key=API_KEY, num_retries=0)


def anthropic_stream():
    for _ in litellm.completion(model="anthropic/claude-haiku-4-5-20251001", messages=MESSAGES, max_tokens=256,
                                stream=True, api_base=URL, api_key=API_KEY, num_retries=0):
        pass


def error():
    litellm.completion(model="openai/gpt-4o-mini-ratelimited", messages=MESSAGES, **OPENAI)


def nested():
    """Inside an application span, litellm writes the call onto that span, from a background thread
    after completion() returned: the application keeps its span open until the usage is there (as
    one doing more work after the call would), so what the span carries does not depend on timing."""
    with app_span():
        chat()
        span, deadline = trace.get_current_span(), time.monotonic() + 10
        while "gen_ai.usage.output_tokens" not in (span.attributes or {}) and time.monotonic() < deadline:
            time.sleep(0.01)


run(SETUP, {"chat": chat, "stream": stream, "embeddings": embeddings, "reasoning": reasoning,
            "anthropic": anthropic, "anthropic_stream": anthropic_stream, "error": error, "nested": nested},
    ["litellm", "opentelemetry-sdk"])
