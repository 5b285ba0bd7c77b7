"""The daily audit: every stored ping of the window has its row in BigQuery, or the
hour it was received in is processed again.

    python -m telemetry.audit.job                          # the window: the last AUDIT_DAYS days
    python -m telemetry.audit.job --hour H [--hour_to H2]  # these hours (YYYY-MM-DDTHH, UTC)
    python -m telemetry.audit.job --report-only            # find, do not reprocess

Why: the hourly runs drain the bucket's notifications. A notification that is
lost (Pub/Sub keeps one 7 days; a run that fails for longer, a subscription
recreated, a message acknowledged by a run that did not reconcile) leaves its
object in the bucket and nothing in BigQuery, and no later run looks at it.

What it compares, per route and per hour folder of the window
(`<route>/YYYY/MM/DD/HH/`): the objects listed there (each name carries its
ping_id) against the route's history table (`ping_id`) and `rejected`
(`source` = the object name). An hour balances when every object has one or
the other. An hour with objects that have neither is processed again in hour
mode (reprocess.py), which writes what is missing and skips what is there.
History rows whose object is gone (`without_object`: an erased site's pings,
or objects past the raw retention) are reported, never reprocessed.

Bounded work and cost:
- hours: from AUDIT_DAYS days ago up to AUDIT_SETTLE_HOURS before now (the
  hours the hourly runs may still be draining are left to them); the window must
  stay inside the raw pings' retention (Terraform checks it), since an object
  past it is gone and its hour can no longer be checked;
- Cloud Storage: one listing per route and hour folder, paged by
  stored_ping.LIST_PAGE_SIZE names, names only;
- BigQuery: one query per day of the window, reading `ping_id` of that day's
  partitions of the three history tables and `source` of `rejected` from that
  day on (a row set aside on a later day than its ping is dated by that day),
  each capped by AUDIT_MAX_BYTES_BILLED;
- reprocessing: contiguous unbalanced hours of a pipeline make one run; at most
  AUDIT_MAX_REPROCESS_RUNS runs per audit, the rest wait for the next audit.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from telemetry.audit.reprocess import DataflowLaunches, HourRange, LaunchSpec, LocalPipelines, Reprocessor
from telemetry.common import cloud, config, stored_ping, wire
from telemetry.common.logs import get_logger

if TYPE_CHECKING:
    from google.cloud import bigquery, storage

log = get_logger(__name__)

# Each route's history table and pipeline (telemetry.pipelines.routes.ROUTE_BY_NAME and
# PIPELINES; restated because the audit's zip does not carry the pipelines'
# package, and a test keeps them equal).
HISTORY_TABLE = {wire.TRACK: "sites", wire.TRACKING_SKIPPED: "tracking_skipped", wire.DEACTIVATE: "deactivations"}
PIPELINE = {wire.TRACK: "tracking", wire.TRACKING_SKIPPED: "tracking", wire.DEACTIVATE: "deactivation"}
REJECTED_TABLE = "rejected"
# An explicit range is bounded as the pipelines' hour mode is (options.MAX_HOURS).
MAX_HOURS = 24 * 31
# Bound of one listing request (the library retries it on its own).
LIST_TIMEOUT_SECONDS = 60
# Object names of an unbalanced hour quoted in its log line (the count is always whole).
SAMPLE_NAMES = 5

# The log line of each hour that does not balance; the log-based metric
# telemetry-audit-unbalanced-hours (terraform/audit.tf) counts them.
UNBALANCED_MESSAGE = "audit: hour does not balance"
FAILED_MESSAGE = "audit run failed"


@dataclass(frozen=True)
class AuditSettings:
    project: str
    bucket: str
    dataset: str
    window_days: int
    settle_hours: int
    max_bytes_billed: int
    max_reprocess_runs: int
    bigquery_timeout_seconds: int
    launch: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuditSettings:
        return cls(
            project=config.require("GCP_PROJECT", environ),
            bucket=config.require("TRACKING_BUCKET", environ),
            dataset=config.require("BQ_DATASET", environ),
            window_days=config.get_int("AUDIT_DAYS", environ),
            settle_hours=config.get_int("AUDIT_SETTLE_HOURS", environ, minimum=0),
            max_bytes_billed=config.get_int("AUDIT_MAX_BYTES_BILLED", environ),
            max_reprocess_runs=config.get_int("AUDIT_MAX_REPROCESS_RUNS", environ, minimum=0),
            bigquery_timeout_seconds=config.get_int("BIGQUERY_TIMEOUT_SECONDS", environ),
            launch=config.get("AUDIT_LAUNCH", environ),
        )


# --- Hours -------------------------------------------------------------------------------


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def window(now: datetime, days: int, settle_hours: int) -> list[datetime]:
    """The hours audited at `now`, oldest first: from `days` days before the current hour to
    the last hour that ended at least `settle_hours` ago."""
    first = floor_hour(now) - timedelta(days=days)
    last = floor_hour(now - timedelta(hours=settle_hours)) - timedelta(hours=1)
    return hours_between(first, last) if last >= first else []


def hours_between(first: datetime, last: datetime) -> list[datetime]:
    count = int((last - first) / timedelta(hours=1)) + 1
    return [first + timedelta(hours=n) for n in range(count)]


def explicit_hours(hour: str, hour_to: str | None = None) -> list[datetime]:
    first = stored_ping.parse_hour(hour)
    last = stored_ping.parse_hour(hour_to) if hour_to else first
    if last < first:
        raise ValueError(f"hour_to {hour_to} is before hour {hour}")
    hours = hours_between(first, last)
    if len(hours) > MAX_HOURS:
        raise ValueError(f"at most {MAX_HOURS} hours per audit, asked for {len(hours)}")
    return hours


# --- One hour of one route ----------------------------------------------------------------


@dataclass
class HourBalance:
    """One route's hour folder against BigQuery. Balanced: every object has a history row or a
    `rejected` row (`missing` is empty)."""

    route: str
    hour: datetime
    objects: int = 0
    rows: int = 0
    rejected: int = 0
    missing: list[str] = field(default_factory=list)
    without_object: int = 0

    @property
    def balanced(self) -> bool:
        return not self.missing

    def as_log(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "hour": self.hour.strftime(stored_ping.HOUR_ARGUMENT),
            "objects": self.objects,
            "rows": self.rows,
            "rejected": self.rejected,
            "missing": len(self.missing),
            "without_object": self.without_object,
        }


def ping_id_of(name: str, route: str, hour: datetime) -> str | None:
    """The ping_id an object name carries, or None for a name that is not a stored ping of the hour."""
    prefix = stored_ping.hour_prefix(route, hour)
    if not (name.startswith(prefix) and stored_ping.is_object_of(name, route)):
        return None
    ping_id = name[len(prefix) : -len(stored_ping.SUFFIX)]
    return ping_id if ping_id and "/" not in ping_id else None


def balance(
    route: str,
    hour: datetime,
    names: Iterable[str],
    history_ids: set[str],
    hour_history_ids: set[str],
    rejected_sources: set[str],
    other_routes_ids: set[str] = frozenset(),  # type: ignore[assignment]
) -> HourBalance:
    """Compare an hour folder's object names with the ids in the route's history (of the
    day, and of the hour by received_at) and the `rejected` sources. `other_routes_ids`:
    the ids of the other routes' objects of the hour, whose rows a history table may also
    hold (`sites` keeps a row for each deactivate ping too)."""
    result = HourBalance(route, hour)
    object_ids = set()
    for name in names:
        ping_id = ping_id_of(name, route, hour)
        if ping_id is None:
            continue
        result.objects += 1
        object_ids.add(ping_id)
        if ping_id in history_ids:
            result.rows += 1
        elif name in rejected_sources:
            result.rejected += 1
        else:
            result.missing.append(name)
    result.without_object = len(hour_history_ids - object_ids - other_routes_ids)
    return result


# --- The audit ----------------------------------------------------------------------------------


@dataclass
class AuditReport:
    hours: list[datetime]
    balances: list[HourBalance]
    reprocessed: list[dict[str, Any]]
    deferred: list[HourRange]
    after: list[HourBalance] | None  # the reprocessed hours checked again (synchronous reprocess only)
    seconds: float

    @property
    def unbalanced(self) -> list[HourBalance]:
        return [b for b in self.balances if not b.balanced]

    @property
    def repaired(self) -> bool | None:
        """Whether every unbalanced hour balances now; None when the reprocess runs elsewhere."""
        if not self.unbalanced:
            return True
        if self.after is None:
            return None
        return not self.deferred and all(b.balanced for b in self.after)

    def as_log(self) -> dict[str, Any]:
        def total(key: str) -> int:
            return sum(getattr(b, key) for b in self.balances)

        return {
            "first_hour": self.hours[0].strftime(stored_ping.HOUR_ARGUMENT) if self.hours else None,
            "last_hour": self.hours[-1].strftime(stored_ping.HOUR_ARGUMENT) if self.hours else None,
            "hour_folders": len(self.balances),
            "objects": total("objects"),
            "rows": total("rows"),
            "rejected": total("rejected"),
            "missing": sum(len(b.missing) for b in self.balances),
            "without_object": total("without_object"),
            "unbalanced": [b.as_log() for b in self.unbalanced],
            "reprocessed": self.reprocessed,
            "deferred": [r.as_log() for r in self.deferred],
            "after": None if self.after is None else [b.as_log() for b in self.after],
            "repaired": self.repaired,
            "seconds": round(self.seconds, 3),
        }


def plan(unbalanced: Iterable[HourBalance], max_runs: int) -> tuple[list[HourRange], list[HourRange]]:
    """(runs, deferred): each pipeline's unbalanced hours as contiguous ranges, oldest first;
    the first `max_runs` ranges are run, the rest deferred to the next audit."""
    hours_of: dict[str, set[datetime]] = defaultdict(set)
    for b in unbalanced:
        hours_of[PIPELINE[b.route]].add(b.hour)
    ranges = []
    for pipeline, hours in hours_of.items():
        ordered = sorted(hours)
        start = previous = ordered[0]
        for hour in ordered[1:]:
            if hour - previous > timedelta(hours=1):
                ranges.append(HourRange(pipeline, start, previous))
                start = hour
            previous = hour
        ranges.append(HourRange(pipeline, start, previous))
    ranges.sort(key=lambda r: (r.first, r.pipeline))
    return ranges[:max_runs], ranges[max_runs:]


class Audit:
    def __init__(
        self,
        client: bigquery.Client,
        bucket: storage.Bucket,
        settings: AuditSettings,
        reprocessor: Reprocessor | None,
    ):
        self.client = client
        self.bucket = bucket
        self.settings = settings
        self.reprocessor = reprocessor
        self.qualified = f"{client.project}.{settings.dataset}"

    # -- reading ------------------------------------------------------------------------

    def list_hour(self, route: str, hour: datetime) -> list[str]:
        """The names under one hour folder: one listing, paged, names only."""
        blobs = self.bucket.client.list_blobs(
            self.bucket,
            prefix=stored_ping.hour_prefix(route, hour),
            page_size=stored_ping.LIST_PAGE_SIZE,
            fields="items(name),nextPageToken",
            timeout=LIST_TIMEOUT_SECONDS,
        )
        return [blob.name for blob in blobs]

    def day_rows(self, start: datetime, end: datetime) -> tuple[dict[str, dict[datetime, set[str]]], set[str]]:
        """({route: {hour: ping_ids}}, rejected sources) of the hours [start, end) of one day."""
        from google.cloud import bigquery

        parts = [
            f"SELECT '{route}' AS kind, ping_id AS id, TIMESTAMP_TRUNC(received_at, HOUR) AS hour "  # noqa: S608
            f"FROM `{self.qualified}.{table}` WHERE received_at >= @start AND received_at < @end"
            for route, table in HISTORY_TABLE.items()
        ]
        # A row whose received_at BigQuery would refuse is dated by the start of the day it is set
        # aside on (records.rejected_row), never before the ping's day: `rejected` is read from the
        # day's start on, and matched by the day folder in its source.
        prefixes = [f"@prefix_{n}" for n in range(len(wire.ROUTES))]
        parts.append(
            f"SELECT 'rejected' AS kind, source AS id, CAST(NULL AS TIMESTAMP) AS hour "  # noqa: S608
            f"FROM `{self.qualified}.{REJECTED_TABLE}` WHERE received_at >= @day AND "
            f"({' OR '.join(f'STARTS_WITH(source, {p})' for p in prefixes)})"
        )
        day_folder = start.strftime("%Y/%m/%d/")
        parameters = [
            bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
            bigquery.ScalarQueryParameter("end", "TIMESTAMP", end),
            bigquery.ScalarQueryParameter("day", "TIMESTAMP", floor_hour(start).replace(hour=0)),
            *(
                bigquery.ScalarQueryParameter(p[1:], "STRING", f"{route}/{day_folder}")
                for p, route in zip(prefixes, wire.ROUTES, strict=True)
            ),
        ]
        job_config = bigquery.QueryJobConfig(
            query_parameters=parameters, maximum_bytes_billed=self.settings.max_bytes_billed
        )
        bounds = cloud.bigquery_query_bounds(self.settings.bigquery_timeout_seconds)
        job = self.client.query(" UNION ALL ".join(parts), job_config=job_config, **bounds)
        history: dict[str, dict[datetime, set[str]]] = {route: defaultdict(set) for route in HISTORY_TABLE}
        rejected: set[str] = set()
        for row in job.result(**bounds):
            if row["kind"] == "rejected":
                rejected.add(row["id"])
            else:
                history[row["kind"]][floor_hour(row["hour"])].add(row["id"])
        return history, rejected

    def check(self, hours: list[datetime]) -> list[HourBalance]:
        """Every route's balance for each hour, read a day at a time."""
        by_day: dict[datetime, list[datetime]] = defaultdict(list)
        for hour in hours:
            by_day[hour.replace(hour=0)].append(hour)
        balances = []
        for _, day_hours in sorted(by_day.items()):
            history, rejected = self.day_rows(day_hours[0], day_hours[-1] + timedelta(hours=1))
            day_ids = {route: set().union(*by_hour.values()) for route, by_hour in history.items()}
            for hour in day_hours:
                names = {route: self.list_hour(route, hour) for route in wire.ROUTES}
                ids_of = {
                    route: {i for i in (ping_id_of(n, route, hour) for n in route_names) if i}
                    for route, route_names in names.items()
                }
                for route in wire.ROUTES:
                    in_hour = history[route].get(hour, set())
                    others = set().union(*(ids_of[other] for other in wire.ROUTES if other != route))
                    balances.append(balance(route, hour, names[route], day_ids[route], in_hour, rejected, others))
        return balances

    # -- a run ---------------------------------------------------------------------------

    def run(self, hours: list[datetime], reprocess: bool = True) -> AuditReport:
        started = time.monotonic()
        balances = self.check(hours)
        unbalanced = [b for b in balances if not b.balanced]
        for b in unbalanced:
            log.warning(UNBALANCED_MESSAGE, extra={"audit": {**b.as_log(), "sample": b.missing[:SAMPLE_NAMES]}})
        runs, deferred = plan(unbalanced, self.settings.max_reprocess_runs) if reprocess else ([], [])
        reprocessed = []
        after = None
        if runs and self.reprocessor is not None:
            for hours_range in runs:
                outcome = self.reprocessor.reprocess(hours_range)
                log.info("audit: hours reprocessed", extra={"audit": outcome})
                reprocessed.append(outcome)
            if self.reprocessor.synchronous:
                after = self.check(sorted({h for r in runs for h in hours_between(r.first, r.last)}))
        report = AuditReport(hours, balances, reprocessed, deferred, after, time.monotonic() - started)
        summary = report.as_log()
        if report.repaired is False:
            log.error("audit: hours still unbalanced", extra={"audit": summary})
        else:
            log.info("audit finished", extra={"audit": summary})
        return report


