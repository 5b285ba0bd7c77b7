"""Unit tests of cleaning, casting and record shapes (telemetry/records.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telemetry import records, warehouse
from telemetry.payload import parse_body
from telemetry.records import Rejected, StoredPing

PAYLOADS_MD = Path(__file__).resolve().parents[2] / "shared" / "PAYLOADS.md"
WHEN = datetime(2026, 11, 23, 11, 47, 18, 123456, tzinfo=UTC)


def stored(route: str = "track", body: dict | None = None, **fields) -> tuple[str, bytes]:
    ping_id = fields.pop("id", "p-1")
    source = f"{route}/2026/11/23/11/{ping_id}.json"
    obj = {"id": ping_id, "route": route, "received_at": records.format_timestamp(WHEN), "payload": body, **fields}
    return source, json.dumps(obj).encode()


def real_track_body() -> dict:
    body = PAYLOADS_MD.read_text().split("```")[1].strip()
    return parse_body(body.encode(), "application/x-www-form-urlencoded")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12),
        (" 3 ", 3),
        (7, 7),
        (True, 1),
        (2.0, 2),
        ("-1", -1),
        ("1.5", None),
        ("", None),
        (None, None),
        ("١٢", None),
        ({"a": 1}, None),
    ],
)
def test_to_int(value, expected):
    assert records.to_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Yes", True),
        ("No", False),
        ("1", True),
        ("0", False),
        ("true", True),
        ("FALSE", False),
        (True, True),
        (0, False),
        (1, True),
        (2, None),
        ("maybe", None),
        (None, None),
        ("", False),
    ],
)
def test_to_bool(value, expected):
    assert records.to_bool(value) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Bakery.Example.ORG/", "https://bakery.example.org"),
        ("HTTP://example.org/Shop/Page/", "http://example.org/Shop/Page"),
        ("https://example.org:8443/blog", "https://example.org:8443/blog"),
        ("https://example.org/?lang=de#top", "https://example.org?lang=de"),
        ("  https://example.org  ", "https://example.org"),
    ],
)
def test_normalize_url(url, expected):
    assert records.normalize_url(url) == expected


def test_site_record_from_the_real_client_body():
    source, data = stored(body=real_track_body())
    ping = records.parse_stored_ping(source, data)
    record = records.site_record(ping, {"custom_fields": ["license_type", "not_sent"]})
    assert record["url"] == "https://bakery.example.org"
    assert record["php_version"] == "8.2.10"
    assert record["wp_version"] == "6.4.2"
    assert record["server_software"] == "nginx/1.25.3"
    assert record["multisite"] is False and record["debug_mode"] is False
    assert record["users_total"] == 3 and record["active_plugins"] == 12 and record["inactive_plugins"] == 4
    assert record["is_local"] is False and record["tracking_skipped"] is False
    assert record["theme_slug"] == "twentytwentyfour"
    assert record["plugins"] == [
        {"slug": "akismet", "name": "Akismet Anti-spam", "version": "5.3"},
        {"slug": "woocommerce", "name": "WooCommerce", "version": "8.4.0"},
    ]
    assert record["custom_fields"] == {"license_type": "pro"}  # orders_count is not whitelisted
    assert record["status"] == records.ACTIVE
    assert record["ping_id"] == "p-1" and record["received_at"] == WHEN


def test_record_shapes_match_the_bigquery_schemas():
    ping = records.parse_stored_ping(*stored(body=real_track_body()))
    site = records.site_record(ping, {})
    assert set(warehouse.columns("sites")) == set(site)
    deactivation = records.deactivation_record(ping, {})
    assert set(warehouse.columns("deactivations")) == set(deactivation)
    skipped = records.tracking_skipped_row(records.parse_stored_ping(*stored("tracking-skipped", {"hash": "abc"})))
    assert set(warehouse.columns("tracking_skipped")) == set(skipped)
    assert set(warehouse.columns("rejected")) == set(records.rejected_row("track/x.json", "r", "d", WHEN, {}))


def test_bigquery_row_serialises_custom_fields_and_timestamps():
    ping = records.parse_stored_ping(*stored(body=real_track_body()))
    row = records.bigquery_row(
        records.site_record(ping, {"custom_fields": ["license_type"]}), warehouse.columns("sites")
    )
    assert row["custom_fields"] == '{"license_type": "pro"}'
    assert row["received_at"] == "2026-11-23T11:47:18.123456Z"
    json.dumps(row)  # JSON-safe


def test_deactivation_reasons():
    base = {"hash": "abc", "url": "https://x.org"}
    project = {"deactivation_reasons": ["too-expensive"]}

    def record(**extra):
        ping = records.parse_stored_ping(*stored("deactivate", {**base, **extra}))
        return records.deactivation_record(ping, project)

    assert record(reason_id="found-better-plugin", reason_info=" Nicer UI ")["reason_info"] == "Nicer UI"
    assert record(reason_id="too-expensive")["reason_id"] == "too-expensive"
    assert record(reason_id="none")["reason_id"] == "none"
    assert record()["reason_id"] is None  # a theme switched away sends no reason
    with pytest.raises(Rejected) as e:
        record(reason_id="made-up")
    assert e.value.reason == records.UNKNOWN_REASON


def test_rejected_row_drops_ip_and_email():
    body = {"hash": "abc", "admin_email": "a@b.org", "ip_address": "1.2.3.4", "first_name": "Zoë"}
    row = records.rejected_row("track/2026/11/23/11/x.json", "unknown_project", "no project", WHEN, body)
    assert row["route"] == "track" and row["hash"] == "abc"
    assert json.loads(row["payload"]) == {"hash": "abc", "first_name": "Zoë"}
    assert records.rejected_row("track/x.json", "invalid_object", "d", WHEN, None)["payload"] is None


@pytest.mark.parametrize(
    ("source", "data", "reason"),
    [
        ("track/2026/11/23/11/a.json", b"not json", records.INVALID_OBJECT),
        ("track/2026/11/23/11/a.json", b"[1]", records.INVALID_OBJECT),
        ("track/2026/11/23/11/a.json", b'{"id": "a"}', records.INVALID_OBJECT),
        # a track object filed under deactivate/
        ("deactivate/2026/11/23/11/p-1.json", stored("track", {"hash": "a"})[1], records.INVALID_OBJECT),
        (*stored("track", {"hash": "abc"}), records.INVALID_PAYLOAD),  # no url
        (*stored("track", {"hash": "abc", "url": "https://x.org", "$set": 1}), records.INVALID_PAYLOAD),
    ],
)
def test_parse_stored_ping_rejects(source, data, reason):
    with pytest.raises(Rejected) as e:
        records.parse_stored_ping(source, data)
    assert e.value.reason == reason


def test_received_at_of_unparseable_objects():
    fallback = datetime(2000, 1, 1, tzinfo=UTC)
    assert records.received_at_of("track/2026/11/23/11/x.json", b"junk", fallback) == datetime(
        2026, 11, 23, 11, tzinfo=UTC
    )
    assert records.received_at_of("track/x.json", None, fallback) == fallback
    assert records.received_at_of(*stored(body={}), fallback) == WHEN


def test_stored_ping_round_trip():
    ping = records.parse_stored_ping(*stored(body={"hash": "abc", "url": "https://x.org"}))
    assert ping == StoredPing(
        "track/2026/11/23/11/p-1.json", "p-1", "track", WHEN, {"hash": "abc", "url": "https://x.org"}
    )
