"""Open the report in headless Chromium, check every chart is drawn, and screenshot it.

Used by `python -m telemetry.report.page --png`, the demo and the tests.
Chromium is Debian's (`make system-deps` installs it at /usr/bin/chromium),
driven by Playwright with `executable_path`: Playwright logs and blocks every
request the page makes, which the offline check needs, and speaks to the
browser itself, with no chromedriver. `playwright install` is never run (it
downloads a browser build of its own).
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Root needs --no-sandbox; the rest keep Chromium from calling home (updates, sync, field trials).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 900}


@dataclass
class Result:
    """What the browser saw; `ok` when every chart is drawn, nothing failed and nothing was requested."""

    expected: list[str]  # "hash/chart" of every chart with data
    drawn: list[str]  # those with an svg or canvas in their container
    no_data: list[str]  # "hash/chart" of the charts that say "no data"
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL other than the page itself (all blocked)
    screenshot: Path | None = None
    timed_out: bool = False

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.expected) - set(self.drawn))

    @property
    def ok(self) -> bool:
        return (
            not self.missing
            and not self.console_errors
            and not self.page_errors
            and not self.requests
            and not self.timed_out
        )

    def summary(self) -> str:
        lines = [
            f"browser check: {'ok' if self.ok else 'FAILED'}: {len(self.drawn)}/{len(self.expected)} charts drawn, "
            f"{len(self.no_data)} without data, {len(self.console_errors) + len(self.page_errors)} errors, "
            f"{len(self.requests)} network requests; screenshot {self.screenshot}"
        ]
        if self.timed_out:
            lines.append("  timed out waiting for the charts")
        lines += [f"  not drawn: {key}" for key in self.missing]
        lines += [f"  console error: {text}" for text in self.console_errors]
        lines += [f"  page error: {text}" for text in self.page_errors]
        lines += [f"  request: {url}" for url in self.requests]
        return "\n".join(lines)


@contextmanager
def chromium_context(playwright, profile_prefix: str, executable: Path = CHROMIUM, **options):
    """A headless Chromium context on a fresh profile (its own --user-data-dir, deleted after),
    with the checks' arguments, viewport and no service workers; closed on exit."""
    with tempfile.TemporaryDirectory(prefix=profile_prefix) as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(executable),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport=VIEWPORT,
            device_scale_factor=1,
            service_workers="block",
            **options,
        )
        try:
            yield context
        finally:
            context.close()


def available(executable: Path = CHROMIUM) -> bool:
    return executable.is_file()


def check_and_screenshot(
    page_path: Path, png: Path, timeout_seconds: float = 60, executable: Path = CHROMIUM
) -> Result:
    """Load the page from disk, wait for its charts, collect errors and requests, save a full-page PNG."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    url = page_path.resolve().as_uri()
    console_errors: list[str] = []
    page_errors: list[str] = []
    requests: list[str] = []

    def on_request(request) -> None:
        if request.url != url:
            requests.append(request.url)

    def route(route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            route.abort()

    png.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright, chromium_context(playwright, "report-chromium-", executable) as context:
        context.on("request", on_request)
        context.route("**/*", route)
        page = context.pages[0] if context.pages else context.new_page()
        page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.goto(url, wait_until="load", timeout=timeout_seconds * 1000)
        timed_out = False
        try:
            page.wait_for_function("() => document.body.dataset.rendered === 'done'", timeout=timeout_seconds * 1000)
        except PlaywrightError:
            timed_out = True
        keys = "els => els.map(el => el.dataset.project + '/' + el.dataset.chart)"
        expected = page.eval_on_selector_all(".chart[data-spec]", keys)
        drawn = page.eval_on_selector_all(
            ".chart[data-spec]",
            "els => els.filter(el => el.querySelector('.view svg, .view canvas'))"
            ".map(el => el.dataset.project + '/' + el.dataset.chart)",
        )
        no_data = page.eval_on_selector_all(".chart.no-data", keys)
        page.screenshot(path=str(png), full_page=True)
    return Result(
        expected=expected,
        drawn=drawn,
        no_data=no_data,
        console_errors=console_errors,
        page_errors=page_errors,
        requests=requests,
        screenshot=png,
        timed_out=timed_out,
    )
