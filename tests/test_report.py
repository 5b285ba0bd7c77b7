"""The report's renderer on hand-made serving documents: no MongoDB, no browser."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import pytest

from telemetry.analytics import metrics
from telemetry.report import charts as charts_of
from telemetry.report import page as report
from tests.analytics_samples import CUSTOM_FIELD, documents

END = date(2025, 3, 31)
GENERATED = datetime(2025, 4, 1, 6, 30, tzinfo=UTC)
PROJECTS = {
    "full": {
        "hash": "full",
        "name": "SEO",
        "type": "plugin",
        "deactivation_reasons": {"too-expensive": "Costs"},
        "custom_fields": [CUSTOM_FIELD],
    },
    "old": {"hash": "old", "name": "Old Form", "type": "plugin", "deactivation_reasons": ["too-expensive"]},
    "empty": {"hash": "empty", "name": "Quiet Theme", "type": "theme"},
}


class Elements(HTMLParser):
    """Every start tag as (tag, attributes)."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(page)
    return parser.tags


def charts(page: str) -> dict[tuple[str, str], dict[str, str | None]]:
    return {
        (attrs["data-project"], attrs["data-chart"]): attrs
        for tag, attrs in parse(page)
        if tag == "div" and "chart" in (attrs.get("class") or "").split()
    }


def specs(page: str) -> dict[str, dict]:
    text = re.search(r'<script id="specs" type="application/json">(.*?)</script>', page, re.S).group(1)
    return json.loads(text)


def rows(spec: dict) -> list[dict]:
    """The one data set of a chart's spec (Altair names inline data and moves it under `datasets`)."""
    (values,) = spec["datasets"].values()
    return values


@pytest.fixture(scope="module")
def page() -> str:
    old = [doc for doc in documents("old", END, seed=2) if doc["metric"] not in ("theme", "plugins")]
    return report.render(PROJECTS, documents("full", END) + old, GENERATED)


def test_every_chart_of_a_project_with_data_is_there_and_has_a_spec(page):
    found = charts(page)
    drawn = specs(page)
    for project in ("full", "old"):
        assert {key for hash_, key in found if hash_ == project} == set(charts_of.chart_keys(PROJECTS[project]))
    assert charts_of.chart_keys(PROJECTS["full"]) == (*report.CHART_KEYS, f"custom_field:{CUSTOM_FIELD}")
    for key in charts_of.chart_keys(PROJECTS["full"]):
        attrs = found[("full", key)]
        assert attrs["data-spec"] == f"full/{key}"
        assert "no-data" not in attrs["class"]
        spec = drawn[f"full/{key}"]
        assert "mark" in spec or "layer" in spec
    assert found[("full", "opt_in_rate")]["data-metric"] == "opt_in_rate"
    assert found[("full", "new_sites_deactivations")]["data-metric"] == "new_sites deactivations"


def test_a_missing_metric_says_no_data_and_an_empty_project_no_data_yet(page):
    found = charts(page)
    for key in ("theme", "plugins"):
        assert "no-data" in found[("old", key)]["class"]
        assert "data-spec" not in found[("old", key)]
    assert not [key for key in found if key[0] == "empty"]
    section = page[page.index('id="p-empty"') :]
    section = section[: section.index("</section>")]
    assert "Quiet Theme" in section and "No data yet" in section


def test_offline_small_and_dated(page):
    for tag, attrs in parse(page):
        for name in ("src", "href"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(name) or ""), (tag, attrs)
    assert "<link" not in page
    assert len(page.encode()) < 1_000_000
    assert "Generated 2025-04-01 06:30 UTC" in page
    assert "latest day shown: 2025-03-31" in page
    assert "Active sites on 2025-03-31" in page
    assert "default-src 'none'" in page


def test_deactivation_reasons_use_the_project_labels(page):
    def labels(project: str) -> dict[str, int]:
        return {row["label"]: row["count"] for row in rows(specs(page)[f"{project}/deactivation_reasons"])}

    full, old = labels("full"), labels("old")
    assert "Costs" in full and "too-expensive" not in full
    assert "is-not-working" in full  # the client's own slug: no label of the project's
    assert "too-expensive" in old  # the older list form: slugs label themselves
    summed = sum(
        doc["breakdown"].get("too-expensive", 0)
        for doc in documents("full", END)
        if doc["metric"] == "deactivation_reasons" and doc["day"] > "2025-03-01"
    )
    assert full["Costs"] == summed


def test_long_tails_fold_into_other_and_bars_follow_counts():
    bars = report.bar_rows({f"l{i}": i + 1 for i in range(15)} | {"zero": 0}, top=10, fold=True, noun="locales")
    assert [row["label"] for row in bars[:3]] == ["l14", "l13", "l12"]
    assert bars[-1] == {"label": "other: 5 more locales", "count": 15, "share": 15 / 120, "order": 10, "rest": "rest"}
    assert len(report.bar_rows({f"p{i}": 1 for i in range(30)}, top=20, fold=False, noun="plugins")) == 20


def test_opt_in_rate_keeps_undefined_days_as_gaps():
    docs = [
        {"hash": "h", "metric": metrics.OPT_IN_RATE.name, "day": "2025-03-30", "value": None},
        {"hash": "h", "metric": metrics.OPT_IN_RATE.name, "day": "2025-03-31", "value": 0.5},
    ]
    (section,), latest = report.sections({"h": {"hash": "h", "name": "x"}}, docs)
    assert latest == "2025-03-31"
    by_key = {chart.key: chart for chart in section.charts}
    assert rows(by_key["opt_in_rate"].spec) == [
        {"day": "2025-03-30", "value": None},
        {"day": "2025-03-31", "value": 0.5},
    ]
    assert by_key["active_sites_30d"].spec is None


