"""Cache Performance: how much do the caches save, and are they healthy (hit ratio, capacity)?"""
from .common import (
    CACHE,
    MODE,
    SERVICE,
    Q,
    Row,
    agg,
    bargauge,
    dashboard,
    mean,
    quantile,
    ratio,
    sel,
    stat,
    sum_rate,
    timeseries,
)

UID = "spanscope-cache"

LOOKUPS = "pipeline_cache_requests_total"
REQUESTS = "pipeline_requests_total"
LAT = "pipeline_request_duration_seconds"
HIT = 'result="hit"'
SIZE = sel("pipeline_cache_size_entries", SERVICE, CACHE)
CAPACITY = sel("pipeline_cache_capacity_entries", SERVICE, CACHE)
# Each exporter replica repeats the last reported size: take the max, never the sum.
UTILISATION = f"{agg('max', SIZE, ('service', 'cache'))}\n/\n{agg('max', CAPACITY, ('service', 'cache'))}"


def build():
    overview = Row("Overview", [
        # One definition per name: the response cache per request (as make run's status line and the
        # metrics API's cache_hit_ratio), each layer per lookup (below, and the cache alert).
        stat("Response cache hit ratio", "Requests answered from the response cache / requests that looked it "
             "up (per request; the layers' ratios below are per lookup).", "percentunit",
             Q(ratio(sum_rate(REQUESTS, SERVICE, MODE, 'cache_status="hit"'),
                     sum_rate(REQUESTS, SERVICE, MODE, 'cache_status=~"hit|miss"'))),
             steps=((None, "red"), (0.3, "orange"), (0.5, "green"))),
        stat("Lookups", "Cache lookups per second over the selected layers.", "ops",
             Q(sum_rate(LOOKUPS, SERVICE, CACHE))),
        stat("Cost saved by caching", "LLM spend avoided by prompt and response caching, USD per hour.",
             "currencyUSD", Q(f"{sum_rate('llm_cost_saved_usd_total', SERVICE)} * 3600"), decimals=4),
        stat("Fullest cache", "Highest size / capacity among the selected caches.", "percentunit",
             Q(f"max(\n{UTILISATION}\n)"), steps=((None, "green"), (0.8, "orange"), (0.95, "red"))),
    ])
    hits = Row("Hits and misses", [
        timeseries("Hit ratio per layer", "Hits / lookups per cache layer (pipeline.cache.name).", "percentunit",
                   Q(ratio(sum_rate(LOOKUPS, SERVICE, CACHE, HIT, by=("cache",)),
                           sum_rate(LOOKUPS, SERVICE, CACHE, by=("cache",))), "{{cache}}"),
                   min_val=0, max_val=1),
        timeseries("Lookups by layer and result", "Cache lookups per second, hits and misses per layer.", "ops",
                   Q(sum_rate(LOOKUPS, SERVICE, CACHE, by=("cache", "result")), "{{cache}} {{result}}"),
                   stack=True),
        timeseries("Hit vs miss end-to-end latency",
                   "Request latency when the response cache hit vs missed: p95 (with trace exemplars) "
                   "and mean.", "s",
                   Q(quantile(0.95, LAT, SERVICE, MODE, 'cache_status=~"hit|miss"', by=("cache_status",)),
                     "p95 {{cache_status}}", exemplar=True),
                   Q(mean(LAT, SERVICE, MODE, 'cache_status=~"hit|miss"', by=("cache_status",)),
                     "mean {{cache_status}}")),
        timeseries("Requests by cache status", "Finished requests per second by response-cache status.", "reqps",
                   Q(sum_rate("pipeline_requests_total", SERVICE, MODE, by=("cache_status",)), "{{cache_status}}"),
                   stack=True),
        timeseries("Cache lookup latency", "p95 duration of cache_lookup spans.", "s",
                   Q(quantile(0.95, "pipeline_component_duration_seconds", SERVICE, 'component="cache_lookup"',
                              by=("service",)), "p95 {{service}}", exemplar=True)),
        bargauge("Hit ratio of caching features",
                 "feature_cache_hit_ratio: hit ratio of each caching feature's cache over the exporter's "
                 "sliding window.", "percentunit",
                 Q(agg("max", "feature_cache_hit_ratio", ("feature",)), "{{feature}}", instant=True),
                 max_val=1),
    ])
    capacity = Row("Capacity", [
        timeseries("Size vs capacity", "Entries held and entries the cache can hold, as last reported by "
                   "cache spans.", "short",
                   Q(agg("max", SIZE, ("service", "cache")), "size {{cache}}"),
                   Q(agg("max", CAPACITY, ("service", "cache")), "capacity {{cache}}")),
        timeseries("Utilisation", "size / capacity per cache.", "percentunit",
                   Q(UTILISATION, "{{cache}}"), min_val=0, max_val=1),
        timeseries("Evictions", "Evictions per second reported by cache spans.", "ops",
                   Q(sum_rate("pipeline_cache_evictions_total", SERVICE, CACHE, by=("cache",)), "{{cache}}")),
        timeseries("Cost saved by caching, by source",
                   "USD per hour avoided: prompt_cache (cached input at the cache-read price) and "
                   "response_cache (LLM calls skipped).", "currencyUSD",
                   Q(f"{sum_rate('llm_cost_saved_usd_total', SERVICE, by=('source',))} * 3600", "{{source}}"),
                   stack=True),
    ])
    return dashboard(
        UID, "spanscope · Cache Performance",
        "Hit ratios per cache layer, what a hit saves in latency and money, and cache capacity.",
        tags=["cache"], variables=["service", "mode", "cache"], rows=[overview, hits, capacity])
