"""The producer of `site.deactivated` and `site.activated`, from what the pipelines committed,
at most NOTIFY_MAX_SITE_EVENTS_PER_DAY of each per project and UTC day, and one summary of the rest.

- `site.deactivated`: one per row of the BigQuery `deactivations` history received
  in the window. `received_at` is the table's partitioning column, so the query
  reads only the window's days. The id comes from the row's `ping_id`, unique in
  the history: the same deactivation found again (the overlap, a re-run, an hour
  the audit reprocessed) has the same id.
- `site.activated`: a site new to its project. The pipelines decide that a site is
  new when its MongoDB `sites` document has no `first_seen` yet
  (site_state._is_new), and keep `first_seen` as the earliest `received_at` of its
  pings (it only ever moves earlier). So a site activated in the window is a
  document whose `first_seen` lies in it, read per project through the
  (hash, first_seen, url) index (common/sites.SITES_BY_FIRST_SEEN). The BigQuery
  history cannot say that a site is new without reading every partition before the
  window. The id comes from (hash, url): a site is new once, even if a late ping
  moves its `first_seen`.

**The daily cap.** Project hashes are public, so anyone can send a project
deactivations and new sites by the thousand. Each (project, type, UTC day) gets at
most `cap` individual events, the first in (time, ping id or URL) order; past it,
one summary event (events.OVERFLOW_OF, id from type + project + day, so a re-run or
the overlap makes it once) says how many were held back when it was made, and each
run logs what it newly held back (`notify_site_events_held_back`). The cap is
counted against the outbox (the day's events already stored), not only against the
ranks of this run's query: rows committed late can rank before rows already sent
(an hour reprocessed by the audit, a backlog drained out of order), and are then
held back rather than sent beyond the cap. The one way past it is two notify runs
at once, each adding up to the cap before it sees the other's events.

Memory is bounded by construction: the BigQuery query returns at most `cap` rows per
project and day (QUALIFY ROW_NUMBER()), each with its day's total (a window COUNT);
MongoDB is read per project and day with `limit(cap)`, and counted through the index
only when the limit is reached.

Only projects that exist (`context.projects`) get events: a ping of an unknown
project is history, not a vendor's event. And only projects where someone listens
to the type (outbox.listened: alert recipients for `site.deactivated`, a webhook
endpoint subscribed to it), so the outbox does not grow for projects nobody hears.
A fact of a project that gains its first listener later is sent if it is still in
the window (NOTIFY_OVERLAP_HOURS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pymongo

from telemetry.common import projects, sites
from telemetry.common.logs import get_logger
from telemetry.notify import events, outbox
from telemetry.notify.contract import CollectContext
from telemetry.notify.events import Event

log = get_logger(__name__)

# The history tables it reads (terraform/notify.tf grants read on exactly these).
READS = ("deactivations",)

# The window's rows, each day's first @cap per project in (received_at, ping_id) order, from the
# first day's midnight so that a row's rank is its rank in the day, whatever window reads it.
# `received_at >= @first_day` prunes the partitions; `day_total` is the day's count so far.
DEACTIVATIONS_SQL = """
SELECT hash, url, site, reason_id, reason_info, project_version, ping_id, received_at,
  DATE(received_at) AS day,
  COUNT(*) OVER (PARTITION BY hash, DATE(received_at)) AS day_total
