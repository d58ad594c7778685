"""Client code: the OpenFeature provider that follows the exporter's feature state, and the insights CLI."""
