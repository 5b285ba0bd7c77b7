"""The producer of `site.deactivated` and `site.activated`, from what the pipelines committed.

- `site.deactivated`: one per row of the BigQuery `deactivations` history received
  in the window. `received_at` is the table's partitioning column, so the query
  reads only the window's days. The id comes from the row's `ping_id`, unique in
  the history: the same deactivation found again (the overlap, a re-run, an hour
  the audit reprocessed) has the same id.
- `site.activated`: a site new to its project. The pipelines decide that a site is
  new when its MongoDB `sites` document has no `first_seen` yet
  (site_state._is_new), and keep `first_seen` as the earliest `received_at` of its
  pings (it only ever moves earlier). So a site activated in the window is a
  document whose `first_seen` lies in it, read through the `first_seen` index
  (common/sites.SITES_BY_FIRST_SEEN). The BigQuery history cannot say that a site
  is new without reading every partition before the window. The id comes from
  (hash, url): a site is new once, even if a late ping moves its `first_seen`.

Only projects that exist (`context.projects`) get events: a ping of an unknown
project is history, not a vendor's event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from telemetry.common import projects, sites
from telemetry.notify import events
from telemetry.notify.contract import CollectContext
from telemetry.notify.events import Event

# The history tables it reads (terraform/notify.tf grants read on exactly these).
READS = ("deactivations",)

DEACTIVATIONS_SQL = """
SELECT hash, url, site, reason_id, reason_info, project_version, ping_id, received_at
FROM `{dataset}.deactivations`
WHERE received_at >= @since AND received_at < @until AND hash IN UNNEST(@projects)
"""

SITE_FIELDS = ("hash", "url", "site", "status", "project_version", "wp_version", "php_version", "first_seen")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ensure_indexes(db: Any) -> None:
    """The `first_seen` index of `sites` the activation query walks. Idempotent."""
    db[sites.SITES].create_index(sites.FIRST_SEEN_KEYS, name=sites.SITES_BY_FIRST_SEEN)


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


def activation_event(doc: dict[str, Any]) -> Event:
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


def deactivations(context: CollectContext) -> list[Event]:
    from google.cloud import bigquery

    rows = context.query(
        DEACTIVATIONS_SQL,
        [
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", context.since),
            bigquery.ScalarQueryParameter("until", "TIMESTAMP", context.until),
            bigquery.ArrayQueryParameter("projects", "STRING", sorted(context.projects)),
        ],
    )
    return [deactivation_event(row, context.projects[row["hash"]]) for row in rows]


def activations(context: CollectContext) -> list[Event]:
    query = {"first_seen": {"$gte": context.since, "$lt": context.until}}
    projection = {"_id": 0, **dict.fromkeys(SITE_FIELDS, 1)}
    cursor = context.db[sites.SITES].find(query, projection).hint(sites.SITES_BY_FIRST_SEEN)
    return [activation_event(doc) for doc in cursor if doc["hash"] in context.projects]


def collect(context: CollectContext) -> list[Event]:
    if not context.projects:
        return []
    return deactivations(context) + activations(context)
