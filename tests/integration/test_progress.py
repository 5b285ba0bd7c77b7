"""The long local steps say how far they have got: a pipeline backfill counts its hours
listed and objects fetched, the analytics job its days computed (telemetry/common/progress.py).

Small runs on a dataset and a database of this module's own; the test process writes
to no terminal, so the progress comes as count lines, read here from the log records.
"""

from __future__ import annotations

import logging
import os
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from telemetry.analytics import job as analytics
from telemetry.common import cloud, mongo, progress, stored_ping
from telemetry.common.projects import project_document, save_project
from telemetry.common.stored_ping import StoredPing
from telemetry.local import samples
from telemetry.pipelines import build, site_state, warehouse

pytestmark = pytest.mark.integration

# Two hours of their own, long past: no other test writes there.
FIRST_HOUR = datetime(2011, 3, 1, tzinfo=UTC) + timedelta(hours=uuid.uuid4().int % 20_000)


@pytest.fixture(scope="module")
def own():
    """(dataset and database name, project hash), dropped afterwards."""
    name = f"progress_test_{uuid.uuid4().hex[:8]}"
    client = cloud.bigquery_client(os.environ["GCP_PROJECT"])
    warehouse.ensure_tables(client, name)
    db = mongo.database(os.environ["MONGODB_URI"], name)
    site_state.ensure_indexes(db)
    project = uuid.uuid4().hex
    save_project(db, project_document(project, "Progress test"))
    yield name, project, client, db
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)
    db.client.drop_database(name)
    db.client.close()


def progress_lines(caplog, step: str) -> list[dict]:
    return [r.progress for r in caplog.records if r.name == progress.LOGGER and r.progress["step"] == step]


def test_a_backfill_reports_hours_listed_and_objects_fetched_out_of_their_totals(own, caplog):
    name, project, _, _ = own
    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    bucket = cloud.storage_client(os.environ["GCP_PROJECT"]).bucket(os.environ["TRACKING_BUCKET"])
    rng = random.Random(3)
    written = 0
    for hour in (FIRST_HOUR, FIRST_HOUR + timedelta(hours=1)):
        for site in range(3):
            ping = StoredPing(
                id=str(uuid.uuid4()),
                route="track",
                received_at=hour + timedelta(minutes=10 + site),
                payload=samples.track_payload(rng, project, site),
            )
            bucket.blob(ping.object_name).upload_from_string(ping.to_json(), content_type=stored_ping.CONTENT_TYPE)
            written += 1
    hours = ["--hour", f"{FIRST_HOUR:%Y-%m-%dT%H}", "--hour_to", f"{FIRST_HOUR + timedelta(hours=1):%Y-%m-%dT%H}"]
    pipeline, result, waited = build.run(
        ["tracking", "--runner", build.LOCAL_RUNNER, "--bq_dataset", name, "--mongodb_db", name, *hours]
    )
    assert waited and build.report_from_metrics(pipeline, result)["routes"]["track"]["objects_read"] == written

    listed = progress_lines(caplog, "tracking: listed")
    routes = len(pipeline.routes)  # track and tracking-skipped: each lists both hours
    assert listed and listed[-1]["done"] == listed[-1]["total"] == 2 * routes
    assert all(line["unit"] == "hours" for line in listed)
    fetched = progress_lines(caplog, "tracking: fetched")
    assert fetched and fetched[-1]["done"] == fetched[-1]["total"] == written
    assert [line["done"] for line in fetched] == sorted(line["done"] for line in fetched)


def test_the_analytics_job_reports_days_computed_out_of_the_days_to_compute(own, caplog):
    name, _, client, db = own
    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    environ = {**os.environ, "BQ_DATASET": name, "MONGODB_DB": name}
    job = analytics.AnalyticsJob(client, db, analytics.AnalyticsSettings.from_env(environ))
    job.ensure_tables()
    now = datetime.now(UTC)
    summary = job.run(now, since=now.date() - timedelta(days=2))
    assert len(summary.days) == 3

    days = progress_lines(caplog, "analytics: computed")
    assert [(line["done"], line["total"], line["unit"]) for line in days] == [
        (1, 3, "days"),
        (2, 3, "days"),
        (3, 3, "days"),
    ]
