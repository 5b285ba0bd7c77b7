"""The producer of `site.deactivated` and `site.activated`, from what the pipelines committed.

- `site.deactivated`: one per row of the BigQuery `deactivations` history received
  in the window (`received_at` is its partitioning column, so the query reads only
  the window's days). Its id comes from the row's `ping_id`, unique in the history:
  the same deactivation found again (the overlap, a re-run, a reprocessed hour)
  has the same id.
- `site.activated`: a site new to its project. The pipelines know a site is new
  when its MongoDB `sites` document has no `first_seen` yet (site_state._is_new);
  `first_seen` then holds the earliest `received_at` of its pings, and only moves
  earlier. A site is activated in the window when its earliest active ping of the
  window (BigQuery `sites`, pruned to the window) is its `first_seen`: it sent
  nothing before. The MongoDB lookups go through the unique (hash, url) index.
  Its id comes from (hash, url): a site is new once.

Both read only projects that exist (`context.projects`): a ping of an unknown
project is history, not a vendor's event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from telemetry.common import projects, sites
from telemetry.notify import events
from telemetry.notify.contract import CollectContext
from telemetry.notify.events import Event

DEACTIVATIONS_SQL = """
SELECT hash, url, site, reason_id, reason_info, project_version, ping_id, received_at
FROM `{dataset}.deactivations`
WHERE received_at >= @since AND received_at < @until AND hash IN UNNEST(@projects)
"""

# The earliest active ping of each site in the window, with its ping id as the tie-break.
FIRST_ACTIVE_SQL = """
SELECT hash, url,
  ARRAY_AGG(STRUCT(received_at, ping_id, site, project_version, wp_version, php_version)
            ORDER BY received_at, ping_id LIMIT 1)[OFFSET(0)] AS first
FROM `{dataset}.sites`
WHERE received_at >= @since AND received_at < @until AND status = 'active' AND hash IN UNNEST(@projects)
GROUP BY hash, url
"""

MONGO_BATCH = 500  # (hash, url) pairs per MongoDB `$or` lookup


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _query(context: CollectContext, sql: str) -> list[Any]:
    """One query over the window, restricted to the known projects."""
    from google.cloud import bigquery

    return context.query(
        sql,
        [
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", context.since),
            bigquery.ScalarQueryParameter("until", "TIMESTAMP", context.until),
            bigquery.ArrayQueryParameter("projects", "STRING", sorted(context.projects)),
        ],
    )


def _millis(value: datetime) -> datetime:
    """A time as MongoDB stores it (BSON dates hold milliseconds)."""
    value = _utc(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


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


def activation_event(project_hash: str, url: str, first: Any) -> Event:
    return Event(
        id=events.event_id(events.SITE_ACTIVATED, project_hash, url),
        project=project_hash,
        type=events.SITE_ACTIVATED,
        occurred_at=_utc(first["received_at"]),
        data={
            "project": project_hash,
            "url": url,
            "site": first["site"],
            "project_version": first["project_version"],
            "wp_version": first["wp_version"],
            "php_version": first["php_version"],
            "first_seen": _utc(first["received_at"]).isoformat(),
        },
    )


def _first_seen(context: CollectContext, keys: list[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """MongoDB `sites.first_seen` of each (hash, url) that has a document."""
    found: dict[tuple[str, str], datetime] = {}
    collection = context.db[sites.SITES]
    for start in range(0, len(keys), MONGO_BATCH):
        batch = keys[start : start + MONGO_BATCH]
        query = {"$or": [{"hash": h, "url": u} for h, u in batch]}
        for doc in collection.find(query, {"_id": 0, "hash": 1, "url": 1, "first_seen": 1}):
            if doc.get("first_seen") is not None:
                found[(doc["hash"], doc["url"])] = _utc(doc["first_seen"])
    return found


def collect(context: CollectContext) -> list[Event]:
    if not context.projects:
        return []
    found = [
        deactivation_event(row, context.projects[row["hash"]]) for row in _query(context, DEACTIVATIONS_SQL)
    ]
    firsts = {(row["hash"], row["url"]): row["first"] for row in _query(context, FIRST_ACTIVE_SQL)}
    first_seen = _first_seen(context, sorted(firsts))
    for key, first in sorted(firsts.items()):
        # No document yet: the run that wrote the history has not reached MongoDB; the overlap finds it next run.
        if key in first_seen and first_seen[key] >= _millis(first["received_at"]):
            found.append(activation_event(*key, first))
    return found
