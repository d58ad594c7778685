"""LLM pricing: the genai-prices database, overrides that win over it, exact decimal costs.

Prices come from `genai-prices` (offline data: providers, model-name matching, long-context tiers and
price changes over time). The embedded pricing.yaml and `pricing.file` hold overrides and additions
(contract prices, private models), looked up first.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version
from typing import NamedTuple

from genai_prices import data_snapshot
from genai_prices.types import ModelPrice, TieredPrices

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
    """USD per token (already divided by a million), exact; `tiers` are the rates in force when a call's
    input tokens exceed a threshold (long-context pricing), lowest threshold first."""

    provider: str
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal      # a 5-minute cache write
    cache_write_1h: Decimal   # a 1-hour cache write (the 5-minute rate where the provider gives none)
    tiers: tuple[tuple[int, Price], ...] = ()

    def for_input(self, input_tokens: int) -> Price:
        """The rates for a call with this many input tokens (cached ones included)."""
        for start, rates in reversed(self.tiers):
            if input_tokens > start:
                return rates
        return self


class Cost(NamedTuple):
    """Cost of one LLM call by priced token type, and what prompt caching saved. A NamedTuple (as
    immutable as a frozen dataclass): one is made per priced call, and a frozen dataclass sets each
    field through object.__setattr__."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    saved: Decimal
    reported: Decimal = Decimal(0)  # the instrumentation's own figure, for a model the table does not price

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.cache_read + self.cache_write + self.reported


ZERO = Decimal(0)
_new = tuple.__new__  # a Cost from its values without NamedTuple's keyword __new__ (one per priced call)


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


# --- the genai-prices database -------------------------------------------------------------------------

DATABASE = f"genai-prices {version('genai-prices')}"


def _rate(value: Decimal | TieredPrices | None, input_tokens: int) -> Decimal | None:
    """A price key's USD per token for a call with this many input tokens (the database's tier rule)."""
    if isinstance(value, TieredPrices):
        rate = value.base
        for tier in reversed(value.tiers):
            if input_tokens > tier.start:
                rate = tier.price
                break
        return rate / MILLION
    return None if value is None else value / MILLION


def database_price(provider: str, mp: ModelPrice) -> Price | None:
    """The database's price as a Price; None for a model without a token input price (images, audio)."""

    def at(input_tokens: int) -> Price | None:
        rate = {k: _rate(getattr(mp, f"{k}_mtok"), input_tokens)
                for k in ("input", "output", "cache_read", "cache_write", "cache_write_1h")}
        if rate["input"] is None:
            return None
        # A rate the database leaves out falls back as its decomposition does: cached tokens not priced
        # apart are billed as input, one-hour writes as writes, no output price is free output.
        fallback = {"output": Decimal(0), "cache_read": rate["input"], "cache_write": rate["input"]}
        for key, value in fallback.items():
            if rate[key] is None:
                rate[key] = value
        if rate["cache_write_1h"] is None:
            rate["cache_write_1h"] = rate["cache_write"]
        return Price(provider=provider, **rate)

    base = at(0)
    if base is None:
        return None
    starts = sorted({t.start for v in vars(mp).values() if isinstance(v, TieredPrices) for t in v.tiers})
    return replace(base, tiers=tuple((start, at(start + 1)) for start in starts))


def database_model(snapshot: data_snapshot.DataSnapshot, model: str, provider: str | None):
    """The database's (provider id, ModelInfo) for a model as a span names it, or None. Tried in order:
    as given with the span's provider, then with the provider a `provider/` prefix names, then by the
    model name alone (the database knows dated names, Bedrock's `anthropic.` and Vertex's `@` forms)."""
    name = model.strip().lower()
    qualifier, _, bare = name.rpartition("/")
    tries = [(name, provider), (name, None)]
    if qualifier:
        tries += [(bare, provider), (bare, qualifier.split("/")[-1]), (bare, None)]
    for ref, provider_id in tries:
        try:
            found, info = snapshot.find_provider_model(ref, None, provider_id, None)
        except LookupError:
            continue
        return found.id, info
    if provider is None and not qualifier:
        return _anywhere(snapshot, name)
    return None


def _anywhere(snapshot: data_snapshot.DataSnapshot, name: str):
    """A model named without its provider (litellm's embedding spans) that the database matches only
    under providers: priced when every provider listing it charges the same now (so which one does
    not matter, e.g. OpenAI and Azure for text-embedding-3-small); else left unpriced."""
    found = []
    for p in snapshot.providers:
        try:
            found.append(snapshot.find_provider_model(name, None, p.id, None))
        except LookupError:
            continue
    now = datetime.now(UTC)
    if found and len({repr(info.get_prices(now)) for _, info in found}) == 1:
        return found[0][0].id, found[0][1]
    return None


