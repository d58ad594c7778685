"""Feature toggles through OpenFeature: the spanscope provider plus the OpenTelemetry TracingHook.

Every request evaluates every seed feature once, with the user as targeting key, while the
request's root span is current: the hook then records one `feature_flag.evaluation` event per
feature on that span, which is what the exporter turns into per-variant metrics.
"""
from __future__ import annotations

import threading
import uuid

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent

# Seed features and the value used when the exporter has not answered yet (or lost a feature):
# the exporter's catalogue defaults, so the pipeline runs as shipped.
SEED_FEATURES: dict[str, bool] = {
    "intent_classification": True,
    "multi_intent_detection": True,
    "conversation_context": True,
    "clarification_questions": True,
    "rag_weather": True,
    "rag_sports": True,
    "rag_airports": True,
    "redis_caching": True,
    "mlx_backend": True,
    "response_streaming": True,
    "home_assistant": True,
}


class FeatureFlags:
    """Evaluates the seed features for one request through an OpenFeature client."""

    def __init__(self, client: OpenFeatureClient, names=tuple(SEED_FEATURES)):
        self.client = client
        self.names = names

    def evaluate(self, user: str, tenant: str, mode: str) -> dict[str, bool]:
        ctx = EvaluationContext(targeting_key=user, attributes={"tenant": tenant, "mode": mode})
        get = self.client.get_boolean_value
        return {name: get(name, SEED_FEATURES.get(name, False), ctx) for name in self.names}


def traced_client(provider, domain: str | None = None, wait: bool = False) -> OpenFeatureClient:
    """A client bound to `provider` under its own domain, with the TracingHook on the client.

    A domain (not the global default provider) and a client hook (not a global one) keep several
    pipelines in one process, e.g. in tests, from seeing each other's providers and events.
    `wait` blocks until the provider initialized (and raises if it could not).
    """
    domain = domain or f"spanscope-demo-{uuid.uuid4().hex[:8]}"
    if wait:
        api.set_provider_and_wait(provider, domain)
    else:
        api.set_provider(provider, domain)
    client = api.get_client(domain)
    client.add_hooks([TracingHook()])
    return client


def wait_until_ready(client: OpenFeatureClient, timeout: float) -> bool:
    """Block until the client's provider is READY (True) or `timeout` seconds passed (False).

    The SDK runs a READY handler at once when the provider already is, so this cannot miss it.
    """
    ready = threading.Event()

    def on_ready(_details) -> None:
        ready.set()
    client.add_handler(ProviderEvent.PROVIDER_READY, on_ready)
    try:
        return ready.wait(timeout)
    finally:
        client.remove_handler(ProviderEvent.PROVIDER_READY, on_ready)
