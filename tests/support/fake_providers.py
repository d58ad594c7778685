"""A local OpenAI- and Anthropic-compatible HTTP server for instrumentation tests (no network).

It answers in the providers' documented JSON and server-sent-event shapes so that the real SDKs and
the instrumentations around them parse it as they would the real thing:

  OpenAI     POST /v1/chat/completions  (stream=true: chunks, then the usage chunk when
                                          stream_options.include_usage, then [DONE])
             POST /v1/responses         (non-streamed)
             POST /v1/embeddings        (float or base64 encoding_format)
  Anthropic  POST /v1/messages          (stream=true: message_start ... message_stop)

Usage numbers are fixed and distinct (see the constants) so a capture shows which number an
instrumentation put where. A model name containing "ratelimited", or any path under /ratelimited/
(for clients that check model names), gets the provider's 429.
A model name starting with "o" (o3, o4-mini: OpenAI's reasoning models) reports reasoning tokens;
an Anthropic request with `thinking` enabled gets a thinking block first.
"""
from __future__ import annotations

import base64
import json
import struct

from aiohttp import web
from background_app import BackgroundApp

REPLY = "It is sunny."
EMBEDDING = [0.125, -0.25, 0.5, 0.0625]

OPENAI_USAGE = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}
OPENAI_REASONING_USAGE = {"prompt_tokens": 1300, "completion_tokens": 700, "total_tokens": 2000,
                          "prompt_tokens_details": {"cached_tokens": 1152, "audio_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 512, "audio_tokens": 0,
                                                        "accepted_prediction_tokens": 0,
                                                        "rejected_prediction_tokens": 0}}
OPENAI_EMBEDDING_USAGE = {"prompt_tokens": 8, "total_tokens": 8}
ANTHROPIC_USAGE = {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 2000,
                   "cache_creation_input_tokens": 500,
                   "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 200},
                   "service_tier": "standard"}
ANTHROPIC_THINKING_USAGE = {**ANTHROPIC_USAGE, "output_tokens": 450}


def _openai_model(requested: str) -> str:
    """OpenAI answers with the dated snapshot a model alias points at."""
    return {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "o4-mini": "o4-mini-2025-04-16"}.get(requested, requested)


def _openai_usage(model: str) -> dict:
    return OPENAI_REASONING_USAGE if model.startswith("o") else OPENAI_USAGE


def _openai_rate_limited(model: str) -> web.Response:
    return web.json_response(status=429, headers={"retry-after": "20", "x-request-id": "req_fake429"}, data={
        "error": {"message": f"Rate limit reached for {model} in organization org-fake on tokens per min (TPM): "
                             "Limit 200000, Used 199500, Requested 1200. Please try again in 20s.",
                  "type": "tokens", "param": None, "code": "rate_limit_exceeded"}})


def _rate_limited(request: web.Request, body: dict) -> bool:
    return "ratelimited" in body["model"] or request.path.startswith("/ratelimited/")


def _sse(events: list[tuple[str | None, object]]) -> bytes:
    lines = []
    for event, data in events:
        if event:
            lines.append(f"event: {event}")
        lines.append("data: " + (data if isinstance(data, str) else json.dumps(data)))
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


async def _stream(request: web.Request, body: bytes) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(body)
    await response.write_eof()
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if _rate_limited(request, body):
        return _openai_rate_limited(body["model"])
    model = _openai_model(body["model"])
    head = {"id": "chatcmpl-fake", "created": 1700000000, "model": model,
            "system_fingerprint": "fp_fake", "service_tier": "default"}
    if not body.get("stream"):
        return web.json_response({**head, "object": "chat.completion", "choices": [
            {"index": 0, "finish_reason": "stop", "logprobs": None,
             "message": {"role": "assistant", "content": REPLY, "refusal": None, "annotations": []}}],
            "usage": _openai_usage(model)})
    include_usage = (body.get("stream_options") or {}).get("include_usage", False)
    chunk = {**head, "object": "chat.completion.chunk"}
    extra = {"usage": None} if include_usage else {}
    deltas = [{"role": "assistant", "content": "", "refusal": None}] + [
        {"content": word} for word in ("It ", "is ", "sunny.")]
    events = [(None, {**chunk, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}], **extra})
              for d in deltas]
    events.append((None, {**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
                          **extra}))
    if include_usage:
        events.append((None, {**chunk, "choices": [], "usage": _openai_usage(model)}))
    events.append((None, "[DONE]"))
    return await _stream(request, _sse(events))