# --- lookups and costs ---------------------------------------------------------------------------------

class Pricing:
    """Looks up prices by provider and model name (memoised) and computes costs exactly."""

    def __init__(self, table: dict[str, Price]):
        self.table = table  # overrides and additions: they win over the database
        self._warned: set[str] = set()
        self.use(data_snapshot.get_snapshot(), DATABASE)  # the data bundled with the library

    def use(self, snapshot: data_snapshot.DataSnapshot, source: str) -> None:
        """Price from `snapshot` (the bundled data, or a refresh's) from now on."""
        self.snapshot = snapshot
        self._memo: dict[tuple[str, str | None], Price | tuple | None] = {}
        self._prices: dict[int, Price | None] = {}  # id(database ModelPrice) -> Price
        self.source = source + (f" + {len(self.table)} overrides" if self.table else "")
        self.updated = datetime.now(UTC).isoformat(timespec="seconds")  # when this data took over

    def price(self, model: str | None, provider: str | None = None, at: datetime | None = None) -> Price | None:
        """The price of `model` (as the span names it; `provider` as the span names it helps the match)
        in force at `at` (default now): an override if one matches, else the database's."""
        if not model:
            return None
        found = self._found(model, provider)
        if not isinstance(found, tuple):
            return found
        return self._dated(found, at or datetime.now(UTC))

    def price_at_ns(self, model: str | None, provider: str | None, start_ns: int) -> Price | None:
        """`price` at a span's start time in nanoseconds (0: now). The time is made into a datetime
        only for a model whose price changed over time (most have one price: no datetime per call)."""
        if not model:
            return None
        found = self._found(model, provider)
        if not isinstance(found, tuple):
            return found
        return self._dated(found, datetime.fromtimestamp(start_ns / 1e9, UTC) if start_ns else datetime.now(UTC))

    def _found(self, model: str, provider: str | None):
        """An override or a database Price, (provider id, ModelInfo) for a database model priced
        differently over time, or None (memoised)."""
        key = (model, provider)
        found = self._memo.get(key, False)
        if found is False:
            found = self._override(model) or database_model(self.snapshot, model, provider)
            if isinstance(found, tuple) and isinstance(found[1].prices, ModelPrice):  # one price at all times
                found = self._dated(found, None)
            if len(self._memo) < 10_000:
                self._memo[key] = found
        return found

    def _dated(self, found: tuple, at: datetime | None) -> Price | None:
        provider_id, info = found
        mp = info.get_prices(at)  # the price in force then (dated changes; `at` unused for one price)
        if id(mp) not in self._prices:
            self._prices[id(mp)] = database_price(provider_id, mp)
        return self._prices[id(mp)]

    def _override(self, model: str) -> Price | None:
        # Exact names only (after prefix and suffix removal): an override of gpt-4o is not gpt-4o-mini's.
        return next((self.table[name] for name in candidates(model) if name in self.table), None)

    def warn_unpriced(self, model: str) -> None:
        if model not in self._warned and len(self._warned) < 1000:
            self._warned.add(model)
            log.warning("no price for model %r in %s or the overrides: its tokens are counted in "
                        "llm_unpriced_tokens_total; add it to the pricing file (pricing.file)", model, DATABASE)

    @staticmethod
    def cost(price: Price, input_tokens: int, output_tokens: int, cache_read: int, cache_creation: int,
             cache_creation_1h: int = 0) -> Cost:
        """Input tokens include cached ones: those are priced at the cache rates, not also at input.
        Of the cache writes, `cache_creation_1h` are 1-hour writes (priced at cache_write_1h). The
        rates are those of the call's long-context tier, if the price has tiers."""
        if price.tiers:
            price = price.for_input(input_tokens)
        uncached = input_tokens - cache_read - cache_creation
        # Most calls read or write no cache: no Decimal product for those parts (one is made per
        # priced call, and each product converts its int first).
        if cache_read or cache_creation:
            long = min(cache_creation_1h, cache_creation)
            read, write = cache_read * price.cache_read, (cache_creation - long) * price.cache_write
            if long:
                write += long * price.cache_write_1h
            saved = cache_read * (price.input - price.cache_read)
        else:
            read = write = saved = ZERO
        return _new(Cost, (uncached * price.input if uncached > 0 else ZERO, output_tokens * price.output,
                           read, write, saved, ZERO))
