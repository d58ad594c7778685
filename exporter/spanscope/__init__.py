"""spanscope: OpenTelemetry spans in, Prometheus metrics out, for LLM and RAG pipelines."""

from . import compiled

__version__ = "0.1.0"

compiled.install()  # before any compiled module is imported: stale compiled code never runs
