"""The dashboard's MongoDB queries. Each is answered from an index that
telemetry/pipelines/site_state.py (`ensure_indexes`, names from telemetry/common/sites.py) or
telemetry/analytics/serving.py creates; tests/integration/test_dashboard_indexes.py proves it with explain plans.

| query | index |
| --- | --- |
| sites page, no filter or `q` only | sites `hash_last_seen_url` (hash, last_seen desc, url) |
| sites page by `status` (and any other filter) | sites `hash_status_last_seen_url` |
| sites page by `version` (and `q`) | sites `hash_version_last_seen_url` |
| sites.csv (any filter) | sites `hash_url_unique` (hash, url), in url order: no sort |
| deactivations page | deactivations `hash_received_at_url` (hash, received_at desc, url) |
| deactivations page by `reason` | deactivations `hash_reason_received_at_url` |
| deactivations.csv | deactivations `hash_url_unique` |
| figures | analytics `hash_metric_day_unique` (hash, metric, day) |

Each query names its index (`hint`). A page is one range of its index in index order, stopped at the limit: on
MongoDB, page 1,000 reads what page 1 reads. `q` (a substring of the url or
the site's title) cannot be an index bound; it is tested on the documents met
while walking the project's range in order. The exports walk (hash, url), the
one index whose order no update changes, so a long export never meets a site
twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from pymongo.cursor import Cursor
from pymongo.database import Database

from telemetry.analytics import metrics
from telemetry.common import config, sites
from telemetry.common.projects import load_project
from telemetry.common.sites import DEACTIVATIONS, SITES
from telemetry.dashboard import items, paging

SITES_KIND = "sites"
DEACTIVATIONS_KIND = "deactivations"

EXPORT_INDEX = sites.UNIQUE_INDEX
FIGURES_INDEX = "hash_metric_day_unique"
EXPORT_BATCH = 1000  # documents per batch of an export's cursor (a few MB at most)


@dataclass(frozen=True)
class SiteFilters:
    status: str | None = None
    version: str | None = None
    q: str | None = None


def project(db: Database, project_hash: str) -> dict[str, Any] | None:
    return load_project(db, project_hash)


def contains(text: str) -> dict[str, Any]:
    """A case-insensitive substring match of `text`, every regex character escaped."""
    return {"$regex": re.escape(text), "$options": "i"}


def site_filter(project_hash: str, filters: SiteFilters) -> dict[str, Any]:
    query: dict[str, Any] = {"hash": project_hash}
    if filters.status is not None:
        query["status"] = filters.status
    if filters.version is not None:
        query["project_version"] = filters.version
    if filters.q is not None:
        query["$and"] = [{"$or": [{"url": contains(filters.q)}, {"site": contains(filters.q)}]}]
    return query


def server_time_ms() -> int:
    """The bound MongoDB itself puts on a page's or the figures' query (maxTimeMS): the client's own
    bound, MONGODB_TIMEOUT_SECONDS, so that a query the function has given up on (a rare `q` walking a
    large project; attacker-planted URLs are as long as a ping allows) does not go on scanning on the
    cluster the pipelines share. Past it the query fails (ExecutionTimeout) and the answer is the 503.
    Exports are not bounded so: their cursor's time adds up over every batch of a long export."""
    return config.get_int("MONGODB_TIMEOUT_SECONDS") * 1000


def page_cursor(
    collection,
    query: dict[str, Any],
    projection: dict[str, Any],
    time_field: str,
    index: str,
    limit: int,
    position: paging.Position | None,
) -> Cursor:
    """The documents after `position` in (time desc, url) order: one more than the page, to know if more follow.

    The index is named (`hint`), not left to the planner: the page must walk an index in
    its sort order, and a planner may prefer a narrower one and sort in memory
    (SecantusDB always picks by the filter alone; MongoDB's plan cache can too).
    """
    if position is not None:
        query = {**query, "$and": [*query.get("$and", []), paging.after(position, time_field)]}
    ordered = collection.find(query, projection).sort([(time_field, -1), ("url", 1)]).hint(index)
    return ordered.limit(limit + 1).max_time_ms(server_time_ms())


