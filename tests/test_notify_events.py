from datetime import UTC, datetime

import pytest

from telemetry.notify import events


def test_an_event_id_depends_on_the_fact_alone():
    first = events.event_id(events.SITE_DEACTIVATED, "ping-1")
    assert first == events.event_id(events.SITE_DEACTIVATED, "ping-1")
    assert first != events.event_id(events.SITE_ACTIVATED, "ping-1")
    assert first != events.event_id(events.SITE_DEACTIVATED, "ping-2")
    assert first.startswith("evt_") and len(first) == 36


def test_the_key_parts_are_separated_so_they_cannot_run_together():
    assert events.event_id(events.DIGEST, "ab", "c") != events.event_id(events.DIGEST, "a", "bc")


def test_an_event_refuses_an_unknown_type_and_a_naive_time():
    when = datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown event type"):
        events.Event("evt_x", "p", "site.renamed", when)
    with pytest.raises(ValueError, match="timezone-aware"):
        events.Event("evt_x", "p", events.DIGEST, when.replace(tzinfo=None))
