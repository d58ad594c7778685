"""The process and Python runtime metrics every Prometheus client library exposes.

`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds` and the rest,
`python_info` and `python_gc_*`: read and written by prometheus_client's own collectors, so the
names, units and sources are exactly those of client_python, and the dashboards and alerts SREs
already have for Python exporters work on the sidecar unchanged.
"""
from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import generate_latest as text_exposition
from prometheus_client.openmetrics.exposition import (
    generate_latest as openmetrics_exposition,
)

REGISTRY = CollectorRegistry(auto_describe=False)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_EOF = "# EOF\n"


def runtime_families(openmetrics: bool) -> str:
    """The runtime families as text, to follow the store's (without OpenMetrics' end marker)."""
    if not openmetrics:
        return text_exposition(REGISTRY).decode()
    text = openmetrics_exposition(REGISTRY).decode()
    return text[:-len(_EOF)] if text.endswith(_EOF) else text
