"""Runs inside one setup's virtualenv: the real OpenTelemetry SDK, an in-memory exporter, a network guard.

A setup script (run_<library>.py) instruments its library, then hands `run()` its calls by name. Each
call's finished spans (and log records, which some instrumentations emit as GenAI events) are taken
apart from the others' and written as JSON to the capture file named on the command line.

Only loopback is reachable: every name lookup or connection to anything else fails, so a library that
phones home (a price list, a tokenizer) shows that as an error here instead of reaching the network.

With DIALECTS_OTLP_ENDPOINT set (test_real_libraries.py does), the spans also go to a spanscope
exporter through the real OTLP exporter, batched as a service would send them:
DIALECTS_OTLP_PROTOCOL `http` (endpoint http://host:port/v1/traces) or `grpc` (endpoint host:port).
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
import time
import traceback
from importlib import metadata

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

URL = os.environ["FAKE_PROVIDERS_URL"]  # e.g. http://127.0.0.1:PORT, set by capture.py
API_KEY = "sk-fake-dialects"
APP_SPAN = "app.handle_request"


def _loopback(host) -> bool:
    if host in (None, "localhost", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host).is_loopback
    except ValueError:
        return False


def guard_network() -> None:
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, f"dialect capture: {host} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise ConnectionRefusedError(f"dialect capture: {address[0]} is not loopback")
        return real_connect(sock, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect


guard_network()
SPANS = InMemorySpanExporter()
PROVIDER = TracerProvider(resource=Resource.create({"service.name": "dialects"}))
PROVIDER.add_span_processor(SimpleSpanProcessor(SPANS))


def _otlp_exporter():
    """The real OTLP span exporter the environment asks for, or None."""
    endpoint, protocol = os.environ.get("DIALECTS_OTLP_ENDPOINT"), os.environ.get("DIALECTS_OTLP_PROTOCOL", "http")
    if not endpoint:
        return None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter(endpoint=endpoint, insecure=True)
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter(endpoint=endpoint)
    raise SystemExit(f"DIALECTS_OTLP_PROTOCOL: expected http or grpc, not {protocol!r}")


OTLP = _otlp_exporter()
if OTLP is not None:
    PROVIDER.add_span_processor(BatchSpanProcessor(OTLP))
trace.set_tracer_provider(PROVIDER)


def _log_capture():
    """A global logger provider with an in-memory exporter, where this SDK version has one."""
    try:
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import (
            InMemoryLogExporter,
            SimpleLogRecordProcessor,
        )
    except ImportError:
        return None, None
    logs = InMemoryLogExporter()
    provider = LoggerProvider(resource=PROVIDER.resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    set_logger_provider(provider)
    with contextlib.suppress(ImportError):  # the Events API some instrumentations emit through
        from opentelemetry._events import set_event_logger_provider
        from opentelemetry.sdk._events import EventLoggerProvider
        set_event_logger_provider(EventLoggerProvider(provider))
    return provider, logs


LOG_PROVIDER, LOGS = _log_capture()


@contextlib.contextmanager
def app_span():
    """The application's own request span, for the nested call."""
    with trace.get_tracer("dialects.app").start_as_current_span(APP_SPAN, kind=trace.SpanKind.SERVER):
        yield


def _value(v):
    return list(v) if isinstance(v, tuple) else v


def _attributes(attrs) -> dict:
    return {k: _value(v) for k, v in sorted((attrs or {}).items())}


def _spans(spans) -> list[dict]:
    """Spans in start order, with ids replaced by their index so captures compare across runs."""
    spans = sorted(spans, key=lambda s: s.start_time)
    index = {s.context.span_id: i for i, s in enumerate(spans)}
    return [{
        "id": i,
        "parent": None if s.parent is None else index.get(s.parent.span_id, "outside"),
        "name": s.name,
        "kind": s.kind.name,
        "scope": {"name": s.instrumentation_scope.name, "version": s.instrumentation_scope.version},
        "status": {"code": s.status.status_code.name, "description": s.status.description},
        "attributes": _attributes(s.attributes),
        "events": [{"name": e.name, "attributes": _attributes(e.attributes)} for e in s.events],
    } for i, s in enumerate(spans)]


def _logs(records, spans) -> list[dict]:
    index = {s.context.span_id: i for i, s in enumerate(sorted(spans, key=lambda s: s.start_time))}
    out = []
    for data in records:
        r = data.log_record
        plain = isinstance(r.body, (str, int, float, bool, type(None)))
        body = r.body if plain else json.loads(json.dumps(r.body, default=str))
        out.append({"event_name": getattr(r, "event_name", None) or (r.attributes or {}).get("event.name"),
                    "span": index.get(r.span_id, None if not r.span_id else "outside"),
                    "scope": getattr(data, "instrumentation_scope", None) and data.instrumentation_scope.name,
                    "attributes": _attributes(r.attributes), "body": body})
    return out


def _settle(timeout: float = 5.0) -> None:
    """Wait until the spans stop arriving: some libraries end or export them from a background thread."""
    deadline, seen, quiet = time.monotonic() + timeout, -1, 0
    while time.monotonic() < deadline:
        PROVIDER.force_flush()
        n = len(SPANS.get_finished_spans())
        quiet = quiet + 1 if n == seen and n > 0 else 0
        if quiet >= 3:
            return
        seen = n
        time.sleep(0.1)


def run(setup: str, calls: dict, packages: list[str], settle: float = 5.0) -> None:
    capture = {"setup": setup,
               "packages": {p: metadata.version(p) for p in packages},
               "env": {k: v for k, v in sorted(os.environ.items())
                       if k.startswith(("OTEL_", "ANTHROPIC_OPEN_TELEMETRY", "LITELLM_", "TRACELOOP_", "OPENLIT_"))
                       and "URL" not in k and "ENDPOINT" not in k},
               "calls": {}}
    unexpected = []
    for name, call in calls.items():
        error = None
        try:
            call()
        except Exception as e:  # noqa: BLE001 - the error call is meant to raise; record what any call raised
            error = f"{type(e).__name__}: {e}"[:300]
            if name != "error":
                unexpected.append(name)
                traceback.print_exc()
        _settle(settle)
        spans = SPANS.get_finished_spans()
        entry = {"error": error, "spans": _spans(spans)}
        if LOGS is not None:
            LOG_PROVIDER.force_flush()
            entry["logs"] = _logs(LOGS.get_finished_logs(), spans)
            LOGS.clear()
        SPANS.clear()
        capture["calls"][name] = entry
        print(f"{setup}: {name}: {len(entry['spans'])} spans" + (f" ({error})" if error else ""), file=sys.stderr)
    with open(sys.argv[2], "w") as f:
        json.dump(capture, f, indent=1, sort_keys=False)
        f.write("\n")
    if OTLP is not None and not PROVIDER.force_flush(30_000):
        sys.exit(f"{setup}: the OTLP exporter did not flush within 30 s")
    if unexpected:
        sys.exit(f"{setup}: these calls raised: {', '.join(unexpected)}")
