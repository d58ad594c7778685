"""spanscope-demo: run the simulated RAG service against a spanscope exporter.

    spanscope-demo --endpoint http://127.0.0.1:4318 --api http://127.0.0.1:8889 [--rate 20]
                   [--scenario normal] [--duration SECONDS] [--seed N]
                   [--mode drive|serve|both] [--listen 127.0.0.1:8000]

`--mode drive` (the default) sends its own traffic at --rate; `serve` answers questions over HTTP
(server.py: POST /api/v1/chat and /api/v1/chat/batch) and sends nothing by itself; `both` does both
through one pipeline. Runs until SIGINT/SIGTERM (or --duration), then flushes the spans still
queued and exits 0.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
import threading

from aiohttp import web

from . import scenarios
from .clock import EndOnTime
from .features import FeatureFlags, traced_client, wait_until_ready
from .feedback import FeedbackClient
from .pipeline import RagService
from .runner import Stats, run, touch
from .server import ChatServer
from .telemetry import SpanCounts, otlp_exporter, tracer_provider

log = logging.getLogger("spanscope_demo")


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="spanscope-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", default=env("SPANSCOPE_DEMO_ENDPOINT", "http://127.0.0.1:4318"),
                   help="OTLP/HTTP base URL of the exporter (env SPANSCOPE_DEMO_ENDPOINT)")
    p.add_argument("--api", default=env("SPANSCOPE_DEMO_API", "http://127.0.0.1:8889"),
                   help="exporter web base URL: features and feedback (env SPANSCOPE_DEMO_API)")
    p.add_argument("--rate", type=float, default=float(env("SPANSCOPE_DEMO_RATE", "20")),
                   help="requests per second (env SPANSCOPE_DEMO_RATE)")
    p.add_argument("--scenario", default=env("SPANSCOPE_DEMO_SCENARIO", "normal"), choices=list(scenarios.SCENARIOS),
                   help="traffic scenario (env SPANSCOPE_DEMO_SCENARIO)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=None, help="seed the simulation for repeatable traffic")
    p.add_argument("--token", default=env("SPANSCOPE_TOKEN"), help="bearer token for the exporter's write API")
    p.add_argument("--feedback-rate", type=float, default=0.05, help="share of requests that get a rating")
    p.add_argument("--heartbeat-file", default=env("SPANSCOPE_DEMO_HEARTBEAT"),
                   help="touched every few seconds while the request loop runs (container health check)")
    p.add_argument("--mode", default=env("SPANSCOPE_DEMO_MODE", "drive"), choices=["drive", "serve", "both"],
                   help="drive: self-driven traffic; serve: the HTTP chat API; both (env SPANSCOPE_DEMO_MODE)")
    p.add_argument("--listen", default=env("SPANSCOPE_DEMO_LISTEN", "127.0.0.1:8000"),
                   help="host:port of the chat API in serve and both modes (env SPANSCOPE_DEMO_LISTEN)")
    p.add_argument("--feature-refresh", type=float, default=float(env("SPANSCOPE_DEMO_FEATURE_REFRESH", "2")),
                   help="seconds between reads of the exporter's feature table")
    p.add_argument("--max-batch", type=int, default=50, help="most items in one /api/v1/chat/batch request")
    p.add_argument("--wait-features", type=float, default=10.0,
                   help="seconds to wait for the exporter's feature table before starting")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be positive")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        p.error("--listen must be host:port")
    args.listen = (host, int(port))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Imported late: the provider lives in the exporter package, which pulls in the OpenFeature SDK.
    from spanscope.client.openfeature_provider import SpanscopeProvider

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    provider = SpanscopeProvider(args.api, refresh_seconds=args.feature_refresh, token=args.token)
    client = traced_client(provider)
    flags = FeatureFlags(client)
    if not wait_until_ready(client, args.wait_features):
        log.warning("no feature table from %s yet: using built-in defaults until it answers", args.api)
    counts = SpanCounts()
    tracing = tracer_provider(otlp_exporter(args.endpoint), counts=counts)
    rng = random.Random(args.seed)
    feedback = FeedbackClient(args.api, token=args.token, rng=random.Random(rng.random()))
    service = RagService(tracing.get_tracer("spanscope_demo"), flags, scenarios.get(args.scenario), rng=rng,
                         feedback=feedback, feedback_rate=args.feedback_rate, closer=EndOnTime())
    if args.duration:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True
        timer.start()
    stats = Stats()
    try:
        if args.mode == "drive":
            log.info("sending %s traffic at %.1f req/s to %s (features and feedback: %s)",
                     args.scenario, args.rate, args.endpoint, args.api)
            stats = run(service, args.rate, stop, heartbeat_file=args.heartbeat_file)
        else:
            driver = None
            if args.mode == "both":
                driver = threading.Thread(target=lambda: stats.merge(run(service, args.rate, stop)), name="drive")
                driver.start()
            server = ChatServer(service, counts, max_batch=args.max_batch)
            log.info("%s scenario: serving the chat API on http://%s:%d, spans to %s%s", args.scenario,
                     *args.listen, args.endpoint, f", and driving {args.rate:g} req/s" if driver else "")
            asyncio.run(serve(server, args.listen, stop, args.heartbeat_file))
            if driver:
                driver.join()
            stats.requests += server.served
            stats.errors += server.failed
    finally:
        # Flush before exit: spans of requests still "in flight" and what the BatchSpanProcessor holds.
        service.pool.shutdown(wait=True)
        service.closer.end_all()
        feedback.close()
        tracing.force_flush(timeout_millis=10_000)
        tracing.shutdown()
        provider.shutdown()
    log.info("stopped after %d requests (%d errors); feedback sent %d; spans %s", stats.requests, stats.errors,
             feedback.sent, counts.as_dict())
    return 0


async def serve(server: ChatServer, listen: tuple[str, int], stop: threading.Event,
                heartbeat_file: str | None = None) -> None:
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, *listen, backlog=2048).start()
    try:
        while not stop.is_set():
            if heartbeat_file:
                touch(heartbeat_file)
            await asyncio.sleep(0.2)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
