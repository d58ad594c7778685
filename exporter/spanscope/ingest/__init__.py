"""Receive: the OTLP/HTTP and OTLP/gRPC receivers and the bounded ingest queue that feeds the pipeline."""
