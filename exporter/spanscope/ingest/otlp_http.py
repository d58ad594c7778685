"""OTLP/HTTP receiver: POST /v1/traces, protobuf or JSON, optionally gzip, answers per the spec.

200 with an ExportTraceServiceResponse (partial_success when spans were dropped); 400 with a
google.rpc.Status for an undecodable body; 413 above the body limit (compressed or decompressed);
415 for an unsupported content type or encoding; 503 with Retry-After when the ingest queue or its
byte budget is full. Responses use the request's content type. A body's bytes count against the
budget as they arrive, so a sender that announces a large body and sends it slowly holds only what
it has sent; a gzip body counts its compressed size, and is inflated by the ingest worker.
"""
from __future__ import annotations

import asyncio
import math
from functools import partial

from aiohttp import web
from google.protobuf import json_format
from google.rpc import status_pb2

from ..config import Limits
from ..decode import otlp
from .queue import Held, Ingest, Overloaded

PROTOCOLS = {otlp.PROTOBUF: "http_protobuf", otlp.JSON: "http_json"}
GRPC_CODES = {400: 3, 408: 4, 413: 8, 415: 3, 503: 14}  # google.rpc.Code for the Status body


def _status_body(http_code: int, message: str, content_type: str) -> bytes:
    status = status_pb2.Status(code=GRPC_CODES.get(http_code, 2), message=message)
    if content_type == otlp.JSON:
        return json_format.MessageToJson(status, indent=None).encode()
    return status.SerializeToString()


def _error(http_code: int, message: str, content_type: str, headers=None) -> web.Response:
    if content_type not in PROTOCOLS:  # we cannot answer in a type the client did not speak
        return web.json_response({"code": GRPC_CODES.get(http_code, 2), "message": message},
                                 status=http_code, headers=headers)
    return web.Response(status=http_code, body=_status_body(http_code, message, content_type),
                        content_type=content_type, headers=headers)


async def _read_body(request: web.Request, limit: int, held: Held) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise otlp.PayloadTooLarge(f"body of {request.content_length} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise otlp.PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        held.resize(size)  # what has arrived, not what Content-Length announces: announcing is free
        chunks.append(chunk)
    return b"".join(chunks)


def _inflate_and_read(read, body: bytes, limit: int, reader) -> list:
    # In the ingest worker, just before decoding: the event loop never inflates, and a queued gzip
    # body holds only its compressed bytes of limits.ingest_bytes. The worker takes one request
    # at a time, so at most one decompressed body (<= limit) exists beyond the budget.
    return read(otlp.gunzip(body, limit), reader)


def make_handler(ingest: Ingest, max_body: int, body_timeout: float):
    m = ingest.m

    async def export(request: web.Request) -> web.Response:
        content_type = request.content_type
        protocol = PROTOCOLS.get(content_type, "http")

        def answer(code: int, message: str, headers=None) -> web.Response:
            m.export_requests.inc((protocol, str(code)))
            return _error(code, message, content_type, headers)

        if content_type not in PROTOCOLS:
            return answer(415, f"unsupported content type {content_type!r}: use application/x-protobuf "
                               f"or application/json")
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", ""):
            return answer(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")
        read = otlp.read_json if content_type == otlp.JSON else otlp.read_protobuf
        with ingest.holding(protocol) as held:
            try:
                body = await asyncio.wait_for(_read_body(request, max_body, held), body_timeout)
                if encoding == "gzip":
                    inflate = partial(_inflate_and_read, read, body, max_body, ingest.reader)
                    result = await ingest.submit(inflate, protocol, held)
                else:
                    result = await ingest.submit(partial(read, body, ingest.reader), protocol, held)
            except otlp.PayloadTooLarge as exc:
                return answer(413, str(exc))
            except otlp.InvalidPayload as exc:
                return answer(400, str(exc))
            except asyncio.TimeoutError:
                return answer(408, f"body not received within {body_timeout:g}s")
            except Overloaded as exc:
                return answer(503, str(exc), headers={"Retry-After": str(math.ceil(exc.retry_after))})
        m.export_requests.inc((protocol, "200"))
        return web.Response(body=otlp.encode_response(result.rejected, result.message, content_type),
                            content_type=content_type)

    return export


def make_app(ingest: Ingest, limits: Limits, middlewares=()) -> web.Application:
    # Body size and decompression are ours to enforce (streamed, bounded, with a clear message):
    # aiohttp's own transparent decompression would inflate a gzip bomb before we could count it.
    app = web.Application(client_max_size=limits.max_body_bytes + 1, middlewares=list(middlewares),
                          handler_args={"auto_decompress": False})
    app.router.add_post("/v1/traces", make_handler(ingest, limits.max_body_bytes, limits.body_timeout))
    return app
