"""Erase one site's personal data, or one project's, from every store (scripts/erase.py).

    python scripts/erase.py site --hash H --url URL [--dry-run] [--recent-hours N]
    python scripts/erase.py project --hash H [--dry-run] [--recent-hours N]

A site is every URL the pipelines may have stored for it (`site_urls`): `http`
and `https`, with and without `www.`, with and without the scheme's default
port; `records.normalize_url` already lowercases scheme and host and drops a
trailing slash, so `HTTP://WWW.Example.org/` is one of them.

What it does (docs/privacy.md, "Erasing a site or a project"):

- MongoDB `sites`: `admin_email`, `first_name`, `last_name`, `ip_address` and
  `custom_fields` (the project's whitelisted `extra` keys, which can hold
  anything) set to null; `mail.error` removed from every site of the project
  (a failed mail call's error was stored on every site of its batch, and before
  it was cut to a summary it could quote the batch's contacts). `deactivations`:
  `reason_info` (the user's own text) set to null. The documents stay: the
  dashboard's site counts and states do not change.
- BigQuery `sites` and `deactivations`: the same fields nulled (UPDATE), so the
  history, and every analytics figure derived from it, stays as it was.
  `rejected`: the site's (or project's) rows deleted; nothing reads them but
  people. `tracking_skipped` has no personal field and no site id: untouched.
- Staging data of runs that failed, or are still running: the per-run staging
  tables (`_staging_<table>_<run id>` in the staging dataset, and in the history
  dataset where older runs left them) and the load jobs' files in the work
  bucket (`loads/<run id>/<table>/*.ndjson`). Their rows of the target are
  nulled in place, as in the history (a staged `rejected` row loses its
  payload), never deleted, and no file or table is removed: a run that is still
  going then loads, merges and counts exactly the rows it staged, and its
  reconciliation still balances, only without the personal values. Files are
  rewritten first and tables updated after, each file only if its generation is
  still the one read (`if_generation_match`), so a run writing at the same time
  is never overwritten. (A load job reading a file at the moment it is replaced
  may fail, and its run with it: the run's notifications come back, nothing is
  lost.)
- Cloud Storage: the stored pings deleted (they hold the raw body and the client
  address). They are found through the history and the staging data
  (`ping_id`, `received_at` -> `stored_ping.object_name`), `rejected.source`,
  and, for pings the pipelines have not processed yet, by reading the last
  `--recent-hours` hour folders.
- The analytics job's state: `site_days` keeps each site's latest
  `custom_fields` (for the custom-field figures), nulled there too
  (`ANALYTICS_NULLED`, found through the manifests); its other columns and
  `site_first_seen` keep `hash`, `url` and aggregates only. The daily figures
  (`analytics_daily`, MongoDB `analytics`) are counts per label: untouched.

Nulling, not deleting rows: the history is what the analytics figures are
computed from, and deleting a site's rows would change past figures when a
day is recomputed. A site's `url` and title stay in every store as its
identity. Run again after the runs in flight have ended (everything is
idempotent; a second run erases 0).
"""

# ruff: noqa: S608  (table and column names are this module's constants; every value is a query parameter)
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.api_core.exceptions import BadRequest, NotFound, PreconditionFailed
from google.cloud import bigquery

from telemetry.common import privacy, sites, stored_ping, tables, wire
from telemetry.notify import outbox as notify_outbox
from telemetry.pipelines import records, site_state, warehouse

