"""Benchmark of the analytics job: an hourly run costs the same however long the history is.

Run through `make bench-analytics` (it starts the stack). Two BigQuery datasets
of its own get the history of the same vendors (telemetry/local/population.py,
the demo's model) over 30 days and over 180 days, as the pipelines would have
written it (the same record builders, the same tables). For each it times:

- a full recompute of every day (the baseline: what a job without state would do each hour);
- one hourly run on top of it, the day's figures already computed once (the
  work the scheduler triggers every hour), repeated.

Prints each time as it came out, and the ratio of the hourly run on 180 days to
the hourly run on 30 days (target: at most 1.3). The datasets and the MongoDB
database are dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from telemetry.analytics import job as analytics
from telemetry.common import cloud, config, mongo, progress, sites
from telemetry.common.stored_ping import StoredPing
from telemetry.local import population
from telemetry.pipelines import records, warehouse

TARGET_RATIO = 1.3
SEED = 7


def history_rows(days: int, end: datetime) -> dict[str, list[dict]]:
    """The month model stretched to `days`, as BigQuery rows of the three history tables."""
    projects = {p.hash: p.document() for p in population.PROJECTS}
    rows: dict[str, list[dict]] = {"sites": [], "deactivations": [], "tracking_skipped": []}
    pings = population.month(SEED, end, days).pings
    for ping in progress.track(pings, f"bench: {days}-day history", "pings"):
        stored = StoredPing(id=ping.id, route=ping.route, received_at=ping.received_at, payload=_as_sent(ping.body))
        project = projects[ping.body["hash"]]
        if ping.route == "tracking-skipped":
            rows["tracking_skipped"].append(records.tracking_skipped_row(stored))
            continue
        if ping.route == "deactivate":
            rows["deactivations"].append(records.deactivation_record(stored, project))
        status = sites.DEACTIVATED if ping.route == "deactivate" else sites.ACTIVE
        rows["sites"].append(records.site_record(stored, project, status))
    return rows


def _as_sent(value):
    """Every value a string, as a form-encoded body arrives."""
    if isinstance(value, dict):
        return {k: _as_sent(v) for k, v in value.items()}
    return str(value)


def load(bq, dataset: str, rows: dict[str, list[dict]]) -> None:
    warehouse.ensure_tables(bq, dataset)
    work_bucket = cloud.storage_client(bq.project).bucket(config.require("WORK_BUCKET"))
    staging_dataset = config.require("BQ_STAGING_DATASET")
    for table, table_rows in rows.items():
        table_rows.sort(key=lambda row: row["received_at"])  # in the order the hourly runs append them
        columns = warehouse.columns(table)
        writer = warehouse.HistoryWriter(
            bq, work_bucket, dataset, staging_dataset, warehouse.layout(table), uuid.uuid4().hex[:8]
        )
        writer.stage([records.bigquery_row(r, columns) for r in table_rows])
        writer.load()
        writer.merge()
        writer.drop_staging()


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, nargs=2, default=[30, 180], metavar=("SHORT", "LONG"))
    parser.add_argument("--repeats", type=int, default=3, help="hourly runs timed per history")
    args = parser.parse_args()
    progress.keep_lines()  # `make bench-analytics` quiets the logs (LOG_LEVEL=WARNING), not its progress

    project = config.require("GCP_PROJECT")
    bq = cloud.bigquery_client(project)
    tag = uuid.uuid4().hex[:6]
    db = mongo.database(config.require("MONGODB_URI"), f"bench_analytics_{tag}")
    # The history ends at noon today; the hourly run is the one at half past, when
    # yesterday has settled and only today is open.
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    hourly_at = noon + timedelta(minutes=30)
    results = {}
    datasets = []
    try:
        for days in args.days:
            dataset = f"bench_analytics_{days}_{tag}"
            datasets.append(dataset)
            started = time.perf_counter()
            rows = history_rows(days, noon)
            load(bq, dataset, rows)
            sizes = ", ".join(f"{table} {len(r)}" for table, r in rows.items())
            print(f"{days} days of history loaded in {time.perf_counter() - started:.1f} s: {sizes}", flush=True)
            settings = analytics.AnalyticsSettings.from_env(
                {"BQ_DATASET": dataset, "MONGODB_DB": db.name, "MONGODB_URI": config.require("MONGODB_URI")}
            )
            job = analytics.AnalyticsJob(bq, db, settings)
            job.ensure_tables()
            full = timed(lambda job=job: job.run(hourly_at, full=True))
            print(f"  full recompute of {days} days: {full:.2f} s", flush=True)
            hourly = []
            for _ in range(args.repeats):
                seconds = timed(lambda job=job: job.run(hourly_at))
                hourly.append(seconds)
                print(f"  hourly run: {seconds:.2f} s", flush=True)
            results[days] = (full, hourly)
    finally:
        for dataset in datasets:
            bq.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
        db.client.drop_database(db.name)
        db.client.close()

    short, long = args.days
    ratio = statistics.median(results[long][1]) / statistics.median(results[short][1])
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(
        f"\nhourly run, median of {args.repeats}: {statistics.median(results[short][1]):.2f} s on {short} days, "
        f"{statistics.median(results[long][1]):.2f} s on {long} days"
    )
    full_short, full_long = results[short][0], results[long][0]
    print(f"full recompute (baseline): {full_short:.2f} s on {short} days, {full_long:.2f} s on {long} days")
    print(f"ratio hourly {long} days / {short} days: {ratio:.2f} ({verdict} the target of at most {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
