"""The hourly analytics job: the BigQuery history turned into each project's
daily figures, kept in BigQuery `analytics_daily` and served from MongoDB
`analytics`.

    python -m telemetry.analytics.job                 # what is due: the open days
    python -m telemetry.analytics.job --since DAY     # recompute DAY through today
    python -m telemetry.analytics.job --full          # recompute everything

Incremental by UTC day. For each day D, in order, BigQuery runs three
statements (telemetry/analytics/sql/), each reading only D's partitions of the
history and small state tables:
  1. `site_days` of D: the state of D-1 shifted by one day, plus D's pings;
  2. `site_first_seen`: the sites whose first ping is on D;
  3. `analytics_daily` of D: every figure of D.
Then the serving copy's documents of D are replaced by those rows.

A day stays open until ANALYTICS_SETTLE_HOURS after it ends (the pipelines
append pings up to an hour or so late); each run recomputes the open days, then
`analytics_progress` moves past the days that have closed, and no later run
reads their history again. So an hourly run reads today's partitions (and
yesterday's, for a few hours), however long the history is.

Idempotent: every step replaces one day's rows with what the same inputs give.
Running twice, or re-running a past day, gives the same rows. A run that fails
leaves the steps it did not reach as they were: the served figures of a day
change only after that day's BigQuery figures have committed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telemetry.analytics import metrics, serving
from telemetry.common import cloud, config, mongo, progress, secrets, tables
from telemetry.common.logs import get_logger

if TYPE_CHECKING:
    from google.cloud import bigquery
    from pymongo.database import Database

JOB_NAME = "analytics"
HERE = Path(__file__).resolve().parent
SQL_DIR = HERE / "sql"

# site_days keeps 62 days of bits: the most a signed INT64 holds with room to shift.
KEPT_DAYS = 62
# Days of site_days rows kept behind the newest day a run computes. A day is
# computed from the day before's rows, so `--since` can go back this far; further
# back needs `--full`. Older rows are deleted at the end of each run: the state
# stays the same size however long the history grows.
STATE_DAYS = 35

# The job's tables, as their manifests declare them (telemetry/analytics/tables/).
UNIT = "analytics"
TABLES = tables.layouts(UNIT)

# The pipelines' history tables the job reads: what its statements read (each
# manifest's `reads`, kept in step with sql/<table>.sql by a test), less its own tables.
HISTORY_TABLES = tuple(sorted({name for layout in TABLES for name in layout.reads} - {t.name for t in TABLES}))

# The per-day statements, in the order they run.
DAY_STEPS = ("site_days", "site_first_seen", "analytics_daily")

log = get_logger(__name__)


class SinceTooOld(ValueError):
    """`--since` a day whose previous day's state is no longer kept."""


@dataclass(frozen=True)
class AnalyticsSettings:
    project: str
    dataset: str
    mongodb_uri: str
    mongodb_db: str
    window_days: int
    settle_hours: int
    max_bytes_billed: int
    max_labels: int
    bigquery_timeout_seconds: int
    mongodb_timeout_seconds: int
    min_label_sites: int = metrics.MIN_LABEL_SITES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AnalyticsSettings:
        window_days = config.get_int("ACTIVE_WINDOW_DAYS", environ)
        if window_days > KEPT_DAYS:
            raise ValueError(f"ACTIVE_WINDOW_DAYS must be at most {KEPT_DAYS}, got {window_days}")
        return cls(
            project=config.require("GCP_PROJECT", environ),
            dataset=config.require("BQ_DATASET", environ),
            # Mounted from Secret Manager in production (telemetry.common.secrets).
            mongodb_uri=secrets.resolve(config.require("MONGODB_URI", environ)),  # type: ignore[arg-type]
            mongodb_db=config.require("MONGODB_DB", environ),
            window_days=window_days,
            settle_hours=config.get_int("ANALYTICS_SETTLE_HOURS", environ, minimum=0),
            max_bytes_billed=config.get_int("ANALYTICS_MAX_BYTES_BILLED", environ),
            max_labels=config.get_int("ANALYTICS_MAX_LABELS", environ),
            bigquery_timeout_seconds=config.get_int("BIGQUERY_TIMEOUT_SECONDS", environ),
            mongodb_timeout_seconds=config.get_int("MONGODB_TIMEOUT_SECONDS", environ),
        )


@cache
def statement(step: str, dataset: str) -> str:
    """A step's SQL with its tables qualified; every other value is a query parameter.

    Comment lines are left out: bqemulator counts a `@name` in a comment as a
    parameter and then fails the query.
    """
    lines = (SQL_DIR / f"{step}.sql").read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("--")).replace("{dataset}", dataset)


