"""The two hourly pipelines, tracking and deactivation, and their entry point.

    python -m telemetry.pipelines.build tracking     [--hour YYYY-MM-DDTHH [--hour_to ...]] [Beam options]
    python -m telemetry.pipelines.build deactivation [...]

Tracking reads `track/` (sites) and `tracking-skipped/` (opt-outs);
deactivation reads `deactivate/` (deactivations, plus the site branch with
status `deactivated`). Without `--hour` a run drains the routes' Pub/Sub
subscriptions and acknowledges what it drained only after every sink has
committed; with `--hour` it lists the hour folders (reprocessing, backfills).

What each route's pings become is described in routes.py. Exactly once:
BigQuery history is appended by MERGE on `ping_id` (warehouse.py), one run
of a pipeline at a time under its run lock (run_lock.py), MongoDB
state by received_at-ordered updates (mongodb.py), mail by an atomic claim
(each run also sweeps the sites whose mail is due again: connectors.SweepMail).
So a re-run, a redelivered notification or a late file changes nothing that
was already written.

At the end a run reports, by route: objects read = rows written + rejected +
duplicates skipped.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from telemetry.common import tables
from telemetry.common.logs import get_logger
from telemetry.pipelines import connectors, leases, warehouse
from telemetry.pipelines.options import PipelineSettings
from telemetry.pipelines.routes import PIPELINES, Pipeline, Route, merges
from telemetry.pipelines.transforms import NAMESPACE, WRITE_BATCH, LatestPerSite, ProcessRoute

log = get_logger("telemetry.pipelines")

READ_BATCH = {"min_batch_size": 16, "max_batch_size": 256}

# Local runs (make pipelines, tests, demo, benchmark) name Beam's in-process batch
# runner, the one DirectRunner runs a batch pipeline on, directly: DirectRunner
# first tries to download the Go Prism runner from GitHub at run time, which
# fails without network and otherwise runs on an unpinned binary.
LOCAL_RUNNER = "FnApiRunner"
LOCAL_RUNNERS = (None, "DirectRunner", "direct", "FnApiRunner", "BundleBasedDirectRunner", "PrismRunner")


def _object_names(p, settings: PipelineSettings, route: Route, acks: list, run_id: str):
    """The route's object names for this run, each once."""
    label = route.label
    if settings.hours:
        names = (
            p
            | f"{label}Hours" >> beam.Create(settings.hours)
            | f"{label}ListHours" >> beam.ParDo(connectors.ListHourObjects(settings, route.name))
        )
    else:
        drained = (
            p
            | f"{label}Subscription" >> beam.Create([settings.subscription(route.name)])
            | f"{label}Drain"
            >> beam.ParDo(connectors.DrainSubscription(settings, route.name, run_id)).with_outputs(
                connectors.ACKS, main="names"
            )
        )
        names = drained.names
        acks.append(drained[connectors.ACKS])
    return names | f"{label}Distinct" >> beam.Distinct()


def _stage(pcoll, label: str, settings: PipelineSettings, table: tables.TableLayout, run_id: str):
    return (
        pcoll
        | f"Batch{label}" >> beam.BatchElements(**WRITE_BATCH)
        | f"Stage{label}" >> beam.ParDo(connectors.StageHistory(settings, table, run_id))
    )


