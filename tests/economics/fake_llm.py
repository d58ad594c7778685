"""A local OpenAI- and Anthropic-compatible HTTP server for instrumentation tests (no network)."""
from __future__ import annotations

import asyncio
import threading

from aiohttp import web

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


class FakeLLM:
    """Runs the server on a free loopback port in a background thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = None

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat_completions)
        app.router.add_post("/v1/messages", anthropic_messages)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
