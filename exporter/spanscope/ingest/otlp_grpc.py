"""OTLP/gRPC receiver: the TraceService on grpc.aio, sharing the event loop with the web server.

Overload (the ingest queue or its byte budget full, or limits.grpc_calls calls already being
received) answers UNAVAILABLE with a google.rpc.RetryInfo detail, which the OpenTelemetry SDK's
exporter honours as the delay before its retry. The method takes the request's bytes undecoded, so
the ingest worker decodes them as it does OTLP/HTTP's; an invalid body is INVALID_ARGUMENT.
"""
from __future__ import annotations

from functools import partial

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ..config import Limits
from ..decode import otlp
from .queue import Ingest, Overloaded

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _unavailable(message: str, retry_after: float) -> grpc.Status:
    retry = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=int(retry_after),
                                                             nanos=int(retry_after % 1 * 1e9)))
    detail = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    detail.details.add().Pack(retry)

    class _Status(grpc.Status):
        code = grpc.StatusCode.UNAVAILABLE
        details = message
        trailing_metadata = (("grpc-status-details-bin", detail.SerializeToString()),)

    return _Status()


class TraceService:
    """Export, registered as a request-streaming method so that it runs before the request message
    is read: a call is admitted (at most `max_calls` being received at once) before gRPC receives
    its message, and refused otherwise without reading it. Clients call it as the unary method it is;
    the wire format is the same."""

    def __init__(self, ingest: Ingest, max_calls: int):
        self.ingest = ingest
        self.max_calls = max_calls
        self.receiving = 0

    async def Export(self, requests, context):  # noqa: N802 - the gRPC method name
        m = self.ingest.m
        try:
            if self.receiving >= self.max_calls:
                m.throttled.inc(("grpc", "grpc_calls"))
                raise Overloaded(f"{self.receiving} gRPC export calls being received "
                                 f"(limits.grpc_calls {self.max_calls})", self.ingest.retry_after)
            self._receiving(+1)
            try:
                body = await context.read()
            finally:
                self._receiving(-1)
            if body is grpc.aio.EOF:
                raise otlp.InvalidPayload("no ExportTraceServiceRequest message in the call")
            # gRPC has received the whole message by now: it counts against the budget from here on.
            with self.ingest.holding("grpc") as held:
                held.resize(len(body))
                result = await self.ingest.submit(partial(otlp.read_protobuf, body, self.ingest.reader), "grpc", held)
        except Overloaded as exc:
            m.export_requests.inc(("grpc", "UNAVAILABLE"))
            await context.abort_with_status(_unavailable(str(exc), exc.retry_after))
        except otlp.InvalidPayload as exc:
            m.export_requests.inc(("grpc", "INVALID_ARGUMENT"))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        m.export_requests.inc(("grpc", "OK"))
        response = trace_service_pb2.ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.rejected_spans = result.rejected
            response.partial_success.error_message = result.message
        return response

    def _receiving(self, delta: int) -> None:
        self.receiving += delta
        self.ingest.m.grpc_receiving.set((), self.receiving)


def make_server(ingest: Ingest, address: str, limits: Limits, security=None) -> grpc.aio.Server:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limits.max_grpc_message_bytes),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ])
    export = grpc.stream_unary_rpc_method_handler(
        TraceService(ingest, limits.grpc_calls).Export, request_deserializer=None,
        response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": export}),))
    if security is not None and security.cert_pem:
        credentials = grpc.ssl_server_credentials([(security.key_pem, security.cert_pem)],
                                                  root_certificates=security.client_ca_pem,
                                                  require_client_auth=security.require_client_cert)
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address} (OTLP/gRPC)")
    return server
