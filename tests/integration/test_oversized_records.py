"""Oversized and hostile records never stop a run (the BigQuery write path: warehouse.py).

Hundreds of maximal hostile pings (form bodies of `%01` values at ingest's
MAX_BODY_BYTES, with and without a project's hash) go in through the running
ingest ($INGEST_URL) among legitimate ones; both pipelines run, in notification
mode and then in hour mode over the same hours. Each run finishes and balances,
every legitimate ping is in history once, every hostile one in `rejected` once
with its payload cut and marked. Their `rejected` rows alone are more than the 10 MB
that one `insertAll` request may carry, which failed every run before load jobs.

bqemulator ignores a load job's `max_bad_records` (it fails the whole load on a
bad row, where BigQuery skips up to that many and lists them in `job.errors`), and
no row our code stages is one BigQuery would refuse. So the test of refused rows
stands in for BigQuery's skip, and only for it: after the real load job into the
real staging table, it deletes the chosen rows and reports them as BigQuery does.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import requests

from telemetry.common import cloud, config, stored_ping
from telemetry.local import samples
from telemetry.pipelines import build, reconciliation, records, warehouse
from tests.integration.test_pipelines import FORM, bq_rows, new_project, post, run, run_both

INSERT_ALL_REQUEST_BYTES = 10_485_760  # BigQuery's limit of one insertAll request


def hostile_body(project_hash: str, route: str, index: int) -> str:
    """A form body as large as ingest takes, nearly all `%01` values (each 3 bytes sent, 6 as JSON text).

    With a project's hash, a field whose value cannot be cast sets it aside (track:
    `active_plugins`, invalid_value; deactivate: `reason_id`, invalid_reason); without,
    unknown_project does."""
    max_body = config.get_int("MAX_BODY_BYTES")
    max_value = config.get_int("MAX_VALUE_CHARS")
    bad_field = "active_plugins" if route == "track" else "reason_id"
    body = f"hash={project_hash}&url=https%3A%2F%2Fhostile-{index}.example.org&{bad_field}=" + "%01" * 64
    key = 0
    while True:
        room = max_body - len(body) - len(f"&x{key}=")
        chars = min(max_value, room // 3)
        if chars <= 0:
            return body
        body += f"&x{key}=" + "%01" * chars
        key += 1


def post_hostile(ingest_url: str, route: str, body: str) -> str:
    response = requests.post(ingest_url + route, data=body, headers=FORM, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _hours(started: datetime) -> list[str]:
    first, last = started.strftime("%Y-%m-%dT%H"), datetime.now(UTC).strftime("%Y-%m-%dT%H")
    return ["--hour", first] + (["--hour_to", last] if last != first else [])


def test_hundreds_of_maximal_hostile_pings_never_stop_a_run_and_every_legitimate_one_lands(ingest_url, db, bq):
    rng = random.Random(14)
    project = new_project(db)
    stranger = uuid.uuid4().hex  # no project has it
    started = datetime.now(UTC)
    hostile = [("track", project)] * 80 + [("track", stranger)] * 80
    hostile += [("deactivate", project)] * 30 + [("deactivate", stranger)] * 30
    bodies = [(route, hostile_body(h, route, i)) for i, (route, h) in enumerate(hostile)]
    assert all(len(body) > config.get_int("MAX_BODY_BYTES") - 100 for _, body in bodies)
    with ThreadPoolExecutor(4) as pool:
        hostile_ids = list(pool.map(lambda rb: (rb[0], post_hostile(ingest_url, *rb)), bodies))
    legit = {"track": [], "deactivate": [], "tracking-skipped": []}
    for site in range(30):
        legit["track"].append(post(ingest_url, "track", samples.track_payload(rng, project, site)))
    for site in range(10):
        legit["deactivate"].append(post(ingest_url, "deactivate", samples.deactivate_payload(rng, project, site)))
    for _ in range(5):
        legit["tracking-skipped"].append(
            post(ingest_url, "tracking-skipped", samples.tracking_skipped_payload(rng, project))
        )

    first = run_both()  # notification mode; `run` asserts that each report balances
    hour_mode = run_both(*_hours(started))  # the same objects again: all duplicates
    for reports in (first, hour_mode):
        assert reports["tracking"]["routes"]["track"]["objects_read"] >= 160 + 30
        assert reports["deactivation"]["routes"]["deactivate"]["objects_read"] >= 60 + 10

    quoted = ", ".join(f"'{h}'" for h in (project, stranger))
    assert sorted(r["ping_id"] for r in bq_rows(bq, "sites", f"hash = '{project}' AND status = 'active'")) == sorted(
        legit["track"]
    )
    assert sorted(r["ping_id"] for r in bq_rows(bq, "deactivations", f"hash = '{project}'")) == sorted(
        legit["deactivate"]
    )
    assert sorted(r["ping_id"] for r in bq_rows(bq, "tracking_skipped", f"hash = '{project}'")) == sorted(
        legit["tracking-skipped"]
    )
    rejected = bq_rows(bq, "rejected", f"hash IN ({quoted})")
    by_id = {r["source"].rsplit("/", 1)[1].removesuffix(stored_ping.SUFFIX): r for r in rejected}
    assert len(rejected) == len(by_id) == len(hostile_ids)  # each hostile ping once, no other
    for (route, ping_id), (_, project_hash) in zip(hostile_ids, hostile, strict=True):
        row = by_id[ping_id]
        expected = (
            records.UNKNOWN_PROJECT
            if project_hash == stranger
            else (records.INVALID_VALUE if route == "track" else records.INVALID_REASON)
        )
        assert (row["route"], row["reason"], row["hash"]) == (route, expected, project_hash)
        assert row["payload_truncated"] is True
        assert len(row["payload"].encode()) <= records.MAX_REJECTED_PAYLOAD_BYTES
        assert row["payload"].startswith('{"') and "\\u0001" in row["payload"]
    staged_bytes = sum(
        len(warehouse.staging_line(records.bigquery_row(r, warehouse.columns("rejected")))) for r in rejected
    )
    assert staged_bytes > INSERT_ALL_REQUEST_BYTES  # more than one insertAll request could carry


def test_a_row_over_the_row_bound_is_set_aside_before_staging(bucket, db, bq, monkeypatch):
    """A ping whose `sites` row is over warehouse.MAX_ROW_BYTES (lowered here: no ping within
    ingest's limits comes near the real bound) -> `rejected` as row_too_large, whole: neither
    its deactivation nor its site row is written; its `rejected` row, over the bound too,
    without its payload. The others land, the runs balance."""
    from tests.integration.test_pipelines import put_ping

    monkeypatch.setattr(warehouse, "MAX_ROW_BYTES", 8_000)
    project = new_project(db)
    hour = past_hour()
    site = {"hash": project, "url": "https://large.example.org"}
    large_track = put_ping(bucket, "track", hour, {**site, "site": "é" * 5_000})
    large_deactivation = put_ping(bucket, "deactivate", hour, {**site, "site": "é" * 5_000, "reason_id": "other"})
    small = put_ping(bucket, "track", hour, {**site, "url": "https://small.example.org", "site": "Small"})
    args = ("--hour", hour.strftime("%Y-%m-%dT%H"))
    reports = run_both(*args)
    assert reports["tracking"]["routes"]["track"]["rejected"] >= 1

    rejected = {r["source"]: r for r in bq_rows(bq, "rejected", f"hash = '{project}'")}
    assert set(rejected) == {large_track, large_deactivation}
    for row in rejected.values():
        assert row["reason"] == records.ROW_TOO_LARGE
        assert " row is " in row["detail"] and "over the 8000" in row["detail"]
        assert row["payload"] is None and row["payload_truncated"] is True  # over the lowered bound too
    assert [r["ping_id"] for r in bq_rows(bq, "sites", f"hash = '{project}'")] == [stored_ping_id(small)]
    assert bq_rows(bq, "deactivations", f"hash = '{project}'") == []


def past_hour() -> datetime:
    """An hour of its own, within BigQuery's window: nothing else is in it."""
    moment = datetime.now(UTC) - timedelta(days=random.randint(40, 300), hours=random.randint(0, 23))
    return moment.replace(minute=0, second=0, microsecond=0)


def stored_ping_id(name: str) -> str:
    return name.rsplit("/", 1)[1].removesuffix(stored_ping.SUFFIX)


def test_rows_a_load_job_refuses_are_set_aside_and_the_run_completes(bucket, db, bq, monkeypatch):
    """BigQuery skips up to max_bad_records bad rows and lists them in job.errors; the run
    sets each aside in `rejected` with BigQuery's error (a history row as its ping's
    `bigquery_refused` rejection; a `rejected` row again without its payload) and balances.
    The skip itself is the stand-in (see the module docstring)."""
    from tests.integration.test_pipelines import put_ping

    project = new_project(db)
    hour = past_hour()
    site = {"hash": project, "url": "https://refused.example.org"}
    refused_track = put_ping(bucket, "track", hour, site)
    kept_track = put_ping(bucket, "track", hour, {**site, "url": "https://kept.example.org"})
    refused_rejection = put_ping(bucket, "track", hour, {**site, "users": {"total": "many"}})  # invalid_value
    refuse = {"sites": ("ping_id", stored_ping_id(refused_track)), "rejected": ("source", refused_rejection)}
    real_wait = warehouse.HistoryWriter._wait

    def skip_like_bigquery(self, job):
        real_wait(self, job)
        table = self.table.name
        if table in refuse and job.source_uris[0].endswith("*"):  # the run's load, not the reload
            column, value = refuse[table]
            bq.query(f"DELETE FROM `{self.staging}` WHERE {column} = '{value}'").result()
            job._properties.setdefault("status", {})["errors"] = [
                {"reason": "invalid", "location": job.source_uris[0], "message": f"stand-in: refused {value}"}
            ]

    monkeypatch.setattr(warehouse.HistoryWriter, "_wait", skip_like_bigquery)
    report = run("tracking", "--hour", hour.strftime("%Y-%m-%dT%H"))
    assert report["routes"]["track"]["rejected"] >= 2

    assert [r["ping_id"] for r in bq_rows(bq, "sites", f"hash = '{project}'")] == [stored_ping_id(kept_track)]
    rejected = {r["source"]: r for r in bq_rows(bq, "rejected", f"hash = '{project}'")}
    assert set(rejected) == {refused_track, refused_rejection}
    as_refused = rejected[refused_track]
    assert as_refused["reason"] == records.BIGQUERY_REFUSED and as_refused["route"] == "track"
    assert as_refused["detail"].startswith("BigQuery refused its sites row: invalid: stand-in: refused")
    assert json.loads(as_refused["payload"]) == {"hash": project}
    reloaded = rejected[refused_rejection]
    assert reloaded["reason"] == records.INVALID_VALUE  # its own reason kept
    assert reloaded["payload"] is None and reloaded["payload_truncated"] is True
    assert "BigQuery refused its rejected row" in reloaded["detail"] and "users[total]" in reloaded["detail"]

    monkeypatch.undo()
    again = run("tracking", "--hour", hour.strftime("%Y-%m-%dT%H"))  # balances; BigQuery now takes the row
    assert (again["routes"]["track"]["objects_read"], again["routes"]["track"]["rows_written"]) == (3, 1)


def test_a_run_leaves_no_staging_table_and_no_staging_object(ingest_url, db, bq):
    """(Those of failed runs stay: the staging dataset's tables expire after a day, and
    the work bucket's lifecycle rule deletes its objects.)"""
    work = cloud.storage_client(bq.project).bucket(os.environ["WORK_BUCKET"])

    def leftovers() -> tuple[set[str], set[str]]:
        objects = {blob.name for blob in work.list_blobs(prefix=f"{warehouse.STAGING_FOLDER}/")}
        return objects, {t.table_id for t in bq.list_tables(os.environ["BQ_STAGING_DATASET"])}

    before = leftovers()
    post(ingest_url, "track", samples.track_payload(random.Random(3), new_project(db), 0))
    pipeline, result, _ = build.run(["tracking", "--runner", build.LOCAL_RUNNER])
    assert reconciliation.report_from_metrics(pipeline, result)["routes"]["track"]["rows_written"] >= 1
    after = leftovers()
    assert after[0] <= before[0] and after[1] <= before[1]
