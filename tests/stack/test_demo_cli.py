"""spanscope-demo as a process: real OTLP/HTTP export, real feature polling, feedback, clean stop.

The exporter's three endpoints the demo talks to are served here by aiohttp, so this test checks
the demo's side of each protocol on its own; tests/stack/test_make_run.py runs it against the
real exporter.
"""
from __future__ import annotations

import re
import signal
import sys
import threading

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from background_app import BackgroundApp
from processes import free_port, spawn, wait_until
from spanscope_demo.features import SEED_FEATURES


class FakeExporter(BackgroundApp):
    """OTLP/HTTP /v1/traces, GET /api/features and POST /api/v1/feedback on one port."""

    def __init__(self, disabled=("rag_weather",)):
        super().__init__()
        self.features = [{"name": n, "category": "x", "required": n == "intent_classification",
                          "enabled": on and n not in disabled, "rollout_percentage": 100.0}
                         for n, on in SEED_FEATURES.items()]
        self.spans = []        # (resource attributes, span)
        self.feedback = []
        self.content_types = set()
        self._lock = threading.Lock()

    async def traces(self, request):
        self.content_types.add(request.content_type)
        msg = ExportTraceServiceRequest.FromString(await request.read())
        with self._lock:
            for rs in msg.resource_spans:
                resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    self.spans.extend((resource, s) for s in ss.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    async def list_features(self, request):
        return web.json_response({"features": self.features, "categories": {}})

    async def post_feedback(self, request):
        with self._lock:
            self.feedback.append(await request.json())
        return web.json_response({"status": "recorded"}, status=201)

    def roots(self):
        with self._lock:
            return [s for _, s in self.spans if not s.parent_span_id]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self.traces)
        app.router.add_get("/api/features", self.list_features)
        app.router.add_post("/api/v1/feedback", self.post_feedback)


def attrs(span):
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def test_demo_process_exports_spans_feedback_and_stops_cleanly(tmp_path):
    with FakeExporter() as exporter:
        demo = spawn([sys.executable, "-m", "spanscope_demo", "--endpoint", exporter.url, "--api", exporter.url,
                      "--rate", "100", "--seed", "3", "--heartbeat-file", str(tmp_path / "beat")],
                     tmp_path, "demo")
        try:
            wait_until(lambda: len(exporter.roots()) >= 300 and exporter.feedback, timeout=60,
                       what="spans and feedback from the demo")
            assert (tmp_path / "beat").exists()
        finally:
            rc = demo.stop(signal.SIGTERM)
        assert rc == 0, demo.log()
        assert "stopped after" in demo.log()

    assert exporter.content_types == {"application/x-protobuf"}
    assert {r["service.name"] for r, _ in exporter.spans} == {"rag-demo"}
    # The flush at exit delivered every trace whole: no trace without its root.
    roots = exporter.roots()
    root_traces = {r.trace_id for r in roots}
    assert {s.trace_id for _, s in exporter.spans} == root_traces

    # Features come from the (fake) exporter: rag_weather is off there.
    spans = [s for _, s in exporter.spans]
    assert not [s for s in spans if attrs(s).get("pipeline.rag.source") == "weather"]
    assert [s for s in spans if attrs(s).get("pipeline.rag.source") == "sports"]
    weather_events = [{kv.key: kv.value.string_value for kv in e.attributes}
                      for r in roots for e in r.events
                      if e.name == "feature_flag.evaluation"
                      and any(kv.key == "feature_flag.key" and kv.value.string_value == "rag_weather"
                              for kv in e.attributes)]
    assert len(weather_events) == len(roots)
    assert {(e["feature_flag.result.variant"], e["feature_flag.result.reason"]) for e in weather_events} == \
           {("off", "disabled")}
    assert {e["feature_flag.provider.name"] for e in weather_events} == {"spanscope"}

    hex_ids = {r.trace_id.hex() for r in roots}
    for fb in exporter.feedback:
        assert re.fullmatch(r"[0-9a-f]{32}", fb["interaction_id"]) and fb["interaction_id"] in hex_ids
        assert fb["rating"] in range(1, 6)


def test_unknown_scenario_is_a_usage_error(tmp_path):
    demo = spawn([sys.executable, "-m", "spanscope_demo", "--scenario", "nope"], tmp_path, "demo-bad")
    assert demo.popen.wait(30) == 2
    assert "invalid choice" in demo.log()


@pytest.mark.parametrize("argv", [["--rate", "0"], ["--rate", "-1"]])
def test_rate_must_be_positive(tmp_path, argv):
    demo = spawn([sys.executable, "-m", "spanscope_demo", *argv], tmp_path, "demo-rate")
    assert demo.popen.wait(30) == 2


def test_demo_runs_on_default_features_while_the_feature_api_is_down(tmp_path):
    dead_api = f"http://127.0.0.1:{free_port()}"
    with FakeExporter() as exporter:
        demo = spawn([sys.executable, "-m", "spanscope_demo", "--endpoint", exporter.url, "--api", dead_api,
                      "--rate", "100", "--seed", "4", "--wait-features", "0.5", "--duration", "3"], tmp_path, "demo")
        assert demo.popen.wait(60) == 0, demo.log()
    log = demo.log()
    assert "using built-in defaults" in log
    assert log.count("feature API") == 1, "an unreachable exporter is logged once, not on every poll"
    roots = exporter.roots()
    assert len(roots) > 100
    # Built-in defaults: rag_weather on (the fake exporter would have said off).
    assert [s for _, s in exporter.spans if attrs(s).get("pipeline.rag.source") == "weather"]
    reasons = {kv.value.string_value for r in roots for e in r.events for kv in e.attributes
               if kv.key == "error.type"}
    assert reasons == {"provider_not_ready"}
