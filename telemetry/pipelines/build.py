"""The two hourly pipelines, tracking and deactivation, and their entry point.

    python -m telemetry.pipelines.build tracking     [--hour YYYY-MM-DDTHH [--hour_to ...]] [Beam options]
    python -m telemetry.pipelines.build deactivation [...]

Tracking reads `track/` (sites) and `tracking-skipped/` (opt-outs);
deactivation reads `deactivate/` (deactivations, plus the site branch with
status `deactivated`). Without `--hour` a run drains the routes' Pub/Sub
subscriptions and acknowledges what it drained only after every sink has
committed; with `--hour` it lists the hour folders (reprocessing, backfills).

Exactly once: BigQuery history is appended by MERGE on `ping_id` (see
telemetry/warehouse.py), MongoDB state by received_at-ordered updates (see
telemetry/state.py), mail by an atomic claim. So a re-run, a redelivered
notification or a late file changes nothing that was already written.

At the end a run reports, by route: objects read = rows written + rejected +
duplicates skipped.
"""

from __future__ import annotations

import logging
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from telemetry import records, warehouse
from telemetry.logs import get_logger
from telemetry.payload import DEACTIVATE, TRACK, TRACKING_SKIPPED
from telemetry.pipelines import io
from telemetry.pipelines.settings import PipelineSettings
from telemetry.pipelines.transforms import (
    NAMESPACE,
    REJECTED,
    WRITE_BATCH,
    AttachProject,
    DeactivationRecords,
    LatestPerSite,
    ParseStoredPings,
    SiteRecords,
    TrackingSkippedRows,
)

log = get_logger("telemetry.pipelines")

READ_BATCH = {"min_batch_size": 16, "max_batch_size": 256}

# Local runs (make pipelines, tests, demo, benchmark) name Beam's in-process batch
# runner, the one DirectRunner runs a batch pipeline on, directly: DirectRunner
# first tries to download the Go Prism runner from GitHub at run time, which
# fails without network and otherwise runs on an unpinned binary.
LOCAL_RUNNER = "FnApiRunner"
LOCAL_RUNNERS = (None, "DirectRunner", "direct", "FnApiRunner", "BundleBasedDirectRunner", "PrismRunner")


@dataclass(frozen=True)
class Pipeline:
    name: str
    routes: tuple[str, ...]


PIPELINES = {
    "tracking": Pipeline("tracking", (TRACK, TRACKING_SKIPPED)),
    "deactivation": Pipeline("deactivation", (DEACTIVATE,)),
}

# The history table that holds each route's accepted pings.
HISTORY_OF_ROUTE = {
    TRACK: warehouse.SITES,
    TRACKING_SKIPPED: warehouse.TRACKING_SKIPPED,
    DEACTIVATE: warehouse.DEACTIVATIONS,
}


def _merges(pipeline: Pipeline) -> list[tuple[warehouse.Table, str | None]]:
    """What a run MERGEs: each route's history table, the site history when
    deactivations feed it, and `rejected` once per route (to count by route)."""
    merges: list[tuple[warehouse.Table, str | None]] = [(HISTORY_OF_ROUTE[r], None) for r in pipeline.routes]
    if DEACTIVATE in pipeline.routes:
        merges.append((warehouse.SITES, None))
    return merges + [(warehouse.REJECTED, route) for route in pipeline.routes]


def _object_names(p, settings: PipelineSettings, route: str, acks: list):
    """The route's object names for this run, each once."""
    label = route.title().replace("-", "")
    if settings.hours:
        names = (
            p
            | f"{label}Hours" >> beam.Create(settings.hours)
            | f"{label}ListHours" >> beam.ParDo(io.ListHourObjects(settings, route))
        )
    else:
        drained = (
            p
            | f"{label}Subscription" >> beam.Create([settings.subscription(route)])
            | f"{label}Drain" >> beam.ParDo(io.DrainSubscription(settings, route)).with_outputs(io.ACKS, main="names")
        )
        names = drained.names
        acks.append(drained[io.ACKS])
    return names | f"{label}Distinct" >> beam.Distinct()