async def responses(request: web.Request) -> web.Response:
    body = await request.json()
    if _rate_limited(request, body):
        return _openai_rate_limited(body["model"])
    model = _openai_model(body["model"])
    u = _openai_usage(model)
    return web.json_response({
        "id": "resp_fake", "object": "response", "created_at": 1700000000, "status": "completed",
        "model": model, "error": None, "incomplete_details": None, "instructions": None,
        "output": [{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": REPLY, "annotations": []}]}],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "temperature": 1.0, "top_p": 1.0,
        "usage": {"input_tokens": u["prompt_tokens"],
                  "input_tokens_details": {"cached_tokens": u["prompt_tokens_details"]["cached_tokens"]},
                  "output_tokens": u["completion_tokens"],
                  "output_tokens_details": {"reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"]},
                  "total_tokens": u["total_tokens"]}})


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    if _rate_limited(request, body):
        return _openai_rate_limited(body["model"])
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if body.get("encoding_format") == "base64":  # the openai SDK asks for base64 and decodes it
        vector = base64.b64encode(struct.pack(f"<{len(EMBEDDING)}f", *EMBEDDING)).decode()
    else:
        vector = EMBEDDING
    return web.json_response({"object": "list", "model": body["model"], "usage": OPENAI_EMBEDDING_USAGE,
                              "data": [{"object": "embedding", "index": i, "embedding": vector}
                                       for i in range(len(inputs))]})


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if _rate_limited(request, body):
        return web.json_response(status=429, headers={"retry-after": "20", "request-id": "req_fake429"}, data={
            "type": "error", "request_id": "req_fake429",
            "error": {"type": "rate_limit_error",
                      "message": "This request would exceed the rate limit for your organization of "
                                 "50,000 input tokens per minute."}})
    thinking = (body.get("thinking") or {}).get("type") == "enabled"
    usage = ANTHROPIC_THINKING_USAGE if thinking else ANTHROPIC_USAGE
    blocks = ([{"type": "thinking", "thinking": "The user wants the weather.", "signature": "c2lnbmF0dXJl"}]
              if thinking else []) + [{"type": "text", "text": REPLY}]
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
               "stop_reason": "end_turn", "stop_sequence": None}
    if not body.get("stream"):
        return web.json_response({**message, "content": blocks, "usage": usage})
    start_usage = {**usage, "output_tokens": 1}
    events = [("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "usage": start_usage}})]
    for index, block in enumerate(blocks):
        if block["type"] == "thinking":
            events += [("content_block_start", {"type": "content_block_start", "index": index,
                                                "content_block": {"type": "thinking", "thinking": "",
                                                                  "signature": ""}}),
                       ("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "thinking_delta", "thinking": block["thinking"]}}),
                       ("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "signature_delta", "signature": block["signature"]}})]
        else:
            events += [("content_block_start", {"type": "content_block_start", "index": index,
                                                "content_block": {"type": "text", "text": ""}}),
                       ("ping", {"type": "ping"})]
            events += [("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "text_delta", "text": word}})
                       for word in ("It ", "is ", "sunny.")]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    # message_delta's usage is cumulative for the whole message
    delta_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                         "cache_read_input_tokens", "output_tokens")}
    events += [("message_delta", {"type": "message_delta", "usage": delta_usage,
                                  "delta": {"stop_reason": "end_turn", "stop_sequence": None}}),
               ("message_stop", {"type": "message_stop"})]
    return await _stream(request, _sse(events))


class FakeProviders(BackgroundApp):
    """OpenAI's and Anthropic's HTTP APIs on a free loopback port."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", chat_completions)
        app.router.add_post("/v1/responses", responses)
        app.router.add_post("/v1/embeddings", embeddings)
        app.router.add_post("/v1/messages", anthropic_messages)
        for route in app.router.routes():
            app.router.add_route(route.method, "/ratelimited" + route.resource.canonical, route.handler)
