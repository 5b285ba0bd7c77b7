"""Unit tests of the ingest module's pure helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from telemetry.ingest import object_name
from telemetry.records import format_timestamp
from telemetry.storage import backoff_seconds


def test_object_name_uses_the_utc_hour_of_receipt():
    received = datetime(2026, 11, 23, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))
    assert object_name("tracking-skipped", received, "abc") == "tracking-skipped/2026/11/24/04/abc.json"


def test_timestamps_are_utc_with_microseconds():
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-01-02T03:04:05.000006Z"


def test_backoff_is_bounded_and_grows():
    for attempt, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4)):
        waits = [backoff_seconds(attempt) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2
