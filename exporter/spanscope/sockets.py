"""Listen addresses as asyncio's create_server takes them: one rule for every listener (the OTLP/HTTP
and web ports in web/connections.py, the OTLP/gRPC front in ingest/grpc_front.py)."""
from __future__ import annotations

import socket


def listening(host: str, port: int) -> dict:
    """loop.create_server's arguments for a listen address. "[::]" is every interface, IPv4 too, as
    gRPC and most servers mean it (asyncio alone binds "::" to IPv6 only); IPv4 alone where the
    system has no dual-stack IPv6."""
    if host not in ("", "::"):
        return {"host": host, "port": port, "reuse_address": True}
    if socket.has_dualstack_ipv6():
        return {"sock": socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)}
    return {"sock": socket.create_server(("0.0.0.0", port))}
