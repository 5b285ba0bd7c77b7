"""The analytics job against bqemulator and SecantusDB, on a small history whose
figures are worked out by hand below.

The pings are stored as ingest stores them, at receipt times of the test's
choosing, and go through the real pipelines (hour mode) into a BigQuery dataset
and a MongoDB database of this module's own; the job then runs on them.

The history, with a 3-day active window (days 1 to 4 are consecutive UTC days):
  site a  day 1 10:00 (WordPress 6.8.1) and 18:00 (6.9.0): the latest ping wins
  site b  day 1; deactivated day 2 (too-expensive): not active from day 2 on
  site c  day 1 only: falls out of the window on day 4
  site d  day 2 (new that day); day 2 also has two tracking-skipped pings
          asked for the first time and one asked again
  site e  day 1; deactivated day 2 09:00 (temporary) and pings again at 12:00:
          active again
  site f  day 3 10:00 (new, version 2.2.0), deactivated day 3 11:00: not active, 0 days old
  site g  day 3 (new), WordPress `latest` and PHP `PHP`: versions nobody can parse
Site d runs PHP 8.10.2, newer than 8.4 as numbers though not as strings.
The project whitelists the custom field `license`: a `pro`, b and c 101-character values
that share their first 100, d ` pro ` (blank around it), e none, f `pro`, g the number 3.
Hosting (the pipelines' lookup in geoip2fast's bundled data, docs/geo.md): a and c on
5.9.0.1 (DE, Hetzner), b and f on 51.15.0.1 (FR, Scaleway), d on 2606:4700::1111 (US,
Cloudflare), e sends no address, g a private one: neither has labels.
A week on, for retention: site a pings again on day 8, site d on day 9.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import functions_framework
import pytest

from telemetry.analytics import job as analytics
from telemetry.analytics import metrics, serving
from telemetry.common import cloud, mongo, stored_ping
from telemetry.common.projects import PROJECTS
from telemetry.common.stored_ping import StoredPing
from telemetry.pipelines import build, site_state, warehouse

ROOT = Path(__file__).resolve().parents[2]
WINDOW_DAYS = 3
TODAY = datetime.now(UTC).date()
DAY1 = TODAY - timedelta(days=10)
DAY2, DAY3, DAY4 = (DAY1 + timedelta(days=n) for n in (1, 2, 3))
DAY8, DAY9, DAY10 = (DAY1 + timedelta(days=n) for n in (7, 8, 9))


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def track(project: str, site: str, *, wp: str, php: str, db: str, server: str, plugins: list[str], **wp_fields) -> dict:
    body = {
        "hash": project,
        "url": f"https://{site}.example.org",
        "site": f"Site {site}",
        "admin_email": f"owner@{site}.example.org",
        "server": {"software": server, "php_version": php, "mysql_version": db},
        "wp": {
            "version": wp,
            "locale": wp_fields.get("locale", "en_US"),
            "multisite": wp_fields.get("multisite", "No"),
            "theme_slug": wp_fields.get("theme_slug", "astra"),
            "theme_name": wp_fields.get("theme_name", "Astra"),
        },
        "project_version": wp_fields.get("project_version", "2.0.0"),
        "plugins": {slug: {"name": slug.title(), "version": "1.0"} for slug in plugins},
        "client": "2.0.4",
    }
    if "ip_address" in wp_fields:
        body["ip_address"] = wp_fields["ip_address"]
    if "license" in wp_fields:
        body["extra"] = {"license": wp_fields["license"], "not_whitelisted": "dropped by the pipeline"}
    return body


LONG_VALUE = "x" * metrics.MAX_LABEL_CHARS


def deactivate(track_body: dict, reason: str) -> dict:
    body = copy.deepcopy(track_body)
    body["reason_id"] = reason
    return body


def history(project: str) -> list[tuple[str, datetime, dict]]:
    a1 = track(
        project, "a", wp="6.8.1", php="8.2.12", db="10.6.16-MariaDB", server="Apache/2.4.58 (Ubuntu)",
        plugins=["woocommerce", "akismet"], license="pro", ip_address="5.9.0.1",
    )  # fmt: skip
    a2 = track(
        project, "a", wp="6.9.0", php="8.3.1", db="10.6.16-MariaDB", server="Apache/2.4.58 (Ubuntu)",
        plugins=["woocommerce", "akismet", "yoast"], project_version="2.1.0", license="pro",
        ip_address="5.9.0.1",
    )  # fmt: skip
    b = track(
        project, "b", wp="6.8.3", php="8.2.1", db="5.5.5-10.11.6-MariaDB-0+deb12u1", server="nginx/1.24.0",
        plugins=["woocommerce"], locale="de_DE", license=f"{LONG_VALUE}-b",
        ip_address="51.15.0.1",
    )  # fmt: skip
    c = track(
        project, "c", wp="6.8.3", php="7.4.33", db="8.0.35", server="LiteSpeed", plugins=["akismet"],
        locale="ja", multisite="Yes", theme_name="", license=f"{LONG_VALUE}-c",
        ip_address="5.9.0.1",
    )  # fmt: skip
    d = track(
        project,
        "d",
        wp="7.0",
        php="8.10.2",
        db="11.4.2",
        server="nginx",
        plugins=["woocommerce"],
        license=" pro ",
        ip_address="2606:4700::1111",
    )
    e = track(project, "e", wp="6.9.0", php="8.3.1", db="8.0.36", server="Microsoft-IIS/10.0", plugins=[])
    f = track(
        project, "f", wp="6.9.1", php="8.3.0", db="8.0.36", server="nginx", plugins=[], project_version="2.2.0",
        license="pro", ip_address="51.15.0.1",
    )  # fmt: skip
    g = track(
        project, "g", wp="latest", php="PHP", db="8.0.36", server="nginx", plugins=[], license=3,
        ip_address="192.168.1.1",
    )  # fmt: skip
    skipped_new = {"hash": project, "previously_skipped": "false", "client": "2.0.4"}
    skipped_again = {"hash": project, "previously_skipped": "true", "client": "2.0.4"}
    return [
        ("track", at(DAY1, 10), a1),
        ("track", at(DAY1, 18), a2),
        ("track", at(DAY1, 11), b),
        ("track", at(DAY1, 12), c),
        ("track", at(DAY1, 13), e),
        ("deactivate", at(DAY2, 8), deactivate(b, "too-expensive")),
        ("deactivate", at(DAY2, 9), deactivate(e, "temporary_deactivation")),
        ("track", at(DAY2, 12), e),
        ("track", at(DAY2, 14), d),
        ("tracking-skipped", at(DAY2, 15), skipped_new),
        ("tracking-skipped", at(DAY2, 16), skipped_new),
        ("tracking-skipped", at(DAY2, 17), skipped_again),
        ("track", at(DAY3, 10), f),
        ("deactivate", at(DAY3, 11), deactivate(f, "temporary_deactivation")),
        ("track", at(DAY3, 12), g),
        ("track", at(DAY8, 10), a2),
        ("track", at(DAY9, 10), d),
    ]


def requirements(php: dict[str, int], wp: dict[str, int]) -> dict[str, int]:
    """requirements_impact's breakdown: every candidate (0 when none below it), unknown included."""
    counts = {label: 0 for label in metrics.requirement_labels()}
    counts.update({metrics.requirement_label(metrics.PHP, v): n for v, n in php.items()})
    counts.update({metrics.requirement_label(metrics.WORDPRESS, v): n for v, n in wp.items()})
    return counts


