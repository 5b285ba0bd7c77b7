"""Unit tests of cleaning, casting and record shapes (telemetry/pipelines/records.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from telemetry.common import config, sites, stored_ping
from telemetry.common.stored_ping import StoredPing
from telemetry.common.wire import parse_body
from telemetry.ingest.settings import IngestSettings
from telemetry.pipelines import records, warehouse
from telemetry.pipelines.records import Rejected
from tests import fixtures

WHEN = datetime(2026, 11, 23, 11, 47, 18, 123456, tzinfo=UTC)
LIMITS = IngestSettings.from_env({}).limits


def stored(route: str = "track", body: dict | None = None, ping_id: str = "p-1") -> tuple[str, bytes]:
    """(object name, bytes) of a stored ping, written by the stored ping's own code."""
    ping = StoredPing(id=ping_id, route=route, received_at=WHEN, payload=body)  # type: ignore[arg-type]
    return ping.object_name, ping.to_json()


def real_track_body() -> dict:
    return parse_body(fixtures.track_body_php().encode(), "application/x-www-form-urlencoded", None, LIMITS)


def wordpress_track_body() -> dict:
    return parse_body(fixtures.track_body_wordpress().encode(), "application/x-www-form-urlencoded", None, LIMITS)


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


def test_html_escaped_values_are_decoded_once():
    body = wordpress_track_body()
    body["wp"]["theme_name"] = "Twenty &amp; Four"
    body["plugins"]["akismet"]["name"] = "Akismet &#8211; Anti-spam"
    body["first_name"] = "L&#039;Atelier &amp;amp; co"  # `&amp;amp;` was typed as `&amp;`: decoded once only
    record = records.site_record(records.read_stored_ping(*stored(body=body)), {})
    assert record["site"] == 'Bakery & Café "Ñandú"'
    assert record["last_name"] == "O'Brien & Sons"
    assert record["first_name"] == "L'Atelier &amp; co"
    assert record["theme_name"] == "Twenty & Four"
    assert record["plugins"][0]["name"] == "Akismet – Anti-spam"
    assert record["url"] == "https://bakery.example.org/shop?lang=de&ref=wp"  # esc_url's &#038;


def test_reason_info_is_kept_as_received():
    body = {**wordpress_track_body(), "reason_id": "other", "reason_info": "Price &amp; support"}
    record = records.deactivation_record(records.read_stored_ping(*stored("deactivate", body)), {})
    assert record["reason_info"] == "Price &amp; support"
    assert record["site"] == 'Bakery & Café "Ñandú"'


def test_a_stored_ping_beyond_the_default_limits_is_read():
    """Ingest applied the limits with its own settings (say MAX_KEYS=5000); the pipelines never again."""
    body = {"hash": "abc", "url": "https://x.org", "extra": {f"k{i}": "v" * 20_000 for i in range(2500)}}
    assert records.read_stored_ping(*stored(body=body)).payload == body


def test_site_record_from_the_real_client_body():
    source, data = stored(body=real_track_body())
    ping = records.read_stored_ping(source, data)
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
    assert record["status"] == sites.ACTIVE
    assert record["ping_id"] == "p-1" and record["received_at"] == WHEN


def test_record_shapes_match_the_bigquery_schemas():
    ping = records.read_stored_ping(*stored(body=real_track_body()))
    site = records.site_record(ping, {})
    assert set(warehouse.columns("sites")) == set(site)
    deactivation = records.deactivation_record(ping, {})
    assert set(warehouse.columns("deactivations")) == set(deactivation)
    skipped = records.tracking_skipped_row(records.read_stored_ping(*stored("tracking-skipped", {"hash": "abc"})))
    assert set(warehouse.columns("tracking_skipped")) == set(skipped)
    assert set(warehouse.columns("rejected")) == set(records.rejected_row("track/x.json", "r", "d", WHEN, {}))
    assert set(records.REJECTION_REASONS) >= {stored_ping.INVALID_OBJECT, stored_ping.INVALID_PAYLOAD}


