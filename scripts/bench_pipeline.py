"""Benchmark of the hourly pipelines on the local runner against a plain-Python baseline.

Run through `make bench-pipeline` (it starts the stack). For each size (5,000
and 20,000 pings by default) it writes one hour of generated pings, a
realistic mix (track 85 %, tracking-skipped 10 %, deactivate 5 %; 1 % of an
unknown project; sites pinging more than once), straight into a bucket of its
own, then, each in a child process so that its peak RSS can be read:

- pipeline: both pipelines in hour mode, end to end (list, read, parse,
  validate, MongoDB upserts, BigQuery staging files, load job and MERGE);
- baseline: a plain loop that lists and reads the same objects one by one,
  parses them, and writes the same documents and rows with bulk calls
  (`bulk_write`, and the same staging files, load job and MERGE).

Each side writes to a MongoDB database and a BigQuery dataset of its own,
dropped at the end, with the bucket. Prints pings/s, the ratio of pipeline to
baseline (target >= 0.5) and peak RSS at each size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from telemetry.common import cloud, config, mongo, progress, sites, stored_ping
from telemetry.common.projects import load_projects, project_document, save_project
from telemetry.common.stored_ping import StoredPing
from telemetry.common.wire import DEACTIVATE, TRACK, TRACKING_SKIPPED
from telemetry.ingest.object_writer import ObjectWriter
from telemetry.ingest.settings import IngestSettings
from telemetry.local import stack
from telemetry.local.samples import deactivate_payload, project_hash, track_payload, tracking_skipped_payload
from telemetry.pipelines import records, site_state, warehouse

TARGET_RATIO = 0.5
HOUR = datetime(2026, 1, 5, 10, tzinfo=UTC)  # a fixed past hour: nothing else lives there
PROJECTS = [project_hash(f"bench-{i}") for i in range(3)]


def generate(count: int, bucket: str) -> dict[str, int]:
    """Write `count` stored pings of HOUR into `bucket`; returns the count per route."""
    rng = random.Random(count)
    # Written as ingest writes them (its own writer: one media upload each). Objects
    # uploaded through google-cloud-storage instead carry checksums and metadata,
    # and reading those back kept the pipeline's peak RSS growing with the hour
    # (+42 MiB from 5,000 to 20,000 pings, against +11 MiB for these).
    writer = ObjectWriter(replace(IngestSettings.from_env(), bucket=bucket, storage_attempts=5))
    sites = max(1, int(count * 0.7))

    def one(index: int) -> str:
        draw = rng.random()
        project = rng.choice(PROJECTS) if rng.random() > 0.01 else "f" * 32
        if draw < 0.85:
            route, body = TRACK, track_payload(rng, project, rng.randrange(sites))
        elif draw < 0.95:
            route, body = TRACKING_SKIPPED, tracking_skipped_payload(rng, project)
        else:
            route, body = DEACTIVATE, deactivate_payload(rng, project, rng.randrange(sites))
        received = HOUR + timedelta(microseconds=rng.randrange(3_600_000_000))
        ping = StoredPing(
            id=str(uuid.UUID(int=rng.getrandbits(128))),
            route=route,
            received_at=received,
            payload=body,
            user_agent="Appsero/bench;",
            content_type="application/x-www-form-urlencoded",
            client_ip="203.0.113.9",
            raw="",
        )
        writer.put(ping.object_name, ping.to_json())
        return route

    plan = list(range(count))
    with ThreadPoolExecutor(max_workers=16) as pool:
        routes = list(progress.track(pool.map(one, plan), "bench: wrote", "objects", total=count))
    return {route: routes.count(route) for route in (TRACK, TRACKING_SKIPPED, DEACTIVATE)}


def add_projects(db_name: str) -> None:
    db = mongo.database(config.require("MONGODB_URI"), db_name)
    site_state.ensure_indexes(db)
    for index, project in enumerate(PROJECTS):
        save_project(db, project_document(hash=project, name=f"bench {index}", custom_fields=["license_type"]))
    db.client.close()


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a child Python process; (seconds, its peak RSS in MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *args], cwd=stack.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    lines = []
    for raw in process.stdout:  # as it comes: the child's progress lines (it writes to a pipe: no bars)
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if "peak RSS so far" in line:
            print(f"    {line}", flush=True)
        elif f'"logger":"{progress.LOGGER}"' in line:
            print(f"    {json.loads(line)['message']}", flush=True)
    process.wait()
    elapsed = time.perf_counter() - started
    output = "\n".join(lines).encode()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{output.decode(errors='replace')[-3000:]}")
    return elapsed, _peak_rss_mib(output)


def _peak_rss_mib(output: bytes) -> float:
    for line in reversed(output.decode(errors="replace").splitlines()):
        if line.startswith("PEAK_RSS_KIB "):
            return int(line.split()[1]) / 1024
    raise RuntimeError("the child did not report its peak RSS")


def measure_pipeline(env: dict[str, str], bucket: str, db_name: str, dataset: str) -> tuple[float, float]:
    code = (
        "import resource, sys\n"
        "from telemetry.pipelines import build, reconciliation\n"
        f"for name in ('tracking', 'deactivation'):\n"
        f"    pipeline, result, _ = build.run([name, '--runner', build.LOCAL_RUNNER, '--hour', '{HOUR:%Y-%m-%dT%H}',"
        f" '--tracking_bucket', '{bucket}', '--mongodb_db', '{db_name}', '--bq_dataset', '{dataset}'])\n"
        "    report = reconciliation.report_from_metrics(pipeline, result)\n"
        "    print(reconciliation.format_report(report))\n"
        "    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
        "    print(f'{name} done: peak RSS so far {rss} MiB')\n"
        "    assert report['balanced'], report\n"
        "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    return run_child(["-c", code], env)


def measure_baseline(env: dict[str, str], bucket: str, db_name: str, dataset: str) -> tuple[float, float]:
    args = ["scripts/bench_pipeline.py", "--baseline-child", bucket, db_name, dataset]
    return run_child(args, env)


def baseline_child(bucket_name: str, db_name: str, dataset: str) -> None:
    """The plain loop: list, read one by one, parse, and bulk-write the same documents and rows."""
    project = config.require("GCP_PROJECT")
    bucket = cloud.storage_client(project).bucket(bucket_name)
    db = mongo.database(config.require("MONGODB_URI"), db_name)
    projects = load_projects(db)
    bq = cloud.bigquery_client(project)
    run_id = uuid.uuid4().hex[:12]
    work_bucket = cloud.storage_client(project).bucket(config.require("WORK_BUCKET"))
    staging_dataset = config.require("BQ_STAGING_DATASET")
    writers = {
        t.name: warehouse.HistoryWriter(bq, work_bucket, dataset, staging_dataset, t, run_id) for t in warehouse.TABLES
    }
    rows: dict[str, list] = {t.name: [] for t in warehouse.TABLES}
    deactivations = []
    read = progress.Progress("baseline: read", None, "objects")  # listed as they are read: no total
    for route, table in ((TRACK, "sites"), (TRACKING_SKIPPED, "tracking_skipped"), (DEACTIVATE, "deactivations")):
        prefix = stored_ping.hour_prefix(route, HOUR)
        for blob in bucket.list_blobs(prefix=prefix, page_size=stored_ping.LIST_PAGE_SIZE):
            read.update()
            data = blob.download_as_bytes()
            try:
                ping = records.read_stored_ping(blob.name, data)
                project_doc = projects.get(ping.payload["hash"])
                if project_doc is None:
                    raise records.Rejected(records.UNKNOWN_PROJECT, "unknown")
                if route == TRACKING_SKIPPED:
                    rows[table].append(records.tracking_skipped_row(ping))
                    continue
                if route == DEACTIVATE:
                    record = records.deactivation_record(ping, project_doc)
                    rows[table].append(record)
                    deactivations.append(record)
                site = records.site_record(
                    ping, project_doc, sites.DEACTIVATED if route == DEACTIVATE else sites.ACTIVE
                )
                rows["sites"].append(site)
            except records.Rejected as e:
                rows["rejected"].append(
                    records.rejected_row(
                        blob.name, e.reason, e.detail, stored_ping.received_at_of(blob.name, data, HOUR), None
                    )
                )
    read.close()
    updates = [
        site_state.site_update(site, first, last, False)
        for site, first, last in site_state.latest_per_site(rows["sites"])
    ]
    for start in range(0, len(updates), 1000):
        site_state.apply(db[site_state.SITES], updates[start : start + 1000])
    site_state.apply(db[site_state.DEACTIVATIONS], [site_state.deactivation_update(r) for r in deactivations])
    for name, table_rows in rows.items():
        columns = warehouse.columns(name)
        writers[name].stage([records.bigquery_row(r, columns) for r in table_rows])
        writers[name].load()
        writers[name].merge()
        writers[name].drop_staging()
    db.client.close()
    print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--baseline-child", nargs=3, metavar=("BUCKET", "DB", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        baseline_child(*args.baseline_child)
        return 0

    env = dict(os.environ)
    project = config.require("GCP_PROJECT")
    bq = cloud.bigquery_client(project)
    results = []
    for size in args.sizes:
        tag = f"bench{size}_{uuid.uuid4().hex[:6]}"
        bucket = f"{config.require('TRACKING_BUCKET')}-{tag.replace('_', '-')}"
        sides = {
            side: (f"{config.require('MONGODB_DB')}_{tag}_{side}", f"{config.require('BQ_DATASET')}_{tag}_{side}")
            for side in ("pipeline", "baseline")
        }
        stack.create_bucket(bucket)
        try:
            started = time.perf_counter()
            mix = generate(size, bucket)
            print(f"{size} pings written in {time.perf_counter() - started:.1f} s: {json.dumps(mix)}", flush=True)
            for db_name, dataset in sides.values():
                add_projects(db_name)
                warehouse.ensure_tables(bq, dataset)
            pipeline_s, pipeline_rss = measure_pipeline(env, bucket, *sides["pipeline"])
            baseline_s, baseline_rss = measure_baseline(env, bucket, *sides["baseline"])
            results.append((size, pipeline_s, pipeline_rss, baseline_s, baseline_rss))
            print(
                f"  pipeline {size / pipeline_s:7.1f} pings/s ({pipeline_s:.1f} s, peak RSS {pipeline_rss:.0f} MiB); "
                f"baseline {size / baseline_s:7.1f} pings/s ({baseline_s:.1f} s, peak RSS {baseline_rss:.0f} MiB)",
                flush=True,
            )
        finally:
            shutil.rmtree(stack.GCS_ROOT / bucket, ignore_errors=True)
            (stack.GCS_ROOT / f"{bucket}.bucketMetadata").unlink(missing_ok=True)
            db = mongo.database(config.require("MONGODB_URI"), "admin")
            for db_name, dataset in sides.values():
                db.client.drop_database(db_name)
                bq.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
            db.client.close()

    print(
        f"\n{'pings':>7} {'pipeline/s':>11} {'baseline/s':>11} {'ratio':>6} {'pipeline RSS':>13} {'baseline RSS':>13}"
    )
    for size, pipeline_s, pipeline_rss, baseline_s, baseline_rss in results:
        ratio = (size / pipeline_s) / (size / baseline_s)
        print(
            f"{size:7} {size / pipeline_s:11.1f} {size / baseline_s:11.1f} {ratio:6.2f} "
            f"{pipeline_rss:10.0f} MiB {baseline_rss:10.0f} MiB"
        )
    if len(results) > 1:
        (small, _, small_rss, _, _), (large, _, large_rss, _, _) = results[0], results[-1]
        print(
            f"pipeline peak RSS from {small} to {large} pings: {large_rss - small_rss:+.0f} MiB "
            f"({(large_rss - small_rss) / small_rss:+.0%}) for {large / small:.0f}x the pings"
        )
    print(f"target: ratio >= {TARGET_RATIO}; peak RSS flat from the smallest to the largest size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
