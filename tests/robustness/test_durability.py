"""Interaction durability with real processes: SIGTERM writes every interaction acknowledged before it,
however far the backlog exceeds the writer's queue; SIGHUP and SIGUSR1 do not end the process; the
backlog (what a kill -9 would lose) is the gauge spanscope_interactions_pending."""
import signal
import sqlite3
import urllib.request

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from processes import http_ok, start_exporter, wait_until
from sdk import TRACES_PER_BATCH, make_batches, scrape, value


def holding(tmp_path, **store):
    """An exporter that holds every trace (finish_delay 60 s) until it stops, its store in tmp_path."""
    return start_exporter(tmp_path, {"traces": {"finish_delay": 60, "timeout": 120},
                                     "store": {"url": f"sqlite:///{tmp_path}/interactions.db", **store}})


def acknowledged(proc, batches) -> int:
    """POST each batch to OTLP/HTTP; the traces of the batches answered 200."""
    n = 0
    for batch in batches:
        req = urllib.request.Request(proc.urls["traces"], data=encode_spans(batch).SerializeToString(),
                                     headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            n += TRACES_PER_BATCH if resp.status == 200 else 0
    return n


def pending(proc, stage: str) -> float:
    return value(scrape(proc.urls["web"]), "spanscope_interactions_pending", stage=stage)


def stored(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "interactions.db") as db:
        return db.execute("SELECT count(*) FROM interactions").fetchone()[0]


def test_sigterm_writes_every_acknowledged_interaction_beyond_the_queue(tmp_path):
    # 1 000 traces wait in assembly; the shutdown finishes them at once into a queue of 100
    proc = holding(tmp_path, queue_size=100, batch_size=100)
    try:
        sent = acknowledged(proc, make_batches("durable", 10))
        assert sent == 1000
        wait_until(lambda: value(scrape(proc.urls["web"]), "spanscope_traces_pending") == sent,
                   what="every trace assembling")
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(60) == 0
    finally:
        proc.stop()
    assert stored(tmp_path) == sent


def test_sighup_and_sigusr1_do_not_end_the_exporter(tmp_path):
    proc = holding(tmp_path)
    try:
        sent = acknowledged(proc, make_batches("signals", 1))
        wait_until(lambda: value(scrape(proc.urls["web"]), "spanscope_traces_pending") == sent,
                   what="the traces assembling")
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            proc.popen.send_signal(sig)
            wait_until(lambda sig=sig: f"{sig.name} ignored" in proc.log(), what=f"{sig.name} logged",
                       process=proc)
        assert proc.popen.poll() is None and http_ok(proc.urls["web"] + "/readyz")
        # nothing was lost or finished early: the backlog a kill -9 would lose is on the gauge
        assert (pending(proc, "assembling"), pending(proc, "queued"), pending(proc, "writing")) == (sent, 0, 0)
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(60) == 0
    finally:
        proc.stop()
    assert stored(tmp_path) == sent