def test_bigquery_row_serialises_custom_fields_and_timestamps():
    ping = records.read_stored_ping(*stored(body=real_track_body()))
    row = records.bigquery_row(
        records.site_record(ping, {"custom_fields": ["license_type"]}), warehouse.columns("sites")
    )
    assert row["custom_fields"] == '{"license_type": "pro"}'
    assert row["received_at"] == "2026-11-23T11:47:18.123456Z"
    json.dumps(row)  # JSON-safe


@pytest.mark.parametrize("reasons", [{"too-expensive": "Too expensive"}, ["too-expensive"]])
def test_deactivation_reasons(reasons):
    base = {"hash": "abc", "url": "https://x.org"}
    project = {"deactivation_reasons": reasons}

    def record(**extra):
        ping = records.read_stored_ping(*stored("deactivate", {**base, **extra}))
        return records.deactivation_record(ping, project)

    assert record(reason_id="found-better-plugin", reason_info=" Nicer UI ")["reason_info"] == "Nicer UI"
    assert (record(reason_id="found-better-plugin")["reason_known"]) is True  # the client's
    assert (record(reason_id="too-expensive")["reason_id"], record(reason_id="too-expensive")["reason_known"]) == (
        "too-expensive",
        True,  # the project's
    )
    # A plugin author's own slug, added through the client's filter: kept, marked unknown.
    assert (
        record(reason_id="switched_to-PRO2")["reason_id"],
        record(reason_id="switched_to-PRO2")["reason_known"],
    ) == (
        "switched_to-PRO2",
        False,
    )
    assert record(reason_id="none")["reason_known"] is True
    assert record()["reason_id"] is None and record()["reason_known"] is None  # a theme switch sends no reason
    for not_a_slug in ("made up", "<script>", "x" * 65, "raison/é"):
        with pytest.raises(Rejected) as e:
            record(reason_id=not_a_slug)
        assert e.value.reason == records.INVALID_REASON


def test_rejected_row_drops_every_personal_field():
    body = {"hash": "abc", "admin_email": "a@b.org", "ip_address": "1.2.3.4", "first_name": "Zoë", "last_name": "X"}
    row = records.rejected_row("track/2026/11/23/11/x.json", "unknown_project", "no project", WHEN, body)
    assert row["route"] == "track" and row["hash"] == "abc"
    assert json.loads(row["payload"]) == {"hash": "abc"}
    assert records.rejected_row("track/x.json", "invalid_object", "d", WHEN, None)["payload"] is None


def _maximal_hostile_body() -> dict:
    """What a MAX_BODY_BYTES form body of `%01` values parses to: every value control characters."""
    max_body, max_value = config.get_int("MAX_BODY_BYTES"), config.get_int("MAX_VALUE_CHARS")
    keys = max_body // (3 * max_value) + 1
    return {"hash": "h" * max_value, **{f"x{i}": "\x01" * max_value for i in range(keys)}}


def test_a_rejected_row_keeps_at_most_its_cap_of_a_payload_and_says_so():
    body = _maximal_hostile_body()
    row = records.rejected_row("track/2026/11/23/11/x.json", "unknown_project", "d" * 5000, WHEN, body)
    assert row["payload_truncated"] is True
    assert len(row["payload"].encode()) <= records.MAX_REJECTED_PAYLOAD_BYTES
    assert len(row["payload"].encode()) > records.MAX_REJECTED_PAYLOAD_BYTES - 6  # cut where the cap is
    assert row["payload"].startswith('{"hash": "hhh')
    assert len(row["detail"]) == records.MAX_DETAIL_CHARS and row["detail"].endswith("…")
    assert len(row["hash"]) == records.MAX_REJECTED_HASH_CHARS
    small = records.rejected_row("track/x.json", "unknown_project", "d", WHEN, {"hash": "abc"})
    assert (small["payload_truncated"], small["detail"], small["hash"]) == (False, "d", "abc")


def test_a_maximal_rejected_row_is_far_inside_the_row_bound():
    """Rows of `rejected` are not checked against MAX_ROW_BYTES before staging: bounded by construction."""
    row = records.rejected_row("track/" + "n" * 1000, "unknown_project", "é" * 5000, WHEN, _maximal_hostile_body())
    size = len(warehouse.staging_line(records.bigquery_row(row, warehouse.columns("rejected"))))
    assert size < 100_000 < warehouse.MAX_ROW_BYTES


