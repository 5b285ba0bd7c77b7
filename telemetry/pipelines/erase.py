"""Erase one site's personal data, or one project's, from every store (scripts/erase.py).

    python scripts/erase.py site --hash H --url URL [--dry-run] [--recent-hours N]
    python scripts/erase.py project --hash H [--dry-run] [--recent-hours N]

What it does (README "Privacy"):

- MongoDB `sites`: `admin_email`, `first_name`, `last_name`, `ip_address` set to
  null; `deactivations`: `reason_info` (the user's own text) set to null. The
  documents stay: the dashboard's site counts and states do not change.
- BigQuery `sites` and `deactivations`: the same fields nulled (UPDATE), so the
  history, and every analytics figure derived from it, stays as it was.
  `rejected`: the site's (or project's) rows deleted; nothing reads them but
  people. `tracking_skipped` has no personal field and no site id: untouched.
- Cloud Storage: the stored pings deleted (they hold the raw body and the client
  address). They are found through the history (`ping_id`, `received_at` ->
  `stored_ping.object_name`), `rejected.source`, and, for pings the pipelines
  have not processed yet, by reading the last `--recent-hours` hour folders.
- The analytics tables hold no personal field (`site_days`, `site_first_seen`
  keep `hash` and `url` as the site's identity): untouched.

Nulling, not deleting rows: the history is what the analytics figures are
computed from, and deleting a site's rows would change past figures when a
day is recomputed. A site's `url` and title stay in every store as its
identity. Run again after the next pipeline run when pings may have been in
flight (everything is idempotent; a second run erases 0).
"""

# ruff: noqa: S608  (table and column names are this module's constants; every value is a query parameter)
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from telemetry.common import privacy, stored_ping, wire
from telemetry.pipelines import mongodb, records

SITE_FIELDS = privacy.PERSONAL_FIELDS  # nulled in `sites`
DEACTIVATION_FIELDS = ("reason_info",)  # nulled in `deactivations`
ROUTE_OF_STATUS = {records.ACTIVE: wire.TRACK, records.DEACTIVATED: wire.DEACTIVATE}


@dataclass(frozen=True)
class Target:
    """One site (`hash` and `url`) or, without `url`, a whole project."""

    hash: str
    url: str | None = None

    @classmethod
    def site(cls, project_hash: str, url: str) -> Target:
        return cls(project_hash, records.normalize_url(url))

    @property
    def kind(self) -> str:
        return "project" if self.url is None else "site"

    def matches(self, payload: Any) -> bool:
        """Whether a stored ping's payload belongs to the target."""
        if not isinstance(payload, dict) or payload.get("hash") != self.hash:
            return False
        if self.url is None:
            return True
        url = payload.get("url")
        return isinstance(url, str) and records.normalize_url(url) == self.url

    def mongo_filter(self) -> dict[str, Any]:
        return {"hash": self.hash} if self.url is None else {"hash": self.hash, "url": self.url}


@dataclass
class Report:
    target: Target
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        what = f"site hash={self.target.hash} url={self.target.url}" if self.target.url else "project"
        if self.target.url is None:
            what += f" hash={self.target.hash}"
        head = f"erase {what}" + (" (dry run: nothing changed)" if self.dry_run else "")
        verb = "would be " if self.dry_run else ""
        labels = {
            "mongodb.sites": f"documents {verb}nulled ({', '.join(SITE_FIELDS)})",
            "mongodb.deactivations": f"documents {verb}nulled (reason_info)",
            "bigquery.sites": f"rows {verb}nulled ({', '.join(SITE_FIELDS)})",
            "bigquery.deactivations": f"rows {verb}nulled (reason_info)",
            "bigquery.rejected": f"rows {verb}deleted",
            "bigquery.tracking_skipped": "rows: no personal data, left as they are",
            "storage.objects": f"stored pings {verb}deleted",
        }
        return [head] + [f"  {store:27} {self.counts.get(store, 0):6}  {label}" for store, label in labels.items()]


