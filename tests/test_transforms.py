"""TestPipeline tests of the pipelines' composite transforms (no I/O: fed by beam.Create)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from telemetry import records
from telemetry.pipelines.build import LOCAL_RUNNER
from telemetry.pipelines.transforms import (
    REJECTED,
    AttachProject,
    DeactivationRecords,
    LatestPerSite,
    ParseStoredPings,
    SiteRecords,
    TrackingSkippedRows,
)

T0 = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
PROJECT = {"hash": "known", "custom_fields": ["license_type"], "deactivation_reasons": ["too-expensive"]}


def obj(ping_id: str, route: str = "track", minutes: int = 0, **body) -> tuple[str, bytes]:
    body = {"hash": "known", "url": "https://Site.example.org/", **body}
    received = records.format_timestamp(T0 + timedelta(minutes=minutes))
    data = {"id": ping_id, "route": route, "received_at": received, "payload": body}
    return f"{route}/2026/11/23/11/{ping_id}.json", json.dumps(data).encode()


def ping(ping_id: str, route: str = "track", minutes: int = 0, **body) -> records.StoredPing:
    return records.parse_stored_ping(*obj(ping_id, route, minutes, **body))


def test_parse_stored_pings_splits_good_from_rejected():
    with TestPipeline(runner=LOCAL_RUNNER) as p:
        out = (
            p
            | beam.Create(
                [
                    obj("a"),
                    ("track/2026/11/23/11/b.json", b"{oops"),
                    ("track/x/c.json", None),
                    obj("d", url="not a url"),
                ]
            )
            | ParseStoredPings()
        )
        assert_that(out.pings | "ids" >> beam.Map(lambda p: p.id), equal_to(["a"]), label="pings")
        assert_that(
            out[REJECTED] | beam.Map(lambda r: (r["source"].rsplit("/", 1)[1], r["reason"])),
            equal_to([("b.json", "invalid_object"), ("c.json", "missing_object"), ("d.json", "invalid_payload")]),
            label="rejected",
        )


def test_attach_project_rejects_unknown_hashes():
    with TestPipeline(runner=LOCAL_RUNNER) as p:
        projects = beam.pvalue.AsDict(p | "projects" >> beam.Create([("known", PROJECT)]))
        out = p | beam.Create([ping("a"), ping("b", hash="stranger")]) | AttachProject(projects)
        assert_that(out.known | beam.Map(lambda e: (e[0].id, e[1]["hash"])), equal_to([("a", "known")]), label="known")
        assert_that(
            out[REJECTED] | beam.Map(lambda r: (r["hash"], r["reason"])),
            equal_to([("stranger", "unknown_project")]),
            label="rejected",
        )


def test_site_records_filter_custom_fields_and_cast():
    with TestPipeline(runner=LOCAL_RUNNER) as p:
        rows = (
            p
            | beam.Create([(ping("a", users={"total": "7"}, extra={"license_type": "pro", "secret": "x"}), PROJECT)])
            | SiteRecords(records.DEACTIVATED)
        )
        assert_that(
            rows | beam.Map(lambda r: (r["url"], r["users_total"], r["custom_fields"], r["status"])),
            equal_to([("https://site.example.org", 7, {"license_type": "pro"}, "deactivated")]),
        )


def test_deactivation_records_check_reasons():
    pings = [
        (ping("a", "deactivate", reason_id="too-expensive"), PROJECT),
        (ping("b", "deactivate"), PROJECT),  # a theme switch: no reason
        (ping("c", "deactivate", reason_id="nonsense"), PROJECT),
    ]
    with TestPipeline(runner=LOCAL_RUNNER) as p:
        out = p | beam.Create(pings) | DeactivationRecords()
        assert_that(
            out.deactivations | beam.Map(lambda r: (r["ping_id"], r["reason_id"])),
            equal_to([("a", "too-expensive"), ("b", None)]),
            label="accepted",
        )
        assert_that(out.sites | beam.Map(lambda e: e[0].id), equal_to(["a", "b"]), label="sites")
        assert_that(out[REJECTED] | beam.Map(lambda r: r["reason"]), equal_to(["unknown_reason"]), label="rejected")


def test_tracking_skipped_rows_carry_no_personal_data():
    with TestPipeline(runner=LOCAL_RUNNER) as p:
        rows = (
            p | beam.Create([(ping("s", "tracking-skipped", previously_skipped="1"), PROJECT)]) | TrackingSkippedRows()
        )
        assert_that(rows | beam.Map(sorted), equal_to([["hash", "ping_id", "previously_skipped", "received_at"]]))


def test_latest_per_site_keeps_the_newest_and_the_span():
    site = lambda ping_id, minutes: records.site_record(ping(ping_id, minutes=minutes), PROJECT)  # noqa: E731
    with TestPipeline(runner=LOCAL_RUNNER) as p:
        out = (
            p
            | beam.Create(
                [
                    site("new", 30),
                    site("old", 5),
                    site("mid", 20),
                    records.site_record(ping("other", url="https://other.org"), PROJECT),
                ]
            )
            | LatestPerSite()
            | beam.FlatMap(lambda batch: batch)
        )
        assert_that(
            out | beam.Map(lambda e: (e[0]["url"], e[0]["ping_id"], e[1], e[2])),
            equal_to(
                [
                    ("https://site.example.org", "new", T0 + timedelta(minutes=5), T0 + timedelta(minutes=30)),
                    ("https://other.org", "other", T0, T0),
                ]
            ),
        )
