"""spanscope-demo: a simulated RAG service that emits the spans spanscope reads."""

__version__ = "0.1.0"
