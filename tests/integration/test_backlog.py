"""A backlog of notifications larger than one run's bound (--max_messages_per_run)
drains over successive runs, on the local runner against the local stack."""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime, timedelta

from telemetry.common import stored_ping
from telemetry.common.projects import PROJECTS
from telemetry.common.stored_ping import StoredPing
from telemetry.local import samples
from telemetry.pipelines import build, reconciliation, site_state
from tests.integration.test_pipelines import _pending

BOUND = 10
PINGS = 35  # three and a half runs' worth


def _run(*args: str):
    pipeline, result, waited = build.run(["tracking", "--runner", build.LOCAL_RUNNER, *args])
    assert waited
    report = reconciliation.report_from_metrics(pipeline, result)
    assert report["balanced"], report
    counters = {c.key.metric.name: c.committed or 0 for c in result.metrics().query()["counters"]}
    return report, counters


def test_a_backlog_of_several_runs_drains_over_successive_runs_with_nothing_lost_or_doubled(bucket, db, bq):
    _run()  # drain what earlier tests left, so that the counts below are this test's
    project = uuid.uuid4().hex
    db[PROJECTS].insert_one(
        {"hash": project, "name": "test", "type": "plugin", "custom_fields": [], "mail_integrations": {}}
    )
    rng = random.Random(43)
    now = datetime.now(UTC)
    ids = []
    for i in range(PINGS):  # a backlog: stored while no run drained
        ping = StoredPing(
            str(uuid.uuid4()), "track", now + timedelta(milliseconds=i), samples.track_payload(rng, project, i)
        )
        bucket.blob(ping.object_name).upload_from_string(ping.to_json(), content_type=stored_ping.CONTENT_TYPE)
        ids.append(ping.id)

    reads, acked = [], 0
    while True:
        report, counters = _run("--max_messages_per_run", str(BOUND))
        reads.append(report["routes"]["track"]["objects_read"])
        acked += counters.get("notifications_acked", 0)
        if reads[-1] == 0:
            break
        assert len(reads) <= PINGS // BOUND + 2, reads
        # Each run took its bound and no more, and left the rest for the next.
        assert reads[-1] <= BOUND
        if sum(reads) < PINGS:
            assert reads[-1] == BOUND and counters.get("drains_stopped_at_bound_track") == 1
    assert reads == [10, 10, 10, 5, 0]
    # The emulator applies no subscription filter: tracking-skipped got the 35 too (ignored, acknowledged).
    assert acked == 2 * PINGS

    sql = f"SELECT ping_id FROM `{bq.project}.{os.environ['BQ_DATASET']}.sites` WHERE hash = '{project}'"
    assert sorted(row["ping_id"] for row in bq.query(sql).result()) == sorted(ids)  # each once
    assert db[site_state.SITES].count_documents({"hash": project}) == PINGS
    assert _pending("track") == 0 and _pending("tracking-skipped") == 0  # every notification acknowledged
