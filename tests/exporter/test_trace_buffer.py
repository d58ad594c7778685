"""The trace-assembly buffer is bounded in traces (traces.max_pending) and in spans
(traces.max_pending_spans, whatever the traces' sizes): at either bound the oldest traces are
finished early, counted with reason `traces_limit` or `spans_limit`, and nothing is lost. In
process with SDK-made spans, and end to end."""
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from sdk import TRACES_PER_BATCH, make_batches
from spanscope.metrics.series import Histogram
from spanscope.app import Exporter
from spanscope.config import load

LIMIT = 200
SPANS_PER_TRACE = 7  # of make_batches


def exporter(*settings: str) -> Exporter:
    # finish_delay and timeout of an hour: only the limit finishes a trace during the test.
    return Exporter(load(None, ["store.enabled=false", "traces.finish_delay=3600", "traces.timeout=3600",
                                f"traces.max_pending_spans={LIMIT}", *settings]))


def total(metric, **labels) -> float:
    """The sum of a counter's or gauge's series with `labels`; of a histogram, the observations."""
    names, at = metric.labelnames, 2 if isinstance(metric, Histogram) else 0
    return sum(s[at] for key, s in metric.series.items()
               if all(key[names.index(k)] == v for k, v in labels.items()))


def test_rootless_spans_are_held_up_to_the_limit_and_the_oldest_traces_finished_early():
    # The roots are never exported, as when a service's entry spans go elsewhere: without the limit,
    # every span would be held for traces.timeout.
    exp = exporter()
    m = exp.metrics
    sent = 0
    for batch in make_batches("orphans", 3):
        children = [s for s in batch if s.parent is not None]
        exp.ingest.process(encode_spans(children), "test")
        sent += len(children)
        assert exp.assembler.pending_spans <= LIMIT
        assert exp.assembler.pending_spans == sum(len(t.spans) for t in exp.assembler.pending.values())
    traces = 3 * TRACES_PER_BATCH
    held = len(exp.assembler.pending)
    assert total(m.traces_completed, reason="spans_limit") == traces - held
    assert total(m.component_duration, service="orphans") == sent  # every span still counted once
    assert total(m.requests) == 0  # no root, no request


def test_complete_traces_finished_early_are_recorded_and_their_retries_recognised():
    exp = exporter()
    m = exp.metrics
    batches = make_batches("early", 2)
    for batch in batches:
        exp.ingest.process(encode_spans(batch), "test")
        assert exp.assembler.pending_spans <= LIMIT
    early = total(m.traces_completed, reason="spans_limit")
    assert early >= 2 * TRACES_PER_BATCH - LIMIT // SPANS_PER_TRACE
    assert total(m.requests, service="early") == early  # finished early, recorded in full

    exp.ingest.process(encode_spans(batches[0]), "test")  # a retried export of traces finished early
    assert total(m.spans_duplicate) == len(batches[0])

    with exp.ingest.lock:
        exp.ingest.finish_traces(everything=True)
    assert total(m.requests, service="early") == 2 * TRACES_PER_BATCH  # none lost
    assert exp.assembler.pending_spans == 0
    assert total(m.trace_spans_pending) == 0


def test_beyond_max_pending_traces_the_oldest_are_finished_early_not_dropped():
    exp = exporter("traces.max_pending=50", f"traces.max_pending_spans={10**6}")
    m = exp.metrics
    batches = make_batches("many", 2)  # 200 complete traces, at most 50 held at once
    for batch in batches:
        exp.ingest.process(encode_spans(batch), "test")
        assert len(exp.assembler.pending) <= 50
    early = total(m.traces_completed, reason="traces_limit")
    assert early == 2 * TRACES_PER_BATCH - len(exp.assembler.pending)
    assert total(m.requests, service="many") == early  # recorded, not dropped
    exp.ingest.process(encode_spans(batches[0]), "test")  # their retried export is recognised
    assert total(m.spans_duplicate) == len(batches[0])
    with exp.ingest.lock:
        exp.ingest.finish_traces(everything=True)
    assert total(m.requests, service="many") == 2 * TRACES_PER_BATCH


def test_the_limit_is_configurable_and_must_be_positive():
    assert exporter("traces.max_pending_spans=5").assembler.max_pending_spans == 5
    try:
        exporter("traces.max_pending_spans=0")
    except Exception as exc:
        assert "traces.max_pending_spans" in str(exc)
    else:
        raise AssertionError("a limit of 0 was accepted")


def test_a_flood_of_rootless_spans_stays_within_the_bound_in_the_running_exporter(tmp_path):
    # End to end: the limit from the config file, spans over OTLP/HTTP from the SDK's exporter,
    # the bound and the early finishes as Prometheus sees them.
    from opentelemetry.sdk.trace.export import SpanExportResult

    from processes import start_exporter, wait_until
    from sdk import http_exporter, scrape, value

    proc = start_exporter(tmp_path, {"store": {"enabled": False},
                                     "traces": {"max_pending_spans": LIMIT, "finish_delay": 3600, "timeout": 3600}})
    try:
        client = http_exporter(proc.urls["http"])
        sent = 0
        for batch in make_batches("flood", 3):
            children = [s for s in batch if s.parent is not None]
            assert client.export(children) == SpanExportResult.SUCCESS
            sent += len(children)

        def settled():
            s = scrape(proc.urls["web"])
            return s if value(s, "spanscope_spans_received_total") == sent else None

        s = wait_until(settled, what=f"{sent} spans received")
        s = wait_until(lambda: (lambda s: s if value(s, "spanscope_trace_spans_pending") > 0 else None)(
            scrape(proc.urls["web"])), what="the pending spans published")
        assert value(s, "spanscope_trace_spans_pending") <= LIMIT
        early = value(s, "spanscope_traces_completed_total", reason="spans_limit")
        assert early >= 3 * TRACES_PER_BATCH - LIMIT // (SPANS_PER_TRACE - 1)  # all but the newest traces
        assert value(s, "pipeline_component_duration_seconds_count", service="flood") == sent
    finally:
        proc.stop()