def release_health(versions: dict[str, tuple[int, int]]) -> dict:
    """deactivation_rate_by_version's document parts from (sites deactivated in the window, sites) per version."""
    return {
        "rates": {v: 1000 * left / sites for v, (left, sites) in versions.items()},
        "breakdown": {v: left for v, (left, _sites) in versions.items()},
        "sites": {v: sites for v, (_left, sites) in versions.items()},
    }


LICENSE = metrics.custom_field("license").name
# A custom field's value is named from this many sites (metrics.MIN_LABEL_SITES in production).
MIN_LABEL_SITES = 2

# What the definitions give, worked out by hand from the history above.
EXPECTED = {
    DAY1: {
        "active_sites": 4,  # a b c e
        "new_sites": 4,
        "deactivations": 0,
        "opt_in_rate": 1.0,  # 4 / (4 + 0)
        "deactivation_reasons": {},
        "wp_version": {"6.9": 2, "6.8": 2},  # a's latest ping says 6.9
        "php_version": {"8.3": 2, "8.2": 1, "7.4": 1},
        "mysql_version": {"MariaDB 10.6": 1, "MariaDB 10.11": 1, "MySQL 8.0": 2},
        "server_software": {"Apache": 1, "nginx": 1, "LiteSpeed": 1, "other": 1},
        "locale": {"en_US": 2, "de_DE": 1, "ja": 1},
        "multisite": {"no": 3, "yes": 1},
        "theme": {"Astra": 3, "astra": 1},  # c sends no theme name: its slug
        "project_version": {"2.0.0": 3, "2.1.0": 1},
        "plugins": {"woocommerce": 2, "akismet": 2, "yoast": 1},
        "install_age_at_deactivation": {},
        # Active: a (WP 6.9, PHP 8.3), b (6.8, 8.2), c (6.8, 7.4), e (6.9, 8.3).
        # PHP 8.0, 8.1 and 8.2 strand c; 8.3 strands b and c; 8.4 all four.
        # WordPress 6.9 strands b and c; 7.0 all four; 6.4 to 6.8 none.
        "requirements_impact": requirements(
            php={"8.0": 1, "8.1": 1, "8.2": 1, "8.3": 2, "8.4": 4}, wp={"6.9": 2, "7.0": 4}
        ),
        # Sites that ran each version: the active ones; no deactivation yet.
        "deactivation_rate_by_version": release_health({"2.1.0": (0, 1), "2.0.0": (0, 3)}),
        # a pro, b and c the same first 100 characters, e none. With MIN_LABEL_SITES 2 in this
        # module, pro (1 site) is not named.
        LICENSE: {LONG_VALUE: 2, "other": 1, "unknown": 1},
        "country": {"DE": 2, "FR": 1, "unknown": 1},  # a c; b; e
        "hosting": {"Hetzner": 2, "Scaleway": 1, "unknown": 1},
    },
    DAY2: {
        "active_sites": 4,  # a c d e: b is deactivated, e pinged after its deactivation
        "new_sites": 1,  # d
        "deactivations": 2,
        "opt_in_rate": 1 / 3,  # 1 / (1 + 2): the ping asked again does not count
        "deactivation_reasons": {"too-expensive": 1, "temporary_deactivation": 1},
        "mysql_version": {"MariaDB 10.6": 1, "MySQL 8.0": 2, "MariaDB 11.4": 1},
        "plugins": {"woocommerce": 2, "akismet": 2, "yoast": 1},
        # b and e were first seen on day 1: deactivated 1 day later.
        "install_age_at_deactivation": {"1-7 days": 2},
        # 2.0.0 ran on b c d e (b deactivated, e deactivated and active again): 2 of 4 left, 500 per 1,000.
        "deactivation_rate_by_version": release_health({"2.1.0": (0, 1), "2.0.0": (2, 4)}),
        LICENSE: {"pro": 2, "other": 1, "unknown": 1},  # a, d (trimmed); c alone; e
        "country": {"DE": 2, "US": 1, "unknown": 1},  # a c; d; e
        "hosting": {"Hetzner": 2, "Cloudflare": 1, "unknown": 1},
    },
    DAY3: {
        "active_sites": 5,  # a c d e g: f deactivated after its only ping
        "new_sites": 2,  # f g
        "deactivations": 1,  # f
        "opt_in_rate": 1.0,  # 2 / (2 + 0)
        "install_age_at_deactivation": {"under 1 day": 1},  # f: first seen and deactivated on day 3
        # 2.0.0: b and e left within 7 days, of b c d e g; 2.2.0: f, its only site, left.
        "deactivation_rate_by_version": release_health({"2.1.0": (0, 1), "2.0.0": (2, 5), "2.2.0": (1, 1)}),
        LICENSE: {"pro": 2, "other": 2, "unknown": 1},  # a d; c, g (3); e. f is not active.
        "country": {"DE": 2, "US": 1, "unknown": 2},  # a c; d; e g
        "hosting": {"Hetzner": 2, "Cloudflare": 1, "unknown": 2},
    },
    DAY4: {
        "active_sites": 3,  # d e g; a and c were last seen on day 1, out of the window
        "new_sites": 0,
        "deactivations": 0,
        "wp_version": {"6.9": 1, "7.0": 1, "unknown": 1},
        "php_version": {"8.10": 1, "8.3": 1, "unknown": 1},
        "install_age_at_deactivation": {},
        # Active: d (WP 7.0, PHP 8.10), e (6.9, 8.3), g (unparsable both).
        # PHP 8.4 strands e only (8.10 is not below 8.4); WordPress 7.0 strands e.
        "requirements_impact": requirements(php={"8.4": 1, "unknown": 1}, wp={"7.0": 1, "unknown": 1}),
        # a is no longer active and left no deactivation: 2.1.0 is gone. b's deactivation on day 2
        # is still within the 7 days: 2.0.0 ran on b d e g.
        "deactivation_rate_by_version": release_health({"2.0.0": (2, 4), "2.2.0": (1, 1)}),
        LICENSE: {"other": 2, "unknown": 1},  # d alone, g alone; e
        "country": {"US": 1, "unknown": 2},  # d; e g
        "hosting": {"Cloudflare": 1, "unknown": 2},
    },
}