# The history tables, as their manifests declare them (telemetry/pipelines/tables/): each
# one's name, and its key (`ping_id`, or `source` for `rejected`).
SITES, DEACTIVATIONS, TRACKING_SKIPPED, REJECTED = (
    warehouse.SITES,
    warehouse.DEACTIVATIONS,
    warehouse.TRACKING_SKIPPED,
    warehouse.REJECTED,
)
# The tables whose rows are accepted pings (each row names its stored ping by key and received_at).
PING_TABLES = (SITES, DEACTIVATIONS, TRACKING_SKIPPED)
SITE_FIELDS = (*privacy.PERSONAL_FIELDS, "custom_fields")  # nulled in `sites`
DEACTIVATION_FIELDS = ("reason_info",)  # nulled in `deactivations`
REJECTED_FIELDS = ("payload",)  # nulled in a staged `rejected` row (a merged one is deleted)
# The columns nulled per table; a test checks that no table of any manifest holds a
# personal column this leaves (`tracking_skipped` and the analytics tables hold none).
NULLED = {SITES.name: SITE_FIELDS, DEACTIVATIONS.name: DEACTIVATION_FIELDS, REJECTED.name: REJECTED_FIELDS}
# The analytics job's tables that copy a column nulled in `sites` (site_days: each site's latest
# custom fields), by their manifests: nulled the same way. The job may not have made them yet.
ANALYTICS_NULLED = {
    layout.name: held
    for layout in tables.layouts("analytics")
    if (held := tuple(c for c in tables.columns(layout.schema_file) if c in SITE_FIELDS))
}
ROUTE_OF_STATUS = {sites.ACTIVE: wire.TRACK, sites.DEACTIVATED: wire.DEACTIVATE}
DEFAULT_PORTS = {"http": "80", "https": "443"}

# The pipelines' staging (warehouse.py): per-run tables `_staging_<table>_<run id>` (in the
# staging dataset; older runs left them in the history dataset) and the load jobs' files
# `loads/<run id>/<table>/<name>.ndjson` in the work bucket.
STAGING_TABLE_PREFIX = warehouse.STAGING_TABLE_PREFIX
STAGING_OBJECT_PREFIX = f"{warehouse.STAGING_FOLDER}/"
STAGING_FILE_SUFFIX = warehouse.PART_SUFFIX
STAGED_TABLES = tuple(table.name for table in warehouse.TABLES)
# A rewrite whose file changed since it was read is read and tried again, at most this often.
REWRITE_ATTEMPTS = 5
_JSON_URL = re.compile(r'"url"\s*:\s*"((?:[^"\\]|\\.)*)"')


def site_key(url: str) -> tuple[str, str, str, str] | None:
    """What two stored URLs of one site share: host without `www.` and without the
    scheme's default port, path, query (and the scheme, if not http/https).
    None for a URL that does not normalise."""
    try:
        parts = urlsplit(records.normalize_url(url))
    except ValueError:
        return None
    scheme, host = parts.scheme, parts.netloc
    if scheme in DEFAULT_PORTS:
        host = host.removesuffix(f":{DEFAULT_PORTS[scheme]}")
        scheme = ""
    return scheme, host.removeprefix("www."), parts.path, parts.query


def site_urls(url: str) -> tuple[str, ...]:
    """Every URL, as `records.normalize_url` stores it, that `site_key` makes one site with `url`."""
    key = site_key(url)
    if key is None:
        raise ValueError(f"not a URL: {url!r}")
    scheme, host, path, query = key
    if scheme:  # neither http nor https: only the www. variants
        return tuple(sorted({urlunsplit((scheme, h, path, query, "")) for h in (host, f"www.{host}")}))
    own_port = urlsplit(f"//{host}").port is not None  # a port of its own: no default port to add
    return tuple(
        sorted(
            urlunsplit((s, h + p, path, query, ""))
            for s, default in DEFAULT_PORTS.items()
            for h in (host, f"www.{host}")
            for p in (("",) if own_port else ("", f":{default}"))
        )
    )


def payload_url(text: str | None) -> str | None:
    """The `url` of a `rejected` payload (a JSON text): parsed, or, where the text is not
    JSON (cut short), its first `"url": "..."` member read as a JSON string."""
    if not text:
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        url = payload.get("url")
        return url if isinstance(url, str) else None
    found = _JSON_URL.search(text)
    if found is None:
        return None
    try:
        return json.loads(f'"{found.group(1)}"')
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    """One site (`hash` and `url`, every variant of it) or, without `url`, a whole project."""

    hash: str
    url: str | None = None

    @classmethod
    def site(cls, project_hash: str, url: str) -> Target:
        return cls(project_hash, records.normalize_url(url))

    @property
    def kind(self) -> str:
        return "project" if self.url is None else "site"

    @property
    def urls(self) -> tuple[str, ...]:
        return () if self.url is None else site_urls(self.url)

    def matches_url(self, url: Any) -> bool:
        if self.url is None:
            return True
        return isinstance(url, str) and site_key(url) is not None and site_key(url) == site_key(self.url)

    def matches(self, payload: Any) -> bool:
        """Whether a stored ping's payload, or a site/deactivation row, belongs to the target."""
        if not isinstance(payload, dict) or payload.get("hash") != self.hash:
            return False
        return self.matches_url(payload.get("url"))

    def matches_rejected(self, row: dict[str, Any]) -> bool:
        """Whether a `rejected` row belongs to the target: by hash, and for a site by its payload's URL."""
        if row.get("hash") != self.hash:
            return False
        return self.url is None or self.matches_url(payload_url(row.get("payload")))

    def mongo_filter(self) -> dict[str, Any]:
        return {"hash": self.hash} if self.url is None else {"hash": self.hash, "url": {"$in": list(self.urls)}}


