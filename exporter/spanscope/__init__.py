"""spanscope: OpenTelemetry spans in, Prometheus metrics out, for LLM and RAG pipelines."""

__version__ = "0.1.0"
