"""The optional periodic refresh of the genai-prices data (`pricing.refresh`), off by default.

The download and its schema check are genai-prices' own (`UpdatePrices.fetch`: the JSON of the
library's bundled data, parsed by its pydantic schema). Its background updater is not used: it swaps
the process-wide snapshot from its own thread and reports outcomes only to waiters, while spanscope
keeps the data in `Pricing` and writes its metrics on the event loop thread. So the fetch runs in a
worker thread, the checks below follow, and only data that passes them replaces the data in use;
on any failure the last good data keeps pricing.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx2
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.update_prices import UpdatePrices

from .pricing import Pricing, database_price

log = logging.getLogger("spanscope.pricing")
RESULTS = ("updated", "unchanged", "fetch_error", "invalid")


class InvalidPrices(ValueError):
    """Fetched data that must not replace the data in use."""


def public_url(url: str) -> str:
    """The URL without credentials or query (it becomes a label value and a log line)."""
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname}{f':{u.port}' if u.port else ''}{u.path}"


def model_count(snapshot: DataSnapshot) -> int:
    return sum(len(p.models) for p in snapshot.providers)


def check(snapshot: DataSnapshot | None, current: DataSnapshot) -> DataSnapshot:
    """The fetched data, if it can replace `current`: it parses (genai-prices' schema), every model's
    price in force now converts to a Price, and it is not truncated (at least half as many models)."""
    if snapshot is None or not snapshot.providers:
        raise InvalidPrices("no providers")
    count, before = model_count(snapshot), model_count(current)
    if count < before / 2:
        raise InvalidPrices(f"{count} models where the data in use has {before} (truncated?)")
    now = datetime.now(UTC)
    for provider in snapshot.providers:
        for info in provider.models:
            try:
                database_price(provider.id, info.get_prices(now))
            except Exception as exc:  # noqa: BLE001 - whatever a model's prices break, the data is refused
                raise InvalidPrices(f"{provider.id}/{info.id}: {exc}") from None
    return snapshot


class PriceRefresh:
    """Every `interval` seconds: fetch `url`, check it, and make it the data `pricing` uses."""

    def __init__(self, pricing: Pricing, url: str, interval: float, report: Callable[[str], None]):
        self.pricing = pricing
        self.source = public_url(url)
        self.interval = interval
        self.report = report  # called on the event loop thread with each outcome (one of RESULTS)
        self.updater = UpdatePrices(url=url, update_interval=interval)

    def _fetch_and_check(self, current: DataSnapshot) -> DataSnapshot:
        try:
            snapshot = self.updater.fetch()
        except httpx2.HTTPStatusError as exc:  # (its message would repeat the URL with any credentials)
            raise ConnectionError(f"HTTP status {exc.response.status_code}") from None
        except httpx2.HTTPError as exc:  # unreachable or timed out
            raise ConnectionError(type(exc).__name__) from None
        except Exception as exc:  # noqa: BLE001 - not JSON, or not the schema: whatever the parser raises
            raise InvalidPrices(f"{type(exc).__name__}: {exc}") from None
        return check(snapshot, current)

    async def refresh(self) -> str:
        """One refresh (network and checks off the event loop); its outcome."""
        current = self.pricing.snapshot
        try:
            snapshot = await asyncio.to_thread(self._fetch_and_check, current)
        except ConnectionError as exc:
            log.warning("price refresh from %s failed (the last good data keeps pricing): %s", self.source, exc)
            return "fetch_error"
        except InvalidPrices as exc:
            log.warning("price refresh from %s refused (the last good data keeps pricing): %s", self.source, exc)
            return "invalid"
        if snapshot.providers == current.providers:
            return "unchanged"
        self.pricing.use(snapshot, f"refresh {self.source}")
        log.info("prices refreshed from %s: %d models", self.source, model_count(snapshot))
        return "updated"

    async def run(self) -> None:
        while True:
            self.report(await self.refresh())
            await asyncio.sleep(self.interval)
