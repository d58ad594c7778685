"""Every metric family the exporter exposes, in one place (documented in docs/metrics.md)."""
from __future__ import annotations

import platform
from functools import partial

from .. import __version__
from ..decode.wire import NATIVE_READER
from .series import Store

# OpenTelemetry GenAI semantic-convention bucket boundaries.
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
GENAI_TOKEN_BUCKETS = tuple(4.0 ** i for i in range(14))  # 1, 4, 16, ... 67108864
RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
CITATION_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21)
RATING_BUCKETS = (1, 2, 3, 4, 5)
PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

PROTOCOLS = ("grpc", "http_protobuf", "http_json")
REJECT_MESSAGES = {  # spanscope_spans_rejected_total{reason} and the partial_success message
    "invalid_span": "invalid trace or span id",
    "invalid_timestamps": "end time before start time",
    "processing_error": "could not be processed",
}
THROTTLE_REASONS = ("ingest_queue", "ingest_bytes")  # the limits.* key reached
GENAI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")


class Metrics:
    """The families, as attributes, registered in a Store in exposition order."""

    def __init__(self, store: Store, duration_buckets):
        c, g, h = store.counter, store.gauge, store.histogram
        # The exporter's own families and the feature gauges (set at each scrape) are never expired.
        sc, sg, sh = (partial(f, never_expire=True) for f in (c, g, h))
        d = duration_buckets
        self.store = store
        # Requests
        self.requests = c("pipeline_requests_total", "Finished requests (local root spans).",
                          ("service", "mode", "status", "cache_status"))
        self.request_duration = h("pipeline_request_duration_seconds", "End-to-end request latency.",
                                  ("service", "mode", "status", "cache_status"), d)
        self.tenant_requests = c("pipeline_tenant_requests_total", "Requests per tenant (capped).",
                                 ("service", "tenant", "status"))
        self.request_cost = c("pipeline_request_cost_usd_total", "LLM cost attributed to requests, USD.",
                              ("service", "mode", "tenant"), exact=True)
        # Components
        self.component_duration = h("pipeline_component_duration_seconds", "Span duration per component.",
                                    ("service", "component", "status"), d)
        self.component_errors = c("pipeline_component_errors_total", "Failed spans per component.",
                                  ("service", "component", "error_type"))
        self.component_self = c("pipeline_component_self_seconds_total",
                                "Exclusive time per component (duration minus children's union).",
                                ("service", "component"))
        self.component_critical = c("pipeline_component_critical_path_seconds_total",
                                    "Time on the request's critical path per component; sums to request latency.",
                                    ("service", "component"))
        # GenAI semantic-convention histograms
        self.genai_duration = h("gen_ai_client_operation_duration_seconds", "GenAI operation duration.",
                                GENAI_LABELS + ("error_type",), GENAI_DURATION_BUCKETS)
        self.genai_tokens = h("gen_ai_client_token_usage", "Tokens used per GenAI operation.",
                              GENAI_LABELS + ("gen_ai_token_type",), GENAI_TOKEN_BUCKETS)
        self.genai_ttfc = h("gen_ai_client_operation_time_to_first_chunk_seconds",
                            "Time to the first streamed chunk.", GENAI_LABELS[:3], GENAI_DURATION_BUCKETS)
        self.tokens = c("llm_tokens_total", "LLM tokens by type (input includes cached input).",
                        ("service", "provider", "model", "token_type"))
        self.cost = c("llm_cost_usd_total", "LLM cost by priced token type, USD.",
                      ("service", "provider", "model", "token_type"), exact=True)
        self.cost_saved = c("llm_cost_saved_usd_total", "LLM cost avoided by prompt and response caching, USD.",
                            ("service", "provider", "model", "source"), exact=True)
        self.unpriced_tokens = c("llm_unpriced_tokens_total",
                                 "Tokens of models without a price (in neither the price database nor the overrides).",
                                 ("service", "model"))
        self.cost_discrepancy = c("llm_cost_discrepancy_usd_total",
                                  "Difference between the cost an instrumentation reported and the pricing table's, "
                                  "USD, by which is higher.", ("service", "provider", "model", "direction"), exact=True)
        self.calls_without_cache_details = c("llm_calls_without_cache_details_total",
                                             "LLM calls to a provider with prompt caching whose usage has no "
                                             "cached-token count (priced at the full input rate).",
                                             ("service", "provider", "scope"))
        # Cache
        self.cache_requests = c("pipeline_cache_requests_total", "Cache lookups by layer and result.",
                                ("service", "cache", "result"))
        self.cache_size = g("pipeline_cache_size_entries", "Entries held by the cache.", ("service", "cache"))
        self.cache_capacity = g("pipeline_cache_capacity_entries", "Entries the cache can hold.",
                                ("service", "cache"))
        self.cache_evictions = c("pipeline_cache_evictions_total", "Cache evictions.", ("service", "cache"))
        # Quality
        self.quality = h("pipeline_quality_score", "Response quality score (0-1).", ("service", "mode"),
                         RATIO_BUCKETS)
        self.confidence = h("pipeline_response_confidence", "Answer confidence (0-1).", ("service", "mode"),
                            RATIO_BUCKETS)
        self.citations = h("pipeline_response_citations", "Citations per response.", ("service", "mode"),
                           CITATION_BUCKETS)
        self.degraded = c("pipeline_degraded_responses_total", "Degraded responses by reason.",
                          ("service", "reason"))
        self.warnings = c("pipeline_response_warnings_total", "Response warnings by type.",
                          ("service", "warning"))
        self.tool_calls = c("pipeline_tool_calls_total", "Tool executions by outcome.",
                            ("service", "tool", "outcome"))
        self.rag_lookups = c("pipeline_rag_lookups_total", "RAG lookups by source and outcome.",
                             ("service", "source", "outcome"))
        self.feedback_rating = h("pipeline_feedback_rating", "User ratings (1-5).", ("service", "mode", "model"),
                                 RATING_BUCKETS)
        self.feedback_low = c("pipeline_feedback_low_ratings_total", "User ratings of 2 or less.",
                              ("service", "mode", "model"))
        # Feature flags and features
        self.flag_evaluations = c("feature_flag_evaluations_total", "Feature flag evaluations.",
                                  ("service", "flag", "variant", "reason"))
        self.variant_duration = h("feature_flag_variant_request_duration_seconds",
                                  "End-to-end latency of requests per evaluated flag variant.",
                                  ("service", "flag", "variant"), d)
        self.variant_errors = c("feature_flag_variant_errors_total", "Failed requests per flag variant.",
                                ("service", "flag", "variant"))
        self.variant_cost = c("feature_flag_variant_cost_usd_total", "LLM cost of requests per flag variant, USD.",
                              ("service", "flag", "variant"), exact=True)
        self.feature_enabled = sg("feature_enabled", "1 when the feature is enabled.",
                                  ("feature", "category", "required"))
        self.feature_rollout = sg("feature_rollout_ratio", "Rollout share of the feature (0-1).", ("feature",))
        self.rollout_stage = sg("feature_rollout_stage",
                                "Stage (1-based) of the feature's running rollout; 0 when none runs.", ("feature",))
        self.rollout_decisions = sc("feature_rollout_decisions_total",
                                    "Rollout decisions made by this replica: start, advance, rollback (guard), "
                                    "manual_advance, manual_rollback, emergency_rollback.", ("feature", "decision"))
        self.feature_contribution = sg("feature_latency_contribution_seconds",
                                       "Mean critical-path seconds per request spent in the feature's work.",
                                       ("feature",))
        self.feature_hit_ratio = sg("feature_cache_hit_ratio", "Hit ratio of a caching feature's cache.",
                                    ("feature",))
        self.whatif = sg("feature_whatif_projected_latency_seconds",
                         "Projected mean end-to-end latency per what-if scenario.", ("scenario",))
        # Circuit breakers and routing
        self.breaker_state = g("circuit_breaker_state", "Circuit breaker state, one-hot.",
                               ("service", "breaker", "state"))
        self.breaker_transitions = c("circuit_breaker_transitions_total", "Circuit breaker state changes.",
                                     ("service", "breaker", "from", "to"))
        self.breaker_calls = c("circuit_breaker_calls_total", "Calls through a circuit breaker by outcome.",
                               ("service", "breaker", "outcome"))
        self.fallbacks = c("pipeline_fallbacks_total", "Fallbacks taken.", ("service", "from", "to"))
        self.routing = c("pipeline_routing_decisions_total", "Routing decisions.", ("service", "route", "reason"))
        # The exporter itself
        self.build_info = sg("spanscope_build_info", "Build information; always 1.",
                             ("version", "python_version", "reader"))
        self.build_info.set((__version__, platform.python_version(), "native" if NATIVE_READER else "python"), 1)
        self.budget = sg("llm_budget_usd", "LLM spend budgets of pricing.budgets_file, USD per period.",
                         ("scope", "name", "period"))
        self.pricing_info = sg("spanscope_pricing_info", "The price data in use (since `updated`); always 1.",
                               ("source", "updated"))
        self.pricing_refreshes = sc("spanscope_pricing_refreshes_total",
                                    "Refreshes of the price data (pricing.refresh) by result: updated, unchanged, "
                                    "fetch_error, invalid (the last good data kept).", ("result",))
        self.spans_received = sc("spanscope_spans_received_total", "Spans accepted.", ("protocol",))
        self.spans_rejected = sc("spanscope_spans_rejected_total", "Spans dropped, by reason.", ("protocol", "reason"))
        self.spans_duplicate = sc("spanscope_spans_duplicate_total",
                                  "Spans received again (same trace and span id; a retried export), counted once.",
                                  ("protocol",))
        self.llm_spans_deduplicated = c("spanscope_llm_spans_deduplicated_total",
                                        "LLM spans reporting a provider call another span already reported "
                                        "(two instrumentations of one call), counted once.", ("service", "scope"))
        self.throttled = sc("spanscope_requests_throttled_total",
                            "Export requests refused with a retry delay, by the ingest limit reached.",
                            ("protocol", "reason"))
        self.export_requests = sc("spanscope_export_requests_total", "Export requests by answer code.",
                                  ("protocol", "code"))
        self.traces_pending = sg("spanscope_traces_pending", "Traces buffered for assembly.")
        self.trace_spans_pending = sg("spanscope_trace_spans_pending",
                                      "Spans buffered for assembly (bounded by traces.max_pending_spans).")
        self.traces_pending.set((), 0)
        self.trace_spans_pending.set((), 0)
        self.traces_completed = sc("spanscope_traces_completed_total", "Traces finished, by reason.", ("reason",))
        self.trace_spans_dropped = sc("spanscope_trace_spans_dropped_total",
                                      "Spans left out of their trace's assembly because it reached traces.max_spans "
                                      "(their per-span metrics are recorded).")
        self.active_series = sg("spanscope_active_series", "Series held per metric family.", ("metric",))
        self.series_overflowed = sc("spanscope_series_overflowed_total",
                                    "Samples routed to a family's overflow series.", ("metric",))
        self.series_expired = sc("spanscope_series_expired_total", "Idle series dropped.", ("metric",))
        self.label_capped = sc("spanscope_label_values_capped_total",
                               "Label values replaced by __other__ under a per-label cap.", ("label",))
        self.processing = sh("spanscope_processing_seconds", "Time to interpret and aggregate one export request.",
                             (), PROCESSING_BUCKETS)
        self.queue_depth = sg("spanscope_ingest_queue_depth", "Export requests waiting to be processed.")
        self.held_bytes = sg("spanscope_ingest_bytes",
                             "Bytes of export request bodies held: being received, queued or processed.")
        self.held_bytes.set((), 0)
        self.grpc_receiving = sg("spanscope_grpc_calls_receiving",
                                 "OTLP/gRPC export calls whose message is being received "
                                 "(bounded by limits.grpc_calls).")
        self.grpc_receiving.set((), 0)
        self.throttled.touch(("grpc", "grpc_calls"))
        self.throttled.touch(("grpc", "grpc_calls_per_peer"))
        self.connections_refused = c("spanscope_connections_refused_total", "Connections closed at once (HTTP: "
                                     "answered 503) because limits.max_connections were open.", ("listener",))
        # Rare events start at zero: a healthy exporter shows 0, not "no data".
        for protocol in PROTOCOLS:
            for limit in THROTTLE_REASONS:
                self.throttled.touch((protocol, limit))
            self.spans_received.touch((protocol,))
            self.spans_duplicate.touch((protocol,))
            for reason in REJECT_MESSAGES:
                self.spans_rejected.touch((protocol, reason))
        self.label_capped.touch(("tenant",))
        self.trace_spans_dropped.touch(())
        for reason in ("root", "timeout", "traces_limit", "spans_limit"):
            self.traces_completed.touch((reason,))
        self.interactions_written = sc("spanscope_interactions_written_total",
                                       "Interactions written to the interaction store.")
        self.interactions_dropped = sc("spanscope_interactions_dropped_total",
                                       "Interactions not written: queue_full (oldest dropped), write_error.",
                                       ("reason",))
        self.interactions_pending = sg("spanscope_interactions_pending",
                                       "Finished or acknowledged requests not yet in the interaction store: "
                                       "assembling (traces being assembled), queued, writing (the batch in "
                                       "flight). Their sum is what a crash (kill -9) loses.", ("stage",))
        self.interaction_store_errors = sc("spanscope_interaction_store_errors_total",
                                           "Errors of the interaction writer, by kind: unavailable (a batch "
                                           "the database refused for a transient reason, retried), refused "
                                           "(a row it refused), row (no row could be built), retention.",
                                           ("kind",))
        store.register(self.collect_store, last=True)

    def collect_store(self):
        """The store's own bookkeeping (a collector, run after the others so it sees their series)."""
        fams = list(self.store.families.values())
        yield self.active_series, {(f.name,): len(f.series) for f in fams}
        # every family, at zero until it happens, so rate() and alerts see it start
        yield self.series_overflowed, {(f.name,): float(f.overflowed) for f in fams}
        yield self.series_expired, {(f.name,): float(f.expired) for f in fams}
