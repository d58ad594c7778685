"""The demo as a service: questions over HTTP run through the same instrumented pipeline.

    POST /api/v1/chat        {"question", "user_id", "session_id"?, "mode"?, "tenant"?}
                             -> {"interaction_id", "answer", "sources", "cache", "model", ...}
    POST /api/v1/chat/batch  {"items": [<chat request>, ...]} (at most --max-batch items)
                             -> {"results": [<chat answer>, ...]}
    GET  /api/v1/stats       requests served and the SDK's span counts (ended, exported, dropped)
    GET  /healthz

`interaction_id` is the request's trace id: the id the exporter's feedback API takes
(`POST /api/v1/feedback` on the exporter). The pipeline still simulates latency: the answer is sent
when the request's simulated end comes (an asyncio sleep, no thread held), and its spans are handed
to the SDK at that time (clock.EndOnTime). A failed request (no model answered, an internal error)
answers 503 with its interaction id. Batch items run side by side: the batch answers when its
slowest item ends.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import world as w
from .pipeline import Outcome, RagService
from .telemetry import SpanCounts

MAX_BATCH = 50
TICK_S = 0.25   # spans of requests whose caller went away still end on time


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: str = Field(min_length=1, max_length=4000)
    user_id: str = Field(min_length=1, max_length=200)
    session_id: str | None = Field(default=None, max_length=200)
    mode: Literal[tuple(w.MODES)] | None = None
    tenant: Literal[tuple(w.TENANTS)] | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ChatRequest] = Field(min_length=1)


def _bad_request(exc: Exception) -> web.HTTPBadRequest:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = f"{where}: {first['msg']}"
    else:
        message = str(exc)
    return web.HTTPBadRequest(text=json.dumps({"error": message, "status": 400}), content_type="application/json")


def answer_text(question: str, outcome: Outcome) -> str:
    """The simulated answer: says what produced it, since no model runs."""
    if outcome.status == "error":
        return "Sorry, no model could answer right now."
    source = ", ".join(outcome.sources) or "the model's own knowledge"
    origin = "cached answer" if outcome.cache_status == "hit" else f"answer from {outcome.model or 'the model'}"
    return f"Simulated {origin} to {question!r}, based on {source}."


class ChatServer:
    def __init__(self, service: RagService, counts: SpanCounts | None = None, max_batch: int = MAX_BATCH):
        self.service = service
        self.counts = counts
        self.max_batch = max_batch
        self.served = self.failed = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.add_routes([web.post("/api/v1/chat", self.chat), web.post("/api/v1/chat/batch", self.batch),
                        web.get("/api/v1/stats", self.stats), web.get("/healthz", self.health)])
        app.cleanup_ctx.append(self._ticker)
        return app

    async def _ticker(self, _app):
        task = asyncio.create_task(self._end_due_spans())
        yield
        task.cancel()

    async def _end_due_spans(self) -> None:
        while True:
            self.service.closer.end_due()
            await asyncio.sleep(TICK_S)

    async def _parse(self, request: web.Request, model: type[BaseModel]):
        try:
            return model.model_validate_json(await request.read())
        except ValidationError as exc:
            raise _bad_request(exc) from None

    def _run(self, item: ChatRequest, route: str) -> dict:
        query = self.service.world.query_for(item.question, item.user_id, tenant=item.tenant, mode=item.mode)
        attributes = {"http.route": route}
        if item.session_id:
            attributes["session.id"] = item.session_id
        outcome = self.service.handle(query=query, attributes=attributes)
        self.served += 1
        self.failed += outcome.status == "error"
        return {"interaction_id": outcome.trace_id, "status": outcome.status,
                "answer": answer_text(item.question, outcome), "sources": list(outcome.sources),
                "cache": outcome.cache_status, "model": outcome.model, "mode": outcome.mode,
                "simulated_latency_ms": round(outcome.duration_s * 1000, 1), "_end_ns": outcome.end_ns}

    async def _answer_at(self, end_ns: int) -> None:
        await asyncio.sleep(max(0.0, (end_ns - time.time_ns()) / 1e9))
        self.service.closer.end_due()

    async def chat(self, request: web.Request) -> web.Response:
        item = await self._parse(request, ChatRequest)
        result = self._run(item, "/api/v1/chat")
        await self._answer_at(result.pop("_end_ns"))
        return web.json_response(result, status=200 if result["status"] == "ok" else 503)

    async def batch(self, request: web.Request) -> web.Response:
        body = await self._parse(request, BatchRequest)
        if len(body.items) > self.max_batch:
            raise _bad_request(ValueError(f"items: at most {self.max_batch} per batch, got {len(body.items)}"))
        results = [self._run(item, "/api/v1/chat/batch") for item in body.items]
        await self._answer_at(max(r.pop("_end_ns") for r in results))
        return web.json_response({"results": results})

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response({"requests": self.served, "errors": self.failed,
                                  "spans": self.counts.as_dict() if self.counts else None})

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
