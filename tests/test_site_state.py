"""Unit tests of telemetry.pipelines.site_state's pure functions (the writes are tested in tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from telemetry.common.stored_ping import StoredPing
from telemetry.pipelines import records
from telemetry.pipelines.site_state import latest_per_site

T0 = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
PROJECT = {"hash": "known", "custom_fields": []}


def site(ping_id: str, minutes: int) -> dict:
    body = {"hash": "known", "url": "https://site.example.org"}
    return records.site_record(StoredPing(ping_id, "track", T0 + timedelta(minutes=minutes), body), PROJECT)


def test_latest_per_site_folds_in_any_order():
    pings = [site("a", 10), site("b", 40), site("c", 0)]
    for order in (pings, pings[::-1], [pings[2], pings[0], pings[1]]):
        [(record, first, last)] = latest_per_site(order)
        assert (record["ping_id"], first, last) == ("b", T0, T0 + timedelta(minutes=40))


def test_latest_per_site_breaks_a_tie_by_ping_id_as_mongodb_does():
    for order in (["p1", "p2"], ["p2", "p1"]):
        [(record, _, _)] = latest_per_site([site(ping_id, 5) for ping_id in order])
        assert record["ping_id"] == "p2"


def test_a_lost_claim_is_reclaimed_long_after_any_call_could_still_be_running():
    from telemetry.pipelines import mail, site_state

    assert mail.MAX_CALL_SECONDS == 5 * mail.TIMEOUT_SECONDS + 1 + 2 + 4  # five tries and urllib3's backoff
    assert site_state.MAIL_RECLAIM_AFTER.total_seconds() >= 10 * mail.MAX_CALL_SECONDS


def test_failed_mail_backs_off_exponentially():
    from telemetry.pipelines import site_state

    waits = [site_state.retry_due_at(n, T0) - T0 for n in range(1, site_state.MAIL_MAX_ATTEMPTS)]
    assert waits == [timedelta(hours=h) for h in (1, 2, 4, 8, 16)]
