"""BigQuery: the history tables, their schemas, and exactly-once appends.

Each table is declared by its manifest, telemetry/pipelines/tables/<table>/ (schema,
partitioning, clustering, key: telemetry/common/tables.py); Terraform declares the
production tables from the same files. Every table is partitioned by day on
`received_at` and clustered by `hash`.

Write path: load jobs, not streaming. A run writes each batch of rows as one
newline-delimited JSON object, `gs://<work bucket>/loads/<run id>/<table>/<part>.ndjson`.
At its end, per table, ONE load job reads all of them (one wildcard URI) into a
staging table of the run's own in the scratch dataset,
`<staging dataset>._staging_<table>_<run id>` (the history's layout, expiring after
a day if the run never drops it); one MERGE then inserts the rows whose key
(`ping_id`, or `source` for `rejected`) the history table does not hold yet; then
the run drops the staging table and deletes its objects.

Why load jobs and not `insertAll` (the streaming API, `insert_rows_json`): an
`insertAll` into a table created seconds earlier can answer 404 for a while; rows
streamed into a table deleted and recreated under the same name can be dropped;
streamed rows sit in a buffer that DML cannot touch for up to 90 minutes; and a
request is at most 10 MB, which a few hundred hostile pings' rows exceed. A load
job has none of these: it is atomic, free of charge, limited per job to 10,000
source URIs (a wildcard counts as one), 15 TB and JSON rows of 100 MB.

Exactly once: a retried Beam bundle writes its part again under another name, so
a row can be staged twice; the MERGE keeps one per key (ROW_NUMBER). A run that
dies before its MERGE leaves nothing in history, and a re-run inserts nothing twice.

Rows BigQuery refuses: every row is checked before it is staged (`check_row`:
at most MAX_ROW_BYTES), so by construction a load job has nothing to refuse. If
it still refuses some (up to MAX_BAD_RECORDS per load), it skips them and
reports them in `job.errors`; `HistoryWriter.load` then finds the staged rows
whose key is missing from the staging table and returns them, for the caller to
set aside in `rejected` (connectors.MergeHistory). More refusals than that mean a
systematic fault (a schema out of step, say): the load fails and the run with it.

The same client, calls and SQL run against BigQuery and bqemulator: only
`telemetry.common.cloud` knows which. (Beam's `WriteToBigQuery` cannot be pointed
at an emulator, so the pipelines use this path everywhere.) bqemulator differs in
one way: it ignores `max_bad_records` and fails the whole load on a bad row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.cloud import bigquery

from telemetry.common import cloud, config, service_limits, tables
from telemetry.common.stored_ping import format_timestamp
from telemetry.common.wire import ROUTES

if TYPE_CHECKING:
    from google.cloud import storage

UNIT = "pipelines"  # the manifests' folder: telemetry/pipelines/tables/
STAGING_EXPIRY = timedelta(days=1)
# Where a run stages: its files `loads/<run id>/<table>/<part>.ndjson` in the work bucket
# (apart from Dataflow's own staging/ and tmp/), and its tables `_staging_<table>_<run id>`.
STAGING_FOLDER = "loads"
PART_SUFFIX = ".ndjson"
STAGING_TABLE_PREFIX = "_staging_"
# The largest row a run stages. BigQuery's tightest row limit, that of insertAll
# (5 MB; a load job takes JSON rows up to 100 MB), so a row within it is never
# refused for its size whichever API writes it. No ping within ingest's limits comes
# near it: a MAX_BODY_BYTES (256 KiB) body of `%01` values makes rows of about 0.6 MB.
MAX_ROW_BYTES = service_limits.BQ_MAX_ROW_BYTES
# A part object is cut at this size (besides WRITE_BATCH's rows), so that what one
# upload holds stays bounded whatever the rows are.
MAX_PART_BYTES = 32 * 1024 * 1024
# Rows one load job may skip (and report) instead of failing. Staged rows are
# checked first, so any refusal is unforeseen; beyond this many it is systematic.
MAX_BAD_RECORDS = 1000
# Errors quoted in a refused row's `detail`.
ERRORS_QUOTED = 3


# The history tables, as their manifests declare them; each has a `key`, unique per
# row: what makes re-runs insert nothing twice.
SITES = tables.layout("sites", UNIT)
DEACTIVATIONS = tables.layout("deactivations", UNIT)
TRACKING_SKIPPED = tables.layout("tracking_skipped", UNIT)
REJECTED = tables.layout("rejected", UNIT)
TABLES = tables.layouts(UNIT)


def layout(table: str) -> tables.TableLayout:
    """The history table `table`'s layout (its manifest)."""
    return tables.layout(table, UNIT)


