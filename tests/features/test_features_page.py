"""The features page (/features) end to end, in a real headless Chromium driven by Playwright.

A running exporter is fed traces with known durations through the OpenTelemetry SDK: four cache
misses of 1000 ms (conversation_context 200 ms on the critical path, rag_weather 20 ms) and four hits
of 100 ms, so the page must show a mean of 550 ms, conversation_context at 100 ms, a 50 % hit rate
and a what-if of 450 ms with conversation_context off. Screenshots land in artifacts/.
"""
from __future__ import annotations

import http.client
import re
import urllib.parse

import pytest
from browser_pages import ARTIFACTS, CHROMIUM, chromium, closed_without_problems
from browser_pages import open_page as open_url
from http_helpers import call
from known_traces import HIT, MISS
from playwright.sync_api import expect
from processes import start_exporter
from sdk import send_traces

pytestmark = pytest.mark.slow

if CHROMIUM is None:
    pytest.skip("SKIPPED LOUDLY: Debian `chromium` is not installed, so the features page cannot be tested in a "
                "browser. `make test` installs it (scripts/system-deps.sh), or: apt-get install chromium",
                allow_module_level=True)

CATEGORIES = {"processing", "rag", "optimization", "integration"}


def start(tmp_path, **extra):
    return start_exporter(tmp_path, {"traces": {"finish_delay": 0.05}, **extra})


def api(proc, path, method="GET", body=None, **kw):
    return call(method, proc.urls["web"] + path, body, **kw)


def feature(proc, name) -> dict:
    status, doc = api(proc, f"/api/features/{name}")
    assert status == 200, doc
    return doc


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """One exporter for the read-mostly tests; tests that toggle put the state back."""
    proc = start(tmp_path_factory.mktemp("features-page"))
    try:
        send_traces(proc, "page", [MISS, HIT] * 4)
        # Every seed feature is on by default: one off gives the all_optimizations scenario a toggle.
        assert api(proc, "/api/features/mlx_backend", "PUT", {"enabled": False})[0] == 200
        yield proc
    finally:
        proc.stop()


def open_page(browser, proc, width=1280, height=900):
    """A fresh context (own sessionStorage) on /features, refreshing every second, once loaded."""
    return open_url(browser, proc.urls["web"] + "/features?refresh=1", width, height)


@pytest.fixture
def page(browser, fed):
    yield from closed_without_problems(open_page(browser, fed))


def refreshes(page) -> int:
    return int(page.locator("body").get_attribute("data-refreshes"))


def wait_refreshes(page, n=2) -> None:
    """Wait until the page has refreshed its live numbers `n` more times."""
    target = refreshes(page) + n
    page.wait_for_function("t => Number(document.body.dataset.refreshes) >= t", arg=target)


def bars(page) -> list[dict]:
    return page.eval_on_selector_all("#waterfall li", """items => items.map(li => {
        const track = li.querySelector('.wf-track').getBoundingClientRect();
        const bar = li.querySelector('.wf-bar').getBoundingClientRect();
        return {component: li.dataset.component, value: li.querySelector('.wf-value').textContent,
                left: (bar.left - track.left) / track.width * 100, width: bar.width / track.width * 100};
    })""")


# --- serving ---------------------------------------------------------------------------------------

def test_page_and_static_files_are_served_safely(fed):
    web = fed.urls["web"]
    status, landing = call("GET", web + "/")
    assert status == 200 and 'href="/features"' in landing
    host, port = urllib.parse.urlsplit(web).netloc.split(":")

    def raw_get(path):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.getheaders(), resp.read()
        finally:
            conn.close()

    status, ctype, headers, body = raw_get("/features")
    assert status == 200 and ctype.startswith("text/html") and b'src="static/features.js"' in body
    assert "script-src 'self'" in dict(headers)["Content-Security-Policy"]
    assert raw_get("/static/features.css")[:2] == (200, "text/css; charset=utf-8")
    assert raw_get("/static/features.js")[:2] == (200, "text/javascript; charset=utf-8")
    assert raw_get("/static/features.html")[0] == 200
    for path in ("/static/nope.js", "/static/..%2Fweb.py", "/static/%2e%2e%2fapi.py", "/static/../web.py",
                 "/static/..%2F..%2Fpyproject.toml", "/static/", "/static/%2e%2e"):
        status, ctype, _, body = raw_get(path)
        assert status == 404, (path, status)
        assert b"import" not in body and b"[build-system]" not in body, path


# --- the page --------------------------------------------------------------------------------------