def _stage(pcoll, label: str, settings: PipelineSettings, table: warehouse.Table, run_id: str):
    return (
        pcoll
        | f"Batch{label}" >> beam.BatchElements(**WRITE_BATCH)
        | f"Stage{label}" >> beam.ParDo(io.StageHistory(settings, table, run_id))
    )


def build(p: beam.Pipeline, pipeline: Pipeline, settings: PipelineSettings, run_id: str) -> beam.PCollection:
    """Adds the pipeline to `p`; returns the PCollection of its reconciliation report."""
    projects = beam.pvalue.AsDict(
        p | "Start" >> beam.Create([None]) | "LoadProjects" >> beam.ParDo(io.LoadProjects(settings))
    )
    acks: list = []
    rejected, staged, done, read_counts = [], [], [], []
    site_records = []

    for route in pipeline.routes:
        label = route.title().replace("-", "")
        names = _object_names(p, settings, route, acks)
        read_counts.append(
            names
            | f"{label}CountRead" >> beam.Map(_count_read, route)
            | f"{label}Count" >> beam.combiners.Count.Globally()
            | f"{label}Keyed" >> beam.Map(lambda n, r=route: (r, n))
        )
        objects = (
            names
            | f"{label}BatchNames" >> beam.BatchElements(**READ_BATCH)
            | f"{label}Read" >> beam.ParDo(io.ReadObjects(settings))
        )
        parsed = objects | f"{label}Parse" >> ParseStoredPings()
        known = parsed.pings | f"{label}Project" >> AttachProject(projects)
        rejected += [parsed[REJECTED], known[REJECTED]]
        history = HISTORY_OF_ROUTE[route]

        if route == TRACK:
            rows = known.known | f"{label}Sites" >> SiteRecords(records.ACTIVE)
            site_records.append(rows)
        elif route == TRACKING_SKIPPED:
            rows = known.known | f"{label}OptOuts" >> TrackingSkippedRows()
        else:
            deactivations = known.known | f"{label}Records" >> DeactivationRecords()
            rejected.append(deactivations[REJECTED])
            rows = deactivations.deactivations
            done.append(
                rows
                | f"{label}BatchState" >> beam.BatchElements(**WRITE_BATCH)
                | f"{label}UpsertDeactivations" >> beam.ParDo(io.UpsertDeactivations(settings))
            )
            site_records.append(deactivations.sites | f"{label}Sites" >> SiteRecords(records.DEACTIVATED))
        staged.append(_stage(rows, label, settings, history, run_id))

    # The site branch: latest state in MongoDB, history in BigQuery, mail for new sites.
    if site_records:
        [all_sites] = site_records  # one route per pipeline feeds the site branch
        mailable = (
            all_sites
            | "LatestPerSite" >> LatestPerSite()
            | "UpsertSites" >> beam.ParDo(io.UpsertSites(settings), projects)
        )
        done.append(mailable | "SendMail" >> beam.ParDo(io.SendMail(settings), projects))
        if pipeline.name == "deactivation":  # tracking stages its sites as the route's own history
            staged.append(_stage(all_sites, "SiteHistory", settings, warehouse.SITES, run_id))

    all_rejected = tuple(rejected) | "AllRejected" >> beam.Flatten()
    staged.append(_stage(all_rejected, "Rejected", settings, warehouse.REJECTED, run_id))

    merged = (
        p
        | "AfterStaging" >> beam.Create([None])
        | "Merge"
        >> beam.ParDo(io.MergeHistory(settings, run_id, _merges(pipeline)), *[beam.pvalue.AsList(s) for s in staged])
    )
    if acks:
        all_acks = tuple(acks) | "AllAcks" >> beam.Flatten() if len(acks) > 1 else acks[0]
        sinks = [beam.pvalue.AsList(merged), *[beam.pvalue.AsList(d) for d in done]]
        _ = (
            p
            | "AfterSinks" >> beam.Create([None])
            | "Ack" >> beam.ParDo(io.AckNotifications(), beam.pvalue.AsList(all_acks), *sinks)
        )
    counts = tuple(read_counts) | "AllReadCounts" >> beam.Flatten()
    return (
        p
        | "AtEnd" >> beam.Create([None])
        | "Reconcile"
        >> beam.Map(
            lambda _, read, results: log_reconciliation(reconcile(pipeline, dict(read), results)),
            beam.pvalue.AsList(counts),
            beam.pvalue.AsList(merged),
        )
    )


