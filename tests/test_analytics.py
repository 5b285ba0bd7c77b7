"""Pure parts of the analytics job and its serving copy."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from telemetry.analytics import job, metrics, serving


def test_a_day_is_final_once_the_settle_hours_after_it_have_passed():
    assert job.last_final_day(datetime(2026, 11, 23, 6, tzinfo=UTC), 6) == date(2026, 11, 22)
    assert job.last_final_day(datetime(2026, 11, 23, 5, 59, tzinfo=UTC), 6) == date(2026, 11, 21)
    assert job.last_final_day(datetime(2026, 11, 23, 0, tzinfo=UTC), 0) == date(2026, 11, 22)


def test_days_between_is_inclusive():
    assert job.days_between(date(2026, 2, 27), date(2026, 3, 1)) == [
        date(2026, 2, 27),
        date(2026, 2, 28),
        date(2026, 3, 1),
    ]
    assert job.days_between(date(2026, 3, 2), date(2026, 3, 1)) == []


def test_statements_qualify_tables_and_carry_no_comments():
    for step in job.DAY_STEPS:
        sql = job.statement(step, "p.d")
        assert "{dataset}" not in sql
        assert "`p.d." in sql
        assert not [line for line in sql.splitlines() if line.lstrip().startswith("--")]


def test_the_figures_statement_emits_every_metric_and_no_other():
    sql = (job.SQL_DIR / "analytics_daily.sql").read_text()
    named = set(re.findall(r"'([a-z_]+)'", sql)) & {m.name for m in metrics.METRICS}
    assert named == {m.name for m in metrics.METRICS}


def test_window_is_bounded_by_the_bits_kept():
    environ = {"ACTIVE_WINDOW_DAYS": "63", "MONGODB_URI": "mongodb://x"}
    with pytest.raises(ValueError, match="ACTIVE_WINDOW_DAYS must be at most 62"):
        job.AnalyticsSettings.from_env(environ)
    with pytest.raises(ValueError, match="ACTIVE_WINDOW_DAYS must be at least 1"):
        job.AnalyticsSettings.from_env({**environ, "ACTIVE_WINDOW_DAYS": "0"})


def test_serving_documents_have_the_contract_shape():
    day = date(2026, 11, 22)
    assert serving.document(day, {"hash": "h", "metric": "active_sites", "value": 3.0, "breakdown": []}) == {
        "hash": "h",
        "metric": "active_sites",
        "day": "2026-11-22",
        "value": 3,
    }
    assert (
        serving.document(day, {"hash": "h", "metric": "opt_in_rate", "value": None, "breakdown": []})["value"] is None
    )
    breakdown = [{"label": "7.1", "count": 5}, {"label": "$where", "count": 1}]
    assert serving.document(day, {"hash": "h", "metric": "wp_version", "value": None, "breakdown": breakdown})[
        "breakdown"
    ] == {"7.1": 5, "\uff04where": 1}


def test_labels_that_cannot_be_field_names_get_look_alikes():
    assert serving.field_name("$where") == "\uff04where"
    assert serving.field_name("a\x00b") == "a\ufffdb"
    assert serving.field_name("10.6") == "10.6"
    assert serving.field_name("a$b") == "a$b"


def test_a_mongodb_uri_mounted_with_its_trailing_newline_still_works():
    settings = job.AnalyticsSettings.from_env({"MONGODB_URI": "mongodb://db.example.org:27017\n"})
    assert settings.mongodb_uri == "mongodb://db.example.org:27017"


def test_the_install_age_buckets_are_the_ones_the_statement_gives():
    sql = (job.SQL_DIR / "analytics_daily.sql").read_text()
    case = sql[sql.index("'install_age_at_deactivation',") :]
    case = case[: case.index("END")]
    assert tuple(re.findall(r"(?:THEN|ELSE) '([^']+)'", case)) == metrics.INSTALL_AGE_BUCKETS


def test_requirement_candidates_are_major_minor_oldest_first_and_labelled_with_unknown():
    for candidates in (metrics.PHP_CANDIDATES, metrics.WP_CANDIDATES):
        numbers = [tuple(int(part) for part in version.split(".")) for version in candidates]
        assert all(len(n) == 2 for n in numbers)
        assert numbers == sorted(numbers)
    labels = metrics.requirement_labels()
    assert labels[: len(metrics.PHP_CANDIDATES) + 1] == (
        "PHP 7.4", "PHP 8.0", "PHP 8.1", "PHP 8.2", "PHP 8.3", "PHP 8.4", "PHP unknown",
    )  # fmt: skip
    assert labels[-1] == "WordPress unknown"


def test_a_rates_row_is_served_as_rates_per_thousand_with_its_counts():
    day = date(2026, 11, 22)
    entries = [
        {"label": "sites:2.1.0", "count": 8},
        {"label": "events:2.1.0", "count": 2},
        {"label": "sites:1.0:beta", "count": 3},
        {"label": "events:1.0:beta", "count": 0},
    ]
    row = {"hash": "h", "metric": "deactivation_rate_by_version", "value": None, "breakdown": entries}
    assert serving.document(day, row) == {
        "hash": "h",
        "metric": "deactivation_rate_by_version",
        "day": "2026-11-22",
        "rates": {"2.1.0": 250.0, "1.0:beta": 0.0},  # 1000 * 2 / 8; a version may hold a colon
        "breakdown": {"2.1.0": 2, "1.0:beta": 0},
        "sites": {"2.1.0": 8, "1.0:beta": 3},
    }


def test_a_custom_field_metric_is_named_by_its_key_and_served_as_a_breakdown():
    assert metrics.named("custom_field:license_type") == metrics.custom_field("license_type")
    assert metrics.named("custom_field:license_type").kind is metrics.Kind.BREAKDOWN
    assert metrics.named("wp_version") is metrics.WP_VERSION
    for name in ("custom_field:", "custom_fields:x", "nope"):
        assert not metrics.is_name(name)
        with pytest.raises(KeyError):
            metrics.named(name)
    pattern = re.compile(metrics.NAME_PATTERN)
    assert all(pattern.match(name) for name in (*metrics.BY_NAME, "custom_field:orders_count"))
    assert not pattern.match("custom_field:") and not pattern.match("wp_version2")
    row = {"hash": "h", "metric": "custom_field:plan", "value": None, "breakdown": [{"label": "pro", "count": 7}]}
    assert serving.document(date(2026, 11, 22), row) == {
        "hash": "h",
        "metric": "custom_field:plan",
        "day": "2026-11-22",
        "breakdown": {"pro": 7},
    }
