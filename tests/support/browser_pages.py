"""The exporter's pages in a real headless Chromium (Debian's `chromium`, driven by Playwright): the
browser, and a page that records its uncaught exceptions and CSP violations as `page.problems`."""
from __future__ import annotations

import contextlib
import shutil

from playwright.sync_api import expect, sync_playwright
from processes import REPO

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = REPO / "artifacts"  # screenshots


@contextlib.contextmanager
def chromium():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url: str, width=1280, height=900, console_errors=False):
    """A fresh context (own sessionStorage) on `url`, once the page says it has loaded (body data-loaded)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.problems = []  # uncaught exceptions and CSP violations: both are bugs in the page
    page.on("pageerror", lambda exc: page.problems.append(f"pageerror: {exc}"))
    page.on("console", lambda m: page.problems.append(f"console: {m.text}")
            if "Content Security Policy" in m.text or (console_errors and m.type == "error") else None)
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-loaded", "true")
    return page


def closed_without_problems(page):
    """For a page fixture: yields the page, then closes its context and fails on what it recorded."""
    yield page
    problems = page.problems
    page.context.close()
    assert not problems, problems