def _count_read(name: str, route: str) -> str:
    Metrics.counter(NAMESPACE, f"objects_read_{route}").inc()
    return name


def reconcile(pipeline: Pipeline, read: dict[str, int], results: list[warehouse.MergeResult]) -> dict[str, Any]:
    """objects read = rows written + rejected + duplicates skipped, by route."""
    report: dict[str, Any] = {"pipeline": pipeline.name, "routes": {}, "balanced": True}
    for route in pipeline.routes:
        accepted = next(r for r in results if r.table == HISTORY_OF_ROUTE[route].name and r.scope == "")
        rejected = next(r for r in results if r.table == warehouse.REJECTED.name and r.scope == route)
        line = {
            "objects_read": read.get(route, 0),
            "rows_written": accepted.inserted,
            "rejected": rejected.inserted,
            "duplicates_skipped": accepted.duplicates + rejected.duplicates,
        }
        line["balanced"] = line["objects_read"] == line["rows_written"] + line["rejected"] + line["duplicates_skipped"]
        report["balanced"] &= line["balanced"]
        report["routes"][route] = line
    extra = [r for r in results if r.table == warehouse.SITES.name and pipeline.name == "deactivation"]
    if extra:
        report["site_history_rows_written"] = extra[0].inserted
    return report


def log_reconciliation(report: dict[str, Any]) -> dict[str, Any]:
    """The run's last step: its report as one JSON log line (on Dataflow nobody waits for the launcher)."""
    if not report["balanced"]:
        Metrics.counter(NAMESPACE, "unreconciled_runs").inc()
        log.error("run does not reconcile", extra={"report": report})
    else:
        log.info("run reconciled", extra={"report": report})
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['pipeline']} pipeline:"]
    for route, r in report["routes"].items():
        mark = "" if r["balanced"] else "   <-- DOES NOT BALANCE"
        lines.append(
            f"  {route:17} objects read {r['objects_read']} = rows written {r['rows_written']} "
            f"+ rejected {r['rejected']} + duplicates skipped {r['duplicates_skipped']}{mark}"
        )
    if "site_history_rows_written" in report:
        lines.append(f"  (site history rows written from deactivations: {report['site_history_rows_written']})")
    return "\n".join(lines)


def report_from_metrics(pipeline: Pipeline, result: beam.runners.runner.PipelineResult) -> dict[str, Any]:
    """The reconciliation report of a finished run, from its Beam counters."""
    from apache_beam.metrics.metric import MetricsFilter

    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
    read = {route: totals.get(f"objects_read_{route}", 0) for route in pipeline.routes}
    results = []
    for table, scope in _merges(pipeline):
        name = f"{table.name}_{scope or 'all'}"
        results.append(
            warehouse.MergeResult(
                table.name, scope or "", totals.get(f"staged_{name}", 0), totals.get(f"inserted_{name}", 0)
            )
        )
    return reconcile(pipeline, read, results)


def run(argv: list[str]) -> tuple[Pipeline, beam.runners.runner.PipelineResult, bool]:
    """Build and start one pipeline; waits for it when it runs locally. Returns (pipeline, result, waited)."""
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    if not argv or argv[0] not in PIPELINES:
        raise SystemExit(f"usage: python -m telemetry.pipelines.build {{{'|'.join(PIPELINES)}}} [options]")
    pipeline = PIPELINES[argv[0]]
    options = PipelineOptions(argv[1:])
    options.view_as(SetupOptions).save_main_session = False
    settings = PipelineSettings.from_options(options)
    p = beam.Pipeline(options=options)
    build(p, pipeline, settings, run_id=uuid.uuid4().hex[:12])
    result = p.run()
    local = options.view_as(StandardOptions).runner in LOCAL_RUNNERS
    if local:
        result.wait_until_finish()
    return pipeline, result, local


def main(argv: list[str] | None = None) -> int:
    pipeline, result, waited = run(sys.argv[1:] if argv is None else argv)
    if not waited:
        return 0  # on Dataflow the job logs its own report
    report = report_from_metrics(pipeline, result)
    print(format_report(report), flush=True)
    return 0 if report["balanced"] else 1


if __name__ == "__main__":
    sys.exit(main())
