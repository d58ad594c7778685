"""Clients that hold connections or calls open: idle and slow-header connections are closed after
limits.idle_timeout, open connections are capped (HTTP: 503 beyond; OTLP/gRPC: closed; both logged
and counted), and an OTLP/gRPC
call that never sends its message gives its limits.grpc_calls slot back after limits.body_timeout,
with no client address holding more than limits.grpc_calls_per_peer of them. Real exporters."""
import concurrent.futures
import socket
import threading
import time
import urllib.parse

import grpc
import pytest

from http_helpers import call
from processes import free_port, start_exporter, wait_until
from sdk import scrape, value

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url if "://" in url else "tcp://" + url)
    return parts.hostname, parts.port


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the other end closed `sock` within `within` seconds (what it sends first, e.g. gRPC's
    HTTP/2 settings, is read and ignored)."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(1024) == b"":
                return True
    except TimeoutError:
        pass
    except ConnectionResetError:
        return True
    return False


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """An exporter that closes idle connections after 1 s and waits 1 s for a body."""
    proc = start_exporter(tmp_path_factory.mktemp("idle"), settings={"limits.idle_timeout": 1,
                                                                     "limits.body_timeout": 1})
    yield proc
    proc.stop()


@pytest.mark.parametrize("listener", ["web", "http", "grpc"])
def test_an_idle_connection_is_closed(quick, listener):
    with socket.create_connection(address(quick.urls[listener])) as sock:
        started = time.monotonic()
        assert closed_by_peer(sock, 15)  # aiohttp's default kept it an hour, gRPC's handshake 120 s
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("listener", ["web", "http"])
def test_headers_that_trickle_in_do_not_hold_the_connection(quick, listener):
    with socket.create_connection(address(quick.urls[listener])) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # one header line every 0.2 s: never a whole head
            except (BrokenPipeError, ConnectionResetError):
                return
            if closed_by_peer(sock, 0.2):
                return
        pytest.fail("a request head trickling in kept its connection open for 10 s")


