"""Open connections of the listeners, bounded below the file-descriptor limit.

Every accepted connection holds a file descriptor until it closes, and the process has few (often
1 024): idle or slow clients that keep theirs would leave none for /metrics, OTLP and the store.
Idle connections, and requests whose headers do not arrive, are closed after `limits.idle_timeout`
(aiohttp's keep-alive timer, which runs from the moment a connection is accepted). Each listener
has its own budget of `limits.max_connections`, so API clients cannot crowd out OTLP senders: beyond
it, a new connection is answered 503 and closed at once, logged (at most once a minute) and counted
in spanscope_connections_refused_total{listener}. OTLP/gRPC has a cap of the same size, with the
same accounting (ingest/grpc_front.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import resource
import time

from aiohttp import web
from yarl import URL

from ..sockets import listening

log = logging.getLogger("spanscope")

FD_RESERVE = 64  # descriptors left for the store, files, DNS and the process itself
# A relayed gRPC connection takes three: the client's, the relay's and gRPC's end.
FDS_PER_CONNECTION = {"web": 1, "otlp_http": 1, "otlp_grpc": 3}
MAX_HEAD = 16384  # bytes of a refused request read before answering (its head, usually)


def connection_cap(configured: int) -> int:
    """`configured`, lowered so that the three listeners, each at the cap, stay under the soft
    file-descriptor limit (ulimit -n)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, (soft - FD_RESERVE) // sum(FDS_PER_CONNECTION.values())))


class Refusals:
    """Connections refused at a cap: counted by listener, logged at most once a minute."""

    def __init__(self, counter, cap: int, what: str, clock=time.monotonic):
        self.counter = counter  # spanscope_connections_refused_total{listener}
        self.cap, self.what, self.clock = cap, what, clock
        self._unlogged = 0
        self._logged_at = float("-inf")

    def watch(self, listener: str) -> None:
        self.counter.touch((listener,))  # 0, not "no data", until the first refusal

    def add(self, listener: str, open_now: int) -> None:
        self.counter.inc((listener,))
        self._unlogged += 1
        now = self.clock()
        if now - self._logged_at >= 60:
            log.warning("refused %d %s connection(s) in the last minute: %d open, limits.max_connections is %d",
                        self._unlogged, self.what, open_now, self.cap)
            self._unlogged, self._logged_at = 0, now


class Connections:
    """Counts the open connections of one HTTP listener and refuses those beyond `cap`."""

    def __init__(self, cap: int, refused_counter, retry_after: float, what: str = "HTTP", clock=time.monotonic):
        self.cap = cap
        self.refusals = Refusals(refused_counter, cap, what, clock)
        self.retry_after = retry_after
        self.servers: list[web.Server] = []
        body = json.dumps({"error": f"too many open connections (limits.max_connections {cap}): retry later",
                           "status": 503}).encode()
        self.answer = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\nRetry-After: {max(1, round(retry_after))}\r\n"
                       f"Connection: close\r\n\r\n").encode() + body

    def open(self) -> int:
        return sum(len(server.connections) for server in self.servers)

    def protocol_factory(self, server: web.Server, listener: str):
        """What the listening socket makes of each accepted connection: `server`'s handler, or a refusal."""
        self.servers.append(server)
        self.refusals.watch(listener)

        def accept():
            open_now = self.open()
            if open_now < self.cap:
                return server()
            self.refusals.add(listener, open_now)
            return _Refusal(self.answer)

        return accept


class _Refusal(asyncio.Protocol):
    """Reads the request's head (a client sees the answer, not a reset), answers 503 and closes."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(1.0, self._answer)  # a client that sends nothing

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head or len(self.head) > MAX_HEAD:
            self._answer()

    def _answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(self.answer)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.timer.cancel()


class CappedSite(web.BaseSite):
    """A TCP site whose connections go through `connections` (web.TCPSite, but for the factory)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, connections: Connections, listener: str,
                 ssl_context=None):
        super().__init__(runner, ssl_context=ssl_context)
        self.host, self.port, self.connections, self.listener = host, port, connections, listener

    @property
    def name(self) -> str:
        return str(URL.build(scheme="https" if self._ssl_context else "http", host=self.host, port=self.port))

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self.connections.protocol_factory(self._runner.server, self.listener), ssl=self._ssl_context,
            **listening(self.host, self.port))
