"""The request summary: one finished request as everything after the metrics sees it."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(slots=True)
class RequestSummary:
    """One finished request, as the sinks after the metrics see it (made by interpret.summarise).
    Values are as the spans carry them, not capped: whoever keys by one bounds it."""

    trace_id: str
    service: str
    mode: str
    tenant: str
    user: str | None
    error: bool
    start_ns: int
    duration: float
    cache_status: str
    cost: Decimal
    model: str | None
    llm: tuple | None = None                          # (provider, model) of the first priced LLM call
    cost_by_model: dict = field(default_factory=dict)  # model -> cost of its calls (as llm_cost_usd_total splits it)
    critical: dict = field(default_factory=dict)      # component -> seconds
    self_time: dict = field(default_factory=dict)     # component -> seconds
    by_feature: dict = field(default_factory=dict)    # feature -> critical-path seconds
    variants: dict = field(default_factory=dict)      # flag -> variant
    variant_reasons: dict = field(default_factory=dict)  # flag -> the reason of that evaluation ("split", ...)
    cache_lookups: list = field(default_factory=list)  # (cache name, result, feature, miss reason)
    tokens: dict = field(default_factory=dict)        # token type -> count
    components: dict = field(default_factory=dict)    # component -> (calls, errors, [durations s])
    degraded: int = 0                                 # 1 when a span reported a degradation
    degradations: list = field(default_factory=list)  # the reasons, one per degraded span
    warnings: list = field(default_factory=list)      # response warnings of every span
    quality: float | None = None
    confidence: float | None = None
    citations: int | None = None
