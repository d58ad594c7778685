"""pricing.refresh: newer genai-prices data fetched from a URL (here a local HTTP server, never the
internet), checked before it replaces the data in use; on any failure the last good data keeps pricing."""
import asyncio
import dataclasses
import json
import re
from decimal import Decimal

from aiohttp import web
from genai_prices import data_snapshot
from genai_prices.types import ModelPrice
from pydantic_core import to_jsonable_python
from spanscope.interpret.price_refresh import PriceRefresh
from spanscope.interpret.pricing import Pricing, load_table


def bundled_json() -> list:
    """The bundled data as the JSON the update URL serves (genai-prices' data.json shape)."""
    def fields(o):
        if isinstance(o, ModelPrice):
            return {k: v for k, v in vars(o).items() if not k.startswith("_") and v is not None}
        return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)
                if not f.name.startswith("_") and getattr(o, f.name) is not None}

    def aliases(v):  # `or_` / `and_` clauses are spelled `or` / `and` in the JSON
        if isinstance(v, list):
            return [aliases(x) for x in v]
        return {k.rstrip("_"): aliases(x) for k, x in v.items()} if isinstance(v, dict) else v

    providers = data_snapshot.get_snapshot().providers
    return aliases(to_jsonable_python(providers, fallback=fields, exclude_none=True))


def with_price(data: list, provider: str, model: str, input_mtok: str) -> list:
    data = json.loads(json.dumps(data))
    (p,) = [p for p in data if p["id"] == provider]
    (m,) = [m for m in p["models"] if m["id"] == model]
    m["prices"]["input_mtok"] = input_mtok
    return data


async def refreshes(bodies: list[tuple[int, bytes]]) -> list:
    """Serve `bodies` one per request on a free loopback port; refresh once per body; after each, the
    outcome, gpt-4o-mini's input price per million and the source/updated pricing_info shows."""
    served = iter(bodies)

    async def data(_request):
        status, body = next(served)
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/prices/data.json", data)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    pricing = Pricing(load_table())
    refresh = PriceRefresh(pricing, f"http://user:secret@127.0.0.1:{port}/prices/data.json?token=x", 3600,
                           report=lambda _: None)
    seen = []
    try:
        for _ in bodies:
            result = await refresh.refresh()
            price = pricing.price("gpt-4o-mini", "openai").input * 1_000_000
            seen.append((result, price, pricing.source, pricing.updated))
    finally:
        await runner.cleanup()
    return seen


def test_refresh_replaces_checked_data_and_keeps_the_last_good_on_failure():
    good = json.dumps(bundled_json()).encode()
    cheaper = json.dumps(with_price(bundled_json(), "openai", "gpt-4o-mini", "0.11")).encode()
    truncated = json.dumps(bundled_json()[:3]).encode()
    seen = asyncio.run(refreshes([(200, good), (200, cheaper), (200, b"<html>not json"), (200, b"[]"),
                                  (200, truncated), (500, b"oops"), (200, cheaper)]))
    results = [s[0] for s in seen]
    assert results == ["unchanged", "updated", "invalid", "invalid", "invalid", "fetch_error", "unchanged"]
    bundled = seen[0]
    assert bundled[1] == Decimal("0.15") and bundled[2].startswith("genai-prices 0.2.3 + ")  # the published price
    refreshed = seen[1]
    assert refreshed[1] == Decimal("0.11")
    # The source names the URL without its credentials or query (it is a label value).
    assert re.fullmatch(r"refresh http://127\.0\.0\.1:\d+/prices/data\.json \+ \d+ overrides", refreshed[2])
    for failed in seen[2:]:  # the last good data keeps pricing, and pricing_info still names it
        assert failed[1:] == refreshed[1:]