def test_page_lists_features_by_category_with_their_numbers(page, fed):
    status, doc = api(fed, "/api/features")
    assert status == 200 and set(doc["categories"]) == CATEGORIES
    for category, names in doc["categories"].items():
        section = page.locator(f"section.category[aria-labelledby=cat-{category}]")
        expect(section.get_by_role("heading", level=3)).to_be_visible()
        for name in names:
            expect(section.locator(f"#feature-{name}")).to_have_count(1)
    for f in doc["features"]:
        switch = page.get_by_role("switch", name=f["display_name"], exact=True)
        if f["enabled"]:
            expect(switch).to_be_checked()
        else:
            expect(switch).not_to_be_checked()
        # colour is not the only signal: the state is also written out
        expect(page.locator(f"#feature-{f['name']} .state")).to_have_text("On" if f["enabled"] else "Off")

    expect(page.locator("#feature-conversation_context .facts")).to_contain_text("Avg latency100.0 ms")
    expect(page.locator("#feature-rag_weather .facts")).to_contain_text("Avg latency10.0 ms")
    expect(page.locator("#feature-redis_caching .facts")).to_contain_text("Hit ratio per lookup50.0 %")
    expect(page.locator("#feature-rag_weather .facts")).not_to_contain_text("Hit ratio")  # not a caching feature
    expect(page.locator("#current-latency")).to_have_text("550.0 ms")
    expect(page.locator("#window-info")).to_have_text("mean of 8 requests in the last 300 s")
    expect(page.locator("#projected-latency")).to_have_text("550.0 ms")
    expect(page.locator("#projected-delta")).to_have_text("no change")

    # what-if table: every configured scenario with its total and % change
    rows = page.locator("#whatif-body tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#scenario-current")).to_contain_text("Current configuration")
    expect(page.locator("#scenario-current td").nth(1)).to_have_text("550.0 ms")
    expect(page.locator("#scenario-current td").nth(2)).to_have_text("no change")
    expect(page.locator("#scenario-no_caching td").nth(0)).to_have_text("off: Redis response caching")
    expect(page.locator("#scenario-no_caching td").nth(1)).to_have_text("990.0 ms")
    expect(page.locator("#scenario-no_caching td").nth(2)).to_have_text("+440.0 ms (+80.0 %)")
    expect(page.locator("#scenario-no_rag td").nth(1)).to_have_text("540.0 ms")
    expect(page.locator("#scenario-no_rag td").nth(2)).to_have_text("-10.0 ms (-1.8 %)")
    expect(page.locator("#scenario-all_optimizations td").nth(0)).to_contain_text("MLX backend")

    # waterfall: one bar per component, each starting where the previous one ended, summing to the total
    status, breakdown = api(fed, "/api/breakdown")
    assert status == 200
    expect(page.locator("#waterfall-total")).to_have_text("550.0 ms")
    expect(page.locator("#waterfall li")).to_have_count(len(breakdown["components"]))
    drawn = bars(page)
    by_component = {c["component"]: c for c in breakdown["components"]}
    offset = 0.0
    for bar in drawn:
        want = by_component[bar["component"]]
        assert bar["value"] == f"{want['mean_ms']:.1f} ms · {want['share_percent']:.1f} %"
        assert bar["left"] == pytest.approx(offset, abs=0.5)
        assert bar["width"] == pytest.approx(want["mean_ms"] / breakdown["total_ms"] * 100, abs=0.5)
        offset += bar["width"]
    assert offset == pytest.approx(100, abs=0.5)


def test_flipping_a_switch_changes_the_api_and_the_projected_latency(page, fed):
    switch = page.get_by_role("switch", name="Conversation context")
    status = page.locator("#status")
    try:
        expect(switch).to_be_checked()
        switch.click()
        expect(status).to_have_text("Conversation context turned off.")
        assert feature(fed, "conversation_context")["enabled"] is False
        expect(switch).not_to_be_checked()
        expect(page.locator("#feature-conversation_context .state")).to_have_text("Off")
        expect(page.locator("#projected-latency")).to_have_text("450.0 ms")
        expect(page.locator("#projected-delta")).to_have_text("-100.0 ms (-18.2 %)")
        expect(page.locator("#pending-list")).to_contain_text("Conversation context turned off: -100.0 ms")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "features-page.png"), full_page=True)

        # the live refresh keeps the switch and the projection as they are
        wait_refreshes(page, 2)
        expect(switch).not_to_be_checked()
        expect(page.locator("#projected-latency")).to_have_text("450.0 ms")
        expect(page.locator("#current-latency")).to_have_text("550.0 ms")

        switch.click()
        expect(status).to_have_text("Conversation context turned on.")
        assert feature(fed, "conversation_context")["enabled"] is True
        expect(page.locator("#projected-latency")).to_have_text("550.0 ms")
        expect(page.locator("#projected-delta")).to_have_text("no change")
        expect(page.locator("#pending-box")).to_be_hidden()
    finally:
        api(fed, "/api/features/conversation_context", "PUT", {"enabled": True})