def erase_row(table: str, row: dict[str, Any], target: Target) -> bool:
    """Null the personal fields of a staged row (`NULLED[table]`) if it is the target's; whether it changed."""
    fields = NULLED.get(table)
    if not fields or not isinstance(row, dict):
        return False
    belongs = target.matches_rejected(row) if table == REJECTED.name else target.matches(row)
    if not belongs or all(row.get(f) is None for f in fields):
        return False
    for f in fields:
        row[f] = None
    return True


def staged_table_of(name: str, prefix: str = "") -> str | None:
    """The history table whose rows a staging table or file name holds, or None if it is no staging name."""
    if prefix:  # a file: loads/<run id>/<table>/<name>.ndjson
        parts = name.split("/")
        if len(parts) != 4 or not name.startswith(prefix) or not name.endswith(STAGING_FILE_SUFFIX):
            return None
        return parts[2] if parts[2] in STAGED_TABLES else None
    for table in sorted(STAGED_TABLES, key=len, reverse=True):
        if name.startswith(f"{STAGING_TABLE_PREFIX}{table}_"):
            return table
    return None


@dataclass
class Report:
    target: Target
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # staging tables BigQuery would not change yet

    @property
    def complete(self) -> bool:
        return not self.refused

    def lines(self) -> list[str]:
        what = f"site hash={self.target.hash} url={self.target.url}" if self.target.url else "project"
        if self.target.url is None:
            what += f" hash={self.target.hash}"
        head = f"erase {what}" + (" (dry run: nothing changed)" if self.dry_run else "")
        verb = "would be " if self.dry_run else ""
        labels = {
            "mongodb.sites": f"documents {verb}nulled ({', '.join(SITE_FIELDS)})",
            "mongodb.sites.mail_error": f"documents of the project whose mail.error {verb}removed",
            "mongodb.deactivations": f"documents {verb}nulled ({', '.join(DEACTIVATION_FIELDS)})",
            "mongodb.notify_events": f"events {verb}nulled (data.{', '.join(DEACTIVATION_FIELDS)})",
            f"bigquery.{SITES.name}": f"rows {verb}nulled ({', '.join(SITE_FIELDS)})",
            f"bigquery.{DEACTIVATIONS.name}": f"rows {verb}nulled ({', '.join(DEACTIVATION_FIELDS)})",
            f"bigquery.{REJECTED.name}": f"rows {verb}deleted",
            f"bigquery.{TRACKING_SKIPPED.name}": "rows: no personal data, left as they are",
            **{
                f"bigquery.{table}": f"rows of the analytics state {verb}nulled ({', '.join(fields)})"
                for table, fields in ANALYTICS_NULLED.items()
            },
            "bigquery.staging": f"staged rows {verb}nulled (tables of failed or running runs)",
            "storage.staging": f"staged rows {verb}nulled (load files of failed or running runs)",
            "storage.objects": f"stored pings {verb}deleted",
        }
        lines = [head] + [f"  {store:27} {self.counts.get(store, 0):6}  {label}" for store, label in labels.items()]
        lines += [
            f"  NOT ERASED: {table}: BigQuery refuses to change rows streamed in the last 30 minutes; run again later"
            for table in self.refused
        ]
        return lines


