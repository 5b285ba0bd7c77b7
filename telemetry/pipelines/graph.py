"""The Beam graph of one hourly pipeline: what `build` adds to a `beam.Pipeline`.

Per route of the pipeline: its object names (drained from the route's Pub/Sub
subscription, or listed from `--hour` folders), read in batches, processed
(transforms.ProcessRoute), staged for BigQuery and merged into its history
table; the site branch folds the latest state into MongoDB and sends the mail
of new sites; acknowledgements wait for every sink. The last step logs the
run's reconciliation (reconciliation.py). What each route's pings become is
described in routes.py; the entry point is build.py.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from telemetry.common import tables
from telemetry.pipelines import connectors, warehouse
from telemetry.pipelines.counters import NAMESPACE
from telemetry.pipelines.options import PipelineSettings
from telemetry.pipelines.reconciliation import log_reconciliation, reconcile
from telemetry.pipelines.routes import Pipeline, Route, merges
from telemetry.pipelines.transforms import WRITE_BATCH, LatestPerSite, ProcessRoute

READ_BATCH = {"min_batch_size": 16, "max_batch_size": 256}


def _object_names(p, settings: PipelineSettings, route: Route, acks: list, run_id: str):
    """The route's object names for this run, each once."""
    label = route.label
    if settings.hours:
        names = (
            p
            | f"{label}Hours" >> beam.Create(settings.hours)
            | f"{label}ListHours" >> beam.ParDo(connectors.ListHourObjects(settings, route.name, run_id))
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
            | f"{label}Read" >> beam.ParDo(connectors.ReadObjects(settings, run_id))
            | f"{label}Process" >> ProcessRoute(route, projects, settings.privacy, settings.geo)
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
