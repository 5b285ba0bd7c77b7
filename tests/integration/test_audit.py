"""The audit on the local stack: objects whose notifications were lost are found, by hour,
and processed again, once.

The pings are stored straight into the bucket (as ingest stores them) at receipt times
in the past, in hours of the test's own, and the pipelines run in hour mode for some of
those hours only: the objects of the other hours are stored pings that no run has
read, exactly what a lost notification leaves. Their notifications are still in the
emulator's subscriptions, but no pipeline drains them here: the audit must find the
hours from the bucket and BigQuery alone.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta

from telemetry.audit import job as audit
from telemetry.audit.reprocess import HourRange, LocalPipelines
from telemetry.common import cloud, wire
from telemetry.local import samples
from telemetry.pipelines import build, reconciliation
from tests.integration.test_pipelines import new_project, put_bytes, put_ping


class CountingPipelines(LocalPipelines):
    """The local reprocessor, counting what it was asked to run."""

    def __init__(self):
        super().__init__()
        self.ranges: list[HourRange] = []

    def reprocess(self, hours: HourRange):
        self.ranges.append(hours)
        return super().reprocess(hours)


def own_hours_back() -> datetime:
    """The start of a few hours that no other test and no earlier run of this one uses, most likely."""
    pick = random.SystemRandom()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(days=pick.randrange(3, 300), hours=pick.randrange(24))


def hour_mode(name: str, first: datetime, last: datetime | None = None) -> None:
    last = last or first
    argv = [name, "--runner", build.LOCAL_RUNNER, "--hour", f"{first:%Y-%m-%dT%H}", "--hour_to", f"{last:%Y-%m-%dT%H}"]
    pipeline, result, waited = build.run(argv)
    assert waited and reconciliation.report_from_metrics(pipeline, result)["balanced"]


def counts(bq, table: str, project: str, column: str = "ping_id") -> tuple[int, int]:
    sql = (
        f"SELECT COUNT(*) AS n, COUNT(DISTINCT {column}) AS d "
        f"FROM `{bq.project}.{os.environ['BQ_DATASET']}.{table}` WHERE hash = @hash"
    )
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("hash", "STRING", project)])
    row = next(iter(bq.query(sql, job_config=config).result()))
    return row["n"], row["d"]


def test_the_audit_finds_the_hours_of_lost_notifications_and_repairs_them_once(bucket, db, bq):
    rng = random.Random(14)
    project = new_project(db)
    # Four hours of the test's own, days back (inside any retention; a random hour of a
    # random day, so that a re-run on the same stack finds hours without its earlier
    # objects): h0 processed; h1 processed, then more objects arrive whose notifications
    # are lost; h2 never processed; h3 processed.
    base = own_hours_back()
    h0, h1, h2, h3 = (base + timedelta(hours=n) for n in range(4))

    def store(at: datetime, n_track: int, n_deactivate: int = 0, n_skipped: int = 0) -> int:
        for i in range(n_track):
            put_ping(bucket, wire.TRACK, at + timedelta(minutes=i), samples.track_payload(rng, project, i))
        for i in range(n_deactivate):
            put_ping(
                bucket, wire.DEACTIVATE, at + timedelta(minutes=30 + i), samples.deactivate_payload(rng, project, i)
            )
        for i in range(n_skipped):
            put_ping(
                bucket,
                wire.TRACKING_SKIPPED,
                at + timedelta(minutes=45 + i),
                samples.tracking_skipped_payload(rng, project),
            )
        return n_track + n_deactivate + n_skipped

    stored = store(h0, 3, 1, 1) + store(h1, 2) + store(h3, 2, 1)
    put_bytes(bucket, wire.TRACK, h0 + timedelta(minutes=50), b"not a stored ping")  # a `rejected` row, balanced
    stored += 1
    for name in ("tracking", "deactivation"):
        hour_mode(name, h0, h1)
        hour_mode(name, h3)
    # Lost: objects that arrive in h1 after its run, and all of h2.
    stored += store(h1, 2, 1) + store(h2, 3, 1, 2)

    client = cloud.bigquery_client(os.environ["GCP_PROJECT"])
    settings = audit.AuditSettings.from_env()
    pipelines = CountingPipelines()
    checker = audit.Audit(client, bucket, settings, pipelines)
    hours = audit.explicit_hours(f"{h0:%Y-%m-%dT%H}", f"{h3:%Y-%m-%dT%H}")

    # Found: exactly the hours and routes with objects that have no row, with their counts.
    found = checker.run(hours, reprocess=False)
    assert {(b.route, b.hour, len(b.missing)) for b in found.unbalanced} == {
        (wire.TRACK, h1, 2),
        (wire.DEACTIVATE, h1, 1),
        (wire.TRACK, h2, 3),
        (wire.DEACTIVATE, h2, 1),
        (wire.TRACKING_SKIPPED, h2, 2),
    }
    assert found.reprocessed == [] and found.after is None
    summary = found.as_log()
    assert summary["objects"] >= stored  # other tests' objects in these hours count too, balanced
    by_hour = {(b.route, b.hour): b for b in found.balances}
    assert by_hour[(wire.TRACK, h0)].rejected == 1 and by_hour[(wire.TRACK, h0)].balanced
    # `sites` keeps a row for each deactivate ping as well: not a row without its object.
    assert all(b.without_object == 0 for b in found.balances)

    # Repaired: one hour-mode run per pipeline over the contiguous hours h1-h2, then all balance.
    repaired = checker.run(hours)
    assert sorted(pipelines.ranges, key=lambda r: r.pipeline) == [
        HourRange("deactivation", h1, h2),
        HourRange("tracking", h1, h2),
    ]
    assert [r["outcome"] for r in repaired.reprocessed] == ["reconciled", "reconciled"]
    assert repaired.repaired is True
    assert all(b.balanced for b in repaired.after)
    assert {b.hour for b in repaired.after} == {h1, h2}

    # Nothing doubled: each ping once in its history table, every object accounted for.
    assert counts(bq, "sites", project) == (12 + 4, 16)  # the track pings and the deactivated sites
    assert counts(bq, "deactivations", project) == (4, 4)
    assert counts(bq, "tracking_skipped", project) == (3, 3)

    # And a second audit finds nothing to do.
    pipelines.ranges.clear()
    again = checker.run(hours)
    assert again.unbalanced == [] and pipelines.ranges == [] and again.repaired is True


def test_the_cli_reports_and_exits_non_zero_when_an_hour_does_not_balance(bucket, db, capsys):
    rng = random.Random(15)
    project = new_project(db)
    at = own_hours_back()
    put_ping(bucket, wire.TRACK, at + timedelta(minutes=7), samples.track_payload(rng, project, 0))
    hour = f"{at:%Y-%m-%dT%H}"
    assert audit.main(["--hour", hour, "--report-only"]) == 1
    out = capsys.readouterr().out
    assert f"track             {hour}  1 of 1 objects have no row" in out
    assert audit.main(["--hour", hour]) == 0
    assert "after reprocessing: every hour balances" in capsys.readouterr().out
    assert audit.main(["--hour", hour, "--report-only"]) == 0


class Request:
    """What the function's handler reads of a Flask request."""

    def __init__(self, body: dict):
        self.body = body

    def get_json(self, silent: bool = False):
        return self.body


