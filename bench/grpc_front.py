"""What the OTLP/gRPC front's relay (spanscope/ingest/grpc_front.py) costs: CPU seconds of the
process running it, per export-request-sized message, relayed against connected directly.

A sink (answers 100 bytes per message, like an ExportTraceServiceResponse with its frames) and a
client (CONCURRENCY connections, each sending the next message once the answer arrived, like
bench/loadgen.py) run in child processes; only this process's CPU is counted, so the figure is the
relay's alone, and it holds up on a busy machine where throughput runs cannot resolve it.

    .venv/bin/python bench/grpc_front.py [--messages 4000] [--bytes 146094]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource

from spanscope.ingest.grpc_front import GrpcFront

REPLY = 100
CONCURRENCY = 4


class NoRefusals:
    def watch(self, listener): ...

    def add(self, listener, open_now): ...


def run(main):
    try:
        import uvloop  # as the exporter runs, when installed
        return uvloop.run(main)
    except ImportError:
        return asyncio.run(main)


def sink(size: int, ports: mp.Queue) -> None:
    async def main():
        async def answer(reader, writer):
            try:
                while True:
                    await reader.readexactly(size)
                    writer.write(b"x" * REPLY)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()
    run(main())


def client(port: int, size: int, messages: int) -> None:
    async def connection():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b"y" * size
        for _ in range(messages // CONCURRENCY):
            writer.write(body)
            await reader.readexactly(REPLY)
        writer.close()

    async def main():
        await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    run(main())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(relayed: bool, size: int, messages: int) -> float:
    ports: mp.Queue = mp.Queue()
    server = mp.Process(target=sink, args=(size, ports), daemon=True)
    server.start()
    upstream = ports.get(timeout=30)
    front = GrpcFront(CONCURRENCY, NoRefusals())
    await front.start("127.0.0.1", 0, upstream)
    port = front.server.sockets[0].getsockname()[1] if relayed else upstream
    before = cpu_seconds()
    load = mp.Process(target=client, args=(port, size, messages))
    load.start()
    while load.is_alive():
        await asyncio.sleep(0.05)
    spent = cpu_seconds() - before
    await front.close()
    server.kill()
    server.join()
    if load.exitcode != 0:
        raise SystemExit(f"the client failed (exit code {load.exitcode})")
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=4000)
    p.add_argument("--bytes", type=int, default=146_094, help="per message (bench/payloads.py's mean request)")
    args = p.parse_args()
    rounds = {"direct": [], "relayed": []}
    for relayed in (False, True, False, True, False, True):
        spent = run(measure(relayed, args.bytes, args.messages))
        rounds["relayed" if relayed else "direct"].append(round(spent / args.messages * 1e6, 1))
    print(json.dumps({"message_bytes": args.bytes, "messages": args.messages,
                      "cpu_us_per_message": rounds}, indent=1))


if __name__ == "__main__":
    main()