def _page(
    cursor: Cursor, time_field: str, kind: str, limit: int
) -> tuple[list[dict[str, Any]], paging.Position | None]:
    """One page, and the position of its last item if more follow."""
    docs = list(cursor)
    if len(docs) <= limit:
        return docs, None
    docs = docs[:limit]
    last = docs[-1]
    return docs, paging.Position(kind, last[time_field], last["url"])


def sites_page_cursor(
    db: Database, project_hash: str, filters: SiteFilters, limit: int, position: paging.Position | None
) -> Cursor:
    query = site_filter(project_hash, filters)
    if filters.status is not None:
        index = sites.SITES_BY_STATUS
    elif filters.version is not None:
        index = sites.SITES_BY_VERSION
    else:
        index = sites.SITES_BY_LAST_SEEN
    return page_cursor(db[SITES], query, items.SITE_PROJECTION, "last_seen", index, limit, position)


def sites_page(
    db: Database, project_hash: str, filters: SiteFilters, limit: int, position: paging.Position | None
) -> tuple[list[dict[str, Any]], paging.Position | None]:
    return _page(sites_page_cursor(db, project_hash, filters, limit, position), "last_seen", SITES_KIND, limit)


def sites_export(db: Database, project_hash: str, filters: SiteFilters) -> Cursor:
    """Every matching site, in url order, fetched EXPORT_BATCH at a time."""
    return (
        db[SITES]
        .find(site_filter(project_hash, filters), items.SITE_PROJECTION)
        .sort([("hash", 1), ("url", 1)])
        .hint(EXPORT_INDEX)
        .batch_size(EXPORT_BATCH)
    )


def deactivation_filter(project_hash: str, reason: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {"hash": project_hash}
    if reason is not None:
        query["reason_id"] = reason
    return query


def deactivations_page_cursor(
    db: Database, project_hash: str, reason: str | None, limit: int, position: paging.Position | None
) -> Cursor:
    query = deactivation_filter(project_hash, reason)
    index = sites.DEACTIVATIONS_BY_TIME if reason is None else sites.DEACTIVATIONS_BY_REASON
    return page_cursor(db[DEACTIVATIONS], query, items.DEACTIVATION_PROJECTION, "received_at", index, limit, position)


def deactivations_page(
    db: Database, project_hash: str, reason: str | None, limit: int, position: paging.Position | None
) -> tuple[list[dict[str, Any]], paging.Position | None]:
    cursor = deactivations_page_cursor(db, project_hash, reason, limit, position)
    return _page(cursor, "received_at", DEACTIVATIONS_KIND, limit)


def deactivations_export(db: Database, project_hash: str, reason: str | None) -> Cursor:
    return (
        db[DEACTIVATIONS]
        .find(deactivation_filter(project_hash, reason), items.DEACTIVATION_PROJECTION)
        .sort([("hash", 1), ("url", 1)])
        .hint(EXPORT_INDEX)
        .batch_size(EXPORT_BATCH)
    )


def figures_cursor(db: Database, project_hash: str, metric: str | None, first: date, last: date) -> Cursor:
    """The serving copy's documents of the days first..last, of one metric or all, by metric and day."""
    query: dict[str, Any] = {
        "hash": project_hash,
        "day": {"$gte": first.isoformat(), "$lte": last.isoformat()},  # YYYY-MM-DD (metrics.DAY_FORMAT), any year
    }
    if metric is not None:
        query["metric"] = metric
    fields = {"_id": 0, "metric": 1, "day": 1, "value": 1, "breakdown": 1, "rates": 1, "sites": 1}
    ordered = db[metrics.COLLECTION].find(query, fields).sort([("metric", 1), ("day", 1)]).hint(FIGURES_INDEX)
    return ordered.max_time_ms(server_time_ms())


def figures(db: Database, project_hash: str, metric: str | None, first: date, last: date) -> list[dict[str, Any]]:
    return list(figures_cursor(db, project_hash, metric, first, last))
