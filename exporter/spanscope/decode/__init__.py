"""Decode: OTLP export requests (protobuf, OTLP/JSON, gzip) into raw spans; the native wire reader.

The reader (which attributes to keep) is handed in by the caller: decode knows nothing of interpret.
"""
