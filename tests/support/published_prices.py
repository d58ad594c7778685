"""The providers' published list prices (USD per million tokens, standard use) of the models the
instrumentation tests call, written out by hand: the expected costs are computed from these, never
from the exporter's own pricing (genai-prices 0.2.3 carries the same figures)."""
from decimal import Decimal

MILLION = Decimal(1_000_000)

PUBLISHED = {
    "gpt-4o-mini": {"input": "0.15", "output": "0.60", "cache_read": "0.075"},
    "o4-mini": {"input": "1.10", "output": "4.40", "cache_read": "0.275"},
    "claude-haiku-4-5": {"input": "1.00", "output": "5.00", "cache_read": "0.10", "cache_write": "1.25",
                         "cache_write_1h": "2.00"},
    "text-embedding-3-small": {"input": "0.02", "output": "0"},
}


def per_token(model: str) -> dict[str, Decimal]:
    """USD per token by price key; cache prices default to input, the 1-hour write to the write."""
    p = {k: Decimal(v) / MILLION for k, v in PUBLISHED[model].items()}
    p.setdefault("cache_read", p["input"])
    p.setdefault("cache_write", p["input"])
    p.setdefault("cache_write_1h", p["cache_write"])
    return p
