"""Unit tests of the stored ping's format (telemetry/common/stored_ping.py) and the writer's retry policy."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from telemetry.common import stored_ping, wire
from telemetry.common.stored_ping import StoredPing, StoredPingError
from telemetry.ingest.object_writer import TRANSIENT_STATUSES, retry_policy
from telemetry.ingest.settings import IngestSettings
from telemetry.local import samples

WHEN = datetime(2026, 11, 23, 11, 47, 18, 123456, tzinfo=UTC)
LIMITS = IngestSettings.from_env({}).limits


def test_object_name_uses_the_utc_hour_of_receipt():
    received = datetime(2026, 11, 23, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))
    assert stored_ping.object_name("tracking-skipped", received, "abc") == "tracking-skipped/2026/11/24/04/abc.json"
    assert stored_ping.hour_prefix("track", received) == "track/2026/11/24/04/"
    assert stored_ping.hour_prefix("track", "2026/11/24/04") == "track/2026/11/24/04/"


def test_timestamps_are_utc_with_microseconds():
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert stored_ping.format_timestamp(moment) == "2026-01-02T03:04:05.000006Z"
    assert stored_ping.parse_timestamp("2026-01-02T03:04:05.000006Z") == moment


def test_what_ingest_writes_the_pipelines_read_back():
    ping = StoredPing(
        id="p-1",
        route="deactivate",
        received_at=WHEN,
        payload={"hash": "abc", "url": "https://x.org", "site": "Café &amp; Co"},
        user_agent="Appsero/abc;",
        content_type="application/x-www-form-urlencoded",
        client_ip="2001:db8::1",
        raw="hash=abc&url=https%3A%2F%2Fx.org&site=Caf%C3%A9+%26amp%3B+Co",
    )
    assert ping.object_name == "deactivate/2026/11/23/11/p-1.json"
    assert StoredPing.parse(ping.object_name, ping.to_json()) == ping
    assert stored_ping.route_of(ping.object_name) == "deactivate"
    assert stored_ping.is_object_of(ping.object_name, "deactivate")
    assert not stored_ping.is_object_of(ping.object_name, "track")


def _standard_library_bytes(ping: StoredPing) -> bytes:
    """The object as ingest wrote it with the standard library, before orjson."""
    record = {
        "id": ping.id,
        "received_at": stored_ping.format_timestamp(ping.received_at),
        "route": ping.route,
        "user_agent": ping.user_agent,
        "content_type": ping.content_type,
        "client_ip": ping.client_ip,
        "payload": ping.payload,
        "raw": ping.raw,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def test_the_bytes_are_those_the_standard_library_wrote():
    """orjson writes a ping's object byte for byte as json.dumps did: escapes, non-ASCII, nesting."""
    rng = random.Random(5)
    for index in range(20):
        body = samples.http_build_query(samples.track_payload(rng, "a" * 32, index))
        body += "&extra[ctl]=%00%1F%7F%E2%80%A8&extra[q]=%22%5C%2F&extra[emoji]=%F0%9F%98%80"
        payload = wire.parse_body(body.encode(), "application/x-www-form-urlencoded", None, LIMITS)
        ping = StoredPing(f"p-{index}", "track", WHEN, payload, "Appsero/x;", "x", "203.0.113.7", body)
        assert ping.to_json() == _standard_library_bytes(ping)


def test_numbers_of_a_json_body_read_back_as_sent():
    """Integers past 64 bits (orjson has no form for them: the standard library writes those)
    and floats of every magnitude (orjson writes `1e-7`, json `1e-07`: the same number)."""
    payload = {"hash": "h", "url": "https://x.org", "big": 10**30, "low": -(2**63), "small": 1e-7, "f": [0.1, 1e300]}
    ping = StoredPing("p-1", "track", WHEN, payload)
    assert StoredPing.parse(ping.object_name, ping.to_json()) == ping
    assert StoredPing.parse(ping.object_name, StoredPing("p-1", "track", WHEN, {**payload, "big": 1}).to_json())


def test_objects_written_before_orjson_still_read():
    """What the standard library wrote stays readable: its spacing, and the NaN and Infinity
    it wrote for JSON bodies that held them (ingest refuses such bodies now)."""
    written = (
        b'{"id": "p-1", "received_at": "2026-11-23T11:47:18.123456Z", "route": "track", "user_agent": null, '
        b'"content_type": "application/json", "client_ip": "203.0.113.7", "payload": {"hash": "h", '
        b'"url": "https://x.org", "active_plugins": NaN, "users": {"total": Infinity}, "n": 1e-07, '
        b'"site": "Caf\\u00e9"}, "raw": "{}"}'
    )
    ping = StoredPing.parse("track/2026/11/23/11/p-1.json", written)
    assert ping.payload["site"] == "Café" and ping.payload["n"] == 1e-7
    assert math.isnan(ping.payload["active_plugins"]) and ping.payload["users"]["total"] == math.inf


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("track/2026/11/23/11/a.json", b"not json", stored_ping.INVALID_OBJECT),
        ("track/2026/11/23/11/a.json", b'{"id": "a"}', stored_ping.INVALID_OBJECT),
        (
            "elsewhere/a.json",
            StoredPing("a", "track", WHEN, {"hash": "h", "url": "https://x.org"}).to_json(),
            "invalid_object",
        ),
        ("track/a.json", StoredPing("a", "track", WHEN, {"hash": "h"}).to_json(), stored_ping.INVALID_PAYLOAD),
        (
            "track/a.json",
            StoredPing("a", "track", WHEN, {"hash": "h", "url": "https://x.org", "$x": 1}).to_json(),
            "invalid_payload",
        ),
    ],
)
def test_unreadable_objects(name, data, reason):
    with pytest.raises(StoredPingError) as e:
        StoredPing.parse(name, data)
    assert e.value.reason == reason


def test_payload_of_an_unreadable_object():
    assert stored_ping.payload_of(b'{"payload": {"hash": "a"}}') == {"hash": "a"}
    assert stored_ping.payload_of(b"junk") is None
    assert stored_ping.payload_of(b'{"payload": [1]}') is None


def test_retry_policy_tries_the_configured_number_of_times():
    policy = retry_policy(3)
    assert policy.total == 2  # 3 tries in all
    assert set(policy.status_forcelist) == TRANSIENT_STATUSES
    assert policy.is_retry("POST", 503) and not policy.is_retry("POST", 403)


def test_synthetic_is_stored_only_when_true_and_read_back():
    from datetime import UTC, datetime

    from telemetry.common.stored_ping import StoredPing

    body = {"hash": "h", "url": "https://a.example.org"}
    received = StoredPing(id="r", route="track", received_at=datetime(2026, 11, 1, tzinfo=UTC), payload=body)
    generated = StoredPing(
        id="g", route="track", received_at=datetime(2026, 11, 1, tzinfo=UTC), payload=body, synthetic=True
    )
    assert b"synthetic" not in received.to_json()
    assert StoredPing.parse(generated.object_name, generated.to_json()).synthetic is True
    assert StoredPing.parse(received.object_name, received.to_json()).synthetic is False