def audit_from_env(environ: Mapping[str, str] | None = None, deployed: bool = False) -> Audit:
    """The audit as configured. Deployed, AUDIT_LAUNCH is required and reprocessing launches
    the Flex Templates; otherwise the pipelines run here, unless AUDIT_LAUNCH is set."""
    settings = AuditSettings.from_env(environ)
    if settings.launch:
        reprocessor: Reprocessor = DataflowLaunches(LaunchSpec.parse(settings.launch))
    elif deployed:
        raise ValueError("AUDIT_LAUNCH is not set: the deployed audit launches its reprocessing on Dataflow")
    else:
        reprocessor = LocalPipelines()
    client = cloud.bigquery_client(settings.project)
    bucket = cloud.storage_client(settings.project).bucket(settings.bucket)
    return Audit(client, bucket, settings, reprocessor)


def hours_asked(settings: AuditSettings, now: datetime, hour: str | None, hour_to: str | None) -> list[datetime]:
    if hour:
        return explicit_hours(hour, hour_to)
    if hour_to:
        raise ValueError("hour_to needs hour")
    return window(now, settings.window_days, settings.settle_hours)


def handle(request) -> tuple[dict[str, Any], int]:
    """The Cloud Function's answer: one audit of the window (or of `{"hour": ..., "hour_to": ...}`),
    `{"report_only": true}` to find without reprocessing. 200 with the report, whatever it
    found; 400 for a bad body; 500 when the audit itself failed (Cloud Scheduler retries)."""
    body = request.get_json(silent=True) or {}
    try:
        audit = audit_from_env(deployed=True)
    except Exception:
        log.exception(FAILED_MESSAGE)
        return {"error": "audit_failed"}, 500
    try:
        hours = hours_asked(audit.settings, datetime.now(UTC), body.get("hour"), body.get("hour_to"))
    except ValueError as e:
        return {"error": "invalid_request", "detail": str(e)}, 400
    try:
        report = audit.run(hours, reprocess=not body.get("report_only"))
    except Exception:
        log.exception(FAILED_MESSAGE)
        return {"error": "audit_failed"}, 500
    return report.as_log(), 200


