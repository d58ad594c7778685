"""Two exporter processes on one real PostgreSQL: they serve the same feature state, one decides the
guarded rollout fed by both, a restarted replica resumes it, and the OpenFeature provider pointed at
one replica follows a change made through the other."""
from __future__ import annotations

import threading
import time

import pytest
from http_helpers import call
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider import ProviderStatus
from processes import start_exporter, wait_until
from sdk import emit, http_exporter, provider, scrape, value
from spanscope.client.openfeature_provider import SpanscopeProvider

pytestmark = pytest.mark.slow
FLAG = "mlx_backend"


def feature(proc, name=FLAG) -> dict:
    status, doc = call("GET", proc.urls["web"] + f"/api/features/{name}")
    assert status == 200, doc
    return doc


def start(tmp_path, url: str, name: str):
    return start_exporter(tmp_path, {"store": {"url": url, "flush_interval": 0.1}, "traces": {"finish_delay": 0.1},
                                     "features": {"guards": {"interval": "0.2s"}}}, name=name)


class Traffic(threading.Thread):
    """Requests evaluating FLAG to on and off in turn, half to each replica, started now."""

    def __init__(self, replicas):
        super().__init__(daemon=True)
        self.providers = [provider(http_exporter(r.urls["http"]), "replicas") for r in replicas]
        self.stop_event = threading.Event()

    def run(self):
        i = 0
        while not self.stop_event.is_set():
            tp = self.providers[i % 2]
            variant = ("on", "off")[(i // 2) % 2]
            emit(tp.get_tracer("t"), ("gateway", 0, 50, {"pipeline.component": "gateway", "_events": [
                ("feature_flag.evaluation", {"feature_flag.key": FLAG, "feature_flag.result.variant": variant})]}),
                 base_ns=time.time_ns())
            i += 1
            if i % 20 == 0:
                for p in self.providers:
                    p.force_flush()
                self.stop_event.wait(0.05)

    def stop(self):
        self.stop_event.set()
        self.join(10)
        for p in self.providers:
            p.shutdown()


def test_replicas_share_state_one_decides_and_a_restart_resumes(postgres, tmp_path):
    url = postgres.create_database()
    a, b = start(tmp_path, url, "replica-a"), start(tmp_path, url, "replica-b")
    traffic = None
    try:
        # A change through one replica is served by the other within features.guards.interval.
        assert call("PUT", a.urls["web"] + "/api/features/conversation_context", {"enabled": False})[0] == 200
        wait_until(lambda: feature(b, "conversation_context")["enabled"] is False, timeout=10,
                   what="replica b to serve a's change")

        # ... and the OpenFeature provider reading replica b follows it.
        flags = SpanscopeProvider(b.urls["web"], refresh_seconds=0.1)
        api.set_provider(flags, "replicas")
        client = api.get_client("replicas")
        wait_until(lambda: client.get_provider_status() == ProviderStatus.READY, what="provider READY")
        ctx = EvaluationContext(targeting_key="user-1")
        assert client.get_boolean_value("conversation_context", True, ctx) is False
        assert call("PUT", a.urls["web"] + "/api/features/conversation_context", {"enabled": True})[0] == 200
        wait_until(lambda: client.get_boolean_value("conversation_context", False, ctx) is True, timeout=10,
                   what="the provider on replica b to see the change made on a")

        # A guarded rollout started on b, fed by both replicas: advanced once, by exactly one of them.
        traffic = Traffic([a, b])
        traffic.start()
        status, doc = call("POST", b.urls["web"] + f"/api/features/{FLAG}/rollout", {
            "strategy": "linear", "step": 50, "auto_advance": True, "stage_seconds": 0.5,
            "guard": {"max_error_ratio_increase": 0.2, "min_requests_per_stage": 20}})
        assert status == 200, doc
        wait_until(lambda: any(d["decision"] == "advance" for d in feature(b)["decisions"]), timeout=60,
                   interval=0.2, what="the guard to advance the rollout (to 100 %: its end)")
        wait_until(lambda: "rollout" not in feature(a) and feature(a)["rollout_percentage"] == 100, timeout=10,
                   what="both replicas to serve the finished rollout")
        traffic.stop()
        advance = [d for d in feature(b)["decisions"] if d["decision"] == "advance"]
        assert len(advance) == 1 and advance[0]["by"] == "guard"
        arms = advance[0]["evidence"]["arms"]
        assert arms["on"]["requests"] >= 20 and arms["off"]["requests"] >= 20
        counts = [value(scrape(p.urls["web"]), "feature_rollout_decisions_total", feature=FLAG, decision="advance")
                  for p in (a, b)]
        assert sorted(counts) == [0, 1], counts  # counted once, by the replica that decided

        # A replica that restarts resumes a rollout where it was.
        call("POST", a.urls["web"] + f"/api/features/{FLAG}/rollout", {"strategy": "canary", "step": 5})
        assert call("POST", a.urls["web"] + f"/api/features/{FLAG}/rollout/advance")[1]["rollout_percentage"] == 25
        a.stop()
        a = start(tmp_path, url, "replica-a-again")
        resumed = feature(a)
        assert resumed["rollout"]["stage"] == 2 and resumed["rollout_percentage"] == 25
        assert [d["decision"] for d in resumed["decisions"][:2]] == ["manual_advance", "start"]
        assert feature(b)["rollout"]["stage"] == 2
    finally:
        api.clear_providers()
        if traffic is not None and traffic.is_alive():
            traffic.stop()
        a.stop()
        b.stop()
        postgres.drop_database(url)
