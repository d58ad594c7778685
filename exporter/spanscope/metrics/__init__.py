"""Aggregate and expose: the series store, the metric catalogue, recording, the Prometheus exposition."""
