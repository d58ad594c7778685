"""LLM pricing: a table of USD per million tokens, model-name matching, exact decimal costs."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import Decimal

from ..config import ConfigError, load_embedded, read_yaml

log = logging.getLogger("spanscope.pricing")
MILLION = Decimal(1_000_000)
PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")

_PREFIX = re.compile(r"^(?:[a-z0-9_.-]+/|models/|(?:anthropic|openai|mistral|google|meta|cohere)\.)+")
_SUFFIXES = (
    re.compile(r"[-@:]v\d+(?::\d+)?$"),          # bedrock -v1:0, vertex @ versions
    re.compile(r"[-@]\d{4}-?\d{2}-?\d{2}$"),      # -2024-07-18, -20241022, @20241022
    re.compile(r"-(?:latest|preview|exp|\d{3})$"),  # -latest, -001
)


@dataclass(frozen=True)
class Price:
    """USD per token (already divided by a million), exact."""

    provider: str
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal      # a 5-minute cache write
    cache_write_1h: Decimal   # a 1-hour cache write (the table's cache_write when it gives none)


@dataclass(frozen=True)
class Cost:
    """Cost of one LLM call by priced token type, and what prompt caching saved."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    saved: Decimal
    reported: Decimal = Decimal(0)  # the instrumentation's own figure, for a model the table does not price

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.cache_read + self.cache_write + self.reported


def _decimal(path: str, value) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{path}: expected a price in USD per million tokens, got {value!r}")
    try:
        d = Decimal(str(value))  # str() keeps 0.15 as 0.15, not its binary approximation
    except ArithmeticError:
        raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ConfigError(f"{path}: expected a non-negative price, got {value!r}")
    return d


def parse_table(doc, source: str) -> dict[str, Price]:
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ConfigError(f"{source}: expected a mapping with a `models:` mapping")
    table = {}
    for name, spec in doc["models"].items():
        path = f"{source}: models.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: expected a mapping of prices")
        unknown = set(spec) - set(PRICE_KEYS) - {"provider"}
        if unknown:
            raise ConfigError(f"{path}.{sorted(unknown)[0]}: unknown key (known: provider, {', '.join(PRICE_KEYS)})")
        for key in ("input", "output"):
            if key not in spec:
                raise ConfigError(f"{path}.{key}: missing")
        p = {k: _decimal(f"{path}.{k}", spec[k]) / MILLION for k in PRICE_KEYS if k in spec}
        table[str(name).lower()] = Price(
            provider=str(spec.get("provider", "")),
            input=p["input"], output=p["output"],
            cache_read=p.get("cache_read", p["input"]),
            cache_write=p.get("cache_write", p["input"]),
            cache_write_1h=p.get("cache_write_1h", p.get("cache_write", p["input"])),
        )
    return table


def load_table(user_file: str | None = None) -> dict[str, Price]:
    table = parse_table(load_embedded("pricing.yaml"), "embedded pricing")
    if user_file:
        table.update(parse_table(read_yaml(user_file, "pricing.file"), user_file))
    return table


def candidates(model: str):
    """Names to try, most specific first: as given, without prefix, without date/version suffixes."""
    name = model.strip().lower()
    yield name
    name = _PREFIX.sub("", name)
    yield name
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            stripped = suffix.sub("", name)
            if stripped != name:
                name, changed = stripped, True
                yield name


class Pricing:
    """Looks up prices by model name (memoised) and computes costs exactly."""

    def __init__(self, table: dict[str, Price]):
        self.table = table
        self._by_length = sorted(table, key=len, reverse=True)
        self._memo: dict[str, Price | None] = {}
        self._warned: set[str] = set()

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        if model in self._memo:
            return self._memo[model]
        found = None
        for name in candidates(model):
            if name in self.table:
                found = self.table[name]
                break
        else:
            # Longest known name that the model starts with, on a `-` boundary (gpt-4o-mini-audio).
            base = name
            for known in self._by_length:
                if base.startswith(known + "-"):
                    found = self.table[known]
                    break
        if len(self._memo) < 10_000:
            self._memo[model] = found
        return found

    def warn_unpriced(self, model: str) -> None:
        if model not in self._warned and len(self._warned) < 1000:
            self._warned.add(model)
            log.warning("no price for model %r: its tokens are counted in llm_unpriced_tokens_total; "
                        "add it to the pricing file (pricing.file)", model)

    @staticmethod
    def cost(price: Price, input_tokens: int, output_tokens: int, cache_read: int, cache_creation: int,
             cache_creation_1h: int = 0) -> Cost:
        """Input tokens include cached ones: those are priced at the cache rates, not also at input.
        Of the cache writes, `cache_creation_1h` are 1-hour writes (priced at cache_write_1h)."""
        uncached = max(input_tokens - cache_read - cache_creation, 0)
        long = min(cache_creation_1h, cache_creation)
        return Cost(
            input=uncached * price.input,
            output=output_tokens * price.output,
            cache_read=cache_read * price.cache_read,
            cache_write=(cache_creation - long) * price.cache_write + long * price.cache_write_1h,
            saved=cache_read * (price.input - price.cache_read),
        )