@pytest.fixture(scope="module")
def setup():
    """A dataset and a database of this module's own, with the pipelines' history in them."""
    name = f"analytics_test_{uuid.uuid4().hex[:8]}"
    environ = {**os.environ, "BQ_DATASET": name, "MONGODB_DB": name, "ACTIVE_WINDOW_DAYS": str(WINDOW_DAYS)}
    settings = dataclasses.replace(analytics.AnalyticsSettings.from_env(environ), min_label_sites=MIN_LABEL_SITES)
    client = cloud.bigquery_client(settings.project)
    warehouse.ensure_tables(client, name)
    db = mongo.database(settings.mongodb_uri, name)
    site_state.ensure_indexes(db)
    project = uuid.uuid4().hex
    db[PROJECTS].insert_one(
        {
            "hash": project,
            "name": "Analytics test",
            "type": "plugin",
            "custom_fields": ["license"],
            "mail_integrations": {},
        }
    )
    bucket = cloud.storage_client(settings.project).bucket(os.environ["TRACKING_BUCKET"])
    for route, received_at, body in history(project):
        ping = StoredPing(id=str(uuid.uuid4()), route=route, received_at=received_at, payload=body)
        bucket.blob(ping.object_name).upload_from_string(ping.to_json(), content_type=stored_ping.CONTENT_TYPE)
    hours = ["--hour", f"{DAY1.isoformat()}T00", "--hour_to", f"{DAY9.isoformat()}T23"]
    for pipeline in ("tracking", "deactivation"):
        build.run([pipeline, "--runner", build.LOCAL_RUNNER, "--bq_dataset", name, "--mongodb_db", name, *hours])
    job = analytics.AnalyticsJob(client, db, settings)
    job.ensure_tables()
    yield job, project
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)
    db.client.drop_database(name)
    db.client.close()