def build(p: beam.Pipeline, pipeline: Pipeline, settings: PipelineSettings, run_id: str) -> beam.PCollection:
    """Adds the pipeline to `p`; returns the PCollection of its reconciliation report."""
    projects = beam.pvalue.AsDict(
        p | "Start" >> beam.Create([None]) | "LoadProjects" >> beam.ParDo(connectors.LoadProjects(settings))
    )
    acks: list = []
    rejected, staged, done, read_counts, site_records = [], [], [], [], []

    for route in pipeline.routes:
        label = route.label
        names = _object_names(p, settings, route, acks, run_id)
        read_counts.append(
            names
            | f"{label}CountRead" >> beam.Map(_count_read, route.name)
            | f"{label}Count" >> beam.combiners.Count.Globally()
            | f"{label}Keyed" >> beam.Map(lambda n, r=route.name: (r, n))
        )
        out = (
            names
            | f"{label}BatchNames" >> beam.BatchElements(**READ_BATCH)
            | f"{label}Read" >> beam.ParDo(connectors.ReadObjects(settings))
            | f"{label}Process" >> ProcessRoute(route, projects, settings.privacy)
        )
        rejected.append(out["rejected"])
        staged.append(_stage(out["history"], label, settings, route.history, run_id))
        if route.keeps_latest_deactivation:
            done.append(
                out["history"]
                | f"{label}BatchState" >> beam.BatchElements(**WRITE_BATCH)
                | f"{label}UpsertDeactivations" >> beam.ParDo(connectors.UpsertDeactivations(settings))
            )
        if "sites" in out:
            site_records.append(out["sites"])
            if route.stages_site_history:
                staged.append(_stage(out["sites"], f"{label}SiteHistory", settings, warehouse.SITES, run_id))

    # The site branch: latest state in MongoDB, mail for new sites.
    if site_records:
        all_sites = tuple(site_records) | "AllSites" >> beam.Flatten() if len(site_records) > 1 else site_records[0]
        mailable = (
            all_sites
            | "LatestPerSite" >> LatestPerSite()
            | "UpsertSites" >> beam.ParDo(connectors.UpsertSites(settings), projects)
        )
        done.append(mailable | "SendMail" >> beam.ParDo(connectors.SendMail(settings), projects))
        done.append(
            p | "MailDue" >> beam.Create([None]) | "SweepMail" >> beam.ParDo(connectors.SweepMail(settings), projects)
        )

    all_rejected = tuple(rejected) | "AllRejected" >> beam.Flatten()
    staged.append(_stage(all_rejected, "Rejected", settings, warehouse.REJECTED, run_id))

    merged = (
        p
        | "AfterStaging" >> beam.Create([None])
        | "Merge"
        >> beam.ParDo(
            connectors.MergeHistory(settings, run_id, merges(pipeline), pipeline.name),
            *[beam.pvalue.AsList(s) for s in staged],
        )
    )
    if acks:
        all_acks = tuple(acks) | "AllAcks" >> beam.Flatten() if len(acks) > 1 else acks[0]
        sinks = [beam.pvalue.AsList(merged), *[beam.pvalue.AsList(d) for d in done]]
        _ = (
            p
            | "AfterSinks" >> beam.Create([None])
            | "Ack" >> beam.ParDo(connectors.AckNotifications(settings, run_id), beam.pvalue.AsList(all_acks), *sinks)
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
        accepted = next(r for r in results if r.table == route.history.name and r.scope == "")
        rejected = next(r for r in results if r.table == warehouse.REJECTED.name and r.scope == route.name)
        line = {
            "objects_read": read.get(route.name, 0),
            "rows_written": accepted.inserted,
            "rejected": rejected.inserted,
            "duplicates_skipped": accepted.duplicates + rejected.duplicates,
        }
        line["balanced"] = line["objects_read"] == line["rows_written"] + line["rejected"] + line["duplicates_skipped"]
        report["balanced"] &= line["balanced"]
        report["routes"][route.name] = line
    if any(route.stages_site_history for route in pipeline.routes):
        site_history = [r for r in results if r.table == warehouse.SITES.name and r.scope == ""]
        report["site_history_rows_written"] = site_history[0].inserted if site_history else 0
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
    read = {route.name: totals.get(f"objects_read_{route.name}", 0) for route in pipeline.routes}
    results = []
    for table, scope in merges(pipeline):
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
    run_id = uuid.uuid4().hex[:12]
    build(p, pipeline, settings, run_id=run_id)
    local = options.view_as(StandardOptions).runner in LOCAL_RUNNERS
    if not local:
        return pipeline, p.run(), False
    # The drain and its lease keeper run in this process: once the run is over,
    # whichever way, end the leases of whatever it did not acknowledge, so that
    # a failed run's notifications come back at once.
    try:
        result = p.run()
        result.wait_until_finish()
    finally:
        released = leases.end(run_id)
        if released:
            log.warning("notifications released unacknowledged", extra={"run_id": run_id, "released": released})
    return pipeline, result, True


def main(argv: list[str] | None = None) -> int:
    pipeline, result, waited = run(sys.argv[1:] if argv is None else argv)
    if not waited:
        return 0  # on Dataflow the job logs its own report
    report = report_from_metrics(pipeline, result)
    print(format_report(report), flush=True)
    return 0 if report["balanced"] else 1


if __name__ == "__main__":
    sys.exit(main())
