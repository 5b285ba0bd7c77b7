"""TestPipeline tests of the pipelines' composite transforms (no I/O: fed by beam.Create)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from telemetry.common import sites
from telemetry.common.stored_ping import StoredPing
from telemetry.common.wire import DEACTIVATE, TRACK, TRACKING_SKIPPED
from telemetry.pipelines import records
from telemetry.pipelines.build import LOCAL_RUNNER
from telemetry.pipelines.routes import ROUTE_BY_NAME
from telemetry.pipelines.transforms import (
    REJECTED,
    AttachProject,
    HistoryRecords,
    LatestPerSite,
    ParseStoredPings,
    ProcessRoute,
    SiteRecords,
)

T0 = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
PROJECT = {"hash": "known", "custom_fields": ["license_type"], "deactivation_reasons": {"too-expensive": "Too dear"}}


def obj(ping_id: str, route: str = "track", minutes: int = 0, **body) -> tuple[str, bytes]:
    body = {"hash": "known", "url": "https://Site.example.org/", **body}
    stored = StoredPing(ping_id, route, T0 + timedelta(minutes=minutes), body)
    return stored.object_name, stored.to_json()


def ping(ping_id: str, route: str = "track", minutes: int = 0, **body) -> StoredPing:
    return records.read_stored_ping(*obj(ping_id, route, minutes, **body))


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
            | SiteRecords(sites.DEACTIVATED)
        ).records
        assert_that(
            rows | beam.Map(lambda r: (r["url"], r["users_total"], r["custom_fields"], r["status"])),
            equal_to([("https://site.example.org", 7, {"license_type": "pro"}, "deactivated")]),
        )


def test_history_records_reject_what_the_builder_rejects():
    pings = [
        (ping("a", "deactivate", reason_id="too-expensive"), PROJECT),
        (ping("b", "deactivate"), PROJECT),  # a theme switch: no reason
        (ping("c", "deactivate", reason_id="not a slug"), PROJECT),
    ]
    with TestPipeline(runner=LOCAL_RUNNER) as p:
        out = p | beam.Create(pings) | HistoryRecords(records.deactivation_record)
        assert_that(
            out.records | beam.Map(lambda r: (r["ping_id"], r["reason_id"])),
            equal_to([("a", "too-expensive"), ("b", None)]),
            label="records",
        )
        assert_that(out.accepted | beam.Map(lambda e: e[0].id), equal_to(["a", "b"]), label="accepted")
        assert_that(out[REJECTED] | beam.Map(lambda r: r["reason"]), equal_to(["invalid_reason"]), label="rejected")


@pytest.mark.parametrize(
    ("route", "site_status"),
    [(TRACK, "active"), (DEACTIVATE, "deactivated"), (TRACKING_SKIPPED, None)],
)
def test_process_route_follows_the_route_description(route, site_status):
    objects = [
        obj("t1", route, reason_id="other", previously_skipped="1"),
        obj("t2", route, hash="stranger"),
        (f"{route}/2026/11/23/11/t3.json", b"{oops"),
        (f"{route}/2026/11/23/11/t4.json", None),
    ]
    rejections = [("t2.json", "unknown_project"), ("t3.json", "invalid_object"), ("t4.json", "missing_object")]
    if route == DEACTIVATE:
        objects.append(obj("t5", route, reason_id="<not a slug>"))
        rejections.append(("t5.json", "invalid_reason"))
    columns = {
        TRACK: "status",
        DEACTIVATE: "reason_known",
        TRACKING_SKIPPED: "previously_skipped",
    }[route]
    expected_history = {TRACK: "active", DEACTIVATE: True, TRACKING_SKIPPED: True}[route]
    with TestPipeline(runner=LOCAL_RUNNER) as p:
        projects = beam.pvalue.AsDict(p | "projects" >> beam.Create([("known", PROJECT)]))
        out = p | beam.Create(objects) | ProcessRoute(ROUTE_BY_NAME[route], projects)
        assert_that(
            out["history"] | "history" >> beam.Map(lambda r: (r["ping_id"], r[columns])),
            equal_to([("t1", expected_history)]),
            label="check history",
        )
        assert_that(
            out["rejected"] | "rejected" >> beam.Map(lambda r: (r["source"].rsplit("/", 1)[1], r["reason"])),
            equal_to(rejections),
            label="check rejected",
        )
        if site_status is None:
            assert "sites" not in out
        else:
            assert_that(
                out["sites"] | "sites" >> beam.Map(lambda r: (r["ping_id"], r["status"])),
                equal_to([("t1", site_status)]),
                label="check sites",
            )


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