def test_untrusted_labels_cannot_break_out_of_the_page():
    docs = [
        {"hash": "h", "metric": "theme", "day": "2025-03-31", "breakdown": {"</script><script>alert(1)</script>": 3}},
    ]
    page = report.render({"h": {"hash": "h", "name": "<b>Mine</b>", "type": "plugin"}}, docs, GENERATED)
    assert "<script>alert(1)" not in page
    assert "&lt;b&gt;Mine&lt;/b&gt;" in page
    assert "\\u003c/script\\u003e" in page


def test_no_documents_at_all():
    page = report.render({"h": {"hash": "h", "name": "Only", "type": "plugin"}}, [], GENERATED)
    assert "no figures served yet" in page and "No data yet" in page
    assert charts(page) == {}


def test_install_age_bars_keep_bucket_order_and_requirements_are_shares_of_active_sites():
    docs = [
        {"hash": "h", "metric": metrics.ACTIVE_SITES.name, "day": "2025-03-31", "value": 8},
        {"hash": "h", "metric": "install_age_at_deactivation", "day": "2025-03-30", "breakdown": {"over 90 days": 1}},
        {"hash": "h", "metric": "install_age_at_deactivation", "day": "2025-03-31", "breakdown": {"1-7 days": 2}},
        {
            "hash": "h",
            "metric": "requirements_impact",
            "day": "2025-03-31",
            "breakdown": {**dict.fromkeys(metrics.requirement_labels(), 0), "PHP 8.4": 2, "WordPress 7.0": 8},
        },
    ]
    (section,), _latest = report.sections({"h": {"hash": "h", "name": "x"}}, docs)
    by_key = {chart.key: chart for chart in section.charts}
    ages = rows(by_key["install_age_at_deactivation"].spec)
    # Summed over 30 days, youngest first, empty buckets shown: 2 + 1 deactivations.
    assert [(row["label"], row["count"]) for row in ages] == [
        ("under 1 day", 0), ("1-7 days", 2), ("8-30 days", 0), ("31-90 days", 0), ("over 90 days", 1),
    ]  # fmt: skip
    assert ages[1]["share"] == pytest.approx(2 / 3)
    impact = {row["label"]: row for row in rows(by_key["requirements_impact"].spec)}
    # No unknown versions: no unknown bars; 2 of 8 active sites run PHP below 8.4, all 8 WordPress below 7.0.
    assert list(impact) == [
        *(f"PHP {v}" for v in metrics.PHP_CANDIDATES),
        *(f"WordPress {v}" for v in metrics.WP_CANDIDATES),
    ]
    assert impact["PHP 8.4"]["share"] == 0.25 and impact["PHP 8.4"]["text"] == "25.0% (2)"
    assert impact["WordPress 7.0"]["share"] == 1.0 and impact["PHP 7.4"]["share"] == 0.0


def test_release_health_bars_are_the_versions_with_most_sites_and_their_rates():
    doc = {
        "hash": "h",
        "metric": "deactivation_rate_by_version",
        "day": "2025-03-31",
        "rates": {"2.1.0": 250.0, "2.0.0": 10.0, "other": 0.0},
        "breakdown": {"2.1.0": 2, "2.0.0": 1, "other": 0},
        "sites": {"2.1.0": 8, "2.0.0": 100, "other": 500},
    }
    (section,), _latest = report.sections({"h": {"hash": "h", "name": "x"}}, [doc])
    chart = {c.key: c for c in section.charts}["deactivation_rate_by_version"]
    assert "7 days to 2025-03-31" in chart.note
    # Most sites first, `other` last whatever its size.
    assert [(r["label"], r["rate"], r["events"], r["sites"]) for r in rows(chart.spec)] == [
        ("2.0.0", 10.0, 1, 100),
        ("2.1.0", 250.0, 2, 8),
        ("other", 0.0, 0, 500),
    ]


def test_the_retention_triangle_reads_each_cohort_week_from_the_day_it_was_that_many_weeks_old():
    def doc(day: str, cohorts: dict[str, tuple[int, int]]) -> dict:
        return {
            "hash": "h",
            "metric": "retention_weekly",
            "day": day,
            "rates": {k: n / sites for k, (n, sites) in cohorts.items()},
            "breakdown": {k: n for k, (n, _sites) in cohorts.items()},
            "sites": {k: sites for k, (_n, sites) in cohorts.items()},
        }

    # Latest day 2025-03-31. Cohort m=1 ends 2025-03-24: week 1 from 03-31. Cohort m=2 ends 2025-03-17:
    # week 1 from 03-24, week 2 from 03-31. The 03-31 document's label 3 belongs to cohort 3 (no 03-17/03-10 docs).
    docs = [doc("2025-03-31", {"1": (5, 10), "2": (3, 12), "3": (1, 4)}), doc("2025-03-24", {"1": (9, 12)})]
    (section,), _latest = report.sections({"h": {"hash": "h", "name": "x"}}, docs)
    cells = rows({c.key: c for c in section.charts}["retention_weekly"].spec)
    assert [(c["cohort"], c["week"], c["share"], c["retained"], c["sites"]) for c in cells] == [
        ("new 2025-03-18 to 2025-03-24", 1, 0.5, 5, 10),
        ("new 2025-03-11 to 2025-03-17", 1, 0.75, 9, 12),
        ("new 2025-03-11 to 2025-03-17", 2, 0.25, 3, 12),
        ("new 2025-03-04 to 2025-03-10", 3, 0.25, 1, 4),
    ]
