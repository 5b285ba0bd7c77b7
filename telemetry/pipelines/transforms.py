"""Composite transforms of the hourly pipelines. None of them does I/O.

Each takes and returns PCollections of plain values, so a test can feed it
`beam.Create(...)`. Every record that leaves the main path goes to a
`rejected` output as a row for BigQuery `rejected`, and bumps the counter
`rejected_<reason>`. `ProcessRoute` is everything one route does between
reading its objects and writing to the sinks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from telemetry.common import privacy, sites, stored_ping
from telemetry.common.stored_ping import StoredPing
from telemetry.pipelines import geo, records, site_state, warehouse
from telemetry.pipelines.counters import NAMESPACE
from telemetry.pipelines.records import Rejected
from telemetry.pipelines.routes import Route

REJECTED = "rejected"
ACCEPTED = "accepted"


def _reject(name: str, reason: str, detail: str, received_at: datetime, body: dict | None) -> pvalue.TaggedOutput:
    Metrics.counter(NAMESPACE, f"rejected_{reason}").inc()
    return pvalue.TaggedOutput(REJECTED, records.rejected_row(name, reason, detail, received_at, body))


def check_fits(table: str, record: dict[str, Any]) -> None:
    """Raises Rejected(ROW_TOO_LARGE) when `record`'s row of BigQuery `table` is over warehouse.MAX_ROW_BYTES."""
    try:
        warehouse.check_row(table, records.bigquery_row(record, warehouse.columns(table)))
    except warehouse.RowTooLarge as e:
        raise Rejected(records.ROW_TOO_LARGE, str(e)) from e


class _ParseFn(beam.DoFn):
    def process(self, element: tuple[str, bytes | None]):
        name, data = element
        if data is None:
            received_at = stored_ping.received_at_of(name, None, datetime.now(UTC))
            yield _reject(name, records.MISSING_OBJECT, "object not found in the bucket", received_at, None)
            return
        try:
            ping = records.read_stored_ping(name, data)
        except Rejected as e:
            received_at = stored_ping.received_at_of(name, data, datetime.now(UTC))
            yield _reject(name, e.reason, e.detail, received_at, stored_ping.payload_of(data))
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
                ping.object_name,
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


class _SiteRecordFn(beam.DoFn):
    def __init__(self, status: str, policy: privacy.Policy, locator: geo.Locator):
        self._status = status
        self._policy = policy
        self._locator = locator
        self._unreadable: tuple[str, ...] = ()

    def setup(self):
        # The geo data is loaded once per worker process (and cached there), never per element.
        _, self._unreadable = self._locator.load()

    def process(self, element: tuple[StoredPing, dict[str, Any]]):
        # A configured database that could not be read (logged by geo): counted once per instance.
        for counter in self._unreadable:
            Metrics.counter(NAMESPACE, counter).inc()
        self._unreadable = ()
        ping, project = element
        located = self._locator.locate(ping.payload.get("ip_address"), ping.client_ip)
        try:
            record = records.site_record(ping, project, self._status, self._policy, located=located)
            check_fits(warehouse.SITES.name, record)
        except Rejected as e:
            yield _reject(ping.object_name, e.reason, e.detail, ping.received_at, ping.payload)
            return
        for counter in located.counters:
            Metrics.counter(NAMESPACE, counter).inc()
        yield record


class SiteRecords(beam.PTransform):
    """(ping, project) -> site record (custom fields filtered, cleaned and cast; personal fields per `policy`;
    hosting labels by `locator`) as `records`; a ping whose values cannot be cast, or whose `sites` row is
    too large -> `rejected`. Counts how each record's labels were found (geo's counters)."""

    def __init__(
        self, status: str = sites.ACTIVE, policy: privacy.Policy = privacy.DEFAULT, locator: geo.Locator = geo.BUNDLED
    ):
        super().__init__()
        self._status = status
        self._policy = policy
        self._locator = locator

    def expand(self, known):
        fn = _SiteRecordFn(self._status, self._policy, self._locator)
        return known | beam.ParDo(fn).with_outputs(REJECTED, main="records")


