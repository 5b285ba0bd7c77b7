"""The digest, figures.ready and the spike alert against bqemulator, SecantusDB and the
stack's SMTP server, on a hand-checked history: the real notify run (telemetry/notify/run.py)
finds the events, stores them in the outbox (MongoDB `notify_events`) and mails them to
the project's alert recipient; the test reads the mails the SMTP server received.

The analytics job's results are written as it writes them (its `analytics_progress`
row in BigQuery, its serving documents in MongoDB `analytics`: their shape is
telemetry/analytics/metrics.py, and tests/integration/test_analytics.py checks the job
makes them from the pings); the deactivations history is written as rows of the
pipelines' BigQuery `deactivations` table. Dates are fixed: the producers go by the
analytics job's last final day, not by the clock.

The history (ISO weeks: 47 is 16-22 Nov 2026, 48 is 23-29 Nov, 49 is 30 Nov - 6 Dec):
  project W (weekly digest)
    serving copy       week 46   week 47             week 48              week 49
      active at end      90        95                  100                  88
      new sites          5         8 (3 + 5)           7                    4
      deactivations      1         3                   2                    20
      reasons            -         other 2, expensive 1  expensive 2        not-working 15, expensive 5
      versions at end    -         3.1.0 95            3.1.0 80, 3.2.0 20   3.2.0 60, 3.1.0 28
    deactivations history: one a day (3.1.0, other) from 6 Nov to 5 Dec; on 6 Dec one of
      those and 14 on 3.2.0 (12 is-not-working, 2 too-expensive): 15 over a flat mean of 1
      -> a spike naming 3.2.0 and is-not-working (too-expensive's excess, 2, is under 25 % of 14).
  project Q (no digest): served on 26, 27, 28 Nov and 1 Dec; 9 deactivations on 6 Dec after
      none: under the minimum of 10, no alert.

Run 0, before the analytics job has a final day: nothing.
Run 1, final through Sat 28 Nov: W's digest of week 47 alone (nothing sent before: no
back catalogue); figures.ready for W's 22 Nov and Q's 28 Nov (the latest served days).
Run 2, final through Sun 6 Dec: W's digests of weeks 48 and 49 (none skipped);
figures.ready for W's 29 Nov and 6 Dec, Q's 1 Dec; the spike of 6 Dec.
Run 3, the same an hour later: nothing new, no mail.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from telemetry.analytics import job as analytics
from telemetry.analytics import metrics
from telemetry.common import cloud, mongo, projects
from telemetry.local import smtp_server, stack
from telemetry.notify import events, outbox, run
from telemetry.notify.settings import NotifySettings
from telemetry.pipelines import warehouse

W, Q = f"w{uuid.uuid4().hex[:12]}", f"q{uuid.uuid4().hex[:12]}"
RECIPIENT = f"ops-{W}@vendor.example"


def doc(project: str, day: str, metric: str, value=None, breakdown=None) -> dict:
    d = {"hash": project, "metric": metric, "day": day}
    return {**d, "breakdown": breakdown} if breakdown is not None else {**d, "value": value}


SERVING = [
    # W, week 46 (9-15 Nov)
    doc(W, "2026-11-12", "new_sites", 5),
    doc(W, "2026-11-12", "deactivations", 1),
    doc(W, "2026-11-15", "active_sites", 90),
    # week 47 (16-22 Nov)
    doc(W, "2026-11-16", "new_sites", 3),
    doc(W, "2026-11-20", "new_sites", 5),
    doc(W, "2026-11-18", "deactivations", 3),
    doc(W, "2026-11-18", "deactivation_reasons", breakdown={"other": 2, "too-expensive": 1}),
    doc(W, "2026-11-22", "active_sites", 95),
    doc(W, "2026-11-22", "project_version", breakdown={"3.1.0": 95}),
    # week 48 (23-29 Nov)
    doc(W, "2026-11-25", "new_sites", 7),
    doc(W, "2026-11-25", "deactivations", 2),
    doc(W, "2026-11-25", "deactivation_reasons", breakdown={"too-expensive": 2}),
    doc(W, "2026-11-29", "active_sites", 100),
    doc(W, "2026-11-29", "project_version", breakdown={"3.1.0": 80, "3.2.0": 20}),
    # week 49 (30 Nov - 6 Dec)
    doc(W, "2026-12-02", "new_sites", 4),
    doc(W, "2026-12-06", "deactivations", 20),
    doc(W, "2026-12-06", "deactivation_reasons", breakdown={"is-not-working": 15, "too-expensive": 5}),
    doc(W, "2026-12-06", "active_sites", 88),
    doc(W, "2026-12-06", "project_version", breakdown={"3.2.0": 60, "3.1.0": 28}),
    # Q
    *(doc(Q, day, "active_sites", 10) for day in ("2026-11-26", "2026-11-27", "2026-11-28", "2026-12-01")),
]


def deactivation_rows() -> list[dict]:
    rows = []

    def add(project: str, day: date, hour: int, version: str, reason: str) -> None:
        ping = uuid.uuid4().hex
        at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        rows.append(
            {
                "hash": project,
                "url": f"https://{ping}.example.org",
                "reason_id": reason,
                "project_version": version,
                "ping_id": ping,
                "received_at": at.isoformat(),
            }
        )

    day = date(2026, 11, 6)
    while day <= date(2026, 12, 6):
        add(W, day, 10, "3.1.0", "other")
        day += timedelta(days=1)
    spike_day = date(2026, 12, 6)
    for n in range(14):
        add(W, spike_day, n, "3.2.0", "is-not-working" if n < 12 else "too-expensive")
    for n in range(9):
        add(Q, spike_day, n, "1.0", "other")
    return rows


@pytest.fixture(scope="module")
def setup():
    name = f"notify_test_{uuid.uuid4().hex[:8]}"
    environ = {**os.environ, "BQ_DATASET": name, "MONGODB_DB": name}
    settings = analytics.AnalyticsSettings.from_env(environ)
    client = cloud.bigquery_client(settings.project)
    warehouse.ensure_tables(client, name)
    db = mongo.database(settings.mongodb_uri, name)
    job = analytics.AnalyticsJob(client, db, settings)
    job.ensure_tables()
    outbox.ensure_indexes(db)
    projects.save_project(
        db,
        {
            **projects.project_document(W, "Weekly Widgets", deactivation_reasons={"too-expensive": "Too expensive"}),
            projects.DIGEST: "weekly",
            projects.ALERTS: {projects.ALERT_RECIPIENTS: [RECIPIENT]},
        },
    )
    projects.save_project(db, projects.project_document(Q, "Quiet Plugin"))
    db[metrics.COLLECTION].insert_many([dict(d) for d in SERVING])
    errors = client.insert_rows_json(f"{client.project}.{name}.deactivations", deactivation_rows())
    assert errors == []
    yield job, NotifySettings.from_env(environ)
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)
    db.client.drop_database(name)
    db.client.close()


def set_final_through(job: analytics.AnalyticsJob, day: date) -> None:
    job._set_final_through(day)  # the job's own statement, as a run that closed `day` leaves it


def notify_run(setup, now: datetime) -> list[events.Event]:
    """One notify run at `now`; returns the events it added to the outbox."""
    job, settings = setup
    before = {d["_id"] for d in job.db[outbox.EVENTS].find({}, {"_id": 1})}
    summary = run.run_once(job.client, job.db, settings, clock=lambda: now)
    assert summary.failed_producers == []
    added = job.db[outbox.EVENTS].find({"_id": {"$nin": sorted(before)}})
    return [outbox.event_from_document(doc) for doc in added]


def mails() -> list:
    """The mails the stack's SMTP server received for this module's recipient, oldest first."""
    return [m for m in smtp_server.received(stack.SMTP_DIR) if m["To"] == RECIPIENT]


def subject(message) -> str:
    """The Subject header unfolded (RFC 5322 folds a long one over lines)."""
    return re.sub(r"\r?\n(?=[ \t])", "", str(message["Subject"]))


def body(message) -> str:
    """The plain-text part."""
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")


def by_type(found: list[events.Event], event_type: str) -> list[events.Event]:
    return sorted((e for e in found if e.type == event_type), key=lambda e: (e.project, e.occurred_at))


def test_digests_figures_ready_and_the_spike_once_each_in_order(setup):
    job, _settings = setup
    # The analytics job has no final day yet. (The site events of the window are not ours: left out.)
    ours = (events.DIGEST, events.FIGURES_READY, events.DEACTIVATION_SPIKE)
    assert [e for e in notify_run(setup, datetime(2026, 11, 28, 9, tzinfo=UTC)) if e.type in ours] == []

    set_final_through(job, date(2026, 11, 28))
    first = notify_run(setup, datetime(2026, 11, 29, 9, tzinfo=UTC))
    digests = by_type(first, events.DIGEST)
    assert [(e.project, e.data["period"]["start"]) for e in digests] == [(W, "2026-11-16")]
    week47 = digests[0].data
    assert (week47["active_sites"], week47["new_sites"], week47["deactivations"]) == (95, 8, 3)
    assert week47["change"] == {"active_sites": 5, "new_sites": 3, "deactivations": 2}
    assert week47["top_reasons"] == [
        {"reason": "other", "label": "other", "deactivations": 2},
        {"reason": "too-expensive", "label": "Too expensive", "deactivations": 1},
    ]
    ready = by_type(first, events.FIGURES_READY)
    assert [(e.project, e.data["day"]) for e in ready] == sorted([(W, "2026-11-22"), (Q, "2026-11-28")])
    assert by_type(first, events.DEACTIVATION_SPIKE) == []

    set_final_through(job, date(2026, 12, 6))
    second = notify_run(setup, datetime(2026, 12, 7, 9, tzinfo=UTC))
    digests = by_type(second, events.DIGEST)
    assert [e.data["period"]["start"] for e in digests] == ["2026-11-23", "2026-11-30"]
    week48, week49 = (e.data for e in digests)
    assert (week48["active_sites"], week48["new_sites"], week48["deactivations"]) == (100, 7, 2)
    assert (week49["active_sites"], week49["new_sites"], week49["deactivations"]) == (88, 4, 20)
    assert week49["change"] == {"active_sites": -12, "new_sites": -3, "deactivations": 18}
    assert [(r["reason"], r["deactivations"]) for r in week49["top_reasons"]] == [
        ("is-not-working", 15),
        ("too-expensive", 5),
    ]
    assert week49["top_versions"] == [
        {"version": "3.2.0", "sites": 60, "share": 0.6818},
        {"version": "3.1.0", "sites": 28, "share": 0.3182},
    ]
    ready = by_type(second, events.FIGURES_READY)
    assert sorted((e.project, e.data["day"]) for e in ready) == sorted(
        [(W, "2026-11-29"), (W, "2026-12-06"), (Q, "2026-12-01")]
    )
    spikes = by_type(second, events.DEACTIVATION_SPIKE)
    assert [(e.project, e.data["day"]) for e in spikes] == [(W, "2026-12-06")]
    alert = spikes[0].data
    assert (alert["deactivations"], alert["trailing_mean"], alert["threshold"]) == (15, 1.0, 2.0)
    assert [(v["version"], v["excess"]) for v in alert["versions"]] == [("3.2.0", 14.0)]
    assert [(r["reason"], r["excess"]) for r in alert["reasons"]] == [("is-not-working", 12.0)]

    # A run an hour later finds the same events: nothing new in the outbox, no new mail.
    sent = len(mails())
    assert [e for e in notify_run(setup, datetime(2026, 12, 7, 10, tzinfo=UTC)) if e.type in ours] == []
    assert len(mails()) == sent

    # The recipient got each digest and the alert once, with the figures.
    received = mails()
    digests = [m for m in received if " digest, " in subject(m)]
    assert [subject(m).split(": ")[1] for m in digests] == [
        "weekly digest, week 47 of 2026 (16 Nov 2026 - 22 Nov 2026)",
        "weekly digest, week 48 of 2026 (23 Nov 2026 - 29 Nov 2026)",
        "weekly digest, week 49 of 2026 (30 Nov 2026 - 6 Dec 2026)",
    ]
    assert subject(digests[2]).endswith(": 88 active sites (-12)")
    text = body(digests[2]).splitlines()
    for line in (
        "Active sites at the end: 88 (-12 against 100 the weekly period before)",
        "New sites: 4 (-3 against 7 the weekly period before)",
        "Deactivations: 20 (+18 against 2 the weekly period before)",
        "  is-not-working: 15",
        "  Too expensive: 5",
        "  3.2.0: 60 sites (68.2%)",
        "  3.1.0: 28 sites (31.8%)",
    ):
        assert line in text
    alerts = [m for m in received if "deactivations on 2026-12-06" in subject(m)]
    assert len(alerts) == 1
    assert "driven by version 3.2.0 (is-not-working)" in subject(alerts[0])
    assert "  3.2.0: 14 deactivations, +14.0 over its trailing 0.0 a day" in body(alerts[0]).splitlines()