def served(job: analytics.AnalyticsJob, project: str) -> dict:
    documents = job.db[metrics.COLLECTION].find({"hash": project}, {"_id": 0})
    return {(doc["day"], doc["metric"]): figure(doc) for doc in documents}


def figure(doc: dict):
    if "rates" in doc:
        return {part: doc[part] for part in ("rates", "breakdown", "sites")}
    return doc.get("value", doc.get("breakdown"))


def warehouse_rows(job: analytics.AnalyticsJob) -> list[tuple]:
    sql = f"SELECT * FROM `{job.qualified}.analytics_daily`"
    rows = [dict(row) for row in job.client.query(sql).result()]
    return sorted((r["day"], r["hash"], r["metric"], r["value"], repr(r["breakdown"])) for r in rows)


def test_figures_are_the_ones_the_definitions_give(setup):
    job, project = setup
    summary = job.run(at(DAY4, 15))
    assert summary.days == [DAY1, DAY2, DAY3, DAY4]
    figures = served(job, project)
    for day, expected in EXPECTED.items():
        for metric, value in expected.items():
            got = figures[(day.isoformat(), metric)]
            if isinstance(value, float):
                assert got == pytest.approx(value), (day, metric)
            else:
                assert got == value, (day, metric)
    # Every metric, every day, for the project.
    for day in (DAY1, DAY2, DAY3, DAY4):
        assert {*(metric.name for metric in metrics.METRICS), LICENSE} == {
            m for d, m in figures if d == day.isoformat()
        }


