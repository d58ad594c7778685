"""Decoding OTLP trace export requests: protobuf and OTLP/JSON, optionally gzip-compressed, into the
raw spans the contract reads (`read_protobuf`, `read_json`).

OTLP/JSON differs from the protobuf JSON mapping in one way that matters: trace and span ids are
hex strings, not base64. Everything else (lowerCamelCase keys, int64 as string or number, enums as
integers, unknown fields ignored) the protobuf JSON parser accepts as the spec requires.
"""
from __future__ import annotations

import base64
import json
import zlib

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .wire import Reader

try:  # orjson is several times faster on large bodies; the stdlib parser is the fallback
    import orjson

    _json_loads = orjson.loads
    _JSONError = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover
    _json_loads = json.loads
    _JSONError = (json.JSONDecodeError, UnicodeDecodeError)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class InvalidPayload(ValueError):
    """The body cannot be decoded; the message says why (answered with 400)."""


class PayloadTooLarge(ValueError):
    """The body, or what it decompresses to, exceeds the configured limit (answered with 413)."""


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress gzip without ever holding more than `limit` bytes (a gzip bomb stops early)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
        out += inflater.flush()
    except zlib.error as exc:
        raise InvalidPayload(f"invalid gzip body: {exc}") from None
    if not inflater.eof:
        raise InvalidPayload("invalid gzip body: truncated stream")
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    return out


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise InvalidPayload(f"invalid protobuf ExportTraceServiceRequest: {exc}") from None
    return request


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(obj: dict, where: str) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if isinstance(value, str) and value:
            try:
                obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise InvalidPayload(f"{where}.{key}: expected a hex string, got {value[:64]!r}") from None


def _list(obj: dict, *keys: str) -> list:
    for key in keys:
        value = obj.get(key)
        if value is not None:
            if not isinstance(value, list):
                raise InvalidPayload(f"{key}: expected an array")
            return value
    return []


def decode_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        doc = _json_loads(body)
    except _JSONError as exc:
        raise InvalidPayload(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidPayload("invalid OTLP/JSON: expected an object at the top level")
    for r, rs in enumerate(_list(doc, "resourceSpans", "resource_spans")):
        if not isinstance(rs, dict):
            raise InvalidPayload(f"resourceSpans[{r}]: expected an object")
        for s, ss in enumerate(_list(rs, "scopeSpans", "scope_spans")):
            if not isinstance(ss, dict):
                raise InvalidPayload(f"resourceSpans[{r}].scopeSpans[{s}]: expected an object")
            for i, span in enumerate(_list(ss, "spans")):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                if not isinstance(span, dict):
                    raise InvalidPayload(f"{where}: expected an object")
                _hex_ids_to_base64(span, where)
                for j, link in enumerate(_list(span, "links")):
                    if isinstance(link, dict):
                        _hex_ids_to_base64(link, f"{where}.links[{j}]")
    try:
        return json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise InvalidPayload(f"invalid OTLP/JSON: {exc}") from None


def read_protobuf(body: bytes, reader: Reader) -> list:
    """A protobuf body as [(service, [RawSpan])] (decode.wire; the native reader when built)."""
    return reader.from_bytes(body, decode_protobuf)


def read_json(body: bytes, reader: Reader) -> list:
    """An OTLP/JSON body as [(service, [RawSpan])]."""
    return reader.from_message(decode_json(body))


def encode_response(rejected: int, message: str, content_type: str) -> bytes:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if content_type == JSON:
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()