def last_final_day(now: datetime, settle_hours: int) -> date:
    """The latest day whose figures no longer change: it ended `settle_hours` ago."""
    return (now - timedelta(hours=settle_hours)).date() - timedelta(days=1)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass
class RunSummary:
    days: list[date]
    final_through: date | None
    documents: int
    seconds: float

    def as_log(self) -> dict[str, Any]:
        return {
            "days_computed": len(self.days),
            "first_day": self.days[0].isoformat() if self.days else None,
            "last_day": self.days[-1].isoformat() if self.days else None,
            "final_through": self.final_through.isoformat() if self.final_through else None,
            "documents_served": self.documents,
            "seconds": round(self.seconds, 3),
        }


class AnalyticsJob:
    def __init__(self, client: bigquery.Client, db: Database, settings: AnalyticsSettings):
        self.client = client
        self.db = db
        self.settings = settings
        self.qualified = f"{client.project}.{settings.dataset}"

    # -- BigQuery --------------------------------------------------------------------

    def _query(self, sql: str, day: date | None = None) -> bigquery.QueryJob:
        from google.cloud import bigquery

        parameters = [
            bigquery.ScalarQueryParameter("kept_days_mask", "INT64", (1 << KEPT_DAYS) - 1),
            bigquery.ScalarQueryParameter("window_mask", "INT64", (1 << self.settings.window_days) - 1),
            bigquery.ScalarQueryParameter("max_labels", "INT64", self.settings.max_labels),
            bigquery.ScalarQueryParameter("top_plugins", "INT64", metrics.TOP_PLUGINS),
            bigquery.ScalarQueryParameter("unknown_label", "STRING", metrics.UNKNOWN_LABEL),
            bigquery.ScalarQueryParameter("job", "STRING", JOB_NAME),
            bigquery.ScalarQueryParameter("rate_days_before", "INT64", metrics.DEACTIVATION_RATE_DAYS - 1),
            bigquery.ScalarQueryParameter("rate_events", "STRING", metrics.RATE_EVENTS),
            bigquery.ScalarQueryParameter("rate_sites", "STRING", metrics.RATE_SITES),
            bigquery.ScalarQueryParameter("retention_weeks", "INT64", metrics.RETENTION_WEEKS),
            bigquery.ScalarQueryParameter("php_candidates", "STRING", ",".join(metrics.PHP_CANDIDATES)),
            bigquery.ScalarQueryParameter("wp_candidates", "STRING", ",".join(metrics.WP_CANDIDATES)),
            bigquery.ScalarQueryParameter("custom_field_prefix", "STRING", metrics.CUSTOM_FIELD_PREFIX),
            bigquery.ScalarQueryParameter("max_label_chars", "INT64", metrics.MAX_LABEL_CHARS),
            bigquery.ScalarQueryParameter("min_label_sites", "INT64", self.settings.min_label_sites),
        ]
        if day is not None:
            parameters.append(bigquery.ScalarQueryParameter("day", "DATE", day))
        used = [p for p in parameters if f"@{p.name}" in sql]
        job_config = bigquery.QueryJobConfig(query_parameters=used, maximum_bytes_billed=self.settings.max_bytes_billed)
        bounds = cloud.bigquery_query_bounds(self.settings.bigquery_timeout_seconds)
        job = self.client.query(sql, job_config=job_config, **bounds)
        job.result(**bounds)
        return job

    def ensure_tables(self) -> None:
        """The job's own tables (the local stack and tests; Terraform declares them in production)."""
        for layout in TABLES:
            tables.ensure_table(self.client, self.settings.dataset, layout)
        serving.ensure_indexes(self.db)

    def final_through(self) -> date | None:
        sql = f"SELECT final_through FROM `{self.qualified}.analytics_progress` WHERE job = @job"  # noqa: S608
        rows = list(self._query(sql).result())
        return rows[0]["final_through"] if rows else None

    def _set_final_through(self, day: date) -> None:
        sql = (
            f"MERGE `{self.qualified}.analytics_progress` AS target "  # noqa: S608
            "USING (SELECT @job AS job, @day AS final_through) AS source ON target.job = source.job "
            "WHEN MATCHED THEN UPDATE SET final_through = source.final_through, updated_at = CURRENT_TIMESTAMP() "
            "WHEN NOT MATCHED THEN INSERT (job, final_through, updated_at) "
            "VALUES (source.job, source.final_through, CURRENT_TIMESTAMP())"
        )
        self._query(sql, day)

    def first_history_day(self) -> date | None:
        """The day of the oldest ping in the history. Reads one column of every
        partition: only a first run or a full recompute asks."""
        parts = " UNION ALL ".join(
            f"SELECT MIN(received_at) AS oldest FROM `{self.qualified}.{table}`"  # noqa: S608
            for table in HISTORY_TABLES
        )
        rows = list(self._query(f"SELECT DATE(MIN(oldest)) AS day FROM ({parts})").result())  # noqa: S608
        return rows[0]["day"] if rows else None

    def compute_day(self, day: date) -> int:
        """Every step of one day; returns the documents served."""
        for step in DAY_STEPS:
            self._query(statement(step, self.qualified), day)
        sql = (
            f"SELECT hash, metric, value, breakdown FROM `{self.qualified}.analytics_daily` "  # noqa: S608
            "WHERE day = @day"
        )
        rows = self._query(sql, day).result()
        written, _deleted = serving.replace_day(self.db, day, (serving.document(day, row) for row in rows))
        return written

    def reset(self) -> None:
        """Forget every derived row, before a full recompute."""
        for layout in TABLES:
            self._query(f"DELETE FROM `{self.qualified}.{layout.name}` WHERE TRUE")  # noqa: S608

    # -- a run ---------------------------------------------------------------------

    def run(self, now: datetime, since: date | None = None, full: bool = False) -> RunSummary:
        """Compute the open days (or `since` onwards, or everything) through `now`'s day."""
        started = time.monotonic()
        if full:
            self.reset()
        final = None if full else self.final_through()
        if since is not None:
            first = since
        elif final is not None:
            first = final + timedelta(days=1)
        else:
            first = self.first_history_day()
        today = now.astimezone(UTC).date()
        if since is not None and since < today - timedelta(days=STATE_DAYS - 1):
            history_starts = self.first_history_day()
            if history_starts is None or since > history_starts:
                raise SinceTooOld(
                    f"since {since}: the state is kept for {STATE_DAYS} days only; recompute with --full instead"
                )
        days = days_between(first, today) if first is not None else []
        closed = last_final_day(now.astimezone(UTC), self.settings.settle_hours)
        documents = 0
        for day in progress.track(days, "analytics: computed", "days"):
            documents += self.compute_day(day)
            if day <= closed and (final is None or day > final):
                self._set_final_through(day)  # the next run starts after it
                final = day
        if days:
            oldest_kept = today - timedelta(days=STATE_DAYS)
            sql = f"DELETE FROM `{self.qualified}.site_days` WHERE day < @day"  # noqa: S608
            self._query(sql, oldest_kept)
        summary = RunSummary(days, final, documents, time.monotonic() - started)
        log.info("analytics run", extra=summary.as_log())
        return summary