def test_serving_copy_and_warehouse_hold_the_same_figures(setup):
    job, project = setup
    job.run(at(DAY4, 15))
    sql = f"SELECT * FROM `{job.qualified}.analytics_daily` WHERE hash = '{project}'"
    from_warehouse = sorted(
        (serving.document(row["day"], row) for row in job.client.query(sql).result()),
        key=lambda d: (d["day"], d["metric"]),
    )
    in_mongodb = job.db[metrics.COLLECTION].find({"hash": project}, {"_id": 0}).sort([("day", 1), ("metric", 1)])
    assert from_warehouse == list(in_mongodb)
    assert len(from_warehouse) == 4 * (len(metrics.METRICS) + 1)  # and the custom field


def test_a_rerun_and_a_rerun_of_a_past_day_change_nothing(setup):
    job, project = setup
    job.run(at(DAY4, 15))
    before = (served(job, project), warehouse_rows(job))
    job.run(at(DAY4, 15))
    job.run(at(DAY4, 15), since=DAY2)
    assert (served(job, project), warehouse_rows(job)) == before
    job.run(at(DAY4, 15), full=True)
    assert (served(job, project), warehouse_rows(job)) == before


def test_a_run_reads_only_the_open_days(setup):
    job, _project = setup
    job.run(at(DAY4, 15), full=True)
    # Six hours after day 3 ended it closed; day 4 is still open.
    assert job.final_through() == DAY3
    assert job.run(at(DAY4, 16)).days == [DAY4]
    # Six hours into day 5, day 4 is still open: a late ping can still land in it.
    assert job.run(at(DAY4 + timedelta(days=1), 5)).days == [DAY4, DAY4 + timedelta(days=1)]
    assert job.final_through() == DAY3


def test_a_run_that_fails_halfway_leaves_the_served_figures_in_place(setup, monkeypatch):
    job, project = setup
    job.run(at(DAY4, 15), full=True)
    before = served(job, project)
    # The figures' statement fails after the state of the day has been written
    # (a broken statement stands in for BigQuery failing at that moment).
    real = analytics.statement

    def failing(step: str, dataset: str) -> str:
        return "SELECT ERROR('injected failure')" if step == "analytics_daily" else real(step, dataset)

    monkeypatch.setattr(analytics, "statement", failing)
    with pytest.raises(Exception, match="injected failure"):
        job.run(at(DAY4, 15), since=DAY1)
    assert served(job, project) == before
    monkeypatch.setattr(analytics, "statement", real)
    job.run(at(DAY4, 15), since=DAY1)
    assert served(job, project) == before


