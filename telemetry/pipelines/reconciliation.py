"""The reconciliation of a pipeline run: by route, objects read = rows written +
rejected + duplicates skipped.

A run's last step computes it from the merges' results (`reconcile`) and logs it
(`log_reconciliation`: on Dataflow nobody waits for the launcher); a local run's
launcher computes it again from the Beam counters (`report_from_metrics`) and
prints it (`format_report`). A run that does not balance bumps the counter
`unreconciled_runs`, which an alert policy watches (terraform/monitoring.tf).
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from telemetry.common.logs import get_logger
from telemetry.pipelines import warehouse
from telemetry.pipelines.counters import NAMESPACE
from telemetry.pipelines.routes import Pipeline, merges

log = get_logger("telemetry.pipelines")


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
