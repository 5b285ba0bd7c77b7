"""BigQuery: the history tables, their schemas, and exactly-once appends.

The schemas are the JSON files in telemetry/pipelines/schemas/; Terraform declares the
production tables from the same files. Every table is partitioned by day on
`received_at` and clustered by `hash`.

Exactly once: a run streams its rows into a staging table of its own, then one
MERGE inserts the rows whose key (`ping_id`, or `source` for `rejected`) the
table does not hold yet. The MERGE is atomic, so a run that dies before it
leaves nothing behind, and a re-run inserts nothing twice. Staging tables
expire after a day if a run never gets to drop its own.

The same client, calls and SQL run against BigQuery and bqemulator: only
`telemetry.common.cloud.bigquery_client()` knows which. (Beam's
`WriteToBigQuery` cannot be pointed at an emulator, so the pipelines use this
path everywhere.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

from telemetry.common import tables
from telemetry.common.stored_ping import format_timestamp
from telemetry.common.wire import ROUTES

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
STAGING_EXPIRY = timedelta(days=1)
INSERT_CHUNK_ROWS = 500


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # unique per row: what makes re-runs insert nothing twice


SITES = Table("sites", "ping_id")
DEACTIVATIONS = Table("deactivations", "ping_id")
TRACKING_SKIPPED = Table("tracking_skipped", "ping_id")
REJECTED = Table("rejected", "source")
TABLES = (SITES, DEACTIVATIONS, TRACKING_SKIPPED, REJECTED)


def _layout(table: str) -> tables.TableLayout:
    return tables.TableLayout(table, SCHEMA_DIR, partition_field="received_at")


def schema_json(table: str) -> tuple[dict[str, Any], ...]:
    return tables.schema_json(_layout(table).schema_file)


def columns(table: str) -> list[str]:
    return tables.columns(_layout(table).schema_file)


def ensure_tables(client: bigquery.Client, dataset: str) -> None:
    """Create the dataset and the history tables where missing (the local stack; Terraform in production)."""
    client.create_dataset(dataset, exists_ok=True)
    for table in TABLES:
        tables.ensure_table(client, dataset, _layout(table.name))


@dataclass
class MergeResult:
    table: str
    scope: str  # the route the merged rows belong to, or "" for all of them
    staged: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.staged - self.inserted


class HistoryWriter:
    """Appends rows to one history table through a per-run staging table."""

    def __init__(self, client: bigquery.Client, dataset: str, table: Table, run_id: str, timeout_seconds: float = 300):
        self.client = client
        # Every call is bounded: the library's own retry runs for up to 600 s, each HTTP
        # request without a timeout, and a job wait without one (a server that stops
        # answering would hang the run). Here a call with its retries, or the wait for a
        # query job, lasts at most about `timeout_seconds` (twice, if a try starts late).
        self.timeout = timeout_seconds
        self._bounds = {"retry": bigquery.DEFAULT_RETRY.with_timeout(timeout_seconds), "timeout": timeout_seconds}
        # A job that failed for a retryable reason is started again (the library: for up to 2400 s).
        self._job_bounds = {**self._bounds, "job_retry": DEFAULT_JOB_RETRY.with_timeout(timeout_seconds)}
        self.table = table
        self.target = f"{client.project}.{dataset}.{table.name}"
        self.staging = f"{client.project}.{dataset}._staging_{table.name}_{run_id}"
        self._staging_ready = False

    def _ensure_staging(self) -> None:
        if self._staging_ready:
            return
        definition = tables.definition(self.staging, _layout(self.table.name))
        definition.expires = datetime.now(UTC) + STAGING_EXPIRY
        self.client.create_table(definition, exists_ok=True, **self._bounds)
        self._staging_ready = True

    def stage(self, rows: list[dict[str, Any]]) -> int:
        """Stream rows into the staging table; raises if BigQuery refuses any."""
        if not rows:
            return 0
        self._ensure_staging()
        for start in range(0, len(rows), INSERT_CHUNK_ROWS):
            chunk = rows[start : start + INSERT_CHUNK_ROWS]
            errors = self.client.insert_rows_json(
                self.staging, chunk, row_ids=[str(row[self.table.key]) for row in chunk], **self._bounds
            )
            if errors:
                raise RuntimeError(f"BigQuery refused rows for {self.staging}: {errors[:3]}")
        return len(rows)

    def merge(self, route: str | None = None) -> MergeResult:
        """Insert the staged rows (of `route`, if given) whose key the table lacks; returns the counts."""
        scope = route or ""
        if not self._staging_exists():
            return MergeResult(self.table.name, scope, 0, 0)
        # Every name in these statements is ours: table ids, schema columns, a route
        # from payload.ROUTES, timestamps we format. No value from a ping is inlined.
        if route is not None and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        where = f"WHERE route = '{route}'" if route else ""
        key = self.table.key
        summary = f"SELECT COUNT(DISTINCT {key}), MIN(received_at), MAX(received_at) FROM `{self.staging}` {where}"  # noqa: S608
        staged, low, high = next(iter(self._query(summary).result(**self._job_bounds)))
        if not staged:
            return MergeResult(self.table.name, scope, 0, 0)
        cols = columns(self.table.name)
        # Dedupe the staged rows (a retried insert may stage a row twice), and bound the
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
        self.client.delete_table(self.staging, not_found_ok=True, **self._bounds)

    def _query(self, sql: str) -> bigquery.QueryJob:
        return self.client.query(sql, **self._job_bounds)