def test_the_cloud_function_runs_the_job_and_answers_json(setup, monkeypatch):
    job, project = setup
    monkeypatch.setenv("BQ_DATASET", job.settings.dataset)
    monkeypatch.setenv("MONGODB_DB", job.settings.mongodb_db)
    monkeypatch.setenv("ACTIVE_WINDOW_DAYS", str(WINDOW_DAYS))
    app = functions_framework.create_app(target="analytics", source=str(ROOT / "functions" / "analytics" / "main.py"))
    client = app.test_client()

    answer = client.post("/", json={"since": DAY1.isoformat()})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["first_day"] == DAY1.isoformat()
    assert answer.get_json()["last_day"] == TODAY.isoformat()
    assert served(job, project)[(DAY2.isoformat(), "new_sites")] == 1

    answer = client.post("/", json={"since": "yesterday"})
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_since"

    monkeypatch.setenv("BQ_DATASET", "no_such_dataset")
    answer = client.post("/")
    assert answer.status_code == 500
    assert answer.get_json() == {"error": "run_failed"}


def test_state_older_than_kept_is_deleted_and_since_cannot_reach_past_it(setup):
    job, _project = setup
    old_day = TODAY - timedelta(days=analytics.STATE_DAYS + 30)
    job.client.query(
        f"INSERT INTO `{job.qualified}.site_days` (day, hash, url, days_seen_bits) "
        f"VALUES (DATE '{old_day.isoformat()}', 'stale', 'https://stale.example.org', 1)"
    ).result()
    job.run(at(DAY4, 15), since=DAY1)
    rows = job.client.query(f"SELECT COUNT(*) AS n FROM `{job.qualified}.site_days` WHERE hash = 'stale'").result()
    assert next(iter(rows))["n"] == 0
    # Fifty days on, day 2's previous day is no longer kept; day 1 starts the history, so it needs none.
    later = at(DAY1 + timedelta(days=50), 12)
    with pytest.raises(analytics.SinceTooOld, match="--full"):
        job.run(later, since=DAY2)


def test_weekly_retention_is_the_share_of_each_rolling_cohort_active_that_day(setup):
    """Cohort k of day D: the sites first seen 7k to 7k+6 days before D; retained: those active on D
    (3-day window). Only k = 1 has sites this early in the history.

      day 8: cohort 1 = first seen by day 1: a b c e; active (seen days 6-8): a        -> 1/4
      day 9: cohort 1 = first seen days 1-2: a b c e d; active (days 7-9): a d        -> 2/5
      day 10: cohort 1 = first seen days 1-3: a b c d e f g; active (days 8-10): a d -> 2/7
      days 1 to 7: no site is 7 days old yet, so nothing.
    """
    job, project = setup
    job.run(at(DAY10, 15), full=True)
    figures = served(job, project)
    expected = {DAY8: (1, 4), DAY9: (2, 5), DAY10: (2, 7)}
    for day, (retained, sites) in expected.items():
        assert figures[(day.isoformat(), "retention_weekly")] == {
            "rates": {"1": retained / sites},
            "breakdown": {"1": retained},
            "sites": {"1": sites},
        }, day
    for day in analytics.days_between(DAY1, DAY8 - timedelta(days=1)):
        assert figures[(day.isoformat(), "retention_weekly")] == {"rates": {}, "breakdown": {}, "sites": {}}
    before = (served(job, project), warehouse_rows(job))
    job.run(at(DAY10, 15), since=DAY8)
    assert (served(job, project), warehouse_rows(job)) == before


def test_a_custom_field_keeps_at_most_max_labels_labels(setup):
    """Day 3's `license` by sites: pro 2 (a d), then 3, the long value and unknown 1 each. With
    one label kept, pro stays and the other three are summed as `other`."""
    job, project = setup
    narrow = analytics.AnalyticsJob(job.client, job.db, dataclasses.replace(job.settings, max_labels=1))
    narrow.run(at(DAY4, 15), since=DAY3)
    assert served(job, project)[(DAY3.isoformat(), LICENSE)] == {"pro": 2, "other": 3}
    job.run(at(DAY4, 15), since=DAY3)
    assert served(job, project)[(DAY3.isoformat(), LICENSE)] == EXPECTED[DAY3][LICENSE]