@pytest.mark.parametrize("path", ["/api/features/rag_weather", "/api/v1/feedback", "/nowhere"])
def test_an_api_body_that_trickles_in_is_a_408(quick, path):
    with socket.create_connection(address(quick.urls["web"])) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 100\r\n\r\n{{".encode())
        sock.settimeout(10)
        assert sock.recv(1024).startswith(b"HTTP/1.1 408 ")  # before: no answer, the connection held


def test_connections_beyond_the_cap_are_answered_503_logged_and_counted(tmp_path):
    """Each listener has its own budget: API clients that fill the web one leave OTLP/HTTP open, and back."""
    proc = start_exporter(tmp_path, settings={"limits.max_connections": 4})
    with proc:
        idle = [socket.create_connection(address(proc.urls["web"])) for _ in range(4)]
        try:
            status, doc = call("GET", proc.urls["web"] + "/healthz")
            assert status == 503 and doc["error"].startswith("too many open connections (limits.max_connections 4)")
            wait_until(lambda: "refused 1 web connection(s) in the last minute" in proc.log(), what="the log line")
            # the OTLP senders are not crowded out by the API's clients
            assert call("POST", proc.urls["traces"], raw=b"", content_type="application/x-protobuf")[0] == 200
            otlp_idle = [socket.create_connection(address(proc.urls["http"])) for _ in range(4)]
            try:
                assert call("POST", proc.urls["traces"], raw=b"", content_type="application/x-protobuf")[0] == 503
                wait_until(lambda: "refused 1 OTLP/HTTP connection(s) in the last minute" in proc.log(),
                           what="the OTLP/HTTP log line")
            finally:
                for sock in otlp_idle:
                    sock.close()
        finally:
            for sock in idle:
                sock.close()
        refused = [503]  # the answers of the web listener: until the exporter sees the closes, still 503

        def answered():
            refused.append(call("GET", proc.urls["web"] + "/healthz")[0])
            return refused[-1] == 200
        wait_until(answered, what="answers once the idle connections are gone")
        text = scrape(proc.urls["web"])
        assert value(text, "spanscope_connections_refused_total", listener="web") == refused.count(503)
        assert value(text, "spanscope_connections_refused_total", listener="otlp_http") == 1
        assert value(text, "spanscope_connections_refused_total", listener="otlp_grpc") == 0


def grpc_channel(target: str) -> grpc.Channel:
    """A channel with a connection of its own (channels to one target otherwise share one)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def test_grpc_connections_beyond_the_cap_are_closed_logged_and_counted(tmp_path):
    proc = start_exporter(tmp_path, settings={"limits.max_connections": 2})
    with proc:
        first, second, third = (grpc_channel(proc.urls["grpc"]) for _ in range(3))
        try:
            assert first.unary_unary(EXPORT)(b"", timeout=10) == b""
            assert second.unary_unary(EXPORT)(b"", timeout=10) == b""
            with pytest.raises(grpc.RpcError) as refused:
                third.unary_unary(EXPORT)(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # before: the same, but nowhere counted
            wait_until(lambda: "refused 1 OTLP/gRPC connection(s) in the last minute: 2 open, "
                               "limits.max_connections is 2" in proc.log(), what="the log line")
            third.close()  # the channel no longer reconnects in the background: the count holds still
            before = value(scrape(proc.urls["web"]), "spanscope_connections_refused_total", listener="otlp_grpc")
            assert before >= 1
            for _ in range(3):
                with socket.create_connection(address(proc.urls["grpc"])) as beyond:
                    assert closed_by_peer(beyond, 10)
            text = scrape(proc.urls["web"])
            assert value(text, "spanscope_connections_refused_total", listener="otlp_grpc") == before + 3
            assert value(text, "spanscope_connections_refused_total", listener="web") == 0
            first.close()  # a connection closes: a slot is free again

            def exported():
                with grpc_channel(proc.urls["grpc"]) as again:
                    try:
                        return again.unary_unary(EXPORT)(b"", timeout=10) == b""
                    except grpc.RpcError:
                        return False
            wait_until(exported, what="an export once a connection has closed")
        finally:
            first.close()
            second.close()
            third.close()


def stalled_calls(channel: grpc.Channel, n: int, release: threading.Event) -> list:
    """`n` Export calls that open and send no message until `release`."""
    def nothing():
        release.wait(60)
        yield from ()
    return [channel.stream_unary(EXPORT).future(nothing(), timeout=60) for _ in range(n)]


def test_a_grpc_call_that_never_sends_gives_its_slot_back(tmp_path):
    release = threading.Event()
    with start_exporter(tmp_path, settings={"limits.grpc_calls": 2, "limits.body_timeout": 1}) as proc, \
            grpc.insecure_channel(proc.urls["grpc"]) as channel:
        try:
            stalled = stalled_calls(channel, 2, release)
            for call_ in stalled:  # before: held until the client gave up, every other export UNAVAILABLE
                error = call_.exception(timeout=15)
                assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "did not arrive within 1s (limits.body_timeout)" in error.details()
            assert channel.unary_unary(EXPORT)(b"", timeout=10) == b""
        except concurrent.futures.TimeoutError:
            pytest.fail("the stalled gRPC calls were never ended by the exporter")
        finally:
            release.set()
        text = scrape(proc.urls["web"])
        assert value(text, "spanscope_export_requests_total", protocol="grpc", code="DEADLINE_EXCEEDED") == 2


def test_one_client_address_gets_only_its_share_of_grpc_calls(tmp_path):
    port = free_port()
    release = threading.Event()
    proc = start_exporter(tmp_path, settings={"limits.grpc_calls": 4, "limits.grpc_calls_per_peer": 2},
                          extra_args=["--otlp-grpc", f"[::]:{port}"])
    with proc, grpc.insecure_channel(f"127.0.0.1:{port}") as v4, grpc.insecure_channel(f"[::1]:{port}") as v6:
        try:
            stalled = stalled_calls(v4, 2, release)
            wait_until(lambda: value(scrape(proc.urls["web"]), "spanscope_grpc_calls_receiving") == 2,
                       what="two stalled calls")
            with pytest.raises(grpc.RpcError) as refused:
                v4.unary_unary(EXPORT)(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "(limits.grpc_calls_per_peer 2)" in refused.value.details()
            assert v6.unary_unary(EXPORT)(b"", timeout=10) == b""  # another address still gets in
        finally:
            release.set()
        for call_ in stalled:
            assert call_.exception(timeout=15).code() == grpc.StatusCode.INVALID_ARGUMENT  # no message
        assert value(scrape(proc.urls["web"]), "spanscope_requests_throttled_total", protocol="grpc",
                     reason="grpc_calls_per_peer") == 1


def test_an_http_listener_on_every_interface_takes_ipv4_and_ipv6(tmp_path):
    """`[::]` means every interface, IPv4 too (as for OTLP/gRPC): asyncio alone binds it to IPv6 only,
    and IPv4 senders were refused."""
    port = free_port()
    with start_exporter(tmp_path, extra_args=["--otlp-http", f"[::]:{port}"]):
        for host in ("127.0.0.1", "[::1]"):
            status, _ = call("POST", f"http://{host}:{port}/v1/traces", raw=b"", content_type="application/x-protobuf")
            assert status == 200, host
