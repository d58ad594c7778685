"""The plain baseline: aiohttp + prometheus_client, one `labels().observe()` per span.

    python bench/baseline_server.py --http 127.0.0.1:4318 [--grpc 127.0.0.1:4317]

POST /v1/traces decodes an ExportTraceServiceRequest (protobuf) and, for every span, observes its
duration in one histogram labelled (service, component), where component is the span's
`pipeline.component` attribute, else its name. GET /metrics is prometheus_client's exposition.
The optional gRPC listener serves the OTLP TraceService on the same event loop and does the same.

This is what a team would write in an afternoon: the bar spanscope has to beat per core with every
feature on. It uses uvloop when installed, as the exporter does, so the event loop is not what
differs.
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
import prometheus_client
from aiohttp import web
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

DEFAULT_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
MAX_BODY = 20 * 1024 * 1024
RESPONSE = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()


def make_recorder(buckets):
    histogram = prometheus_client.Histogram(
        "span_duration_seconds", "Span duration per service and component.",
        ["service", "component"], buckets=buckets)

    def record(request: ExportTraceServiceRequest) -> int:
        n = 0
        for rs in request.resource_spans:
            service = "unknown_service"
            for kv in rs.resource.attributes:
                if kv.key == "service.name":
                    service = kv.value.string_value
                    break
            for ss in rs.scope_spans:
                for span in ss.spans:
                    component = span.name
                    for kv in span.attributes:
                        if kv.key == "pipeline.component":
                            component = kv.value.string_value
                            break
                    histogram.labels(service, component).observe(
                        (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9)
                    n += 1
        return n

    return record


def make_app(record) -> web.Application:
    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            decoded = ExportTraceServiceRequest.FromString(body)
        except DecodeError as exc:
            return web.Response(status=400, text=f"invalid protobuf: {exc}")
        record(decoded)
        return web.Response(body=RESPONSE, content_type="application/x-protobuf")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=prometheus_client.generate_latest(),
                            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/metrics", metrics)
    return app


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, record):
        self.record = record

    async def Export(self, request, context):
        self.record(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


async def serve(args) -> None:
    record = make_recorder(args.buckets)
    runner = web.AppRunner(make_app(record), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, *split(args.http), reuse_address=True).start()
    server = None
    if args.grpc:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_BODY)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(record), server)
        server.add_insecure_port(args.grpc)
        await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if server is not None:
        await server.stop(grace=0)
    await runner.cleanup()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http", required=True, metavar="HOST:PORT", help="OTLP/HTTP and /metrics listener")
    p.add_argument("--grpc", metavar="HOST:PORT", help="optional OTLP/gRPC listener")
    p.add_argument("--buckets", type=lambda s: tuple(float(x) for x in s.split(",")), default=DEFAULT_BUCKETS,
                   help="histogram bucket boundaries, comma-separated seconds")
    args = p.parse_args(argv)
    try:
        import uvloop
        uvloop.run(serve(args))
    except ImportError:  # pragma: no cover
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
