"""Web: the JSON API, the pages, /metrics and health, security (bearer token, TLS, basic auth)."""