FROM `{dataset}.deactivations`
WHERE received_at >= @first_day AND received_at < @until AND hash IN UNNEST(@projects)
QUALIFY ROW_NUMBER() OVER (PARTITION BY hash, DATE(received_at) ORDER BY received_at, ping_id) <= @cap
ORDER BY hash, received_at, ping_id
"""

SITE_FIELDS = ("hash", "url", "site", "status", "project_version", "wp_version", "php_version", "first_seen")
INDEX_NOT_FOUND = 27  # MongoDB's error code for dropping an index that does not exist

# The dashboard API's lists a summary points to (telemetry/dashboard/openapi.py).
LIST_PATHS = {
    events.SITE_DEACTIVATED: "/v1/projects/{hash}/deactivations",
    events.SITE_ACTIVATED: "/v1/projects/{hash}/sites",
}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ensure_indexes(db: Any) -> None:
    """The (hash, first_seen, url) index of `sites` the activation queries walk, and the drop of
    its predecessor. Idempotent."""
    db[sites.SITES].create_index(sites.FIRST_SEEN_KEYS, name=sites.SITES_BY_FIRST_SEEN)
    if sites.FORMER_FIRST_SEEN_INDEX in db[sites.SITES].index_information():
        try:
            db[sites.SITES].drop_index(sites.FORMER_FIRST_SEEN_INDEX)
        except pymongo.errors.OperationFailure as e:
            if e.code != INDEX_NOT_FOUND:  # another run dropped it first
                raise


# --- the events -------------------------------------------------------------------------


def deactivation_event(row: Any, project: Any) -> Event:
    reason = row["reason_id"]
    labels = projects.project_reason_labels(project)
    return Event(
        id=events.event_id(events.SITE_DEACTIVATED, row["ping_id"]),
        project=row["hash"],
        type=events.SITE_DEACTIVATED,
        occurred_at=_utc(row["received_at"]),
        data={
            "project": row["hash"],
            "url": row["url"],
            "site": row["site"],
            "reason_id": reason,
            "reason_label": labels.get(reason, reason) if reason else None,
            "reason_info": row["reason_info"],
            "project_version": row["project_version"],
            "ping_id": row["ping_id"],
            "deactivated_at": _utc(row["received_at"]).isoformat(),
        },
    )


def activation_event(doc: Mapping[str, Any]) -> Event:
    first_seen = _utc(doc["first_seen"])
    return Event(
        id=events.event_id(events.SITE_ACTIVATED, doc["hash"], doc["url"]),
        project=doc["hash"],
        type=events.SITE_ACTIVATED,
        occurred_at=first_seen,
        data={
            "project": doc["hash"],
            "url": doc["url"],
            "site": doc.get("site"),
            "status": doc.get("status"),
            "project_version": doc.get("project_version"),
            "wp_version": doc.get("wp_version"),
            "php_version": doc.get("php_version"),
            "first_seen": first_seen.isoformat(),
        },
    )


def overflow_event(
    summarised: str, project: str, day: date, held_back: int, cap: int, counted_until: datetime
) -> Event:
    """The summary of a project's day of `summarised` events past the cap: one per (type,
    project, day), whatever run makes it; `held_back` is the count when it was made."""
    overflow = events.OVERFLOW_OF[summarised]
    return Event(
        id=events.event_id(overflow, project, day.isoformat()),
        project=project,
        type=overflow,
        occurred_at=counted_until,
        data={
            "project": project,
            "day": day.isoformat(),
            "summarises": summarised,
            "cap": cap,
            "held_back": held_back,
            "counted_until": counted_until.isoformat(),
            "list_path": LIST_PATHS[summarised].format(hash=project),
        },
    )


# --- the cap (pure) -----------------------------------------------------------------------


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def days_of(since: datetime, until: datetime) -> list[date]:
    """The UTC days the window [since, until) touches, oldest first."""
    first, last = since.astimezone(UTC).date(), (until - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)] if until > since else []


@dataclass(frozen=True)
class Day:
    """One project's day of one event type, as the run found it: `ranked` are the day's first
    facts in rank order (at most the cap; those of the window only), `total` its count so far."""

    project: str
    day: date
    ranked: Sequence[Event]
    total: int


def within_cap(
    ranked: Sequence[Event], stored_ids: set[str], stored: int, total: int, cap: int
) -> tuple[list[Event], int]:
    """The events to add for a day, and how many of the day's facts are held back.

    `ranked`: the day's first facts in rank order; `stored_ids`: which of them the outbox holds;
    `stored`: how many of the day's events of this type the outbox holds (any rank). The day's
    individual events stay at most `cap` however the ranks moved since they were stored; held
    back are the facts past the cap not sent individually (0 while `total <= cap`)."""
    room = max(0, cap - stored)
    new = [e for e in ranked if e.id not in stored_ids][:room]
    held_back = max(0, total - stored - len(new)) if total > cap else 0
    return new, held_back


IdsIn = Callable[[list[str]], set[str]]  # which of these event ids the outbox holds
Stored = Callable[[str, str, datetime, datetime], int]  # outbox.stored_count without the database


def capped(
    days: Iterable[Day], summarised: str, cap: int, until: datetime, ids_in: IdsIn, stored: Stored
) -> list[Event]:
    """Each day's events within the cap, and its summary when it has facts past it."""
    days = list(days)
    present = ids_in(sorted({e.id for d in days for e in d.ranked}))
    found: list[Event] = []
    for d in days:
        stored_ids = {e.id for e in d.ranked} & present
        # Counted only past the cap: below it, the day's stored events are among its `ranked`
        # facts or before the window, and there is room for every new one.
        start, end = day_start(d.day), day_start(d.day + timedelta(days=1))
        in_outbox = stored(d.project, summarised, start, end) if d.total > cap else len(stored_ids)
        new, held_back = within_cap(d.ranked, stored_ids, in_outbox, d.total, cap)
        found += new
        if held_back:
            found.append(overflow_event(summarised, d.project, d.day, held_back, cap, until))
    return found


