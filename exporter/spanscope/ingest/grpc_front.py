"""The OTLP/gRPC port: our own listener in front of the gRPC server, so that connections beyond
`limits.max_connections` are refused visibly.

Why a front: grpcio's own cap (the channel arg `grpc.max_allowed_incoming_connections`) closes a
connection beyond it in its C core without a log line or a counter, and its Python API shows calls,
never connections (interceptors run per call; no way to hand it an accepted socket). So the port is
an asyncio listener: a connection within the cap is relayed byte for byte to the gRPC server on a
loopback port, which still does TLS, basic auth, the message limits and the idle and handshake
timeouts (when it closes the relayed connection, the front closes the client's). One beyond the cap
is closed at once, as gRPC's own cap did: the client sees UNAVAILABLE ("Socket closed") and backs
off. (An HTTP/2 GOAWAY naming the limit made gRPC clients reconnect at once, in a loop.) Refusals
are logged at most once a minute and counted in spanscope_connections_refused_total{listener=
"otlp_grpc"}. The price: the bytes cross the event loop once each way, about 29 us of CPU per
145 kB export request of 512 spans (under 0.3 % of what the exporter spends on it; bench/run.py
--targets exporter-grpc,reference-grpc saw no difference beyond its noise), and a connection holds
three file descriptors instead of one (web/connections.py connection_cap). The gRPC server sees the
relay's loopback address as a call's peer: `client_address` maps it back to the client's.
"""
from __future__ import annotations

import asyncio
import ipaddress

from ..sockets import listening

UPSTREAM_HOST = "127.0.0.1"


def grpc_address(peername) -> str:
    """A socket's peer as gRPC writes it, without the port: ipv4:10.0.0.7, ipv6:[::1] (an IPv4 client
    of a dual-stack socket is ipv4:, as gRPC has it)."""
    if not peername:  # the client was gone before its connection was set up
        return "unknown"
    ip = ipaddress.ip_address(peername[0].split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return f"ipv4:{ip}" if ip.version == 4 else f"ipv6:[{ip}]"


class GrpcFront:
    """Accepts the OTLP/gRPC port's connections: at most `cap` open, each relayed to `upstream_port`."""

    def __init__(self, cap: int, refusals):
        self.cap = cap
        self.refusals = refusals  # web/connections.py Refusals: counts and logs
        self.open = 0
        self.upstream_port = 0
        self.clients: dict[str, str] = {}  # the relay's loopback end, as gRPC names a peer -> the client's address
        self.relays: set[_Client] = set()
        self.server: asyncio.base_events.Server | None = None

    def client_address(self, peer: str) -> str | None:
        """The address of the client behind gRPC's `peer` (a relayed connection), None for another."""
        return self.clients.get(peer)

    async def start(self, host: str, port: int, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refusals.watch("otlp_grpc")
        self.server = await asyncio.get_running_loop().create_server(self._accept, **listening(host, port))

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    async def close(self) -> None:
        """Close what is still relayed (after the gRPC server's own graceful stop)."""
        self.stop_accepting()
        for relay in list(self.relays):
            relay.transport.close()
        if self.server is not None:
            await self.server.wait_closed()

    def _accept(self) -> asyncio.Protocol:
        if self.open < self.cap:
            return _Client(self)
        self.refusals.add("otlp_grpc", self.open)
        return _Refused()


class _Relay(asyncio.Protocol):
    """One end of a relayed connection: what it receives is written to the other end, and a full
    write buffer on one end pauses reading on the other."""

    transport: asyncio.Transport
    other: _Relay | None = None

    def data_received(self, data: bytes) -> None:
        self.other.transport.write(data)

    def pause_writing(self) -> None:
        self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        self.other.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        if self.other is not None:
            self.other.transport.close()  # after writing what it has buffered


class _Client(_Relay):
    """The client's connection: counted while open; read from once the gRPC server's end is connected."""

    def __init__(self, front: GrpcFront):
        self.front = front
        self.connecting: asyncio.Task | None = None
        self.early: list[bytes] = []  # received before the relay was connected

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.front.open += 1
        self.front.relays.add(self)
        self.address = grpc_address(transport.get_extra_info("peername"))
        self.connecting = asyncio.get_running_loop().create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        if self.other is None:
            self.early.append(data)
            self.transport.pause_reading()  # until the relay is connected
        else:
            self.other.transport.write(data)

    async def _connect(self) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: _Upstream(self), UPSTREAM_HOST,
                                                               self.front.upstream_port)
        except OSError:
            self.transport.close()

    def upstream_made(self, upstream: _Upstream, local: tuple) -> None:
        if self.transport.is_closing():  # the client left while the relay was connecting
            upstream.transport.close()
            return
        self.other, upstream.other = upstream, self
        self.key = f"ipv4:{local[0]}:{local[1]}"
        self.front.clients[self.key] = self.address
        upstream.transport.writelines(self.early)
        self.early = []
        self.transport.resume_reading()

    def connection_lost(self, exc) -> None:
        self.front.open -= 1
        self.front.relays.discard(self)
        if self.other is not None:
            self.front.clients.pop(self.key, None)
        elif self.connecting is not None:
            self.connecting.cancel()
        super().connection_lost(exc)


class _Upstream(_Relay):
    """The relay's connection to the gRPC server, for one client."""

    def __init__(self, client: _Client):
        self.client = client

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client.upstream_made(self, transport.get_extra_info("sockname"))


class _Refused(asyncio.Protocol):
    """A connection beyond the cap: closed at once."""

    def connection_made(self, transport) -> None:
        transport.close()
