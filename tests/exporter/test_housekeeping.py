"""Housekeeping records a pass's traces in chunks (spanscope.ingest.FINISH_CHUNK), giving the event
loop and the lock back in between; a shutdown in the middle of a pass records the rest exactly once.
In process, with SDK-made spans: the chunking is about the order of work, not about timing."""
import asyncio

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from sdk import TRACES_PER_BATCH, make_batches
from spanscope.app import Exporter
from spanscope.config import load
from spanscope.ingest.queue import FINISH_CHUNK


def loaded(n_batches: int) -> tuple[Exporter, int]:
    """An exporter holding `n_batches` batches of complete traces, all due at once."""
    exp = Exporter(load(None, ["store.enabled=false", "traces.finish_delay=0"]))
    for batch in make_batches("housekeeping", n_batches):
        exp.ingest.process(encode_spans(batch), "test")
    return exp, n_batches * TRACES_PER_BATCH


def completed(exp: Exporter) -> float:
    with exp.ingest.lock:
        return sum(s[0] for s in exp.metrics.traces_completed.series.values())


def test_a_pass_gives_the_event_loop_back_between_chunks():
    exp, n = loaded(4)
    assert n > 3 * FINISH_CHUNK
    observed = []

    async def main():
        housekeeping = asyncio.create_task(exp.ingest.housekeeping(0.001))
        while completed(exp) < n:
            observed.append(completed(exp))
            await asyncio.sleep(0)
        housekeeping.cancel()

    asyncio.run(main())
    partial = sorted({c for c in observed if 0 < c < n})
    assert partial, "the event loop never ran while a pass was recording"
    assert all(c % FINISH_CHUNK == 0 for c in partial)  # it ran between chunks
    assert completed(exp) == n


def test_drain_records_the_rest_of_an_interrupted_pass_once():
    exp, n = loaded(4)

    async def main():
        housekeeping = asyncio.create_task(exp.ingest.housekeeping(0.001))
        while completed(exp) == 0:
            await asyncio.sleep(0)
        housekeeping.cancel()  # shutdown in the middle of a pass
        await asyncio.gather(housekeeping, return_exceptions=True)
        assert 0 < completed(exp) < n
        await exp.ingest.drain()

    asyncio.run(main())
    assert completed(exp) == n
    with exp.ingest.lock:  # each request counted once
        assert sum(s[0] for s in exp.metrics.requests.series.values()) == n


def test_a_failing_sink_loses_its_own_record_only():
    # Finished requests go to the sinks sink by sink: one raising on a request costs that sink's
    # record of it, not the other sinks' records nor the following requests'.
    exp = Exporter(load(None, ["store.enabled=false", "traces.finish_delay=0"]))
    failed, seen = [], []

    def failing(summary):
        if not failed:
            failed.append(summary)
            raise RuntimeError("a bug in one sink")

    exp.ingest.sinks[1:1] = [failing]  # after the request metrics, before the rollups and the rest
    exp.ingest.sinks.append(seen.append)
    for batch in make_batches("sinks", 1):
        exp.ingest.process(encode_spans(batch), "test")
    with exp.ingest.lock:
        exp.ingest.finish_traces(everything=True)
    assert len(failed) == 1
    assert len(seen) == TRACES_PER_BATCH  # the later sink saw the failed request too
    assert sum(s[0] for s in exp.metrics.requests.series.values()) == TRACES_PER_BATCH
    assert exp.rollups.merged(5).requests == TRACES_PER_BATCH