class Eraser:
    def __init__(self, bq: bigquery.Client, dataset: str, db, bucket, recent_hours: int = 2):
        self._bq = bq
        self._dataset = dataset
        self._db = db
        self._bucket = bucket
        self._recent_hours = recent_hours

    # --- BigQuery ------------------------------------------------------------------

    def _table(self, name: str) -> str:
        return f"`{self._bq.project}.{self._dataset}.{name}`"

    def _query(self, sql: str, target: Target, **arrays: list[str]):
        params = [bigquery.ScalarQueryParameter("hash", "STRING", target.hash)]
        if target.url is not None:
            params.append(bigquery.ScalarQueryParameter("url", "STRING", target.url))
        params += [bigquery.ArrayQueryParameter(name, "STRING", values) for name, values in arrays.items()]
        job = self._bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params))
        rows = list(job.result())
        return job, rows

    def _where(self, target: Target) -> str:
        return "hash = @hash" + ("" if target.url is None else " AND url = @url")

    def _object_names_from_history(self, target: Target) -> set[str]:
        names = set()
        _, rows = self._query(
            f"SELECT ping_id, received_at, status FROM {self._table('sites')} WHERE {self._where(target)}", target
        )
        names |= {
            stored_ping.object_name(ROUTE_OF_STATUS.get(r["status"], wire.TRACK), r["received_at"], r["ping_id"])
            for r in rows
        }
        _, rows = self._query(
            f"SELECT ping_id, received_at FROM {self._table('deactivations')} WHERE {self._where(target)}", target
        )
        names |= {stored_ping.object_name(wire.DEACTIVATE, r["received_at"], r["ping_id"]) for r in rows}
        if target.url is None:  # opt-outs name no site: only a whole project's are found
            _, rows = self._query(
                f"SELECT ping_id, received_at FROM {self._table('tracking_skipped')} WHERE hash = @hash", target
            )
            names |= {stored_ping.object_name(wire.TRACKING_SKIPPED, r["received_at"], r["ping_id"]) for r in rows}
        return names

    def _rejected_sources(self, target: Target) -> list[str]:
        """`rejected` rows of the target: by hash, and for a site by its payload's URL."""
        _, rows = self._query(f"SELECT source, payload FROM {self._table('rejected')} WHERE hash = @hash", target)
        sources = []
        for row in rows:
            try:
                payload = json.loads(row["payload"]) if row["payload"] else None
            except ValueError:
                payload = None
            if target.url is None or target.matches(payload):
                sources.append(row["source"])
        return sources

    def _null(self, table: str, fields: tuple[str, ...], target: Target, dry_run: bool) -> int:
        some = " OR ".join(f"{f} IS NOT NULL" for f in fields)
        where = f"{self._where(target)} AND ({some})"
        if dry_run:
            _, rows = self._query(f"SELECT COUNT(*) AS n FROM {self._table(table)} WHERE {where}", target)
            return rows[0]["n"]
        sets = ", ".join(f"{f} = NULL" for f in fields)
        job, _ = self._query(f"UPDATE {self._table(table)} SET {sets} WHERE {where}", target)
        return job.num_dml_affected_rows or 0

    def _delete_rejected(self, sources: list[str], target: Target, dry_run: bool) -> int:
        if not sources or dry_run:
            return len(sources)
        job, _ = self._query(
            f"DELETE FROM {self._table('rejected')} WHERE hash = @hash AND source IN UNNEST(@sources)",
            target,
            sources=sources,
        )
        return job.num_dml_affected_rows or 0

    # --- Cloud Storage -------------------------------------------------------------

    def _recent_object_names(self, target: Target, now: datetime) -> set[str]:
        """Stored pings of the last hours that belong to the target (read, since the
        pipelines may not have processed them yet)."""
        routes = wire.ROUTES if target.url is None else tuple(wire.ROUTES_WITH_SITE)
        names = [
            blob.name
            for hours_ago in range(self._recent_hours)
            for route in routes
            for blob in self._bucket.list_blobs(
                prefix=stored_ping.hour_prefix(route, now - timedelta(hours=hours_ago)),
                fields="items(name),nextPageToken",
            )
            if stored_ping.is_object_of(blob.name, route)
        ]

        def belongs(name: str) -> bool:
            try:
                return target.matches(stored_ping.payload_of(self._bucket.blob(name).download_as_bytes()))
            except NotFound:
                return False

        with ThreadPoolExecutor(max_workers=8) as pool:
            return {name for name, hit in zip(names, pool.map(belongs, names), strict=True) if hit}

    def _delete_objects(self, names: set[str], dry_run: bool) -> int:
        def delete(name: str) -> bool:
            blob = self._bucket.blob(name)
            try:
                if dry_run:
                    return blob.exists()
                blob.delete()
                return True
            except NotFound:
                return False

        with ThreadPoolExecutor(max_workers=8) as pool:
            return sum(pool.map(delete, sorted(names)))

    # --- the whole erase -----------------------------------------------------------

    def erase(self, target: Target, dry_run: bool = False, now: datetime | None = None) -> Report:
        report = Report(target, dry_run)
        counts = report.counts
        # Find every object first: the history rows that point at them are not deleted,
        # but the rejected rows are.
        sources = self._rejected_sources(target)
        objects = self._object_names_from_history(target) | set(sources)
        objects |= self._recent_object_names(target, now or datetime.now(UTC))

        mongo_filter = target.mongo_filter()
        for collection, fields in ((mongodb.SITES, SITE_FIELDS), (mongodb.DEACTIVATIONS, DEACTIVATION_FIELDS)):
            query = {**mongo_filter, "$or": [{f: {"$ne": None}} for f in fields]}
            if dry_run:
                counts[f"mongodb.{collection}"] = self._db[collection].count_documents(query)
            else:
                result = self._db[collection].update_many(query, {"$set": dict.fromkeys(fields)})
                counts[f"mongodb.{collection}"] = result.modified_count

        counts["bigquery.sites"] = self._null("sites", SITE_FIELDS, target, dry_run)
        counts["bigquery.deactivations"] = self._null("deactivations", DEACTIVATION_FIELDS, target, dry_run)
        counts["bigquery.rejected"] = self._delete_rejected(sources, target, dry_run)
        counts["bigquery.tracking_skipped"] = 0
        counts["storage.objects"] = self._delete_objects(objects, dry_run)
        return report
