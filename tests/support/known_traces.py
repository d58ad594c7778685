"""Traces with known durations for feature-impact tests (API and page).

Four misses (1000 ms) and four hits (100 ms) give: mean 550 ms; conversation_context 100 ms and
rag_weather 10 ms per request; redis_caching (cache_lookup) 10 ms with a 50 % hit ratio, saving
0.5 × (1000 − 100) = 450 ms.
"""

MISS = ("gateway", 0, 1000, {"pipeline.component": "gateway"}, [
    ("cache", 0, 10, {"pipeline.component": "cache_lookup", "pipeline.cache.name": "l1",
                      "pipeline.cache.result": "miss"}),
    ("context", 10, 210, {"pipeline.component": "context", "pipeline.feature": "conversation_context"}),
    ("weather", 210, 230, {"pipeline.component": "rag_lookup", "pipeline.feature": "rag_weather"}),
    ("llm", 230, 900, {"pipeline.component": "llm_inference"}),
    ("assembly", 900, 1000, {"pipeline.component": "response_assembly"}),
])
HIT = ("gateway", 0, 100, {"pipeline.component": "gateway"}, [
    ("cache", 0, 10, {"pipeline.component": "cache_lookup", "pipeline.cache.name": "l1",
                      "pipeline.cache.result": "hit"}),
    ("assembly", 10, 100, {"pipeline.component": "response_assembly"}),
])
