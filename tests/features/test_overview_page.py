"""The overview page (/) end to end, in a real headless Chromium driven by Playwright.

A running exporter is fed known traffic through the OpenTelemetry SDK: four priced cache misses of
1000 ms (gpt-4o, 1200 input and 300 output tokens: $0.006 each; quality 0.8), four hits of 100 ms and
one failed request. The page must show the same numbers as the API it reads (formatted here, on their
own), the same waterfall, the recent interactions, and must let one be rated. Screenshots at desktop
and phone width land in artifacts/.
"""
from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from browser_pages import ARTIFACTS, CHROMIUM, chromium, closed_without_problems
from browser_pages import open_page as open_url
from http_helpers import call
from known_traces import HIT, MISS
from playwright.sync_api import expect
from processes import start_exporter, wait_until
from sdk import send_traces

pytestmark = pytest.mark.slow

if CHROMIUM is None:
    pytest.skip("SKIPPED LOUDLY: Debian `chromium` is not installed, so the overview page cannot be tested in a "
                "browser. `make test` installs it (scripts/system-deps.sh), or: apt-get install chromium",
                allow_module_level=True)

LLM = {"pipeline.component": "llm_inference", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
       "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}
COST = Decimal("0.006")  # gpt-4o: 1200 × $2.50/M + 300 × $10/M


def priced_miss():
    tree = copy.deepcopy(MISS)
    children = tree[4]
    children[3] = ("llm", 230, 900, LLM)
    children[4] = ("assembly", 900, 1000, {"pipeline.component": "response_assembly",
                                          "pipeline.quality.score": 0.8})
    return tree


FAILED = ("gateway", 0, 300, {"pipeline.component": "gateway", "_error": True}, [])
TRAFFIC = [priced_miss(), HIT] * 4 + [FAILED]


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    proc = start_exporter(tmp_path_factory.mktemp("overview-page"), {"traces": {"finish_delay": 0.05}})
    try:
        send_traces(proc, "overview", TRAFFIC)
        wait_until(lambda: len(api(proc, "/api/v1/interactions")["interactions"]) == len(TRAFFIC),
                   what="every interaction in the store")
        yield proc
    finally:
        proc.stop()


def api(proc, path):
    status, doc = call("GET", proc.urls["web"] + path)
    assert status == 200, (path, doc)
    return doc


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def open_page(browser, proc, width=1280, height=900):
    return open_url(browser, proc.urls["web"] + "/?refresh=1", width, height, console_errors=True)


@pytest.fixture
def page(browser, fed):
    yield from closed_without_problems(open_page(browser, fed))


# The page's formats, written out again here: the page must agree with them and with the API.
def ms(v):
    return "—" if v is None else f"{v:.1f} ms"


def rate(v):
    return "—" if v is None else f"{v:.{2 if v >= 0.1 or v == 0 else 4}f}/s"


def percent(v):
    return "—" if v is None else f"{v * 100:.1f} %"


def usd(v):
    return "—" if v is None else f"${v:.{6 if v and abs(v) < 0.01 else 2}f}"


def test_the_numbers_at_a_glance_equal_the_api(page, fed):
    d = api(fed, "/api/metrics/dashboard?time_window_minutes=60")["data"]
    # The API itself, against the traffic (computed here from the known traces).
    assert d["requests"] == 9 and d["error_rate"] == pytest.approx(1 / 9)
    assert Decimal(str(d["cost"]["total_usd"])) == 4 * COST
    assert d["cache_hit_ratio"] == pytest.approx(0.5) and d["quality_score"] == pytest.approx(0.8)
    # Rates divide by the seconds covered since the exporter started, which grow between the page's
    # refresh and this request: checked against the page's own covered seconds, rate x covered = count.
    covered = float(page.locator("#kpis").get_attribute("data-covered-seconds"))
    for tile, fmt, count in (("kpi-rate", rate, d["requests"]),
                             ("kpi-cost-hour", usd, d["cost"]["total_usd"] * 3600)):
        raw = float(page.locator(f"#{tile}").get_attribute("data-value"))
        # the API reads its clock for the rate and for the envelope's covered seconds a moment apart
        assert raw * covered == pytest.approx(count, rel=1e-3), tile
        expect(page.locator(f"#{tile}")).to_have_text(fmt(raw))
    shown = {
        "kpi-errors": (d["error_rate"], percent(d["error_rate"])),
        "kpi-p50": (d["latency"]["p50_ms"], ms(d["latency"]["p50_ms"])),
        "kpi-p95": (d["latency"]["p95_ms"], ms(d["latency"]["p95_ms"])),
        "kpi-p99": (d["latency"]["p99_ms"], ms(d["latency"]["p99_ms"])),
        "kpi-cost-request": (d["cost"]["cost_per_request_usd"], usd(d["cost"]["cost_per_request_usd"])),
        "kpi-cache": (d["cache_hit_ratio"], percent(d["cache_hit_ratio"])),
        "kpi-quality": (d["quality_score"], f"{d['quality_score']:.2f}"),
        "kpi-rating": (d["average_rating"], "—" if d["average_rating"] is None else f"{d['average_rating']:.2f}"),
    }
    for tile, (number, text) in shown.items():
        expect(page.locator(f"#{tile}")).to_have_text(text)
        raw = page.locator(f"#{tile}").get_attribute("data-value")
        assert (float(raw) if raw else None) == pytest.approx(number), tile


def test_the_waterfall_and_timeline_come_from_the_api(page, fed):
    b = api(fed, "/api/breakdown")
    items = page.eval_on_selector_all("#waterfall-list li", "ls => ls.map(l => [l.dataset.component, "
                                                            "Number(l.dataset.value)])")
    assert [c for c, _ in items] == [c["component"] for c in b["components"]]
    assert [v for _, v in items] == pytest.approx([c["mean_ms"] for c in b["components"]])
    expect(page.locator("#waterfall-total")).to_have_text(ms(b["total_ms"]))
    # The stacked timeline: one dataset per component; its minute values sum to the API's per minute.
    perf = api(fed, "/api/metrics/performance?time_window_minutes=60")["data"]["timeline"]
    chart = page.evaluate("""() => { const c = Chart.getChart('timeline-chart');
        return c.data.datasets.map(d => [d.label, d.data]); }""")
    assert {name for name, _ in chart} == set().union(*(m["critical_path_ms_per_request"] for m in perf))
    for i, minute in enumerate(perf):
        assert sum(data[i] for _, data in chart) == pytest.approx(sum(minute["critical_path_ms_per_request"].values()))
    expect(page.locator("#timeline-empty")).to_be_hidden()


def test_what_if_shows_current_against_each_scenario(page, fed):
    scenarios = api(fed, "/api/what-if/scenarios")["scenarios"]
    for name, s in scenarios.items():
        row = page.locator(f"#scenario-{name} td")
        expect(row.nth(0)).to_have_text(ms(s["current_latency_ms"]))
        expect(row.nth(1)).to_have_text(ms(s["projected_latency_ms"]))


def test_alerts_say_when_no_prometheus_is_configured(page, fed):
    assert api(fed, "/api/alerts") == {"source": None, "alerts": []}
    expect(page.locator("#alerts-source")).to_contain_text("No Prometheus configured")


def test_recent_interactions_are_listed_and_can_be_rated(page, fed):
    newest = api(fed, "/api/v1/interactions?limit=8")["interactions"]
    rows = page.locator("#recent-list li")
    expect(rows).to_have_count(8)
    assert [rows.nth(i).get_attribute("data-trace-id") for i in range(8)] == [i["trace_id"] for i in newest]
    target = newest[0]["trace_id"]
    page.locator(f'#recent-list li[data-trace-id="{target}"] button.rate', has_text="4").click()
    expect(page.locator(f'#recent-list li[data-trace-id="{target}"]')).to_contain_text("rated 4")
    assert api(fed, f"/api/v1/interactions/{target}")["feedback"][-1]["rating"] == 4


def test_the_endpoint_list_is_below(page):
    links = page.eval_on_selector_all("#endpoints a", "as => as.map(a => a.getAttribute('href'))")
    assert {"/metrics", "/features", "/api/v1/interactions"} <= set(links)


def test_screenshots_at_desktop_and_phone_width(browser, fed):
    ARTIFACTS.mkdir(exist_ok=True)
    for width, name in ((1280, "overview-page.png"), (375, "overview-page-phone.png")):
        page = open_page(browser, fed, width=width, height=800)
        try:
            page.wait_for_function("() => Number(document.body.dataset.refreshes) >= 2")
            # Nothing wider than the screen: no sideways scrolling at 375 px.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(ARTIFACTS / name), full_page=True)
            assert not page.problems, page.problems
        finally:
            page.context.close()
