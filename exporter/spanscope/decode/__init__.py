"""Decode: OTLP export requests (protobuf, OTLP/JSON, gzip) into raw spans; the native wire reader. The reader is handed in."""