def schema_json(table: str) -> tuple[dict[str, Any], ...]:
    return tables.schema_json(layout(table).schema_file)


def columns(table: str) -> list[str]:
    return tables.columns(layout(table).schema_file)


def ensure_tables(client: bigquery.Client, dataset: str) -> None:
    """Create the dataset and the history tables where missing (the local stack; Terraform in production)."""
    client.create_dataset(dataset, exists_ok=True)
    for table in TABLES:
        tables.ensure_table(client, dataset, table)


def staging_line(row: dict[str, Any]) -> bytes:
    """One row as a line of newline-delimited JSON (UTF-8; JSON escapes every newline in a value)."""
    text = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (ingest refuses them; a planted object may not): escaped
        return json.dumps(row, separators=(",", ":")).encode("ascii") + b"\n"


class RowTooLarge(ValueError):
    """A row over MAX_ROW_BYTES: set aside before staging (records.ROW_TOO_LARGE)."""

    def __init__(self, table: str, size: int):
        super().__init__(f"its {table} row is {size} bytes of JSON, over the {MAX_ROW_BYTES} a staged row may have")
        self.table = table
        self.size = size


def check_row(table: str, row: dict[str, Any]) -> None:
    """Raises RowTooLarge when `row` (a `records.bigquery_row`) is over MAX_ROW_BYTES as staged."""
    size = len(staging_line(row))
    if size > MAX_ROW_BYTES:
        raise RowTooLarge(table, size)


def staging_prefix(run_id: str, table: str) -> str:
    """The folder of one run's parts of one table in the work bucket."""
    return f"{STAGING_FOLDER}/{run_id}/{table}/"


@dataclass
class MergeResult:
    table: str
    scope: str  # the route the merged rows belong to, or "" for all of them
    staged: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.staged - self.inserted


@dataclass(frozen=True)
class Refusal:
    """What a load job refused: the staged rows missing from the staging table, and its errors."""

    rows: list[dict[str, Any]]
    errors: str


