"""GET /api/v1/interactions against SQLite and PostgreSQL: every filter, the current rating, and cursor
pagination that walks all rows once, newest first, even when interactions share a start time."""
import asyncio
import base64
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from spanscope.web.errors import api_errors
from spanscope.web.interactions_api import InteractionsApi, add_routes
from spanscope.web.requests import MAX_LIMIT
from test_store import opened, summary, written

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def rows():
    """Twelve interactions with known facts: (n, start offset s, user, service, model, error, confidence)."""
    facts = [
        (1, 0, "ann", "chat", "gpt-4o", False, 0.9),
        (2, 10, "bob", "chat", "gpt-4o-mini", True, 0.2),
        (3, 20, "ann", "search", "gpt-4o", False, 0.5),
        (4, 30, "cid", "search", "claude", False, None),
        (5, 30, "ann", "chat", "gpt-4o", False, 0.1),   # same start as 4: the trace id breaks the tie
        (6, 30, "bob", "chat", "gpt-4o", True, 0.7),
        (7, 40, None, "chat", "gpt-4o", False, 0.3),
        (8, 50, "ann", "chat", "claude", False, 0.95),
        (9, 60, "bob", "search", "gpt-4o", False, 0.6),
        (10, 70, "ann", "chat", "gpt-4o-mini", False, 0.25),
        (11, 80, "cid", "chat", "gpt-4o", True, 0.8),
        (12, 90, "ann", "search", "gpt-4o", False, 0.4),
    ]
    return {n: dict(start=T0 + s, user=u, service=svc, model=m, error=e, confidence=c)
            for n, s, u, svc, m, e, c in facts}


FACTS = rows()
RATINGS = {2: 1, 5: 4, 9: 1, 12: 5}
# Newest first: by start, then by trace id, both descending (trace ids are n in hex, so larger n first).
NEWEST_FIRST = sorted(FACTS, key=lambda n: (FACTS[n]["start"], n), reverse=True)


def tid(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
def api_client(store_url):
    """A test client of the interactions API over a store holding FACTS and RATINGS."""
    with opened(store_url) as store:
        store.start()
        for n, f in FACTS.items():
            store.observe(summary(n, start=f["start"], user=f["user"], service=f["service"], model=f["model"],
                                  error=f["error"], confidence=f["confidence"]))
        written(store, len(FACTS))
        for n, r in RATINGS.items():
            store.save_feedback(tid(n), r, f"comment {n}")
        store.save_feedback(tid(9), 2, "revised")  # the current rating is the revision
        loop = asyncio.new_event_loop()
        app = web.Application(middlewares=[api_errors])
        add_routes(app, InteractionsApi(store, clock=lambda: T0 + 3600))
        client = TestClient(TestServer(app), loop=loop)
        loop.run_until_complete(client.start_server())

        def get(query: str):
            async def go():
                resp = await client.get("/api/v1/interactions" + query)
                return resp.status, await resp.json()
            return loop.run_until_complete(go())

        try:
            yield get
        finally:
            loop.run_until_complete(client.close())
            loop.close()


def ids(doc) -> list[int]:
    return [int(i["trace_id"], 16) for i in doc["interactions"]]


def walk(get, query: str, limit: int) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        status, doc = get(f"?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, doc
        pages.append(ids(doc))
        cursor = doc["next_cursor"]
        if cursor is None:
            return pages


def test_the_newest_come_first_with_their_current_rating(api_client):
    status, doc = api_client("")
    assert status == 200
    assert ids(doc) == NEWEST_FIRST
    by_id = {int(i["trace_id"], 16): i for i in doc["interactions"]}
    assert {n: i["rating"] for n, i in by_id.items() if i["rating"]} == {**RATINGS, 9: 2}
    assert by_id[9]["comment"] == "revised"
    assert by_id[4]["user_id"] == "cid" and by_id[4]["model"] == "claude" and by_id[4]["confidence"] is None
    assert doc["next_cursor"] is None and doc["limit"] == 50


def test_cursor_pages_walk_every_row_once_in_order(api_client):
    for limit in (1, 2, 5, 12):
        pages = walk(api_client, "", limit)
        assert [n for p in pages for n in p] == NEWEST_FIRST
        assert all(len(p) == limit for p in pages[:-1]) and 0 < len(pages[-1]) <= limit


def test_cursor_pages_keep_the_filters(api_client):
    expected = [n for n in NEWEST_FIRST if FACTS[n]["user"] == "ann"]
    assert [n for p in walk(api_client, "user=ann", 2) for n in p] == expected


def expected(pred) -> list[int]:
    return [n for n in NEWEST_FIRST if pred(n, FACTS[n])]


@pytest.mark.parametrize("query, pred", [
    ("user=bob", lambda n, f: f["user"] == "bob"),
    ("service=search", lambda n, f: f["service"] == "search"),
    ("model=gpt-4o-mini", lambda n, f: f["model"] == "gpt-4o-mini"),
    ("status=error", lambda n, f: f["error"]),
    ("status=ok&service=chat", lambda n, f: not f["error"] and f["service"] == "chat"),
    ("rating=1", lambda n, f: n == 2),  # 9 was rated 1, then revised to 2
    ("rated=true", lambda n, f: n in RATINGS),
    ("rated=false", lambda n, f: n not in RATINGS),
    ("confidence_below=0.3", lambda n, f: f["confidence"] is not None and f["confidence"] < 0.3),
    (f"since={T0 + 30}&until={T0 + 60}", lambda n, f: T0 + 30 <= f["start"] < T0 + 60),
    ("since=2026-01-01T00:01:20Z", lambda n, f: f["start"] >= T0 + 80),
    ("user=ann&model=gpt-4o&confidence_below=0.6", lambda n, f: f["user"] == "ann" and f["model"] == "gpt-4o"
     and f["confidence"] is not None and f["confidence"] < 0.6),
    ("user=nobody", lambda n, f: False),
])
def test_filters(api_client, query, pred):
    status, doc = api_client("?" + query)
    assert status == 200, doc
    assert ids(doc) == expected(pred)


@pytest.mark.parametrize("query, parameter", [
    ("?limit=0", "limit"), (f"?limit={MAX_LIMIT + 1}", "limit"), ("?limit=x", "limit"),
    ("?status=broken", "status"), ("?rating=6", "rating"), ("?rated=maybe", "rated"),
    ("?confidence_below=nan", "confidence_below"), ("?since=yesterday", "since"), ("?user=", "user"),
    ("?colour=red", "colour"), ("?cursor=not-a-cursor", "cursor"),
    ("?cursor=" + base64.urlsafe_b64encode(json.dumps([1.0, "zz"]).encode()).decode(), "cursor"),
    ("?cursor=" + base64.urlsafe_b64encode(b"[1e999, \"" + b"a" * 32 + b"\"]").decode(), "cursor"),
])
def test_bad_parameters_are_400_naming_them(api_client, query, parameter):
    status, doc = api_client(query)
    assert status == 400 and doc["error"].startswith(f"{parameter}:"), doc
