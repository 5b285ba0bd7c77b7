"""The report from MongoDB's serving copy, opened in headless Chromium (make system-deps installs it)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime

import pytest

from telemetry.analytics import metrics
from telemetry.common import mongo
from telemetry.common.projects import PROJECTS
from telemetry.report import browser, charts
from telemetry.report import page as report
from tests.analytics_samples import CUSTOM_FIELD, documents

END = date(2025, 3, 31)


@pytest.fixture(scope="module")
def chromium():
    if not browser.available():
        message = f"no Chromium at {browser.CHROMIUM}: `make system-deps` installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(message)  # make test installs it, so in CI its absence is a failure
        pytest.skip(message)


@pytest.fixture
def seeded(stack_env):
    """Two projects of their own (one with data, one without) and the first one's serving documents."""
    db = mongo.database(os.environ["MONGODB_URI"], os.environ["MONGODB_DB"])
    run = uuid.uuid4().hex[:12]
    full, empty = f"report-full-{run}", f"report-empty-{run}"
    projects = [
        {
            "hash": full,
            "name": "Report Plugin",
            "type": "plugin",
            "deactivation_reasons": {"too-expensive": "$$$"},
            "custom_fields": [CUSTOM_FIELD],
        },
        {"hash": empty, "name": "Report Theme", "type": "theme", "deactivation_reasons": []},
    ]
    db[PROJECTS].insert_many([dict(p) for p in projects])
    db[metrics.COLLECTION].insert_many(documents(full, END, days=40))
    yield db, full, empty
    db[PROJECTS].delete_many({"hash": {"$in": [full, empty]}})
    db[metrics.COLLECTION].delete_many({"hash": {"$in": [full, empty]}})


def test_report_from_mongodb_renders_every_chart_offline(seeded, chromium, tmp_path):
    db, full, empty = seeded
    projects, docs = report.load(db, days=90, hashes=[full, empty])
    assert set(projects) == {full, empty}
    assert {doc["hash"] for doc in docs} == {full}
    assert min(doc["day"] for doc in docs) == "2025-02-20" and max(doc["day"] for doc in docs) == "2025-03-31"

    page = report.write(db, tmp_path / "report.html", hashes=[full, empty], generated_at=datetime.now(UTC))
    assert page.stat().st_size < 1_000_000
    text = page.read_text()
    assert "latest day shown: 2025-03-31" in text and "No data yet" in text

    result = browser.check_and_screenshot(page, tmp_path / "report.png")
    assert result.ok, result.summary()
    assert sorted(result.expected) == sorted(f"{full}/{key}" for key in charts.chart_keys(projects[full]))
    assert sorted(result.drawn) == sorted(result.expected)
    assert result.no_data == []
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000


def test_the_check_catches_requests_errors_and_undrawn_charts(chromium, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
        '<div class="chart" data-project="p" data-chart="c" data-spec="p/c"><div class="view"></div></div>'
        "<script>console.error('boom'); document.body.dataset.rendered = 'done';</script></body></html>"
    )
    result = browser.check_and_screenshot(page, tmp_path / "bad.png", timeout_seconds=10)
    assert not result.ok
    assert result.requests == ["http://127.0.0.1:9/x.png"]
    assert result.missing == ["p/c"]
    assert "boom" in result.console_errors
    assert (tmp_path / "bad.png").exists()
