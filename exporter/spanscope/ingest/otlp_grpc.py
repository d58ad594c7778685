"""OTLP/gRPC receiver: the TraceService on grpc.aio, sharing the event loop with the web server.

Overload (the ingest queue or its byte budget full, limits.grpc_calls calls already being received,
or limits.grpc_calls_per_peer of them from the caller's address) answers UNAVAILABLE with a
google.rpc.RetryInfo detail, which the OpenTelemetry SDK's exporter honours as the delay before its
retry. A message that has not arrived within limits.body_timeout is DEADLINE_EXCEEDED: a call that
opens and never sends gives its slot back. The method takes the request's bytes undecoded, so the
ingest worker decodes them as it does OTLP/HTTP's; an invalid body is INVALID_ARGUMENT. With basic
auth configured, a call without valid credentials is UNAUTHENTICATED before anything else.
The server listens on loopback only: the OTLP/gRPC port is grpc_front.py's, which caps connections
and relays each to it.
"""
from __future__ import annotations

import asyncio
from collections import Counter
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


def peer_address(peer: str) -> str:
    """The client's address without its port: "ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7"."""
    kind, _, rest = peer.partition(":")
    return f"{kind}:{rest.rsplit(':', 1)[0]}" if kind in ("ipv4", "ipv6") else peer


class TraceService:
    """Export, registered as a request-streaming method so that it runs before the request message
    is read: a call is admitted (at most `grpc_calls` being received at once, `grpc_calls_per_peer`
    of them from one address, each for at most `body_timeout` seconds) before gRPC receives its
    message, and refused otherwise without reading it. Clients call it as the unary method it is;
    the wire format is the same."""

    def __init__(self, ingest: Ingest, limits: Limits, client_address=lambda peer: None):
        self.ingest = ingest
        self.client_address = client_address  # a relayed call's client (grpc_front.py), None for others
        self.max_calls = limits.grpc_calls
        self.per_peer = limits.grpc_calls_per_peer
        self.receive_timeout = limits.body_timeout
        self.receiving = 0
        self.by_peer: Counter[str] = Counter()

    async def Export(self, requests, context):  # noqa: N802 - the gRPC method name
        m = self.ingest.m
        caller = context.peer()
        peer = self.client_address(caller) or peer_address(caller)
        try:
            self._admit(peer)
            self._receiving(peer, +1)
            try:
                body = await asyncio.wait_for(context.read(), self.receive_timeout)
            finally:
                self._receiving(peer, -1)
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
        except asyncio.TimeoutError:
            m.export_requests.inc(("grpc", "DEADLINE_EXCEEDED"))
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"the request message did not arrive within "
                                                                   f"{self.receive_timeout:g}s (limits.body_timeout)")
        m.export_requests.inc(("grpc", "OK"))
        response = trace_service_pb2.ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.rejected_spans = result.rejected
            response.partial_success.error_message = result.message
        return response

    def _admit(self, peer: str) -> None:
        if self.receiving >= self.max_calls:
            self.ingest.m.throttled.inc(("grpc", "grpc_calls"))
            raise Overloaded(f"{self.receiving} gRPC export calls being received "
                             f"(limits.grpc_calls {self.max_calls})", self.ingest.retry_after)
        if self.by_peer[peer] >= self.per_peer:
            self.ingest.m.throttled.inc(("grpc", "grpc_calls_per_peer"))
            raise Overloaded(f"{self.by_peer[peer]} gRPC export calls from {peer} being received "
                             f"(limits.grpc_calls_per_peer {self.per_peer})", self.ingest.retry_after)

    def _receiving(self, peer: str, delta: int) -> None:
        self.receiving += delta
        self.by_peer[peer] += delta
        if not self.by_peer[peer]:
            del self.by_peer[peer]
        self.ingest.m.grpc_receiving.set((), self.receiving)


async def _unauthenticated(requests, context) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "basic auth required: send the metadata "
                                                         "authorization: Basic <base64 user:password>")


class BasicAuth(grpc.aio.ServerInterceptor):
    """The web config file's basic_auth_users, as on OTLP/HTTP: `verify(authorization)` is the check
    of an Authorization header's value (off the event loop)."""

    REFUSED = grpc.stream_unary_rpc_method_handler(_unauthenticated)

    def __init__(self, verify):
        self.verify = verify

    async def intercept_service(self, continuation, details):
        authorization = dict(details.invocation_metadata or ()).get("authorization", "")
        if isinstance(authorization, str) and await self.verify(authorization):
            return await continuation(details)
        return self.REFUSED


def make_server(ingest: Ingest, address: str, limits: Limits, security=None, max_connections: int | None = None,
                client_address=lambda peer: None) -> tuple[grpc.aio.Server, int]:
    """The server and its port. `security`: the web config file's TLS and basic auth (web/security.py
    WebSecurity); `max_connections`: the front's cap (grpc_front.py), of which gRPC's own is a backstop
    against local processes that connect to `address` directly."""
    idle_ms = int(limits.idle_timeout * 1000)
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limits.max_grpc_message_bytes),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ("grpc.max_connection_idle_ms", idle_ms),          # no call for that long: GOAWAY, closed
        ("grpc.server_handshake_timeout_ms", idle_ms),     # TLS and HTTP/2 preface
        ("grpc.keepalive_time_ms", 60_000),                # ping a connection with calls, to find dead peers
        ("grpc.keepalive_timeout_ms", 20_000),
        # Twice the front's: the front has counted a closed connection out before gRPC has.
        ("grpc.max_allowed_incoming_connections", 2 * (max_connections or limits.max_connections)),
    ], interceptors=[BasicAuth(security.verify_header)] if security is not None and security.users else None)
    export = grpc.stream_unary_rpc_method_handler(
        TraceService(ingest, limits, client_address).Export, request_deserializer=None,
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
    return server, port