def format_report(report: AuditReport) -> str:
    s = report.as_log()
    lines = [
        f"audit {s['first_hour']} to {s['last_hour']}: {s['hour_folders']} hour folders, {s['objects']} objects "
        f"= {s['rows']} with a history row + {s['rejected']} rejected + {s['missing']} missing"
        f" ({s['without_object']} history rows without an object)"
    ]
    for b in report.unbalanced:
        lines.append(f"  {b.route:17} {b.hour:%Y-%m-%dT%H}  {len(b.missing)} of {b.objects} objects have no row")
    for r in report.reprocessed:
        lines.append(f"  reprocessed {r['pipeline']} {r['hour']} to {r['hour_to']}: {r['outcome']}")
    for r in report.deferred:
        lines.append(f"  deferred to the next audit: {r.pipeline} {r.hour} to {r.hour_to}")
    if report.after is not None:
        still = [b for b in report.after if not b.balanced]
        lines.append("  after reprocessing: " + ("every hour balances" if not still else f"{len(still)} still do not"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hour", help="first hour to audit (YYYY-MM-DDTHH, UTC) instead of the window")
    parser.add_argument("--hour_to", help="with --hour: last hour, inclusive")
    parser.add_argument("--report-only", action="store_true", help="find the unbalanced hours, do not reprocess")
    args = parser.parse_args(argv)
    try:
        audit = audit_from_env()
        hours = hours_asked(audit.settings, datetime.now(UTC), args.hour, args.hour_to)
    except ValueError as e:
        parser.error(str(e))
    report = audit.run(hours, reprocess=not args.report_only)
    print(format_report(report), flush=True)
    if args.report_only:
        return 1 if report.unbalanced else 0
    return 1 if report.repaired is False else 0


if __name__ == "__main__":
    sys.exit(main())
