"""The producer of `figures.ready`: a project's figures of a day are final.

The analytics job computes every project's figures of a day in one run and
moves BigQuery `analytics_progress.final_through` past the day once it no
longer changes (telemetry/analytics/job.py). A project's day is ready when it
is at most `final_through` and the serving copy holds the project's figures of
it (the job serves a project only on the days it has data). One event per
project and day, id `project + day`, whose data names the day and the dashboard
API path of its figures.

Like the digest, a day is due once and stays due until its event is in the
outbox: each run sends the project's ready days within NOTIFY_DIGEST_CATCH_UP_DAYS
of `final_through` after the latest one the outbox holds (looked up over
`lookup_days`); only the newest when it holds none. So a missed run, or the analytics job
making several days final at once after an outage, skips no day, and a re-run
sends none twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta

from telemetry.analytics import job as analytics
from telemetry.analytics import metrics
from telemetry.common import config
from telemetry.notify import events, outbox
from telemetry.notify.contract import CollectContext
from telemetry.notify.events import Event

FINAL_THROUGH_SQL = "SELECT final_through FROM `{dataset}.analytics_progress` WHERE job = @job"
# The analytics job's tables notify reads (terraform/notify.tf grants read on exactly these).
READS = ("analytics_progress",)


def final_through(context: CollectContext) -> date | None:
    """The analytics job's last final day (None before its first day is final)."""
    from google.cloud import bigquery

    rows = context.query(FINAL_THROUGH_SQL, [bigquery.ScalarQueryParameter("job", "STRING", analytics.JOB_NAME)])
    return rows[0]["final_through"] if rows else None


def lookup_days() -> int:
    """How far back, from the analytics job's last final day, the outbox is asked what was sent:
    3 days inside its retention (`outbox.KEEP`), so that every event sent for a day or period that
    ended since is still there (an event is found a day or more after its day ends, and the last
    final day is a day or two behind now)."""
    return outbox.KEEP.days - 3


def catch_up_days(environ: Mapping[str, str] | None = None) -> int:
    """NOTIFY_DIGEST_CATCH_UP_DAYS: a period or day that ended longer ago than this before the last
    final day is not sent late. At most `lookup_days()`: every candidate sent is still in the outbox."""
    days = config.get_int("NOTIFY_DIGEST_CATCH_UP_DAYS", environ)
    most = lookup_days()
    if days > most:
        raise ValueError(
            f"NOTIFY_DIGEST_CATCH_UP_DAYS must be at most {most} (the outbox keeps events {outbox.KEEP.days} days)"
        )
    return days


def event_id(project: str, day: date) -> str:
    return events.event_id(events.FIGURES_READY, project, day.isoformat())


def figures_ready_event(project: str, day: date) -> Event:
    text = day.isoformat()
    return Event(
        id=event_id(project, day),
        project=project,
        type=events.FIGURES_READY,
        occurred_at=datetime.combine(day + timedelta(days=1), time(), UTC),
        data={"project": project, "day": text, "figures_path": f"/v1/projects/{project}/figures?from={text}&to={text}"},
    )


def days_served(db, projects: Iterable[str], first: date, last: date) -> dict[str, set[date]]:
    """The days from `first` to `last` on which the serving copy holds each project's figures
    (one `active_sites` document per project and day; read through the (hash, metric, day) index)."""
    found: dict[str, set[date]] = {}
    query = {
        "hash": {"$in": sorted(projects)},
        "metric": metrics.ACTIVE_SITES.name,
        "day": {"$gte": first.strftime(metrics.DAY_FORMAT), "$lte": last.strftime(metrics.DAY_FORMAT)},
    }
    for doc in db[metrics.COLLECTION].find(query, {"_id": 0, "hash": 1, "day": 1}):
        found.setdefault(doc["hash"], set()).add(date.fromisoformat(doc["day"]))
    return found


def due_days(served: Iterable[date], sent: Iterable[date]) -> list[date]:
    """The served days to send, oldest first: those after the latest sent one; the latest alone when none was sent."""
    served = sorted(served)
    sent = list(sent)
    if not served:
        return []
    if not sent:
        return served[-1:]
    return [day for day in served if day > max(sent)]


def collect_with(context: CollectContext, in_outbox: Callable[[list[str]], set[str]]) -> list[Event]:
    last = final_through(context)
    if last is None or not context.projects:
        return []
    # The served days since lookup_days(): where the last one sent is; the due ones are among the
    # catch-up days.
    served = days_served(context.db, context.projects, last - timedelta(days=lookup_days()), last)
    first_due = last - timedelta(days=catch_up_days())
    ids = {(project, day): event_id(project, day) for project, days in served.items() for day in days}
    present = in_outbox(sorted(ids.values()))
    found = []
    for project, days in sorted(served.items()):
        sent = [day for day in days if ids[(project, day)] in present]
        due = due_days([day for day in days if day >= first_due], sent)
        found += [figures_ready_event(project, day) for day in due]
    return found


def collect(context: CollectContext) -> list[Event]:
    return collect_with(context, lambda ids: outbox.ids_stored(context.db, ids))