@pytest.mark.parametrize("text", ["a" * 10, "é" * 10, "€" * 10, "😀" * 10, "a😀" * 5])
def test_capped_text_cuts_at_a_character_boundary(text):
    for cap in range(0, 45):
        cut, truncated = records.capped_text(text, cap)
        assert text.startswith(cut) and len(cut.encode()) <= cap
        assert truncated == (len(text.encode()) > cap)
        assert len(cut.encode()) > cap - 4 or not truncated  # never more than one character short


def test_a_refused_history_row_becomes_its_pings_rejection():
    row = records.bigquery_row(
        {"hash": "abc", "ping_id": "p1", "status": sites.DEACTIVATED, "received_at": WHEN, "admin_email": "a@b.org"},
        warehouse.columns("sites"),
    )
    refused = records.refused_row("sites", row, "invalid: no")
    assert refused["source"] == stored_ping.object_name("deactivate", WHEN, "p1")
    assert (refused["route"], refused["reason"], refused["received_at"]) == (
        "deactivate",
        records.BIGQUERY_REFUSED,
        WHEN,
    )
    assert refused["detail"] == "BigQuery refused its sites row: invalid: no"
    assert json.loads(refused["payload"]) == {"hash": "abc"}  # nothing of the row: it holds personal fields
    assert records.refused_row("tracking_skipped", {**row, "status": None}, "e")["route"] == "tracking-skipped"
    assert records.refused_row("sites", {**row, "status": sites.ACTIVE}, "e")["route"] == "track"


def test_a_refused_rejected_row_is_kept_without_its_payload():
    row = records.bigquery_row(
        records.rejected_row("track/2026/11/23/11/x.json", "unknown_project", "no project", WHEN, {"hash": "abc"}),
        warehouse.columns("rejected"),
    )
    refused = records.refused_row("rejected", row, "invalid: no")
    assert (refused["source"], refused["reason"], refused["received_at"]) == (row["source"], "unknown_project", WHEN)
    assert (refused["payload"], refused["payload_truncated"]) == (None, True)
    assert refused["detail"] == "BigQuery refused its rejected row: invalid: no [was unknown_project: no project]"


def test_a_staged_row_is_one_line_of_json_and_its_size_is_checked():
    row = {"site": "a\nb\u2028é", "ping_id": "p"}
    line = warehouse.staging_line(row)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and json.loads(line) == row
    assert warehouse.staging_line({"s": "\ud800"}) == b'{"s":"\\ud800"}\n'  # a lone surrogate, escaped
    warehouse.check_row("sites", {"site": "x" * (warehouse.MAX_ROW_BYTES - 20)})
    with pytest.raises(warehouse.RowTooLarge, match="its sites row is 5242892 bytes"):
        warehouse.check_row("sites", {"site": "x" * (warehouse.MAX_ROW_BYTES)})


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
        records.read_stored_ping(source, data)
    assert e.value.reason == reason


def test_received_at_of_unparseable_objects():
    fallback = datetime(2000, 1, 1, tzinfo=UTC)
    assert stored_ping.received_at_of("track/2026/11/23/11/x.json", b"junk", fallback) == datetime(
        2026, 11, 23, 11, tzinfo=UTC
    )
    assert stored_ping.received_at_of("track/x.json", None, fallback) == fallback
    assert stored_ping.received_at_of(*stored(body={}), fallback) == WHEN


# --- hostile input that passes ingest (found by tests/test_wire_properties.py) ----------


