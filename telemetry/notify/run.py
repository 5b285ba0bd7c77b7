"""One notify run: find the events the pipelines and the analytics job committed, store
them in the outbox, create their deliveries, and try every delivery that is due.

    python -m telemetry.notify.run     one run against the environment's services (`. .local/env`)

Deployed as the hourly `telemetry-notify` Cloud Function (functions/notify/main.py,
terraform/notify.tf), invoked by Cloud Scheduler. Why a function of its own, and
not a step of the pipelines: docs/notify.md.

The window: from the watermark (the previous run's `now`) less NOTIFY_OVERLAP_HOURS,
to this run's `now`. The watermark moves only after every producer's events are
stored, so a failed producer's facts are read again by the next run; the outbox's
keys make what is read twice count once.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telemetry.common import cloud, mongo, projects
from telemetry.common.logs import get_logger
from telemetry.notify import deliver, outbox, registry, site_events
from telemetry.notify.contract import CollectContext, Producer, Renderer
from telemetry.notify.settings import NotifySettings

log = get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunSummary:
    since: datetime
    until: datetime
    events_found: dict[str, int] = field(default_factory=dict)
    events_new: int = 0
    deliveries_created: int = 0
    site_events_held_back: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    failed_producers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_log(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "events_found": self.events_found,
            "events_new": self.events_new,
            "deliveries_created": self.deliveries_created,
            "deliveries": self.deliveries,
            # The counter of set-aside deliveries, summed per run (each also has its own log line).
            "notify_deliveries_set_aside": self.deliveries.get(outbox.SET_ASIDE, 0),
            # The counter of site events held back past the daily cap, newly counted by this run.
            site_events.HELD_BACK_COUNTER: self.site_events_held_back,
            "failed_producers": self.failed_producers,
            "seconds": round(self.seconds, 3),
        }


def run_once(
    bigquery: Any,
    db: Any,
    settings: NotifySettings,
    clock: deliver.Clock = utc_now,
    rng: random.Random | None = None,
    producers: Mapping[str, Producer] | None = None,
    renderers: Mapping[str, Renderer] | None = None,
) -> RunSummary:
    """One run. `clock` gives every time the outbox records (tests move it on); each
    webhook's `webhook-timestamp` is the real send time whatever the clock says."""
    started = time.monotonic()
    producers = registry.PRODUCERS if producers is None else producers
    renderers = registry.RENDERERS if renderers is None else renderers
    rng = rng or random.Random()
    outbox.ensure_indexes(db)
    site_events.ensure_indexes(db)
    now = clock()
    known = projects.load_projects(db)
    since = (outbox.watermark(db) or now) - settings.overlap
    summary = RunSummary(since=since, until=now)
    context = CollectContext(
        bigquery=bigquery,
        db=db,
        dataset=settings.dataset,
        projects=known,
        since=since,
        until=now,
        max_bytes_billed=settings.max_bytes_billed,
        bigquery_timeout_seconds=settings.bigquery_timeout_seconds,
        max_site_events_per_day=settings.max_site_events_per_day,
    )
    for name, producer in producers.items():
        try:
            found = producer(context)
        except Exception:
            log.exception("notify producer failed; its window is read again next run", extra={"producer": name})
            summary.failed_producers.append(name)
            continue
        summary.events_found[name] = len(found)
        summary.events_new += outbox.add_events(db, found, now)
        summary.site_events_held_back += site_events.count_held_back(db, found)
    if not summary.failed_producers:
        outbox.set_watermark(db, now)
    summary.deliveries_created = outbox.fan_out(db, known, now, renderers)
    summary.deliveries = dict(deliver.deliver_due(db, known, renderers, settings, clock, rng))
    summary.seconds = time.monotonic() - started
    log.info("notify run", extra=summary.as_log())
    return summary


def run_from_env(clock: deliver.Clock = utc_now) -> RunSummary:
    settings = NotifySettings.from_env()
    client = cloud.bigquery_client(settings.project)
    db = mongo.database(settings.mongodb_uri, settings.mongodb_db, settings.mongodb_timeout_seconds)
    try:
        return run_once(client, db, settings, clock)
    finally:
        db.client.close()


def handle(request) -> tuple[dict[str, Any], int]:
    """The Cloud Function's answer: one run. A run with a failed producer answers 500
    (its deliveries were still tried), so Cloud Scheduler shows it; the next run reads
    the producer's window again."""
    try:
        summary = run_from_env()
    except Exception:
        log.exception("notify run failed")
        return {"error": "run_failed"}, 500
    return summary.as_log(), 500 if summary.failed_producers else 200


def main(argv: list[str] | None = None) -> int:
    summary = run_from_env()
    print(summary.as_log())
    return 1 if summary.failed_producers else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