def test_the_function_answers_its_report_as_json(bucket, db, monkeypatch):
    """The deployed handler on the local stack, finding only (report_only): launching needs
    the Dataflow API, which has no local stand-in (tests/test_audit.py, test_audit.py under
    tests/terraform)."""
    rng = random.Random(16)
    project = new_project(db)
    at = own_hours_back()
    put_ping(bucket, wire.DEACTIVATE, at + timedelta(minutes=3), samples.deactivate_payload(rng, project, 0))
    launches = {"project": "p", "region": "europe-west1", "templates": {}}
    monkeypatch.setenv("AUDIT_LAUNCH", json.dumps(launches))
    answer, status = audit.handle(Request({"hour": f"{at:%Y-%m-%dT%H}", "report_only": True}))
    assert status == 200
    assert answer["unbalanced"] == [
        {
            "route": "deactivate",
            "hour": f"{at:%Y-%m-%dT%H}",
            "objects": 1,
            "rows": 0,
            "rejected": 0,
            "missing": 1,
            "without_object": 0,
        }
    ]
    assert answer["reprocessed"] == [] and answer["repaired"] is None
    assert json.loads(json.dumps(answer)) == answer  # what the function framework sends
    assert audit.handle(Request({"hour": "yesterday"}))[1] == 400
    assert audit.handle(Request({"hour_to": f"{at:%Y-%m-%dT%H}"}))[1] == 400
    monkeypatch.delenv("AUDIT_LAUNCH")
    assert audit.handle(Request({"report_only": True})) == ({"error": "audit_failed"}, 500)