class HistoryWriter:
    """Appends rows to one history table: parts in the work bucket, one load job into a
    per-run staging table, one MERGE."""

    def __init__(
        self,
        client: bigquery.Client,
        bucket: storage.Bucket,
        dataset: str,
        staging_dataset: str,
        table: tables.TableLayout,
        run_id: str,
        timeout_seconds: float = int(config.VARIABLES["BIGQUERY_TIMEOUT_SECONDS"].default),  # type: ignore[arg-type]
    ):
        if table.key is None:
            raise ValueError(f"{table.metadata_file}: a history table needs a key, the column its MERGE inserts once")
        self.client = client
        self.bucket = bucket
        # Every call is bounded by `timeout_seconds` (the call policy: telemetry.common.cloud).
        self.timeout = timeout_seconds
        self._bounds = cloud.bigquery_call_bounds(timeout_seconds)
        self._job_bounds = cloud.bigquery_query_bounds(timeout_seconds)
        self._storage_bounds = cloud.storage_call_bounds(timeout_seconds)
        self.table = table
        self.target = f"{client.project}.{dataset}.{table.name}"
        self.staging = f"{client.project}.{staging_dataset}.{STAGING_TABLE_PREFIX}{table.name}_{run_id}"
        self.prefix = staging_prefix(run_id, table.name)

    def stage(self, rows: list[dict[str, Any]]) -> list[str]:
        """Write rows as parts (new objects, at most MAX_PART_BYTES each); returns their gs:// URIs.

        Raises RowTooLarge for a row over MAX_ROW_BYTES: callers check rows first (`check_row`)."""
        uris: list[str] = []
        part: list[bytes] = []
        size = 0
        for row in rows:
            line = staging_line(row)
            if len(line) > MAX_ROW_BYTES:
                raise RowTooLarge(self.table.name, len(line))
            if part and size + len(line) > MAX_PART_BYTES:
                uris.append(self._write_part(part))
                part, size = [], 0
            part.append(line)
            size += len(line)
        if part:
            uris.append(self._write_part(part))
        return uris

    def _write_part(self, lines: list[bytes]) -> str:
        from google.api_core.exceptions import PreconditionFailed

        blob = self.bucket.blob(f"{self.prefix}{uuid.uuid4().hex}{PART_SUFFIX}")
        try:
            # Only if absent: the write is then safe to retry (the library retries it).
            blob.upload_from_string(
                b"".join(lines), content_type="application/x-ndjson", if_generation_match=0, **self._storage_bounds
            )
        except PreconditionFailed:
            pass  # a retry of a write that had succeeded: the name is this call's own
        return self._uri(blob.name)

    def _uri(self, name: str) -> str:
        return f"gs://{self.bucket.name}/{name}"

    def _parts(self, max_results: int | None = None) -> list[str]:
        blobs = self.bucket.list_blobs(
            prefix=self.prefix, max_results=max_results, fields="items(name),nextPageToken", **self._storage_bounds
        )
        return [blob.name for blob in blobs]

    def load(self, uris: list[str] | None = None) -> Refusal | None:
        """Load the run's parts (or just `uris`, at most 10,000) into the staging table with
        one load job; returns the rows it refused, or None when it refused none."""
        if uris is None:
            if not self._parts(max_results=1):
                return None  # nothing staged: no staging table, nothing to merge
            uris = [self._uri(self.prefix + "*")]  # one URI, however many parts
        definition = tables.definition(self.staging, self.table)
        definition.expires = datetime.now(UTC) + STAGING_EXPIRY
        self.client.create_table(definition, exists_ok=True, **self._bounds)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=tables.schema(self.table.schema_file),
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            max_bad_records=MAX_BAD_RECORDS,
        )
        job = self.client.load_table_from_uri(uris, self.staging, job_config=config, **self._bounds)
        self._wait(job)
        if not job.errors:
            return None
        errors = "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in job.errors[:ERRORS_QUOTED])
        return Refusal(self._missing_rows(uris), errors)

    def _wait(self, job: bigquery.LoadJob) -> None:
        job.result(**self._bounds)

    def _missing_rows(self, uris: list[str]) -> list[dict[str, Any]]:
        """The rows of `uris` whose key the staging table lacks, each once."""
        key = self.table.key
        keys = f"SELECT DISTINCT {key} FROM `{self.staging}`"  # noqa: S608
        loaded = {row[0] for row in self._query(keys).result(**self._job_bounds)}
        if len(uris) == 1 and uris[0].endswith("*"):
            names = self._parts()
        else:
            names = [uri.split("/", 3)[3] for uri in uris]
        missing: dict[str, dict[str, Any]] = {}
        for name in names:
            data = self.bucket.blob(name).download_as_bytes(**self._storage_bounds)
            for line in data.splitlines():
                row = json.loads(line)
                if row.get(key) not in loaded:
                    missing.setdefault(row.get(key), row)
        return list(missing.values())

    def merge(self, route: str | None = None) -> MergeResult:
        """Insert the staged rows (of `route`, if given) whose key the table lacks; returns the counts."""
        scope = route or ""
        if not self._staging_exists():
            return MergeResult(self.table.name, scope, 0, 0)
        # Every name in these statements is ours: table ids, schema columns, a route
        # from wire.ROUTES, timestamps we format. No value from a ping is inlined.
        if route is not None and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        where = f"WHERE route = '{route}'" if route else ""
        key = self.table.key
        summary = f"SELECT COUNT(DISTINCT {key}), MIN(received_at), MAX(received_at) FROM `{self.staging}` {where}"  # noqa: S608
        staged, low, high = next(iter(self._query(summary).result(**self._job_bounds)))
        if not staged:
            return MergeResult(self.table.name, scope, 0, 0)
        cols = columns(self.table.name)
        # Dedupe the staged rows (a retried bundle may stage a row twice), and bound the
        # target by the staged time range so BigQuery prunes partitions; a key always
        # comes with the same received_at, so the bound changes nothing else.
        source = (
            f"(SELECT * EXCEPT(_rn) FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY received_at) AS _rn "  # noqa: S608
            f"FROM `{self.staging}` {where}) WHERE _rn = 1)"
        )
        statement = (
            f"MERGE `{self.target}` T USING {source} S ON T.{key} = S.{key} "  # noqa: S608
            f"AND T.received_at BETWEEN TIMESTAMP('{format_timestamp(low)}') AND TIMESTAMP('{format_timestamp(high)}') "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}) VALUES ({', '.join('S.' + c for c in cols)})"
        )
        job = self._query(statement)
        job.result(**self._job_bounds)
        return MergeResult(self.table.name, scope, staged, job.num_dml_affected_rows or 0)

    def _staging_exists(self) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(self.staging, **self._bounds)
            return True
        except NotFound:
            return False

    def drop_staging(self) -> None:
        """Drop the staging table, then delete the run's parts of this table."""
        from google.api_core.exceptions import NotFound

        self.client.delete_table(self.staging, not_found_ok=True, **self._bounds)
        for name in self._parts():
            try:
                self.bucket.blob(name).delete(**self._storage_bounds)
            except NotFound:
                pass  # deleted by an earlier try of this step

    def _query(self, sql: str) -> bigquery.QueryJob:
        return self.client.query(sql, **self._job_bounds)
