"""The daily cap of site events, its pure parts: which events a day adds and how many it holds
back (within_cap, capped), the UTC days of a window, the summary event (its id, its targets,
its mail), and who listens to a type."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from telemetry.common import projects
from telemetry.notify import emails, events, outbox, registry, site_events
from telemetry.notify.settings import NotifySettings

DAY = date(2026, 12, 1)
MIDNIGHT = datetime(2026, 12, 1, tzinfo=UTC)
UNTIL = MIDNIGHT + timedelta(hours=15)


def deactivation(n: int, project: str = "p1") -> events.Event:
    return events.Event(
        id=events.event_id(events.SITE_DEACTIVATED, f"ping-{n}"),
        project=project,
        type=events.SITE_DEACTIVATED,
        occurred_at=MIDNIGHT + timedelta(minutes=n),
        data={"url": f"https://site{n}.example", "reason_id": "other"},
    )


def ids(found: list[events.Event]) -> list[str]:
    return [e.id for e in found]


# --- within_cap ---


def test_below_the_cap_every_new_fact_is_added_and_nothing_is_held_back():
    ranked = [deactivation(n) for n in range(3)]
    assert within_cap_ids(ranked, set(), 0, 3, 5) == (ids(ranked), 0)
    # Found again by the next run: the stored ones are not added twice.
    assert within_cap_ids(ranked, {ranked[0].id}, 1, 3, 5) == (ids(ranked[1:]), 0)


def test_past_the_cap_the_first_in_rank_order_are_added_and_the_rest_held_back():
    ranked = [deactivation(n) for n in range(5)]  # the day's first 5 of 12
    assert within_cap_ids(ranked, set(), 0, 12, 5) == (ids(ranked), 7)
    # A later run: all 5 stored, 17 in the day now.
    assert within_cap_ids(ranked, set(ids(ranked)), 5, 17, 5) == ([], 12)


def test_a_late_row_that_ranks_first_is_held_back_once_the_day_has_its_cap():
    late = deactivation(0)
    ranked = [late] + [deactivation(n) for n in range(1, 5)]  # the stored 5 were ranks 1-5, now 2-6
    stored_ids = set(ids(ranked[1:]))
    assert within_cap_ids(ranked, stored_ids, 5, 13, 5) == ([], 8)


def test_a_cap_lowered_after_events_were_stored_adds_none():
    ranked = [deactivation(n) for n in range(3)]
    assert within_cap_ids(ranked, set(ids(ranked[:2])), 4, 10, 3) == ([], 6)


def within_cap_ids(ranked, stored_ids, stored, total, cap):
    new, held_back = site_events.within_cap(ranked, stored_ids, stored, total, cap)
    return ids(new), held_back


# --- capped ---


class FakeOutbox:
    """The two outbox lookups `capped` makes, over a set of stored events."""

    def __init__(self, stored: list[events.Event]) -> None:
        self.events = stored
        self.counted: list[tuple] = []

    def ids_in(self, wanted: list[str]) -> set[str]:
        return {e.id for e in self.events} & set(wanted)

    def stored(self, project: str, event_type: str, start: datetime, end: datetime) -> int:
        self.counted.append((project, event_type, start, end))
        return sum(e.project == project and e.type == event_type and start <= e.occurred_at < end for e in self.events)


def run_capped(days, cap, box):
    return site_events.capped(days, events.SITE_DEACTIVATED, cap, UNTIL, box.ids_in, box.stored)


def test_capped_adds_each_days_events_within_the_cap_and_one_summary_per_day_past_it():
    flooded = [deactivation(n) for n in range(3)]
    calm = [deactivation(n, "p2") for n in range(2)]
    box = FakeOutbox([])
    days = [site_events.Day("p1", DAY, flooded, 10), site_events.Day("p2", DAY, calm, 2)]
    found = run_capped(days, 3, box)
    summary = found[3]
    assert ids(found) == [*ids(flooded), summary.id, *ids(calm)]
    assert summary.id == events.event_id(events.SITE_DEACTIVATED_OVERFLOW, "p1", "2026-12-01")
    assert (summary.type, summary.project, summary.occurred_at) == (events.SITE_DEACTIVATED_OVERFLOW, "p1", UNTIL)
    assert summary.data == {
        "project": "p1", "day": "2026-12-01", "summarises": events.SITE_DEACTIVATED, "cap": 3, "held_back": 7,
        "counted_until": UNTIL.isoformat(), "list_path": "/v1/projects/p1/deactivations",
    }  # fmt: skip
    # The outbox is counted only for the day past the cap, over its whole UTC day.
    assert box.counted == [("p1", events.SITE_DEACTIVATED, MIDNIGHT, MIDNIGHT + timedelta(days=1))]


def test_capped_on_a_rerun_adds_nothing_new_and_makes_the_same_summary():
    flooded = [deactivation(n) for n in range(3)]
    first = run_capped([site_events.Day("p1", DAY, flooded, 10)], 3, FakeOutbox([]))
    again = run_capped([site_events.Day("p1", DAY, flooded, 12)], 3, FakeOutbox(first))
    assert [(e.id, e.data["held_back"]) for e in again] == [(first[-1].id, 9)]


def test_the_days_stored_events_count_even_when_none_of_them_is_in_this_runs_window():
    # The day's first 3 were sent by earlier runs and lie before this window: nothing ranked, 3 stored.
    earlier = [deactivation(n) for n in range(3)]
    found = run_capped([site_events.Day("p1", DAY, [], 8)], 3, FakeOutbox(earlier))
    assert [(e.type, e.data["held_back"]) for e in found] == [(events.SITE_DEACTIVATED_OVERFLOW, 5)]


# --- the window's days ---


def test_the_days_of_a_window_are_the_utc_days_it_touches():
    assert site_events.days_of(MIDNIGHT - timedelta(hours=9), UNTIL) == [DAY - timedelta(days=1), DAY]
    assert site_events.days_of(MIDNIGHT, MIDNIGHT + timedelta(days=1)) == [DAY]  # `until` is exclusive
    assert site_events.days_of(UNTIL, UNTIL) == []
    assert site_events.day_start(DAY) == MIDNIGHT


# --- the summary's types, targets and mail ---


def test_a_summary_goes_where_the_type_it_summarises_goes():
    assert events.subscription(events.SITE_DEACTIVATED_OVERFLOW) == events.SITE_DEACTIVATED
    assert events.subscription(events.SITE_ACTIVATED_OVERFLOW) == events.SITE_ACTIVATED
    assert events.subscription(events.FIGURES_READY) == events.FIGURES_READY
    document = projects.project_document("p1", "SEO Toolkit")
    document, deactivated_hook = projects.with_webhook(document, "https://h.example/", [events.SITE_DEACTIVATED])
    document, activated_hook = projects.with_webhook(document, "https://i.example/", [events.SITE_ACTIVATED])
    # The recipients exclude every reason but one: the summary is mailed to them all the same.
    document = projects.with_alerts(document, ["a@vendor.example"], include=["too-pricey"])
    mailed = tuple(registry.RENDERERS)
    summary = site_events.overflow_event(events.SITE_DEACTIVATED, "p1", DAY, 7, 3, UNTIL)
    assert outbox.targets(summary, document, mailed) == [
        ("email", "a@vendor.example"),
        ("webhook", deactivated_hook["id"]),
    ]
    new_sites = site_events.overflow_event(events.SITE_ACTIVATED, "p1", DAY, 7, 3, UNTIL)
    assert outbox.targets(new_sites, document, mailed) == [("webhook", activated_hook["id"])]


def test_the_registry_mails_exactly_the_email_types():
    assert set(registry.RENDERERS) == set(events.EMAIL_TYPES)


def test_only_a_project_someone_listens_to_gets_site_events():
    bare = projects.project_document("p1", "SEO Toolkit")
    alerted = projects.with_alerts(bare, ["a@vendor.example"])
    hooked, _ = projects.with_webhook(bare, "https://h.example/", [events.SITE_ACTIVATED])
    assert not outbox.listened(bare, events.SITE_DEACTIVATED) and not outbox.listened(bare, events.SITE_ACTIVATED)
    assert outbox.listened(alerted, events.SITE_DEACTIVATED)
    assert not outbox.listened(alerted, events.SITE_ACTIVATED)  # a new site is not mailed
    assert outbox.listened(hooked, events.SITE_ACTIVATED) and not outbox.listened(hooked, events.SITE_DEACTIVATED)


def test_the_summary_mail_says_how_many_more_and_where_to_see_them():
    summary = site_events.overflow_event(events.SITE_DEACTIVATED, "p1", DAY, 7, 3, UNTIL)
    content = emails.render_deactivations_held_back(summary, projects.project_document("p1", "SEO <Toolkit>"))
    assert content.subject == "SEO <Toolkit>: 7 more deactivations on 2026-12-01, see the dashboard"
    assert "more than 3 deactivations on 2026-12-01" in content.text
    assert "7 more deactivations, counted up to 2026-12-01T15:00:00+00:00, were not sent one by one" in content.text
    assert "GET /v1/projects/p1/deactivations" in content.text
    assert "SEO &lt;Toolkit&gt;" in content.html and "<Toolkit>" not in content.html
    one = site_events.overflow_event(events.SITE_DEACTIVATED, "p1", DAY, 1, 3, UNTIL)
    assert (
        "1 more deactivation on"
        in emails.render_deactivations_held_back(one, projects.project_document("p1", "X")).subject
    )


# --- the setting ---


def test_the_cap_is_a_setting_of_at_least_one():
    assert NotifySettings.from_env({"NOTIFY_MAX_SITE_EVENTS_PER_DAY": "7"}).max_site_events_per_day == 7
    assert NotifySettings.from_env({}).max_site_events_per_day == 100
    with pytest.raises(ValueError, match="NOTIFY_MAX_SITE_EVENTS_PER_DAY must be at least 1"):
        NotifySettings.from_env({"NOTIFY_MAX_SITE_EVENTS_PER_DAY": "0"})
