"""Basic-auth password checks: bcrypt off the event loop, the same cost for unknown users, recent
successes remembered for a while, and passwords bcrypt cannot take refused with a 401."""
import asyncio
import base64
import threading

import bcrypt
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from spanscope.web.security import VERIFIED_TTL, WebSecurity, basic_auth_middleware

USER, PASSWORD = "prometheus", "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


async def ok(request):
    return web.json_response({"status": "ok"})


def guarded_app() -> web.Application:
    app = web.Application(middlewares=[basic_auth_middleware(WebSecurity(users={USER: HASH}))])
    app.router.add_get("/healthz", ok)
    app.router.add_get("/metrics", ok)
    return app


@pytest.fixture
def checks(monkeypatch):
    """The hashes bcrypt.checkpw was asked to check against, in order."""
    seen, real = [], bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda password, hashed: seen.append(hashed) or real(password, hashed))
    return seen


def test_an_unknown_user_costs_one_bcrypt_check_like_a_known_one(checks):
    security = WebSecurity(users={USER: HASH})
    assert not security.check("nobody", PASSWORD)
    assert not security.check(USER, "wrong")
    assert len(checks) == 2
    assert checks[0].startswith(b"$2b$04$") and checks[0] != HASH.encode()  # a dummy hash of the same cost


def test_a_password_over_72_bytes_is_refused_not_truncated(checks):
    long = "x" * 72
    security = WebSecurity(users={USER: bcrypt.hashpw(long.encode(), bcrypt.gensalt(rounds=4)).decode()})
    assert not security.check(USER, long + "y")  # bcrypt 4 compared the first 72 bytes; bcrypt 5 raises
    assert security.check(USER, long)
    assert len(checks) == 2


def test_successes_are_remembered_for_a_while_and_failures_never(checks):
    now = [1000.0]
    security = WebSecurity(users={USER: HASH}, clock=lambda: now[0])
    assert security.check(USER, PASSWORD) and security.check(USER, PASSWORD)
    assert len(checks) == 1
    now[0] += VERIFIED_TTL + 1
    assert security.check(USER, PASSWORD)
    assert len(checks) == 2
    assert not security.check(USER, "wrong") and not security.check(USER, "wrong")
    assert len(checks) == 4


def test_the_event_loop_serves_while_a_password_is_checked(monkeypatch):
    entered, gate, timed_out = threading.Event(), threading.Event(), []

    def slow_checkpw(password, hashed):  # a bcrypt check that takes as long as the test wants
        entered.set()
        timed_out.append(not gate.wait(10))
        return False

    monkeypatch.setattr(bcrypt, "checkpw", slow_checkpw)
    app = guarded_app()
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode()}

    async def scenario():
        async with TestServer(app) as server, ClientSession() as session:
            async def status(path, headers=None):
                async with session.get(server.make_url(path), headers=headers) as r:
                    return r.status

            login = asyncio.create_task(status("/metrics", wrong))
            assert await asyncio.to_thread(entered.wait, 10)
            assert await status("/healthz") == 200
            assert timed_out == []  # answered while the check was still running
            gate.set()
            assert await login == 401

    try:
        asyncio.run(scenario())
    finally:
        gate.set()


@pytest.mark.parametrize("authorization", [
    "Basic " + base64.b64encode(f"{USER}:{'x' * 100}".encode()).decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Basic !!!", "Bearer x", "",
])
def test_credentials_that_cannot_be_checked_are_a_401(authorization):
    app = guarded_app()

    async def scenario():
        async with TestServer(app) as server, ClientSession() as session:
            async with session.get(server.make_url("/metrics"), headers={"Authorization": authorization}) as r:
                return r.status

    assert asyncio.run(scenario()) == 401
