"""The dashboard's page in headless Chromium: sign in, wait for the charts and lists, watch what leaves the origin.

Used by the Chromium tests (tests/integration/test_dashboard_pages.py) and by
`make dashboard` for out/dashboard.png. The browser is Debian's, driven by
Playwright as telemetry/report/browser.py drives it (same executable, same
flags): every request to another origin is logged and aborted, and every
console error and uncaught page error is kept, so a test can require none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from telemetry.report.browser import CHROMIUM, chromium_context

TIMEOUT_MS = 60_000


@dataclass
class Watch:
    """What the page did besides its work: errors, and requests that left the origin (all blocked)."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL asked for, in order

    @property
    def clean(self) -> bool:
        return not (self.console_errors or self.page_errors or self.foreign_requests)

    def summary(self) -> str:
        lines = [
            f"{len(self.requests)} requests, {len(self.foreign_requests)} to other origins, "
            f"{len(self.console_errors) + len(self.page_errors)} errors"
        ]
        lines += [f"  console error: {text}" for text in self.console_errors]
        lines += [f"  page error: {text}" for text in self.page_errors]
        lines += [f"  request to another origin: {url}" for url in self.foreign_requests]
        return "\n".join(lines)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextmanager
def dashboard_page(base_url: str, executable: Path = CHROMIUM) -> Iterator[tuple[object, Watch]]:
    """(a Playwright page in a fresh profile, its Watch); closes the browser afterwards."""
    from playwright.sync_api import sync_playwright

    watch = Watch(origin_of(base_url))

    def route(route) -> None:
        url = route.request.url
        watch.requests.append(url)
        if origin_of(url) == watch.origin:
            route.continue_()
        else:
            watch.foreign_requests.append(url)
            route.abort()

    with (
        sync_playwright() as playwright,
        chromium_context(playwright, "dashboard-chromium-", executable, accept_downloads=True) as context,
    ):
        context.route("**/*", route)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda message: message.type == "error" and watch.console_errors.append(message.text))
        page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
        yield page, watch


def sign_in(page, base_url: str, key: str):
    """Fill in and post the sign-in form as a person would; returns the page, on whatever it landed."""
    page.goto(base_url.rstrip("/") + "/sign-in")
    page.fill("#key", key)
    with page.expect_navigation():
        page.click("form.sign-in button[type=submit]")
    return page


def wait_until_loaded(page) -> None:
    """The charts are done and both lists show a page."""
    page.wait_for_function("() => document.body.dataset.charts === 'done'")
    page.wait_for_selector("#sites[data-state=loaded]")
    page.wait_for_selector("#deactivations[data-state=loaded]")


def charts_state(page) -> tuple[list[str], list[str], list[str]]:
    """(charts with a spec, those drawn as SVG, charts without data), by their keys."""
    keys = "els => els.map(el => el.dataset.chart)"
    expected = page.eval_on_selector_all(".chart[data-spec]", keys)
    drawn = page.eval_on_selector_all(
        ".chart[data-spec]", "els => els.filter(el => el.querySelector('.view svg')).map(el => el.dataset.chart)"
    )
    no_data = page.eval_on_selector_all(".chart.no-data", keys)
    return expected, drawn, no_data


def screenshot(base_url: str, key: str, png: Path) -> str:
    """Sign in, wait for everything, save a full-page PNG; returns a one-line summary (raises if not clean)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with dashboard_page(base_url) as (page, watch):
        sign_in(page, base_url, key)
        wait_until_loaded(page)
        expected, drawn, no_data = charts_state(page)
        page.screenshot(path=str(png), full_page=True)
    missing = sorted(set(expected) - set(drawn))
    summary = f"{len(drawn)}/{len(expected)} charts drawn, {len(no_data)} without data; {watch.summary()}"
    if missing or not watch.clean:
        raise RuntimeError(f"the dashboard did not render cleanly: not drawn {missing}; {summary}")
    return summary
