"""Interpret: the span contract (what a span says), trace assembly, pricing, the request summary."""