class _HistoryRecordFn(beam.DoFn):
    def __init__(
        self,
        record: Callable[[StoredPing, dict[str, Any]], dict[str, Any]],
        emit_accepted: bool,
        also: Callable[[StoredPing, dict[str, Any]], Any] | None,
        tables: tuple[str | None, str | None],
    ):
        self._record = record
        self._emit_accepted = emit_accepted
        self._also = also
        self._table, self._also_table = tables

    def process(self, element: tuple[StoredPing, dict[str, Any]]):
        ping, project = element
        try:
            record = self._record(ping, project)
            if self._table is not None:
                check_fits(self._table, record)
            if self._also is not None:
                other = self._also(ping, project)
                if self._also_table is not None:
                    check_fits(self._also_table, other)
        except Rejected as e:
            yield _reject(ping.object_name, e.reason, e.detail, ping.received_at, ping.payload)
            return
        if self._emit_accepted:
            yield pvalue.TaggedOutput(ACCEPTED, (ping, project))
        yield record


class HistoryRecords(beam.PTransform):
    """(ping, project) -> the route's history row; a ping its builder (or `also`, another
    record the ping must make: its site record) rejects, or whose row of `table` (or of
    `also_table`) is too large for BigQuery, -> `rejected`, and, with `emit_accepted`,
    every other one, as (ping, project), -> `accepted`. A ping is rejected whole or not
    at all, so it is never both a history row and a rejection."""

    def __init__(
        self,
        record: Callable[[StoredPing, dict[str, Any]], dict[str, Any]],
        emit_accepted: bool = True,
        also: Callable[[StoredPing, dict[str, Any]], Any] | None = None,
        table: str | None = None,
        also_table: str | None = None,
    ):
        super().__init__()
        self._record = record
        self._emit_accepted = emit_accepted
        self._also = also
        self._tables = (table, also_table)

    def expand(self, known):
        fn = _HistoryRecordFn(self._record, self._emit_accepted, self._also, self._tables)
        return known | beam.ParDo(fn).with_outputs(REJECTED, ACCEPTED, main="records")


class ProcessRoute(beam.PTransform):
    """(object name, bytes or None) of one route -> {"history": its history rows,
    "sites": site records (routes whose pings describe a site), "rejected": rows for
    BigQuery `rejected`}. What `route` describes decides every branch."""

    def __init__(
        self,
        route: Route,
        projects: pvalue.AsSideInput,
        policy: privacy.Policy = privacy.DEFAULT,
        locator: geo.Locator = geo.BUNDLED,
    ):
        super().__init__()
        self._route = route
        self._projects = projects
        self._policy = policy
        self._locator = locator

    def expand(self, objects):
        route = self._route
        parsed = objects | "Parse" >> ParseStoredPings()
        known = parsed.pings | "Project" >> AttachProject(self._projects)
        rejected = [parsed[REJECTED], known[REJECTED]]
        accepted = known.known
        history = None
        if route.record is not None:
            has_site = route.site_status is not None
            # The site record the ping must also make, built as SiteRecords builds it (same labels), so
            # that a ping is rejected whole or not at all.
            also = (
                functools.partial(records.site_record, status=route.site_status, locator=self._locator)
                if has_site
                else None
            )
            built = accepted | "History" >> HistoryRecords(
                route.record,
                emit_accepted=has_site,
                also=also,
                table=route.history.name,
                also_table=warehouse.SITES.name if has_site else None,
            )
            rejected.append(built[REJECTED])
            history, accepted = built.records, built[ACCEPTED]
        out = {}
        if route.site_status is not None:
            sites = accepted | "Sites" >> SiteRecords(route.site_status, self._policy, self._locator)
            out["sites"] = sites.records
            rejected.append(sites[REJECTED])
        out["history"] = history if history is not None else out["sites"]
        out["rejected"] = tuple(rejected) | "Rejected" >> beam.Flatten()
        return out


# Records per write batch: bounds what a worker holds, and sizes the bulk calls.
WRITE_BATCH = {"min_batch_size": 50, "max_batch_size": 500}


class LatestPerSite(beam.PTransform):
    """Records -> batches of `site_state.latest_per_site`, folded within each write batch.

    Not across the whole run: that would hold every site of the hour in memory
    (a GroupByKey). A site that lands in two batches gets two updates, and
    `site_state.site_update` is order-independent (newest record wins, first/last
    seen only widen), so the stored document is the same either way.
    """

    def expand(self, site_records):
        return site_records | beam.BatchElements(**WRITE_BATCH) | beam.Map(site_state.latest_per_site)