def job_from_env(environ: Mapping[str, str] | None = None) -> AnalyticsJob:
    settings = AnalyticsSettings.from_env(environ)
    client = cloud.bigquery_client(settings.project)
    db = mongo.database(settings.mongodb_uri, settings.mongodb_db, settings.mongodb_timeout_seconds)
    return AnalyticsJob(client, db, settings)


def handle(request) -> tuple[dict[str, Any], int]:
    """The Cloud Function's answer: one run over the open days, or, with
    `{"since": "YYYY-MM-DD"}` as the JSON body, from that day on.

    A failed run answers 500, so Cloud Scheduler retries it; the next run
    recomputes whatever this one left open.
    """
    body = request.get_json(silent=True) or {}
    try:
        since = parse_day(body["since"]) if body.get("since") else None
    except argparse.ArgumentTypeError as e:
        return {"error": "invalid_since", "detail": str(e)}, 400
    try:
        job = job_from_env()
        try:
            summary = job.run(datetime.now(UTC), since=since)
        finally:
            job.db.client.close()
    except SinceTooOld as e:
        return {"error": "since_too_old", "detail": str(e)}, 400
    except Exception:
        log.exception("analytics run failed")
        return {"error": "run_failed"}, 500
    return summary.as_log(), 200


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--since", type=parse_day, help="recompute from this UTC day (YYYY-MM-DD) through today")
    which.add_argument("--full", action="store_true", help="forget the derived tables and recompute every day")
    parser.add_argument("--ensure-tables", action="store_true", help="create the job's tables first (local use)")
    args = parser.parse_args(argv)

    job = job_from_env()
    try:
        if args.ensure_tables:
            job.ensure_tables()
        summary = job.run(datetime.now(UTC), since=args.since, full=args.full)
    except SinceTooOld as e:
        parser.error(str(e))
    finally:
        job.db.client.close()
    print(
        f"analytics: {len(summary.days)} day(s) computed"
        + (f", {summary.days[0]} to {summary.days[-1]}" if summary.days else "")
        + f", {summary.documents} documents served, final through {summary.final_through},"
        f" {summary.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
