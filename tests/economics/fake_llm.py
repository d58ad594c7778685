"""A local OpenAI- and Anthropic-compatible HTTP server for instrumentation tests (no network)."""
from __future__ import annotations

from aiohttp import web

from background_app import BackgroundApp

OPENAI_USAGE = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 1024},
                "completion_tokens_details": {"reasoning_tokens": 0}}
ANTHROPIC_USAGE = {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 2000,
                   "cache_creation_input_tokens": 500}


async def chat_completions(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000,
        "model": body["model"] + "-2024-07-18" if body["model"] == "gpt-4o-mini" else body["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "It is sunny."}}],
        "usage": OPENAI_USAGE,
    })


async def anthropic_messages(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({
        "id": "msg_test", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": "It is sunny."}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": ANTHROPIC_USAGE,
    })


class FakeLLM(BackgroundApp):
    """OpenAI's chat completions and Anthropic's messages endpoints on a free loopback port."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", chat_completions)
        app.router.add_post("/v1/messages", anthropic_messages)