def test_required_feature_cannot_be_turned_off_and_the_page_says_why(page, fed):
    switch = page.get_by_role("switch", name="Intent classification")
    expect(switch).to_be_checked()
    expect(switch).to_be_disabled()
    expect(switch).to_have_accessible_description(re.compile("Required: cannot be disabled"))
    row = page.locator("#feature-intent_classification")
    expect(row.locator(".required-note")).to_have_text("Required: cannot be disabled")
    expect(row.locator(".required-note svg.lock")).to_be_visible()
    expect(row.locator("input[type=range]")).to_be_disabled()
    expect(row.locator("input[type=number]")).to_be_disabled()

    switch.click(force=True)  # a click on a disabled switch does nothing
    expect(switch).to_be_checked()
    assert feature(fed, "intent_classification")["enabled"] is True

    # Should the switch get enabled anyway (a stale page, an edited DOM), the API's refusal is shown.
    switch.evaluate("el => { el.disabled = false; }")
    switch.click()
    expect(page.locator("#status")).to_have_text(
        "Could not turn Intent classification off: intent_classification is a required feature and cannot "
        "be disabled (HTTP 409)")
    expect(page.locator("#status")).to_have_class(re.compile(r"\berror\b"))
    expect(switch).to_be_checked()
    assert feature(fed, "intent_classification")["enabled"] is True


def test_keyboard_operates_switches_and_rollout(page, fed):
    switch = page.get_by_role("switch", name="Weather RAG")
    status = page.locator("#status")
    try:
        switch.focus()
        page.keyboard.press("Space")
        expect(status).to_have_text("Weather RAG turned off.")
        assert feature(fed, "rag_weather")["enabled"] is False
        expect(switch).to_be_focused()
        outline = switch.evaluate("el => [el.matches(':focus-visible'), getComputedStyle(el).outlineStyle, "
                                  "parseFloat(getComputedStyle(el).outlineWidth)]")
        assert outline[0] is True and outline[1] != "none" and outline[2] >= 2, outline
        expect(page.locator("#projected-delta")).to_have_text("-10.0 ms (-1.8 %)")
        page.keyboard.press("Enter")  # a switch also toggles with Enter
        expect(status).to_have_text("Weather RAG turned on.")
        assert feature(fed, "rag_weather")["enabled"] is True

        number = page.get_by_label("Rollout percentage of Weather RAG")
        slider = page.get_by_role("slider", name="Rollout of Weather RAG")
        number.fill("25")
        number.press("Enter")
        expect(status).to_have_text("Weather RAG rolled out to 25 %.")
        assert feature(fed, "rag_weather")["rollout_percentage"] == 25
        expect(slider).to_have_value("25")
        slider.focus()
        page.keyboard.press("ArrowRight")
        expect(status).to_have_text("Weather RAG rolled out to 26 %.")
        expect(number).to_have_value("26")
        page.keyboard.press("End")
        expect(status).to_have_text("Weather RAG rolled out to 100 %.")
        assert feature(fed, "rag_weather")["rollout_percentage"] == 100

        number.fill("150")
        number.press("Enter")
        expect(status).to_have_text("Rollout of Weather RAG: enter a percentage from 0 to 100.")
        expect(number).to_have_value("100")
        assert feature(fed, "rag_weather")["rollout_percentage"] == 100
    finally:
        api(fed, "/api/features/rag_weather", "PUT", {"enabled": True, "rollout_percentage": 100})


def test_bearer_token_is_asked_for_on_401_and_then_used(browser, tmp_path):
    proc = start(tmp_path, auth={"bearer_token": "t"})
    page = None
    try:
        page = open_page(browser, proc)
        switch = page.get_by_role("switch", name="Conversation context")
        status = page.locator("#status")
        token_box = page.locator("#auth")
        expect(token_box).to_be_hidden()

        switch.click()
        expect(status).to_contain_text("Could not turn Conversation context off: missing or wrong bearer token")
        expect(status).to_contain_text("(HTTP 401)")
        expect(switch).to_be_checked()  # the refused change is undone on the page
        assert feature(proc, "conversation_context")["enabled"] is True
        expect(token_box).to_be_visible()

        token = page.get_by_label("Token", exact=True)
        token.fill("wrong")
        token.press("Enter")
        expect(status).to_have_text("Token set for this browser tab. Changes now send it.")
        switch.click()
        expect(status).to_contain_text("The token you entered was refused")
        assert feature(proc, "conversation_context")["enabled"] is True

        token.fill("t")
        page.get_by_role("button", name="Use token").click()
        switch.click()
        expect(status).to_have_text("Conversation context turned off.")
        assert feature(proc, "conversation_context")["enabled"] is False
        expect(switch).not_to_be_checked()
        stored = page.evaluate("() => [sessionStorage.getItem('spanscope.bearer_token'), localStorage.length, "
                               "document.cookie]")
        assert stored == ["t", 0, ""]
        assert page.problems == []
    finally:
        if page is not None:
            page.context.close()
        proc.stop()