# --- reading --------------------------------------------------------------------------------


def listening(context: CollectContext, event_type: str) -> list[str]:
    """The projects where someone listens to `event_type`, sorted."""
    return sorted(h for h, project in context.projects.items() if outbox.listened(project, event_type))


def deactivation_days(context: CollectContext, hashes: list[str]) -> list[Day]:
    from google.cloud import bigquery

    days = days_of(context.since, context.until)
    if not hashes or not days:
        return []
    rows = context.query(
        DEACTIVATIONS_SQL,
        [
            bigquery.ScalarQueryParameter("first_day", "TIMESTAMP", day_start(days[0])),
            bigquery.ScalarQueryParameter("until", "TIMESTAMP", context.until),
            bigquery.ArrayQueryParameter("projects", "STRING", hashes),
            bigquery.ScalarQueryParameter("cap", "INT64", context.max_site_events_per_day),
        ],
    )
    ranked: dict[tuple[str, date], list[Event]] = {}
    totals: dict[tuple[str, date], int] = {}
    for row in rows:
        key = (row["hash"], row["day"])
        totals[key] = row["day_total"]
        bucket = ranked.setdefault(key, [])
        if _utc(row["received_at"]) >= context.since:  # a row before the window ranks, and is not sent
            bucket.append(deactivation_event(row, context.projects[row["hash"]]))
    return [Day(h, day, ranked[(h, day)], total) for (h, day), total in totals.items()]


def activation_days(context: CollectContext, hashes: list[str]) -> list[Day]:
    cap = context.max_site_events_per_day
    projection = {"_id": 0, **dict.fromkeys(SITE_FIELDS, 1)}
    found: list[Day] = []
    for h in hashes:
        for day in days_of(context.since, context.until):
            query = {
                "hash": h,
                "first_seen": {"$gte": day_start(day), "$lt": min(context.until, day_start(day + timedelta(days=1)))},
            }
            docs = list(
                context.db[sites.SITES]
                .find(query, projection)
                .sort([("first_seen", 1), ("url", 1)])
                .hint(sites.SITES_BY_FIRST_SEEN)
                .limit(cap)
            )
            if not docs:
                continue
            total = len(docs) if len(docs) < cap else context.db[sites.SITES].count_documents(query)
            ranked = [activation_event(doc) for doc in docs if _utc(doc["first_seen"]) >= context.since]
            found.append(Day(h, day, ranked, total))
    return found


def _capped(context: CollectContext, days: list[Day], summarised: str) -> list[Event]:
    return capped(
        days,
        summarised,
        context.max_site_events_per_day,
        context.until,
        lambda ids: outbox.ids_stored(context.db, ids),
        lambda *day: outbox.stored_count(context.db, *day),
    )


def deactivations(context: CollectContext) -> list[Event]:
    days = deactivation_days(context, listening(context, events.SITE_DEACTIVATED))
    return _capped(context, days, events.SITE_DEACTIVATED)


def activations(context: CollectContext) -> list[Event]:
    days = activation_days(context, listening(context, events.SITE_ACTIVATED))
    return _capped(context, days, events.SITE_ACTIVATED)


def collect(context: CollectContext) -> list[Event]:
    if not context.projects:
        return []
    return deactivations(context) + activations(context)


# --- the counter ----------------------------------------------------------------------------


HELD_BACK_COUNTER = "notify_site_events_held_back"
HELD_BACK_REASON = "over NOTIFY_MAX_SITE_EVENTS_PER_DAY"


def count_held_back(db: Any, found: Iterable[Event]) -> int:
    """Log, per day summary among `found` (stored in the outbox first), the facts held back that
    no run had counted yet: one warning with `"counter": HELD_BACK_COUNTER` and its reason, so the
    counts logged for a day add up to what was held back of it, whichever runs saw it. The run
    calls this after storing a producer's events; returns the total newly counted."""
    total = 0
    for event in found:
        if event.type not in events.SUMMARISED_BY:
            continue
        more = outbox.count_held_back(db, event, event.data["held_back"])
        if more:
            total += more
            log.warning(
                "notify site events held back",
                extra={
                    "counter": HELD_BACK_COUNTER,
                    "count": more,
                    "reason": HELD_BACK_REASON,
                    "project": event.project,
                    "event_type": events.SUMMARISED_BY[event.type],
                    "day": event.data["day"],
                    "held_back": event.data["held_back"],
                },
            )
    return total