class Eraser:
    def __init__(
        self,
        bq: bigquery.Client,
        dataset: str,
        db,
        bucket,
        recent_hours: int = 2,
        staging_dataset: str | None = None,
        work_bucket=None,
    ):
        self._bq = bq
        self._dataset = dataset
        self._staging_datasets = tuple(dict.fromkeys(d for d in (staging_dataset, dataset) if d))
        self._db = db
        self._bucket = bucket
        self._work_bucket = work_bucket
        self._recent_hours = recent_hours

    # --- BigQuery ------------------------------------------------------------------

    def _table(self, name: str, dataset: str | None = None) -> str:
        return f"`{self._bq.project}.{dataset or self._dataset}.{name}`"

    def _query(self, sql: str, target: Target, **arrays: list[str]):
        params = [bigquery.ScalarQueryParameter("hash", "STRING", target.hash)]
        if target.url is not None:
            params.append(bigquery.ArrayQueryParameter("urls", "STRING", list(target.urls)))
        params += [bigquery.ArrayQueryParameter(name, "STRING", values) for name, values in arrays.items()]
        job = self._bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params))
        rows = list(job.result())
        return job, rows

    def _where(self, target: Target) -> str:
        return "hash = @hash" + ("" if target.url is None else " AND url IN UNNEST(@urls)")

    def _object_names_of_rows(
        self, table: str, target: Target, dataset: str | None = None, table_id: str | None = None
    ) -> set[str]:
        """The stored pings behind the target's rows of a history table (or of `table_id`, staging its rows)."""
        ref = self._table(table_id or table, dataset)
        if table == SITES.name:
            key = SITES.key
            _, rows = self._query(f"SELECT {key}, received_at, status FROM {ref} WHERE {self._where(target)}", target)
            return {
                stored_ping.object_name(ROUTE_OF_STATUS.get(r["status"], wire.TRACK), r["received_at"], r[key])
                for r in rows
            }
        if table == DEACTIVATIONS.name:
            key = DEACTIVATIONS.key
            _, rows = self._query(f"SELECT {key}, received_at FROM {ref} WHERE {self._where(target)}", target)
            return {stored_ping.object_name(wire.DEACTIVATE, r["received_at"], r[key]) for r in rows}
        if table == TRACKING_SKIPPED.name and target.url is None:  # opt-outs name no site: only a project's
            key = TRACKING_SKIPPED.key
            _, rows = self._query(f"SELECT {key}, received_at FROM {ref} WHERE hash = @hash", target)
            return {stored_ping.object_name(wire.TRACKING_SKIPPED, r["received_at"], r[key]) for r in rows}
        if table == REJECTED.name:
            return set(self._rejected_sources(target, dataset, table_id or table))
        return set()

    def _rejected_sources(
        self, target: Target, dataset: str | None = None, table: str = REJECTED.name, with_payload: bool = False
    ) -> list[str]:
        """`rejected` rows of the target: by hash, and for a site by its payload's URL (any variant);
        with `with_payload`, only rows whose payload is not nulled yet."""
        where = "hash = @hash" + (" AND payload IS NOT NULL" if with_payload else "")
        key = REJECTED.key  # `source`: the stored object a rejected row stands for
        _, rows = self._query(f"SELECT {key}, hash, payload FROM {self._table(table, dataset)} WHERE {where}", target)
        return [row[key] for row in rows if target.matches_rejected(dict(row.items()))]

    def _null(self, table: str, fields: tuple[str, ...], target: Target, dry_run: bool, ref: str | None = None) -> int:
        some = " OR ".join(f"{f} IS NOT NULL" for f in fields)
        where = f"{self._where(target)} AND ({some})"
        ref = ref or self._table(table)
        if dry_run:
            _, rows = self._query(f"SELECT COUNT(*) AS n FROM {ref} WHERE {where}", target)
            return rows[0]["n"]
        sets = ", ".join(f"{f} = NULL" for f in fields)
        job, _ = self._query(f"UPDATE {ref} SET {sets} WHERE {where}", target)
        return job.num_dml_affected_rows or 0

    def _delete_rejected(self, sources: list[str], target: Target, dry_run: bool) -> int:
        if not sources or dry_run:
            return len(sources)
        job, _ = self._query(
            f"DELETE FROM {self._table(REJECTED.name)} WHERE hash = @hash AND {REJECTED.key} IN UNNEST(@sources)",
            target,
            sources=sources,
        )
        return job.num_dml_affected_rows or 0

    # --- staging data of failed or running runs ------------------------------------

    def _staging_tables(self) -> list[tuple[str, str, str]]:
        """(dataset, table id, staged table) of every staging table in the staging and history datasets."""
        found = []
        for dataset in self._staging_datasets:
            try:
                listed = list(self._bq.list_tables(f"{self._bq.project}.{dataset}"))
            except NotFound:
                continue
            for item in listed:
                staged = staged_table_of(item.table_id)
                if staged is not None:
                    found.append((dataset, item.table_id, staged))
        return found

    def _erase_staging_table(self, dataset: str, table_id: str, staged: str, target: Target, dry_run: bool) -> int:
        """Null the target's rows of one staging table in place (DML: row count and keys unchanged)."""
        ref = self._table(table_id, dataset)
        if staged == REJECTED.name:
            sources = self._rejected_sources(target, dataset, table_id, with_payload=True)
            if not sources or dry_run:
                return len(sources)
            job, _ = self._query(
                f"UPDATE {ref} SET payload = NULL WHERE hash = @hash AND {REJECTED.key} IN UNNEST(@sources) "
                "AND payload IS NOT NULL",
                target,
                sources=sources,
            )
            return job.num_dml_affected_rows or 0
        return self._null(staged, NULLED[staged], target, dry_run, ref)

    def _erase_staging_tables(self, target: Target, dry_run: bool, report: Report) -> tuple[int, set[str]]:
        nulled, names = 0, set()
        for dataset, table_id, staged in self._staging_tables():
            if staged not in NULLED and not (staged == TRACKING_SKIPPED.name and target.url is None):
                continue
            try:
                names |= self._object_names_of_rows(staged, target, dataset, table_id)
                if staged in NULLED:
                    nulled += self._erase_staging_table(dataset, table_id, staged, target, dry_run)
            except NotFound:
                continue  # its run dropped it meanwhile: merged (the history is erased below) or expired
            except BadRequest as e:
                if "streaming buffer" not in str(e):
                    raise
                report.refused.append(f"{dataset}.{table_id}")
        return nulled, names

    def _erase_staging_file(self, name: str, staged: str, target: Target, dry_run: bool) -> tuple[int, set[str]]:
        """Null the target's rows of one NDJSON staging file, rewritten only if it is still the version read."""
        for _ in range(REWRITE_ATTEMPTS):
            blob = self._work_bucket.get_blob(name)
            if blob is None:
                return 0, set()  # its run deleted it meanwhile
            try:
                data = blob.download_as_bytes(if_generation_match=blob.generation)
            except PreconditionFailed:
                continue  # written meanwhile: read it again
            except NotFound:
                return 0, set()
            if target.hash.encode() not in data:
                return 0, set()
            lines, nulled, names = [], 0, set()
            for line in data.decode("utf-8").splitlines(keepends=True):
                try:
                    row = json.loads(line)
                except ValueError:
                    lines.append(line)  # not a row (a blank line): kept as it is
                    continue
                names |= _object_names_of_row(staged, row, target)
                if erase_row(staged, row, target):
                    nulled += 1
                    line = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
                lines.append(line)
            if not nulled or dry_run:
                return nulled, names
            try:
                blob.upload_from_string(
                    "".join(lines).encode("utf-8"),
                    content_type=blob.content_type or "application/x-ndjson",
                    if_generation_match=blob.generation,
                )
                return nulled, names
            except PreconditionFailed:
                continue  # written meanwhile: read it again
            except NotFound:
                return 0, names
        raise RuntimeError(f"{name} kept changing while it was rewritten ({REWRITE_ATTEMPTS} tries): run again")

    def _erase_staging_files(self, target: Target, dry_run: bool) -> tuple[int, set[str]]:
        if self._work_bucket is None:
            return 0, set()
        files = [
            (blob.name, staged)
            for blob in self._work_bucket.list_blobs(prefix=STAGING_OBJECT_PREFIX, fields="items(name),nextPageToken")
            if (staged := staged_table_of(blob.name, STAGING_OBJECT_PREFIX)) is not None
        ]
        nulled, names = 0, set()
        with ThreadPoolExecutor(max_workers=8) as pool:
            for count, found in pool.map(lambda f: self._erase_staging_file(*f, target, dry_run), files):
                nulled += count
                names |= found
        return nulled, names

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
        objects = set(sources)
        for table in PING_TABLES:
            objects |= self._object_names_of_rows(table.name, target)
        # Staging: the files before the tables, so that a load job started meanwhile
        # reads nulled rows, and one that already ran has its rows nulled in its table.
        counts["storage.staging"], names = self._erase_staging_files(target, dry_run)
        objects |= names
        counts["bigquery.staging"], names = self._erase_staging_tables(target, dry_run, report)
        objects |= names
        objects |= self._recent_object_names(target, now or datetime.now(UTC))

        mongo_filter = target.mongo_filter()
        for collection, fields in ((site_state.SITES, SITE_FIELDS), (site_state.DEACTIVATIONS, DEACTIVATION_FIELDS)):
            query = {**mongo_filter, "$or": [{f: {"$ne": None}} for f in fields]}
            if dry_run:
                counts[f"mongodb.{collection}"] = self._db[collection].count_documents(query)
            else:
                result = self._db[collection].update_many(query, {"$set": dict.fromkeys(fields)})
                counts[f"mongodb.{collection}"] = result.modified_count
        # The notify outbox's copies of a deactivation's words (telemetry/notify/outbox.py); a mail
        # or webhook already sent is the vendor's.
        notify_query: dict[str, Any] = {
            "project": target.hash,
            "$or": [{f"data.{f}": {"$ne": None}} for f in DEACTIVATION_FIELDS],
        }
        if target.url is not None:
            notify_query["data.url"] = {"$in": list(target.urls)}
        if dry_run:
            counts["mongodb.notify_events"] = self._db[notify_outbox.EVENTS].count_documents(notify_query)
        else:
            nulled = {f"data.{f}": None for f in DEACTIVATION_FIELDS}
            counts["mongodb.notify_events"] = (
                self._db[notify_outbox.EVENTS].update_many(notify_query, {"$set": nulled}).modified_count
            )
        # A batch is one project's: any site's error may quote the target's contact.
        with_error = {"hash": target.hash, "mail.error": {"$exists": True}}
        if dry_run:
            counts["mongodb.sites.mail_error"] = self._db[site_state.SITES].count_documents(with_error)
        else:
            result = self._db[site_state.SITES].update_many(with_error, {"$unset": {"mail.error": ""}})
            counts["mongodb.sites.mail_error"] = result.modified_count

        counts[f"bigquery.{SITES.name}"] = self._null(SITES.name, SITE_FIELDS, target, dry_run)
        counts[f"bigquery.{DEACTIVATIONS.name}"] = self._null(DEACTIVATIONS.name, DEACTIVATION_FIELDS, target, dry_run)
        counts[f"bigquery.{REJECTED.name}"] = self._delete_rejected(sources, target, dry_run)
        for table, fields in ANALYTICS_NULLED.items():
            try:
                counts[f"bigquery.{table}"] = self._null(table, fields, target, dry_run)
            except NotFound:  # the analytics job has not run in this dataset yet
                counts[f"bigquery.{table}"] = 0
        counts[f"bigquery.{TRACKING_SKIPPED.name}"] = 0
        counts["storage.objects"] = self._delete_objects(objects, dry_run)
        return report


def _object_names_of_row(table: str, row: dict[str, Any], target: Target) -> set[str]:
    """The stored ping behind one staged row of the target, if it names one."""
    if not isinstance(row, dict):
        return set()
    if table == REJECTED.name:
        source = row.get(REJECTED.key)
        return {source} if isinstance(source, str) and target.matches_rejected(row) else set()
    if table == TRACKING_SKIPPED.name:
        belongs = target.url is None and row.get("hash") == target.hash
    else:
        belongs = target.matches(row)
    layout = warehouse.layout(table)
    ping_id, received_at = row.get(layout.key), row.get("received_at")
    if not belongs or not isinstance(ping_id, str) or not isinstance(received_at, str):
        return set()
    try:
        at = stored_ping.parse_timestamp(received_at)
    except ValueError:
        return set()
    route = {SITES.name: ROUTE_OF_STATUS.get(row.get("status"), wire.TRACK), DEACTIVATIONS.name: wire.DEACTIVATE}
    return {stored_ping.object_name(route.get(table, wire.TRACKING_SKIPPED), at, ping_id)}