def test_live_numbers_update_in_place(browser, tmp_path):
    """New traffic shows up within the refresh interval, by rewriting text nodes, not rebuilding the DOM."""
    proc = start(tmp_path)
    page = None
    try:
        page = open_page(browser, proc)
        expect(page.locator("#current-latency")).to_have_text("—")
        expect(page.locator("#waterfall-empty")).to_be_visible()
        page.evaluate("""() => { window.__kept = {
            latency: document.getElementById('current-latency').firstChild,
            row: document.getElementById('feature-conversation_context'),
            avg: document.querySelector('#feature-conversation_context .facts dd').firstChild,
            scenario: document.getElementById('scenario-no_caching'),
            switch: document.getElementById('sw-conversation_context') }; }""")

        send_traces(proc, "page", [MISS, MISS])
        expect(page.locator("#current-latency")).to_have_text("1000.0 ms")
        expect(page.locator("#feature-conversation_context .facts")).to_contain_text("Avg latency200.0 ms")
        expect(page.locator("#waterfall-total")).to_have_text("1000.0 ms")
        send_traces(proc, "page", [HIT, HIT])
        expect(page.locator("#current-latency")).to_have_text("550.0 ms")
        expect(page.locator("#scenario-no_caching td").nth(1)).to_have_text("990.0 ms")
        expect(page.locator("#waterfall-total")).to_have_text("550.0 ms")

        same = page.evaluate("""() => { const k = window.__kept; return [
            document.getElementById('current-latency').firstChild === k.latency,
            document.getElementById('feature-conversation_context') === k.row,
            document.querySelector('#feature-conversation_context .facts dd').firstChild === k.avg,
            document.getElementById('scenario-no_caching') === k.scenario,
            document.getElementById('sw-conversation_context') === k.switch]; }""")
        assert same == [True] * 5
        assert page.problems == []
    finally:
        if page is not None:
            page.context.close()
        proc.stop()


def test_phone_width_has_no_horizontal_scroll(browser, fed):
    page = open_page(browser, fed, width=375, height=800)
    try:
        expect(page.locator("#scenario-no_caching td").nth(1)).to_have_text("990.0 ms")
        expect(page.locator("#waterfall-total")).to_have_text("550.0 ms")
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth]")
        assert max(widths) <= 375, widths
        # every control is inside the screen, not just the page's scroll width
        rights = page.eval_on_selector_all("input, button", "els => els.map(e => e.getBoundingClientRect().right)")
        assert rights and max(rights) <= 375, max(rights)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "features-page-phone.png"), full_page=True)
        assert page.problems == []
    finally:
        page.context.close()


def test_a_guarded_rollout_and_its_decisions_are_shown(page, fed):
    """The running rollout's stage and guard, then the last decision with its reason, in the feature's row."""
    row = page.locator("#feature-mlx_backend")
    try:
        status, doc = api(fed, "/api/features/mlx_backend/rollout", "POST",
                          {"strategy": "linear", "step": 50, "guard": {"max_error_ratio_increase": 0.05}})
        assert status == 200, doc
        expect(row.locator(".facts")).to_contain_text("Rollout schedulestep 1 of 2 (50, 100 %) · guarded")
        expect(row.locator(".decision")).to_contain_text(
            re.compile(r"^Started \(\d+ → 50 %\): linear rollout through \[50.0, 100.0\] · "))
        expect(row.locator(".decision")).not_to_have_class(re.compile("is-rollback"))
        assert api(fed, "/api/features/mlx_backend/rollout/emergency-rollback", "POST")[0] == 200
        expect(row.locator(".decision")).to_contain_text("Emergency rollback at stage 1 (50 → 0 %): emergency rollback")
        expect(row.locator(".decision")).to_have_class(re.compile("is-rollback"))
        expect(row.locator(".facts div", has=page.locator("dt", has_text="Rollout schedule"))).to_be_hidden()
    finally:
        api(fed, "/api/features/mlx_backend", "PUT", {"enabled": True, "rollout_percentage": 100})
