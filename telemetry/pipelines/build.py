"""The entry point of the two hourly pipelines, tracking and deactivation: build one, run it.

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
state by received_at-ordered updates (site_state.py), mail by an atomic claim
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
from contextlib import contextmanager

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from telemetry.common import progress
from telemetry.common.logs import get_logger
from telemetry.pipelines import connectors, leases
from telemetry.pipelines.graph import build
from telemetry.pipelines.options import PipelineSettings
from telemetry.pipelines.reconciliation import format_report, report_from_metrics
from telemetry.pipelines.routes import PIPELINES, Pipeline

log = get_logger("telemetry.pipelines")

# Local runs (make pipelines, tests, demo, benchmark) name Beam's in-process batch
# runner, the one DirectRunner runs a batch pipeline on, directly: DirectRunner
# first tries to download the Go Prism runner from GitHub at run time, which
# fails without network and otherwise runs on an unpinned binary.
LOCAL_RUNNER = "FnApiRunner"
LOCAL_RUNNERS = (None, "DirectRunner", "direct", "FnApiRunner", "BundleBasedDirectRunner", "PrismRunner")


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
        with _progress(pipeline, settings, run_id):
            result = p.run()
            result.wait_until_finish()
    finally:
        released = leases.end(run_id)
        if released:
            log.warning("notifications released unacknowledged", extra={"run_id": run_id, "released": released})
    return pipeline, result, True


@contextmanager
def _progress(pipeline: Pipeline, settings: PipelineSettings, run_id: str):
    """A local run's progress, hours listed and objects fetched, on this terminal or in this
    log: its DoFns run in this process (connectors.progress_keys)."""
    hours, objects = connectors.progress_keys(run_id)
    if settings.hours:
        progress.open_shared(hours, f"{pipeline.name}: listed", len(settings.hours) * len(pipeline.routes), "hours")
    progress.open_shared(objects, f"{pipeline.name}: fetched", None, "objects")
    try:
        yield
    finally:
        progress.close_shared(hours, objects)


def main(argv: list[str] | None = None) -> int:
    pipeline, result, waited = run(sys.argv[1:] if argv is None else argv)
    if not waited:
        return 0  # on Dataflow the job logs its own report
    report = report_from_metrics(pipeline, result)
    print(format_report(report), flush=True)
    return 0 if report["balanced"] else 1


if __name__ == "__main__":
    sys.exit(main())
