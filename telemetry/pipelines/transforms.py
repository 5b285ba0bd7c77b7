"""Composite transforms of the hourly pipelines. None of them does I/O.

Each takes and returns PCollections of plain values, so a test can feed it
`beam.Create(...)`. Every record that leaves the main path goes to a
`rejected` output as a row for BigQuery `rejected`, and bumps the counter
`rejected_<reason>`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from telemetry import records, state
from telemetry.records import Rejected, StoredPing

NAMESPACE = "telemetry"
REJECTED = "rejected"


def _reject(source: str, reason: str, detail: str, received_at: datetime, body: dict | None) -> pvalue.TaggedOutput:
    Metrics.counter(NAMESPACE, f"rejected_{reason}").inc()
    return pvalue.TaggedOutput(REJECTED, records.rejected_row(source, reason, detail, received_at, body))


class _ParseFn(beam.DoFn):
    def process(self, element: tuple[str, bytes | None]):
        source, data = element
        if data is None:
            yield _reject(
                source,
                records.MISSING_OBJECT,
                "object not found in the bucket",
                records.received_at_of(source, None, datetime.now(UTC)),
                None,
            )
            return
        try:
            ping = records.parse_stored_ping(source, data)
        except Rejected as e:
            body = None
            try:
                body = json.loads(data).get("payload")
                body = body if isinstance(body, dict) else None
            except (ValueError, AttributeError, UnicodeDecodeError):
                pass
            received_at = records.received_at_of(source, data, datetime.now(UTC))
            yield _reject(source, e.reason, e.detail, received_at, body)
            return
        Metrics.counter(NAMESPACE, f"parsed_{ping.route}").inc()
        yield ping


class ParseStoredPings(beam.PTransform):
    """(object name, bytes or None) -> StoredPing; unreadable objects -> `rejected`."""

    def expand(self, objects):
        return objects | beam.ParDo(_ParseFn()).with_outputs(REJECTED, main="pings")


class _AttachProjectFn(beam.DoFn):
    def process(self, ping: StoredPing, projects: dict[str, dict[str, Any]]):
        project = projects.get(ping.payload["hash"])
        if project is None:
            yield _reject(
                ping.source,
                records.UNKNOWN_PROJECT,
                f"no project has hash {ping.payload['hash']!r}",
                ping.received_at,
                ping.payload,
            )
            return
        yield ping, project


class AttachProject(beam.PTransform):
    """StoredPing -> (ping, project) when the hash names a project in `projects` (a dict side input)."""

    def __init__(self, projects: pvalue.AsSideInput):
        super().__init__()
        self._projects = projects

    def expand(self, pings):
        return pings | beam.ParDo(_AttachProjectFn(), self._projects).with_outputs(REJECTED, main="known")


class SiteRecords(beam.PTransform):
    """(ping, project) -> site record (custom fields filtered, cleaned and cast)."""

    def __init__(self, status: str = records.ACTIVE):
        super().__init__()
        self._status = status

    def expand(self, known):
        status = self._status
        return known | beam.MapTuple(lambda ping, project: records.site_record(ping, project, status))


class _DeactivationFn(beam.DoFn):
    def process(self, element: tuple[StoredPing, dict[str, Any]]):
        ping, project = element
        try:
            record = records.deactivation_record(ping, project)
        except Rejected as e:
            yield _reject(ping.source, e.reason, e.detail, ping.received_at, ping.payload)
            return
        yield pvalue.TaggedOutput("sites", (ping, project))
        yield record


class DeactivationRecords(beam.PTransform):
    """(ping, project) -> deactivation record, plus the (ping, project) of each accepted one
    on `sites` for the site branch; an unknown reason -> `rejected`."""

    def expand(self, known):
        return known | beam.ParDo(_DeactivationFn()).with_outputs(REJECTED, "sites", main="deactivations")


class TrackingSkippedRows(beam.PTransform):
    """(ping, project) -> opt-out row."""

    def expand(self, known):
        return known | beam.MapTuple(lambda ping, _project: records.tracking_skipped_row(ping))


# Records per write batch: bounds what a worker holds, and sizes the bulk calls.
WRITE_BATCH = {"min_batch_size": 50, "max_batch_size": 500}


class LatestPerSite(beam.PTransform):
    """Records -> batches of `state.latest_per_site`, folded within each write batch.

    Not across the whole run: that would hold every site of the hour in memory
    (a GroupByKey). A site that lands in two batches gets two updates, and
    `state.site_update` is order-independent (newest record wins, first/last
    seen only widen), so the stored document is the same either way.
    """

    def expand(self, site_records):
        return site_records | beam.BatchElements(**WRITE_BATCH) | beam.Map(state.latest_per_site)


def mail_flag(record: dict[str, Any], projects: dict[str, dict[str, Any]]) -> bool:
    """Whether a new site of this record's project must be sent to the mail integration."""
    project = projects.get(record["hash"])
    return bool(project and state.enabled_mail_integrations(project))