def _form_ping(route: str, text: str):
    body = parse_body(text.encode(), "application/x-www-form-urlencoded", None, LIMITS)
    return records.read_stored_ping(*stored(route, body), now=WHEN)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("users[total]=abc", "users[total]"),
        ("users[total]=--1", "users[total]"),  # crashed: int("--1") raised ValueError
        ("users[total]=" + "9" * 5000, "users[total]"),  # crashed: over Python's 4300-digit int() limit
        ("active_plugins=1e999", "active_plugins"),
        ("active_plugins=" + "9" * 25, "active_plugins"),  # over INT64: BigQuery and MongoDB refuse it
        ("wp[multisite]=maybe", "wp[multisite]"),
        ("is_local=2", "is_local"),
        ("plugins=akismet", "plugins"),
        ("plugins[]=akismet", "plugins"),
    ],
)
def test_values_that_cannot_be_cast_are_rejected_with_the_field_named(extra, field):
    ping = _form_ping("track", f"hash=abc&url=https%3A%2F%2Fx.org&{extra}")
    with pytest.raises(Rejected) as caught:
        records.site_record(ping, {})
    assert caught.value.reason == records.INVALID_VALUE and caught.value.detail.startswith(field)


def test_a_url_that_entity_decoding_breaks_is_rejected():
    """Crashed the run: `https://&lbrack;@x.org` passed ingest (its host is x.org) until ingest
    refused credentials in URLs; decoded, `https://[@x.org` is no URL to urlsplit."""
    with pytest.raises(Rejected) as caught:
        records.url_field("https://&lbrack;@x.org")
    assert caught.value.reason == records.INVALID_VALUE
    with pytest.raises(Rejected) as caught:  # stored before the rule: the pipelines' re-check sets it aside
        records.read_stored_ping(*stored(body={"hash": "abc", "url": "https://&lbrack;@x.org"}), now=WHEN)
    assert caught.value.reason == records.INVALID_PAYLOAD


def test_values_that_are_absent_or_empty_stay_null():
    ping = _form_ping("track", "hash=abc&url=https%3A%2F%2Fx.org&users[total]=&active_plugins=&wp[multisite]=")
    record = records.site_record(ping, {})
    assert record["users_total"] is None and record["active_plugins"] is None and record["multisite"] is False
    assert record["plugins"] == []


def test_json_integers_beyond_int64_are_rejected():
    body = {"hash": "abc", "url": "https://x.org", "extra": {"license": 2**64}}
    ping = records.read_stored_ping(*stored(body=body), now=WHEN)
    with pytest.raises(Rejected, match="extra"):
        records.site_record(ping, {"custom_fields": ["license"]})
    assert records.site_record(ping, {})["custom_fields"] == {}  # not whitelisted: never stored
    assert records.to_int(2**63) is None and records.to_int(2**63 - 1) == 2**63 - 1 and records.to_int(1e300) is None


def test_previously_skipped_that_is_no_flag_is_rejected():
    ping = _form_ping("tracking-skipped", "hash=abc&previously_skipped=perhaps")
    with pytest.raises(Rejected) as caught:
        records.tracking_skipped_row(ping)
    assert caught.value.reason == records.INVALID_VALUE


@pytest.mark.parametrize("received_at", [datetime(2020, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)])
def test_a_received_at_bigquery_refuses_is_rejected(received_at):
    ping = StoredPing(id="old", route="track", received_at=received_at, payload={"hash": "abc", "url": "https://x.org"})
    with pytest.raises(Rejected) as caught:
        records.read_stored_ping(ping.object_name, ping.to_json(), now=WHEN)
    assert caught.value.reason == records.RECEIVED_AT_OUT_OF_RANGE
    assert stored_ping.format_timestamp(received_at) in caught.value.detail
    # Its `rejected` row is dated by the day it was set aside, the original kept in `detail`.
    row = records.rejected_row(ping.object_name, caught.value.reason, caught.value.detail, received_at, None, now=WHEN)
    assert row["received_at"] == datetime(2026, 11, 23, tzinfo=UTC)
    assert row["detail"].startswith(f"[received_at {stored_ping.format_timestamp(received_at)}]")


def test_the_streaming_window_edges():
    assert records.in_streaming_window(WHEN - records.STREAMING_PAST, WHEN)
    assert records.in_streaming_window(WHEN + records.STREAMING_FUTURE, WHEN)
    assert not records.in_streaming_window(WHEN - records.STREAMING_PAST - timedelta(seconds=1), WHEN)
    assert not records.in_streaming_window(WHEN + records.STREAMING_FUTURE + timedelta(seconds=1), WHEN)
